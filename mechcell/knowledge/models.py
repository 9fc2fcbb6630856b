"""The knowledge component's contracts: relations, resolutions, signed paths and retrieved context.

Why pydantic: these cross the component wall (verifiers cite a `Relation`, traces store a `RetrievedContext`), so
they must validate and round-trip through JSON.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

#: Entity types of the store. A transcription factor or kinase is a `gene` with a role (see `KnowledgeBase.roles`).
EntityType = Literal[
    "drug", "gene", "family", "complex", "pathway", "gene_set", "process", "cell_line", "metabolite", "reaction"
]

#: Drug → target predicates (subject is a drug). Sign: −1 lowers the target's activity, +1 raises it, 0 unknown.
DRUG_TARGET_PREDICATES = ("inhibits", "activates", "agonist_of", "antagonist_of", "binds")
#: Predicates of the signed signalling network (subject and object are genes, complexes, processes, metabolites).
SIGNALLING_PREDICATES = ("activates", "inhibits", "part_of_complex")
#: Everything else the store holds.
OTHER_PREDICATES = (
    "regulates_expression",  # TF → target gene, sign ±1 (CollecTRI, starter)
    "footprint",  # pathway → responsive gene, weight (PROGENy), sign = sign(weight)
    "activity_anchor",  # gene → pathway: the gene's activity read as the pathway's (starter)
    "member_of",  # gene → gene set / process
    "is_a",  # gene/family → family (FamPlex isa)
    "part_of",  # gene/family → complex (FamPlex partof)
    "interacts_with",  # physical interaction, unsigned, weight = score in [0, 1] (STRING)
    "has_driver",  # cell line → gene, action = variant and effect
)
PREDICATES = tuple(dict.fromkeys(DRUG_TARGET_PREDICATES + SIGNALLING_PREDICATES + OTHER_PREDICATES))


class Relation(BaseModel):
    """One typed, signed, sourced statement: `subject predicate object`.

    `sign` is +1 (raises activity/expression), −1 (lowers it) or 0 (unsigned, or the sources disagree).
    Every relation names the source it came from, that source's version and the record id inside it, and carries
    the source's own evidence (PMIDs as `PMID:n`, URLs, database ids). `model_generated` flags sources that were
    themselves written by a language model (Tahoe's drug targets): verifiers should weigh them lower.
    """

    model_config = ConfigDict(frozen=True)

    subject: str
    subject_type: str
    predicate: str
    object: str
    object_type: str
    sign: int = Field(0, ge=-1, le=1)
    weight: float | None = None
    action: str | None = None
    source: str
    version: str
    record_id: str
    evidence: list[str] = Field(default_factory=list)
    model_generated: bool = False
    attrs: dict[str, Any] = Field(default_factory=dict)


class Resolution(BaseModel):
    """The outcome of resolving a user-facing name to the store's ids.

    status `resolved`: `id` is the canonical id (for a family, `symbols` are its member genes);
    `ambiguous`: `symbols` lists the candidates, none is guessed; `unresolved`: `suggestions` lists close names.
    """

    model_config = ConfigDict(frozen=True)

    query: str
    status: Literal["resolved", "ambiguous", "unresolved"]
    entity_type: str | None = None
    id: str | None = None
    symbols: list[str] = Field(default_factory=list)
    matched_by: str | None = Field(None, description="symbol, previous, alias, ensembl, entrez, family, salt, ...")
    suggestions: list[str] = Field(default_factory=list)
    note: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "resolved"


class SignedPath(BaseModel):
    """A directed path in the signed network: `nodes[i] —signs[i]→ nodes[i+1]`.

    `sign` is the product of the edge signs (0 when an edge's sources disagree on its sign).
    """

    model_config = ConfigDict(frozen=True)

    nodes: list[str]
    signs: list[int]
    sign: int
    relations: list[Relation] = Field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.signs)

    def render(self) -> str:
        out = [self.nodes[0]]
        for s, n in zip(self.signs, self.nodes[1:], strict=True):
            out.append({1: "→", -1: "⊣", 0: "–?"}[s])
            out.append(n)
        return " ".join(out)


class SourceInfo(BaseModel):
    """What one source contributed to a build."""

    source: str
    version: str
    path: str | None = None
    sha256: str | None = None
    status: Literal["ok", "error", "skipped"] = "ok"
    message: str | None = None
    n_entities: int = 0
    n_relations: int = 0
    n_aliases: int = 0
    n_roles: int = 0
    model_generated: bool = False
    licence: str | None = None


class Coverage(BaseModel):
    """How much of the Tahoe drug panel the store can explain (computed at build time). Counts are over Tahoe's
    drug labels (379 in Tahoe-100M); targets come from every source the store holds."""

    n_drugs: int = 0
    drugs_with_targets: int = 0
    drugs_with_resolved_targets: int = 0
    tahoe_target_symbols: int = 0
    tahoe_target_symbols_resolved: int = 0
    drugs_reaching_tf: int = 0
    drugs_reaching_tf_or_pathway: int = 0
    max_steps: int = 3

    def share(self, n: int) -> float:
        return n / self.n_drugs if self.n_drugs else 0.0


class BuildSummary(BaseModel):
    """Returned by a build and printed by `mechcell kb build`."""

    version: str
    path: str | None
    seconds: float
    size_bytes: int | None = None
    sources: list[SourceInfo]
    n_entities: int
    n_relations: int
    coverage: Coverage | None = None


class TargetHit(BaseModel):
    """A perturbation's direct target: the gene, what is done to it (sign) and the records that say so."""

    gene: str
    action: str | None = None
    sign: int = 0
    sources: list[str] = Field(default_factory=list)
    model_generated_only: bool = False
    relations: list[Relation] = Field(default_factory=list)


class PathHit(BaseModel):
    """A signed path from a target to a TF (with a regulon) or to a pathway (through its activity anchor)."""

    start: str
    end: str
    end_type: Literal["tf", "pathway"]
    path: SignedPath
    predicted_sign: int = Field(
        0, description="target action sign × path sign: the predicted change of the end's activity"
    )
    score: float | None = Field(None, description="agreement of the end's enrichment with the predicted sign")


class ActivityScore(BaseModel):
    """A TF's or pathway's enrichment score against the signature, and whether a path reaches it."""

    name: str
    kind: Literal["tf", "pathway"]
    reached: bool
    path_length: int | None = None
    n_paths: int = 0
    predicted_sign: int = 0
    score: float | None = Field(None, description="enrichment z-score (≈ N(0,1) under random gene labels)")
    pvalue: float | None = None
    n_genes: int = 0
    agreement: float | None = Field(None, description="predicted_sign × score")


class Driver(BaseModel):
    """A cell line's driver mutation."""

    cell_line: str
    gene: str
    variant: str | None = None
    effect: str | None = None
    gene_role: str | None = None
    source: str
    record_id: str


class RetrievedContext(BaseModel):
    """What the knowledge base says about one condition, ranked and rendered for a prompt."""

    schema_version: int = SCHEMA_VERSION
    condition_key: str
    perturbation: str
    kind: Literal["drug", "ligand", "genetic", "unknown"]
    kind_reason: str
    resolution: Resolution
    targets: list[TargetHit] = Field(default_factory=list)
    paths: list[PathHit] = Field(default_factory=list)
    tfs: list[ActivityScore] = Field(default_factory=list)
    pathways: list[ActivityScore] = Field(default_factory=list)
    drivers: list[Driver] = Field(default_factory=list)
    cell_line: str | None = None
    kb_version: str
    signature_used: bool = False
    text: str = ""
    n_tokens: int = 0
    budget: int = 0
