"""Decompose an action graph into checkable claims, and read off the expression signature it predicts.

Why claims: verifiers judge one assertion at a time (a binding, a signed activity change, one gene's direction),
so a graph's reward can say exactly which step failed. A `regulates_expression` node yields one claim per gene
plus one set-level claim for the list as a whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mechcell.graphs.model import Edge
from mechcell.graphs.primitives import Direction, Primitive

if TYPE_CHECKING:
    from mechcell.graphs.model import ActionGraph

ClaimKind = Literal[
    "binding",
    "molecule_activity",
    "pathway_activity",
    "complex",
    "expression",
    "expression_set",
    "translation",
    "modification",
    "localisation",
    "conversion",
    "degradation",
    "gain_of_function",
    "loss_of_function",
    "phenotype",
    "similarity",
    "correlation",
    "annotation",
    "interaction",
    "chromatin",
]

_KIND: dict[str, ClaimKind] = {
    "binds_to": "binding",
    "modulates_molecule_activity": "molecule_activity",
    "modulates_pathway_activity": "pathway_activity",
    "modulates_complex": "complex",
    "regulates_expression": "expression",
    "regulates_translation": "translation",
    "post_translational_modification": "modification",
    "localises_to": "localisation",
    "converts_substrate": "conversion",
    "degrades_or_stabilises": "degradation",
    "gain_of_function": "gain_of_function",
    "loss_of_function": "loss_of_function",
    "induces_phenotype": "phenotype",
    "alleviates_phenotype": "phenotype",
    "similar_to": "similarity",
    "correlates_with": "correlation",
    "participates_in": "annotation",
    "cell_cell_interaction": "interaction",
    "chromatin_modification": "chromatin",
}

# (subject argument, object argument) per primitive; None = take the subject from the upstream step.
_ROLES: dict[str, tuple[str | None, str]] = {
    "binds_to": ("actor", "target"),
    "modulates_molecule_activity": (None, "target"),
    "modulates_pathway_activity": (None, "pathway"),
    "modulates_complex": (None, "complex"),
    "regulates_expression": ("regulator", "gene_list"),
    "regulates_translation": ("regulator", "rna_id"),
    "post_translational_modification": (None, "protein"),
    "localises_to": (None, "entity"),
    "converts_substrate": ("enzyme", "product"),
    "degrades_or_stabilises": ("regulator", "target"),
    "gain_of_function": ("variant", "protein"),
    "loss_of_function": ("variant", "protein"),
    "induces_phenotype": ("source", "phenotype"),
    "alleviates_phenotype": ("actor", "phenotype"),
    "similar_to": ("entity_a", "entity_b"),
    "correlates_with": ("entity_a", "entity_b"),
    "participates_in": ("entity", "ontology_id"),
    "cell_cell_interaction": ("ligand", "receptor"),
    "chromatin_modification": ("mark", "locus"),
}


def main_entity(node: Primitive) -> str | None:
    """The entity a step leaves changed (what a downstream step acts through): target, pathway, gene list..."""
    prim = node.primitive  # type: ignore[attr-defined]
    if prim == "set_context":
        return None
    obj = getattr(node, _ROLES[prim][1], None)
    if isinstance(obj, list):
        return ",".join(obj)
    return obj


class Claim(BaseModel):
    """One checkable assertion of a graph, knowing where it came from (node, incoming edge) and what it says."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="node id, or node id + ':' + gene for per-gene expression claims")
    kind: ClaimKind
    node_id: str
    primitive: str
    subject: str | None = Field(None, description="the acting entity (from the node or its upstream step)")
    object: str | None = Field(None, description="the affected entity (target, pathway, gene, phenotype)")
    direction: Direction | None = None
    genes: list[str] = Field(default_factory=list)
    causal: bool = Field(description="False for correlative links and non-causal primitives")
    upstream: list[str] = Field(default_factory=list, description="ids of the steps this one follows from")
    edge: Edge | None = Field(None, description="the incoming edge that asserts this step (first one)")
    node: dict[str, Any] = Field(default_factory=dict, description="the node's arguments")

    @property
    def text(self) -> str:
        d = f" {self.direction}" if self.direction else ""
        return f"{self.kind}: {self.subject or '?'} -> {self.object or '?'}{d}"


class PredictedGene(BaseModel):
    """One (gene, direction) the graph predicts, with the causal path of node ids that implies it."""

    model_config = ConfigDict(frozen=True)

    gene: str
    direction: Direction
    node_id: str
    path: list[str]
    causal: bool


def claims_of(graph: ActionGraph) -> list[Claim]:
    """All claims of a graph in declaration order (set_context asserts nothing)."""
    nm = graph.node_map
    incoming: dict[str, list[Edge]] = {}
    for e in graph.edges:
        if e.src in nm:
            incoming.setdefault(e.tgt, []).append(e)
    out: list[Claim] = []
    for n in graph.nodes:
        prim = n.primitive  # type: ignore[attr-defined]
        if prim == "set_context":
            continue
        ins = incoming.get(n.id, [])
        causal_ins = [e for e in ins if e.relation == "causal"]
        edge = (causal_ins or ins or [None])[0]
        causal = not n.non_causal and (not ins or bool(causal_ins))
        subj_arg, obj_arg = _ROLES[prim]
        if subj_arg is not None:
            subject = getattr(n, subj_arg)
        elif edge is not None:
            parent = nm[edge.src]
            # After a binding, the target's change is the binder's doing: the subject is the actor.
            subject = parent.actor if parent.primitive == "binds_to" else main_entity(parent)  # type: ignore[attr-defined]
        else:
            subject = None
        direction = getattr(n, "direction", None)
        args = n.args()
        common = dict(
            node_id=n.id,
            primitive=prim,
            subject=subject,
            direction=direction,
            causal=causal,
            upstream=[e.src for e in ins],
            edge=edge,
            node=args,
        )
        if prim == "regulates_expression":
            genes: list[str] = list(n.gene_list)  # type: ignore[attr-defined]
            for g in genes:
                out.append(Claim(id=f"{n.id}:{g}", kind="expression", object=g, genes=[g], **common))
            if len(genes) > 1:
                out.append(Claim(id=f"{n.id}:*", kind="expression_set", object=",".join(genes), genes=genes, **common))
        else:
            obj = getattr(n, obj_arg)
            genes = list(obj) if isinstance(obj, list) else []
            out.append(
                Claim(
                    id=n.id,
                    kind=_KIND[prim],
                    object=",".join(obj) if isinstance(obj, list) else obj,
                    genes=genes,
                    **common,
                )
            )
    return out


def _path_to(graph: ActionGraph, node_id: str) -> tuple[list[str], bool]:
    """A root-to-node path following causal parents first (smallest id on ties); causal = all links causal."""
    path = [node_id]
    causal = True
    seen = {node_id}
    cur = node_id
    while True:
        ins = [e for e in graph.edges if e.tgt == cur and e.src not in seen]
        if not ins:
            break
        ins.sort(key=lambda e: (e.relation != "causal", e.src))
        e = ins[0]
        causal &= e.relation == "causal"
        path.append(e.src)
        seen.add(e.src)
        cur = e.src
    return path[::-1], causal


def predicted_signature(graph: ActionGraph) -> list[PredictedGene]:
    """Every (gene, direction) asserted by a regulates_expression step, with the path leading to it."""
    out: list[PredictedGene] = []
    for n in graph.nodes:
        if n.primitive != "regulates_expression":  # type: ignore[attr-defined]
            continue
        path, causal = _path_to(graph, n.id)
        for g in n.gene_list:  # type: ignore[attr-defined]
            out.append(PredictedGene(gene=g, direction=n.direction, node_id=n.id, path=path, causal=causal))  # type: ignore[attr-defined]
    return out
