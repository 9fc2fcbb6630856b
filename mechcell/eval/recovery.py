"""Mechanism recovery: how much of a synthetic world's planted mechanism the pipeline's final graphs contain.

Edge matching (the definition every recovery figure uses). A graph is read as a set of *edges*
`(subject, object, relation)`, one per claim of `ActionGraph.claims()` (the set-level claim of a gene list and
set_context are skipped):

- binding `binds_to(actor=D, target=T)` → `(D, T, "binds")`;
- an activity / pathway / other directed step → `(upstream entity, changed entity, "up"|"down")` for each of
  its parent steps, the upstream entity being the drug right after a binding (`Trametinib ⊣ MAP2K1` is
  `(Trametinib, MAP2K1, down)`), otherwise the entity the parent step changed;
- `regulates_expression(regulator=R, gene_list=[g…], direction=d)` → one `(R, g, d)` per gene.

Names are resolved before comparing: drugs to the KB's canonical drug id, genes (symbols, previous symbols,
aliases) to the current HGNC symbol, anything else (pathways, families, processes) compared case-insensitively.
Edge relations must agree exactly (a right edge with the wrong direction is a miss). Correlative vs causal is not
compared. Steps whose upstream entity is unknown (no incoming edge) produce no edge.

Per condition: edge precision = |pred ∩ true| / |pred| (undefined when the final graph has no edge), recall =
|pred ∩ true| / |true| (undefined for an inactive condition, which has no planted graph). Reported also split into
*mechanism* edges (everything but single-gene expression) and *gene* edges. A planted target → TF → gene path is
recovered when some `regulates_expression` step of the final graph, whose regulator is a planted TF, lists a
gene the world moved through that TF in the planted direction, and has a `binds_to` ancestor on a planted (engaged)
target of the drug.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from mechcell.graphs import ActionGraph, main_entity

if TYPE_CHECKING:
    from mechcell.datasets.synthetic.models import Truth
    from mechcell.datasets.traces import Trace, TraceStore
    from mechcell.knowledge import KnowledgeBase

__all__ = [
    "DEFINITION",
    "ConditionRecovery",
    "NameResolver",
    "RecoveryResult",
    "RecoverySummary",
    "evaluate_recovery",
    "graph_edges",
    "latest_traces",
]

Edge = tuple[str, str, str]
#: Effect-scale bins for the recall breakdown: a weak effect (low dose, resistant line) moves few genes measurably.
EFFECT_BINS = (("weak (<0.3)", 0.0, 0.3), ("medium (0.3-0.7)", 0.3, 0.7), ("strong (>=0.7)", 0.7, float("inf")))
DEFINITION = __doc__.split("Edge matching", 1)[1].split("Per condition:", 1)[0].strip() if __doc__ else ""


class NameResolver:
    """Canonical names for matching: KB drug id, current gene symbol, else upper-cased text. Cached."""

    def __init__(self, kb: KnowledgeBase | None = None) -> None:
        self.kb = kb
        self._cache: dict[str, str] = {}

    def __call__(self, name: str | None) -> str:
        if not name:
            return ""
        out = self._cache.get(name)
        if out is None:
            out = name.strip()
            if self.kb is not None:
                d = self.kb.resolve_drug(out)
                if d.status == "resolved" and d.id:
                    out = d.id
                else:
                    g = self.kb.resolve_gene(out)
                    if g.status == "resolved" and g.id:
                        out = g.id
            out = out.upper()
            self._cache[name] = out
        return out


def graph_edges(graph: ActionGraph | None, resolve: NameResolver | None = None) -> set[Edge]:
    """The graph's edges as defined in the module docstring."""
    return set(_edge_kinds(graph, resolve or NameResolver(None)))


#: Primitives whose acting entity is the upstream step (no subject argument of their own): one edge per parent.
_UPSTREAM_SUBJECT = frozenset(
    {
        "modulates_molecule_activity",
        "modulates_pathway_activity",
        "modulates_complex",
        "post_translational_modification",
        "localises_to",
    }
)


def _edge_kinds(graph: ActionGraph | None, res: NameResolver) -> dict[Edge, str]:
    """edge → the claim kind it came from (expression = a gene edge)."""
    if graph is None:
        return {}
    nm = graph.node_map
    out: dict[Edge, str] = {}
    for c in graph.claims():
        if c.kind == "expression_set" or c.object is None:
            continue
        rel = "binds" if c.kind == "binding" else (c.direction or c.kind)
        subjects = [c.subject] if c.subject is not None else []
        if c.primitive in _UPSTREAM_SUBJECT:
            # a step reached from several parents asserts one edge per parent (claims keep only the first)
            for pid in graph.parents(c.node_id):
                p = nm.get(pid)
                if p is None or p.primitive == "set_context":
                    continue
                subjects.append(p.actor if p.primitive == "binds_to" else main_entity(p))
        for subj in dict.fromkeys(x for x in subjects if x):
            out[(res(subj), res(c.object), rel)] = c.kind
    return out


class ConditionRecovery(BaseModel):
    """One condition's recovery figures (None = undefined, see the module docstring)."""

    model_config = ConfigDict(frozen=True)

    key: str
    drug: str
    active: bool
    decoy_drug: bool = Field(False, description="the drug has a decoy target annotation in the world")
    effect_scale: float | None = Field(None, description="the world's effect scale (0 = no effect, 1 = full)")
    trace_id: str | None = None
    status: str = Field("missing", description="the trace's status, or missing when no trace was found")
    summary: str = ""
    n_true: int = 0
    n_pred: int = 0
    n_tp: int = 0
    precision: float | None = None
    recall: float | None = None
    mech_precision: float | None = None
    mech_recall: float | None = None
    gene_precision: float | None = None
    gene_recall: float | None = None
    factual_precision: float | None = None
    expression_precision: float | None = None
    reward: float | None = None
    accepted: bool = False
    path_recovered: bool | None = Field(None, description="a planted target → TF → gene path (active only)")
    decoy_bound: bool = Field(False, description="the final graph binds a decoy target of the drug")
    counts: dict[str, int] = Field(default_factory=dict)
    seconds: float | None = None


class RecoverySummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    n_conditions: int
    n_active: int
    n_with_trace: int
    edge_precision: float | None = Field(None, description="mean over conditions with a predicted edge")
    edge_recall: float | None = Field(None, description="mean over active conditions")
    micro_precision: float | None = None
    micro_recall: float | None = None
    mech_precision: float | None = None
    mech_recall: float | None = None
    gene_precision: float | None = None
    gene_recall: float | None = None
    factual_precision: float | None = Field(None, description="mean of the final reports' factual precision")
    expression_precision: float | None = None
    path_recovery: float | None = Field(None, description="share of active conditions with a planted path")
    inactive_abstention: float | None = Field(None, description="share of inactive conditions without a claim")
    decoy_bound: float | None = Field(None, description="share of decoy-drug conditions binding the decoy")
    accepted: float | None = Field(None, description="share of traces whose final graph was accepted")
    recall_by_effect: dict[str, float | None] = Field(
        default_factory=dict, description="mean edge recall of active conditions by effect scale (weak → full)"
    )
    n_by_effect: dict[str, int] = Field(default_factory=dict)
    verdicts: dict[str, int] = Field(default_factory=dict)


class RecoveryResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    definition: str = DEFINITION
    world_seed: int | None = None
    kb_version: str | None = None
    rows: list[ConditionRecovery]
    summary: RecoverySummary


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def _mean(xs: Iterable[float | None]) -> float | None:
    v = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return sum(v) / len(v) if v else None


def _path_recovered(graph: ActionGraph | None, ct: Any, drug: str, res: NameResolver) -> bool:
    if graph is None:
        return False
    targets = {res(t) for t in ct.targets}
    tfs = {res(t) for t in ct.tfs}
    planted = {(res(g.gene), "up", res(g.via)) for g in ct.up} | {(res(g.gene), "down", res(g.via)) for g in ct.down}
    nm = graph.node_map
    for n in graph.nodes:
        if n.primitive != "regulates_expression":
            continue
        reg = res(n.regulator)
        if reg not in tfs:
            continue
        if not any((res(g), n.direction, reg) in planted for g in n.gene_list):
            continue
        # a binds_to ancestor on a planted target, bound by the drug
        stack, seen = [n.id], {n.id}
        while stack:
            cur = stack.pop()
            node = nm[cur]
            if node.primitive == "binds_to" and res(node.target) in targets and res(node.actor) == res(drug):
                return True
            for p in graph.parents(cur):
                if p not in seen and p in nm:
                    seen.add(p)
                    stack.append(p)
    return False


def evaluate_recovery(
    truth: Truth,
    traces: Mapping[str, Trace] | Sequence[Trace],
    *,
    kb: KnowledgeBase | None = None,
    keys: Sequence[str] | None = None,
) -> RecoveryResult:
    """Score final graphs against the planted ones. `traces` maps condition key → trace (or is a list of traces,
    the last one per key winning); `keys` restricts the conditions (default: every condition with a trace)."""
    if not isinstance(traces, Mapping):
        traces = {t.condition.key: t for t in traces}
    res = NameResolver(kb)
    decoys: dict[str, set[str]] = {}
    for d in truth.decoys:
        decoys.setdefault(res(d.drug), set()).add(res(d.target))
    keys = list(keys) if keys is not None else [k for k in truth.conditions if k in traces]
    rows: list[ConditionRecovery] = []
    tot_tp = tot_pred = tot_true = 0
    for key in keys:
        ct = truth.condition(key)
        t = traces.get(key)
        planted = truth.graph(key) if ct.active else None
        true_kinds = _edge_kinds(planted, res)
        true = set(true_kinds)
        graph = t.final_graph if t is not None else None
        pred_kinds = _edge_kinds(graph, res)
        pred = set(pred_kinds)
        tp = pred & true
        mech_pred = {e for e in pred if pred_kinds[e] != "expression"}
        mech_true = {e for e in true if true_kinds[e] != "expression"}
        gene_pred, gene_true = pred - mech_pred, true - mech_true
        tot_tp += len(tp)
        tot_pred += len(pred)
        tot_true += len(true)
        drug = res(ct.drug)
        bound = {res(n.target) for n in (graph.nodes if graph else []) if n.primitive == "binds_to"}
        rows.append(
            ConditionRecovery(
                key=key,
                drug=ct.drug,
                active=ct.active,
                decoy_drug=drug in decoys and ct.active,
                effect_scale=ct.effect_scale,
                trace_id=t.id if t is not None else None,
                status=t.status if t is not None else "missing",
                summary=t.answer if t is not None else "",
                n_true=len(true),
                n_pred=len(pred),
                n_tp=len(tp),
                precision=_ratio(len(tp), len(pred)),
                recall=_ratio(len(tp), len(true)) if ct.active else None,
                mech_precision=_ratio(len(mech_pred & true), len(mech_pred)),
                mech_recall=_ratio(len(mech_pred & mech_true), len(mech_true)) if ct.active else None,
                gene_precision=_ratio(len(gene_pred & true), len(gene_pred)),
                gene_recall=_ratio(len(gene_pred & gene_true), len(gene_true)) if ct.active else None,
                factual_precision=t.metrics.factual_precision if t is not None else None,
                expression_precision=t.metrics.expression_precision if t is not None else None,
                reward=t.metrics.reward if t is not None else None,
                accepted=bool(t is not None and t.metrics.accepted),
                path_recovered=_path_recovered(graph, ct, ct.drug, res) if ct.active else None,
                decoy_bound=bool(bound & decoys.get(drug, set())) and ct.active,
                counts=dict(t.metrics.counts) if t is not None else {},
                seconds=t.timings.get("total") if t is not None else None,
            )
        )
    active = [r for r in rows if r.active]
    inactive = [r for r in rows if not r.active]
    decoy_rows = [r for r in rows if r.decoy_drug]
    verdicts: dict[str, int] = {}
    for r in rows:
        for k, v in r.counts.items():
            verdicts[k] = verdicts.get(k, 0) + v
    with_trace = [r for r in rows if r.trace_id is not None]
    bins = {name: [r for r in active if lo <= (r.effect_scale or 0.0) < hi] for name, lo, hi in EFFECT_BINS}
    summary = RecoverySummary(
        n_conditions=len(rows),
        n_active=len(active),
        n_with_trace=len(with_trace),
        edge_precision=_mean(r.precision for r in rows),
        edge_recall=_mean(r.recall for r in active),
        micro_precision=_ratio(tot_tp, tot_pred),
        micro_recall=_ratio(tot_tp, tot_true),
        mech_precision=_mean(r.mech_precision for r in rows),
        mech_recall=_mean(r.mech_recall for r in active),
        gene_precision=_mean(r.gene_precision for r in rows),
        gene_recall=_mean(r.gene_recall for r in active),
        factual_precision=_mean(r.factual_precision for r in rows),
        expression_precision=_mean(r.expression_precision for r in rows),
        path_recovery=_ratio(sum(bool(r.path_recovered) for r in active), len(active)),
        inactive_abstention=_ratio(sum(r.n_pred == 0 for r in inactive), len(inactive)),
        decoy_bound=_ratio(sum(r.decoy_bound for r in decoy_rows), len(decoy_rows)),
        accepted=_ratio(sum(r.accepted for r in with_trace), len(with_trace)),
        verdicts=verdicts,
        recall_by_effect={name: _mean(r.recall for r in rs) for name, rs in bins.items()},
        n_by_effect={name: len(rs) for name, rs in bins.items()},
    )
    return RecoveryResult(world_seed=truth.seed, kb_version=truth.kb_version, rows=rows, summary=summary)


def latest_traces(store: TraceStore, keys: Iterable[str], *, proposer: str | None = None) -> dict[str, Trace]:
    """The newest stored trace of each condition key (optionally of one proposer)."""
    out: dict[str, Trace] = {}
    for k in keys:
        t = store.latest(k, proposer=proposer)
        if t is not None:
            out[k] = t
    return out
