"""The 20 action primitives of schema v2 (methods/action_graph.md) as typed pydantic models.

Each node of an action graph is one of these; `primitive` is the discriminator. Required arguments are plain
fields, optional ones default to None. Directions are normalised to "up"/"down" and gene lists to lists, so that
claims and signatures can be read off without re-parsing strings.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Direction = Literal["up", "down"]

_UP = {
    "up",
    "increase",
    "increases",
    "increased",
    "upregulate",
    "upregulates",
    "upregulated",
    "up-regulated",
    "activate",
    "activates",
    "activated",
    "activation",
    "positive",
    "+",
    "+1",
    "1",
    "higher",
    "gain",
}
_DOWN = {
    "down",
    "decrease",
    "decreases",
    "decreased",
    "downregulate",
    "downregulates",
    "downregulated",
    "down-regulated",
    "inhibit",
    "inhibits",
    "inhibited",
    "inhibition",
    "negative",
    "-",
    "-1",
    "lower",
    "loss",
    "repress",
    "represses",
    "repressed",
    "suppress",
    "suppressed",
}
_LIST_SPLIT = re.compile(r"\s*[,;]\s*")


def normalise_direction(value: Any) -> Any:
    """Map the many spellings models use ("increase", "Up", "+") onto "up"/"down"; leave others to fail."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value != 0:
        return "up" if value > 0 else "down"
    if isinstance(value, str):
        v = value.strip().lower()
        if v in _UP:
            return "up"
        if v in _DOWN:
            return "down"
    return value


def as_list(value: Any) -> Any:
    """A gene/member list given as one string ("DUSP6, SPRY4") becomes a list; items are stripped strings."""
    if isinstance(value, str):
        items = _LIST_SPLIT.split(value.strip().strip("[]"))
        return [i.strip().strip("'\"") for i in items if i.strip().strip("'\"")]
    if isinstance(value, (list, tuple)):
        return [s for i in value if (s := str(i).strip())]
    return value


class Primitive(BaseModel):
    """Base of every node: a unique id plus the primitive's typed arguments."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    #: Arguments that must be present (checked by the parser to give located problems).
    required: ClassVar[tuple[str, ...]] = ()
    #: True when the step is observable in expression/phenotype data (a valid graph ends in one).
    measurable: ClassVar[bool] = False
    #: True for non-causal primitives (associations and annotations).
    non_causal: ClassVar[bool] = False

    id: str = Field(min_length=1)

    @field_validator("direction", mode="before", check_fields=False)
    @classmethod
    def _direction(cls, v: Any) -> Any:
        if v.__class__ is str and (v == "down" or v == "up"):  # already normal (the usual case): no second call
            return v
        return normalise_direction(v)

    @field_validator("gene_list", "members", mode="before", check_fields=False)
    @classmethod
    def _list(cls, v: Any) -> Any:
        if v.__class__ is list:  # (the usual case, inlined: what as_list does with a list)
            return [s for i in v if (s := str(i).strip())]
        return as_list(v)

    @field_validator("confidence", "affinity", mode="before", check_fields=False)
    @classmethod
    def _number_or_text(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                f = float(v)
            except ValueError:
                return v.strip()
            return f if math.isfinite(f) else v.strip()
        return v

    def args(self) -> dict[str, Any]:
        """The primitive's arguments in declaration order, without id/primitive and without unset ones."""
        return {k: v for k, v in self.__dict__.items() if k not in ("id", "primitive") and v is not None}


Conf = float | str | None


class SetContext(Primitive):
    primitive: Literal["set_context"] = "set_context"
    cell_type: str | None = None
    genotype: str | None = None
    disease: str | None = None
    prior_perturbation: str | None = None
    extras: str | dict[str, Any] | None = None


class BindsTo(Primitive):
    required = ("actor", "target")
    primitive: Literal["binds_to"] = "binds_to"
    actor: str
    target: str
    affinity: float | str | None = None
    unit: str | None = None
    residues_actor: str | None = None
    residues_target: str | None = None
    via: str | None = None
    confidence: Conf = None


class ModulatesMoleculeActivity(Primitive):
    required = ("target", "direction")
    primitive: Literal["modulates_molecule_activity"] = "modulates_molecule_activity"
    target: str
    direction: Direction
    via: str | None = None
    confidence: Conf = None


class ModulatesPathwayActivity(Primitive):
    required = ("pathway", "direction")
    primitive: Literal["modulates_pathway_activity"] = "modulates_pathway_activity"
    pathway: str
    direction: Direction
    via: str | None = None
    confidence: Conf = None


class ModulatesComplex(Primitive):
    required = ("members", "complex", "direction")
    primitive: Literal["modulates_complex"] = "modulates_complex"
    members: list[str]
    complex: str
    direction: Direction
    stoichiometry: str | None = None
    via: str | None = None
    confidence: Conf = None


class RegulatesExpression(Primitive):
    required = ("regulator", "gene_list", "direction")
    measurable = True
    primitive: Literal["regulates_expression"] = "regulates_expression"
    regulator: str
    gene_list: list[str] = Field(min_length=1)
    direction: Direction
    mechanism: str | None = None
    via: str | None = None
    confidence: Conf = None


class RegulatesTranslation(Primitive):
    required = ("regulator", "rna_id", "direction")
    measurable = True
    primitive: Literal["regulates_translation"] = "regulates_translation"
    regulator: str
    rna_id: str
    direction: Direction
    mechanism: str | None = None
    via: str | None = None
    confidence: Conf = None


class PostTranslationalModification(Primitive):
    required = ("protein", "mod_type", "site", "direction")
    primitive: Literal["post_translational_modification"] = "post_translational_modification"
    protein: str
    mod_type: str
    site: str
    direction: Direction
    via: str | None = None
    confidence: Conf = None


class LocalisesTo(Primitive):
    required = ("entity", "from_loc", "to_loc")
    primitive: Literal["localises_to"] = "localises_to"
    entity: str
    from_loc: str
    to_loc: str
    mechanism: str | None = None
    via: str | None = None
    confidence: Conf = None


class ConvertsSubstrate(Primitive):
    required = ("enzyme", "substrate", "product")
    primitive: Literal["converts_substrate"] = "converts_substrate"
    enzyme: str
    substrate: str
    product: str
    via: str | None = None
    confidence: Conf = None


class DegradesOrStabilises(Primitive):
    required = ("regulator", "target", "direction")
    primitive: Literal["degrades_or_stabilises"] = "degrades_or_stabilises"
    regulator: str
    target: str
    direction: Direction
    via: str | None = None
    confidence: Conf = None


class GainOfFunction(Primitive):
    required = ("variant", "protein")
    primitive: Literal["gain_of_function"] = "gain_of_function"
    variant: str
    protein: str
    via: str | None = None
    confidence: Conf = None


class LossOfFunction(Primitive):
    required = ("variant", "protein")
    primitive: Literal["loss_of_function"] = "loss_of_function"
    variant: str
    protein: str
    via: str | None = None
    confidence: Conf = None


class InducesPhenotype(Primitive):
    required = ("source", "phenotype")
    measurable = True
    primitive: Literal["induces_phenotype"] = "induces_phenotype"
    source: str
    phenotype: str
    via: str | None = None
    confidence: Conf = None
    from_state: str | None = None
    to_state: str | None = None


class AlleviatesPhenotype(Primitive):
    required = ("actor", "phenotype")
    measurable = True
    primitive: Literal["alleviates_phenotype"] = "alleviates_phenotype"
    actor: str
    phenotype: str
    via: str | None = None
    confidence: Conf = None
    from_state: str | None = None
    to_state: str | None = None


class SimilarTo(Primitive):
    required = ("entity_a", "entity_b", "evidence_type")
    non_causal = True
    primitive: Literal["similar_to"] = "similar_to"
    entity_a: str
    entity_b: str
    evidence_type: str
    confidence: Conf = None
    via: str | None = None


class CorrelatesWith(Primitive):
    required = ("entity_a", "entity_b", "evidence_type")
    non_causal = True
    primitive: Literal["correlates_with"] = "correlates_with"
    entity_a: str
    entity_b: str
    evidence_type: str
    confidence: Conf = None


class ParticipatesIn(Primitive):
    required = ("entity", "ontology_id")
    non_causal = True
    primitive: Literal["participates_in"] = "participates_in"
    entity: str
    ontology_id: str
    evidence_type: str | None = None
    confidence: Conf = None


class CellCellInteraction(Primitive):
    required = ("sender", "receiver", "ligand", "receptor", "outcome")
    primitive: Literal["cell_cell_interaction"] = "cell_cell_interaction"
    sender: str
    receiver: str
    ligand: str
    receptor: str
    outcome: str
    via: str | None = None
    confidence: Conf = None


class ChromatinModification(Primitive):
    required = ("mark", "locus", "direction")
    primitive: Literal["chromatin_modification"] = "chromatin_modification"
    mark: str
    locus: str
    direction: Direction
    via: str | None = None
    confidence: Conf = None


PRIMITIVE_CLASSES: tuple[type[Primitive], ...] = (
    SetContext,
    BindsTo,
    ModulatesMoleculeActivity,
    ModulatesPathwayActivity,
    ModulatesComplex,
    RegulatesExpression,
    RegulatesTranslation,
    PostTranslationalModification,
    LocalisesTo,
    ConvertsSubstrate,
    DegradesOrStabilises,
    GainOfFunction,
    LossOfFunction,
    InducesPhenotype,
    AlleviatesPhenotype,
    SimilarTo,
    CorrelatesWith,
    ParticipatesIn,
    CellCellInteraction,
    ChromatinModification,
)

#: primitive name → model class (the registry the parser, printer and claims read).
PRIMITIVES: dict[str, type[Primitive]] = {c.model_fields["primitive"].default: c for c in PRIMITIVE_CLASSES}

#: Names of each primitive's arguments in declaration order (id first), for printing and parsing.
ARGUMENTS: dict[str, tuple[str, ...]] = {
    name: tuple(f for f in cls.model_fields if f != "primitive") for name, cls in PRIMITIVES.items()
}

Node = Annotated[
    SetContext
    | BindsTo
    | ModulatesMoleculeActivity
    | ModulatesPathwayActivity
    | ModulatesComplex
    | RegulatesExpression
    | RegulatesTranslation
    | PostTranslationalModification
    | LocalisesTo
    | ConvertsSubstrate
    | DegradesOrStabilises
    | GainOfFunction
    | LossOfFunction
    | InducesPhenotype
    | AlleviatesPhenotype
    | SimilarTo
    | CorrelatesWith
    | ParticipatesIn
    | CellCellInteraction
    | ChromatinModification,
    Field(discriminator="primitive"),
]

# Schema v1 → v2: primitive renames and argument renames (per primitive, after renaming).
V1_PRIMITIVES: dict[str, str] = {
    "modulates_activity": "modulates_molecule_activity",
    "causes_phenotype": "induces_phenotype",
    "rescues_phenotype": "alleviates_phenotype",
}
ARG_ALIASES: dict[str, dict[str, str]] = {
    "modulates_molecule_activity": {"entity": "target", "molecule": "target"},
    "regulates_expression": {
        "source": "regulator",
        "gene_or_signature": "gene_list",
        "genes": "gene_list",
        "gene": "gene_list",
        "targets": "gene_list",
    },
    "modulates_pathway_activity": {"entity": "pathway"},
    "modulates_complex": {"member_list": "members"},
    "induces_phenotype": {"actor": "source", "entity": "source"},
    "alleviates_phenotype": {"source": "actor", "entity": "actor"},
    "binds_to": {"drug": "actor", "ligand": "actor", "protein": "target"},
}
