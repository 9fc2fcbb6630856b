"""What the expression predictors learn from: per-condition pseudobulk deltas, KB drug features, mechanisms.

- `pseudobulk_deltas(dataset)` → `DeltaTable`: per condition, log1p-CP10k of the treated wells' summed counts
  minus that of the plate-matched control wells of the same context (the `Dataset.pseudobulk` groups), over every
  gene, plus a per-gene Welch t over wells (treated vs control, log1p-CP10k per well; unit of exchangeability:
  the well, since treatment is assigned per well) with BH-adjusted p-values that define the real DE genes.
- `kb_drug_features(kb, drugs)`: KB target one-hot and the targets' signed one-step neighbourhood — what the ridge
  baseline knows about a drug it has never seen.
- `Mechanism`: what a verified action graph says about a condition — engaged targets, molecule activities, TFs,
  pathways (signed) and the predicted signature's gene directions. `mechanisms_from_traces` reads them from a
  `TraceStore` (the store `mechcell demo` / `mechcell traces build` write); `mechanisms_from_truth` reads the
  planted graphs of a synthetic world (an *oracle mechanism*: label such runs so in reports).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mechcell.errors import InputError, NotFoundError

if TYPE_CHECKING:
    from mechcell.datasets.readers.base import Dataset
    from mechcell.datasets.schemas import Condition
    from mechcell.datasets.store import Store
    from mechcell.datasets.synthetic.models import Truth
    from mechcell.datasets.traces import TraceStore
    from mechcell.graphs import ActionGraph
    from mechcell.knowledge import KnowledgeBase

__all__ = [
    "DeltaTable",
    "FittedTracePrior",
    "KbEnd",
    "KbReach",
    "Mechanism",
    "TracePrior",
    "kb_drug_features",
    "kb_reach",
    "mechanism_from_graph",
    "mechanisms_from_traces",
    "mechanisms_from_truth",
    "pseudobulk_deltas",
]

GroupBy = Literal["drug", "cell_line"]


# ------------------------------------------------------------------------------------------------ deltas


@dataclass
class DeltaTable:
    """Per condition (rows) × gene (columns): the observed pseudobulk delta and its DE p-values.

    `delta`: log1p(CP10k) treated − control, float64; `padj`: BH-adjusted Welch-over-wells p-values (NaN when an
    arm has < 2 wells); `control`: the control arm's log1p(CP10k) (a predicted profile is control + delta).
    """

    keys: list[str]
    perturbations: list[str]
    contexts: list[str]
    doses: np.ndarray
    dose_units: list[str]
    batches: list[str]
    genes: list[str]
    delta: np.ndarray
    padj: np.ndarray
    control: np.ndarray
    n_treated_wells: np.ndarray
    n_control_wells: np.ndarray
    dataset_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n, g = len(self.keys), len(self.genes)
        for name in ("delta", "padj", "control"):
            a = getattr(self, name)
            if a.shape != (n, g):
                raise InputError(f"DeltaTable.{name} has shape {a.shape}, expected ({n}, {g})")
        if len(set(self.keys)) != n:
            raise InputError("DeltaTable keys must be unique")

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, idx: Sequence[int] | np.ndarray) -> DeltaTable:
        i = np.asarray(idx, dtype=np.int64)
        pick = [int(j) for j in i]
        return DeltaTable(
            keys=[self.keys[j] for j in pick],
            perturbations=[self.perturbations[j] for j in pick],
            contexts=[self.contexts[j] for j in pick],
            doses=self.doses[i],
            dose_units=[self.dose_units[j] for j in pick],
            batches=[self.batches[j] for j in pick],
            genes=list(self.genes),
            delta=self.delta[i],
            padj=self.padj[i],
            control=self.control[i],
            n_treated_wells=self.n_treated_wells[i],
            n_control_wells=self.n_control_wells[i],
            dataset_id=self.dataset_id,
            meta=dict(self.meta),
        )

    def groups(self, by: GroupBy) -> np.ndarray:
        """The group label of every condition: its drug (perturbation) or its cell line (context)."""
        if by == "drug":
            return np.asarray(self.perturbations, dtype=object)
        if by == "cell_line":
            return np.asarray(self.contexts, dtype=object)
        raise InputError(f"unknown grouping {by!r}: use 'drug' or 'cell_line'")

    def de_flags(self, fdr: float = 0.05) -> np.ndarray:
        """−1 / 0 / +1 per condition × gene: the real DE genes (padj < fdr) and their direction."""
        with np.errstate(invalid="ignore"):
            sig = np.nan_to_num(self.padj, nan=1.0) < fdr
        return (np.sign(self.delta) * sig).astype(np.int8)

    # ---------------------------------------------------------------- persistence (a cache, not a contract)
    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            p,
            keys=np.asarray(self.keys, dtype=str),
            perturbations=np.asarray(self.perturbations, dtype=str),
            contexts=np.asarray(self.contexts, dtype=str),
            doses=self.doses,
            dose_units=np.asarray(self.dose_units, dtype=str),
            batches=np.asarray(self.batches, dtype=str),
            genes=np.asarray(self.genes, dtype=str),
            delta=self.delta,
            padj=self.padj,
            control=self.control,
            n_treated_wells=self.n_treated_wells,
            n_control_wells=self.n_control_wells,
            dataset_id=np.asarray([self.dataset_id or ""], dtype=str),
        )
        return p

    @classmethod
    def load(cls, path: str | Path) -> DeltaTable:
        p = Path(path)
        if not p.is_file():
            raise NotFoundError(f"no delta table at {p}")
        z = np.load(p, allow_pickle=False)
        s = lambda k: [str(x) for x in z[k]]  # noqa: E731
        return cls(
            keys=s("keys"),
            perturbations=s("perturbations"),
            contexts=s("contexts"),
            doses=z["doses"],
            dose_units=s("dose_units"),
            batches=s("batches"),
            genes=s("genes"),
            delta=z["delta"],
            padj=z["padj"],
            control=z["control"],
            n_treated_wells=z["n_treated_wells"],
            n_control_wells=z["n_control_wells"],
            dataset_id=str(z["dataset_id"][0]) or None,
        )


def _log1p_cp10k(counts: np.ndarray, library: np.ndarray, target_sum: float) -> np.ndarray:
    lib = np.where(library > 0, library, 1.0)
    return np.log1p(counts / lib[..., None] * target_sum)


def _welch_padj(t: np.ndarray, c: np.ndarray) -> np.ndarray:
    """BH-adjusted two-sided Welch p per gene, wells as units (NaN when an arm has < 2 wells; constant → p = 1)."""
    from scipy import stats

    from mechcell.datasets.de import bh_adjust

    if t.shape[0] < 2 or c.shape[0] < 2:
        return np.full(t.shape[1], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        res = stats.ttest_ind(t, c, axis=0, equal_var=False)
    p = np.asarray(res.pvalue, dtype=np.float64)
    p = np.where(np.isnan(p), 1.0, p)
    return bh_adjust(p)


def pseudobulk_deltas(
    dataset: Dataset,
    conditions: Iterable[Condition | str] | None = None,
    *,
    target_sum: float = 1e4,
    dataset_id: str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> DeltaTable:
    """The `DeltaTable` of a dataset's conditions (all by default), streamed one context × batch group at a time.

    Treated arm = the condition's wells; control arm = the control wells of the same context and plate. Both arms
    pool their wells' summed counts before CP10k normalisation (library = all genes). A condition without control
    wells raises `NoControlCellsError` from the reader (keep `require_controls=True`).
    """
    rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, int, int]] = []
    genes: list[str] | None = None
    for group in dataset.pseudobulk(conditions):
        genes = group.genes if genes is None else genes
        for key in group.keys:
            T, C, trows, crows = group.arms(key)
            if C.shape[0] == 0:
                from mechcell.datasets.perturbation import NoControlCellsError

                raise NoControlCellsError(f"condition {key}: no control wells in group {group.group}")
            lt = T.sum(axis=1)
            lc = C.sum(axis=1)
            tl = _log1p_cp10k(T, lt, target_sum)
            cl = _log1p_cp10k(C, lc, target_sum)
            pooled_t = _log1p_cp10k(T.sum(axis=0), np.asarray(lt.sum()), target_sum)
            pooled_c = _log1p_cp10k(C.sum(axis=0), np.asarray(lc.sum()), target_sum)
            rows.append((key, pooled_t - pooled_c, _welch_padj(tl, cl), pooled_c, T.shape[0], C.shape[0]))
            if on_progress is not None:
                on_progress(1)
    if not rows or genes is None:
        raise InputError(f"{dataset.path}: no conditions to build deltas from")
    rows.sort(key=lambda r: r[0])
    conds = [dataset.condition(r[0]) for r in rows]
    return DeltaTable(
        keys=[r[0] for r in rows],
        perturbations=[c.perturbation for c in conds],
        contexts=[c.context or "-" for c in conds],
        doses=np.array([math.nan if c.dose is None else float(c.dose) for c in conds], dtype=np.float64),
        dose_units=[c.dose_unit or "" for c in conds],
        batches=[c.batch or "-" for c in conds],
        genes=list(genes),
        delta=np.vstack([r[1] for r in rows]).astype(np.float64),
        padj=np.vstack([r[2] for r in rows]).astype(np.float64),
        control=np.vstack([r[3] for r in rows]).astype(np.float64),
        n_treated_wells=np.array([r[4] for r in rows], dtype=np.int64),
        n_control_wells=np.array([r[5] for r in rows], dtype=np.int64),
        dataset_id=dataset_id,
        meta={"target_sum": target_sum, "path": dataset.path},
    )


# ------------------------------------------------------------------------------------------------ KB features


def kb_drug_features(
    kb: KnowledgeBase, drugs: Iterable[str], *, neighbourhood: bool = True
) -> dict[str, dict[str, float]]:
    """drug → {feature: value}: `target:<T>` = 1 for every KB drug → target annotation (Tahoe's model-generated
    ones included, as a user would have them), and `nbr:<G>` = Σ sign(drug → T) × sign(T → G) over the targets'
    signed one-step successors in the KB network. A drug unknown to the KB gets {}."""
    g = kb.signed_graph() if neighbourhood else None
    out: dict[str, dict[str, float]] = {}
    for d in sorted(set(drugs)):
        feats: dict[str, float] = {}
        for r in kb.drug_targets(d):
            feats[f"target:{r.object}"] = 1.0
            if g is not None and r.object in g:
                s = r.sign or -1  # an unsigned drug annotation is read as inhibition (the common case)
                for nb in g.successors(r.object):
                    e = int(g.edges[r.object, nb].get("sign", 0))
                    if e:
                        feats[f"nbr:{nb}"] = feats.get(f"nbr:{nb}", 0.0) + float(s * e)
        out[d] = feats
    return out


# ------------------------------------------------------------------------------------------------ mechanisms


class Mechanism(BaseModel):
    """What a verified action graph says about one condition, as model inputs / auxiliary targets.

    Signs are +1 (up / activated) and −1 (down / inhibited). `genes` comes from `ActionGraph.predicted_signature()`
    (a gene listed up by one step and down by another keeps the net sign; a tie drops it).
    """

    model_config = ConfigDict(frozen=True)

    source: str = Field(description="'trace:<id>' or 'oracle' (planted truth graph)")
    accepted: bool = True
    targets: list[str] = Field(default_factory=list)
    activities: dict[str, int] = Field(default_factory=dict, description="molecule → activity change")
    tfs: dict[str, int] = Field(default_factory=dict, description="regulators of expression steps (not pathways)")
    pathways: dict[str, int] = Field(default_factory=dict)
    genes: dict[str, int] = Field(default_factory=dict, description="predicted signature: gene → direction")
    regulated: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="regulator (TF or pathway) → gene → direction of the gene's change"
    )
    weights: dict[str, float] = Field(
        default_factory=dict,
        description="confidence in (0, 1] of a feature (`tf:X`, `pathway:X`, `mtarget:X`) or a gene (`gene:G`); "
        "absent = 1 (a verified or planted mechanism); a prior built from a trace corpus sets them",
    )

    def features(self) -> dict[str, float]:
        """Condition-level indicators: `mtarget:`, `act:`, `tf:`, `pathway:` (signed, × confidence)."""
        w = self.weights
        f: dict[str, float] = {f"mtarget:{t}": w.get(f"mtarget:{t}", 1.0) for t in self.targets}
        f.update({f"act:{k}": float(v) for k, v in self.activities.items()})
        f.update({f"tf:{k}": float(v) * w.get(f"tf:{k}", 1.0) for k, v in self.tfs.items()})
        f.update({f"pathway:{k}": float(v) * w.get(f"pathway:{k}", 1.0) for k, v in self.pathways.items()})
        return f

    def gene_values(self) -> dict[str, float]:
        """gene → signed confidence (direction × weight): what the gene-wise term of the predictors reads."""
        return {g: float(s) * self.weights.get(f"gene:{g}", 1.0) for g, s in self.genes.items()}


def _sign(direction: str) -> int:
    return 1 if direction == "up" else -1


def mechanism_from_graph(graph: ActionGraph, *, source: str, accepted: bool = True) -> Mechanism:
    """Read a `Mechanism` off an action graph (targets, activities, TFs, pathways, predicted gene directions)."""
    targets: list[str] = []
    acts: dict[str, int] = {}
    pathways: dict[str, int] = {}
    regulators: list[str] = []
    regulated: dict[str, dict[str, int]] = {}
    for n in graph.nodes:
        prim = n.primitive  # type: ignore[attr-defined]
        if prim == "binds_to":
            targets.append(n.target)  # type: ignore[attr-defined]
        elif prim == "modulates_molecule_activity":
            acts[n.target] = _sign(n.direction)  # type: ignore[attr-defined]
        elif prim == "modulates_pathway_activity":
            pathways[n.pathway] = _sign(n.direction)  # type: ignore[attr-defined]
        elif prim == "regulates_expression":
            regulators.append(n.regulator)  # type: ignore[attr-defined]
            mine = regulated.setdefault(n.regulator, {})  # type: ignore[attr-defined]
            for g in n.gene_list:  # type: ignore[attr-defined]
                mine[g] = _sign(n.direction)  # type: ignore[attr-defined]
    tfs = {r: acts.get(r, 1) for r in dict.fromkeys(regulators) if r not in pathways}
    net: dict[str, int] = {}
    for pg in graph.predicted_signature():
        net[pg.gene] = net.get(pg.gene, 0) + _sign(pg.direction)
    genes = {g: int(np.sign(v)) for g, v in net.items() if v != 0}
    return Mechanism(
        source=source,
        accepted=accepted,
        targets=list(dict.fromkeys(targets)),
        activities=acts,
        tfs=tfs,
        pathways=pathways,
        genes=genes,
        regulated=regulated,
    )


def mechanisms_from_traces(
    store: TraceStore | Store | str | Path,
    keys: Iterable[str] | None = None,
    *,
    accepted_only: bool = True,
    proposer: str | None = None,
) -> dict[str, Mechanism]:
    """condition key → the mechanism of its newest trace with a final graph (accepted ones only by default).

    Conditions without such a trace are absent from the result (the predictors treat them as "no mechanism").
    """
    from mechcell.datasets.store import Store
    from mechcell.datasets.traces import TraceStore

    own = not isinstance(store, TraceStore)
    if isinstance(store, TraceStore):
        ts = store
    elif isinstance(store, Store):
        ts, own = TraceStore(store), False
    else:
        p = Path(store)
        if not p.is_file():
            raise NotFoundError(f"store {p} does not exist")
        ts = TraceStore(p, read_only=True)
    try:
        wanted = None if keys is None else set(keys)
        out: dict[str, Mechanism] = {}
        for s in ts.list(proposer=proposer):  # newest first
            if s.condition_key in out or (wanted is not None and s.condition_key not in wanted):
                continue
            if accepted_only and not s.accepted:
                continue
            t = ts.get(s.id)
            if t.final_graph is None:
                continue
            out[s.condition_key] = mechanism_from_graph(
                t.final_graph, source=f"trace:{t.id}", accepted=bool(t.metrics.accepted)
            )
        return out
    finally:
        if own:
            ts.close()


def mechanisms_from_truth(truth: Truth, keys: Iterable[str] | None = None) -> dict[str, Mechanism]:
    """condition key → the planted mechanism of a synthetic world (inactive conditions have none): an oracle."""
    out: dict[str, Mechanism] = {}
    for k in keys if keys is not None else truth.conditions:
        if k not in truth.conditions:
            continue
        g = truth.graph(k)
        if g is not None:
            out[k] = mechanism_from_graph(g, source="oracle")
    return out


def mechanism_sources(mechanisms: Mapping[str, Mechanism]) -> str:
    """'oracle', 'traces', 'mixed' or 'none': how to label a run that used these mechanisms."""
    kinds = {"oracle" if m.source == "oracle" else "traces" for m in mechanisms.values()}
    if not kinds:
        return "none"
    return kinds.pop() if len(kinds) == 1 else "mixed"


# ------------------------------------------------------------------------------------------------ trace-informed prior
# A held-out drug has no data, so its own trace cannot be verified; the verified traces of the *training* drugs say
# which parts of the KB are live in this system. `kb_reach` lists, per drug, every TF / pathway its KB targets reach
# along signed KB paths (data-free); `TracePrior` re-weights those ends by how often the training traces verified
# them and borrows the gene directions the training traces listed under each end. Fitted per CV fold on the
# training fold only (`TracePrior.fold`), it is leakage-free. Round 2: an end model (nearest ends first, primary
# target, leave-one-drug-out verification rates; normalised per drug) and an activity model (P(a drug like this
# one has accepted traces)) replace the plain pooled rates; the fitted prior is a pydantic model, so a predictor
# checkpoint carries it to unseen drugs.


class KbEnd(BaseModel):
    """One end of a drug's KB paths: a TF with a regulon, or a pathway through one of its activity anchors."""

    model_config = ConfigDict(frozen=True)

    end: str
    kind: Literal["tf", "pathway"]
    sign: int = Field(description="predicted activity change: drug action × signed path (× anchor sign)")
    distance: int = Field(description="signalling steps from the target")
    target: str


class KbReach(BaseModel):
    """Data-free KB mechanism space: per drug its signed targets and the ends they reach; per end its KB genes."""

    model_config = ConfigDict(frozen=True)

    max_len: int
    footprint_genes: int = 12
    min_regulon: int = 5
    targets: dict[str, dict[str, int]] = Field(description="drug → target → sign of the drug's action")
    ends: dict[str, list[KbEnd]] = Field(description="drug → reachable ends (nearest per end and sign)")
    end_genes: dict[str, dict[str, float]] = Field(
        description="'tf:X' / 'pathway:X' → gene → signed KB weight (regulon sign; footprint weight, top genes)"
    )


def _signed_reach(adj: Any, source: str, max_len: int) -> dict[str, tuple[int, int]]:
    """node → (distance, net sign over every shortest signed path from `source`; 0 when they disagree)."""
    from mechcell.knowledge.graph import shortest_path_dag

    if source not in adj:
        return {}
    dist, preds = shortest_path_dag(adj, source, max_len)
    plus: dict[str, int] = {source: 1}
    minus: dict[str, int] = {source: 0}
    for v in sorted(dist, key=dist.__getitem__):
        if v == source:
            continue
        p = m = 0
        for u, s in preds[v]:
            if s > 0:
                p, m = p + plus[u], m + minus[u]
            elif s < 0:
                p, m = p + minus[u], m + plus[u]
        plus[v], minus[v] = p, m
    return {v: (d, int(np.sign(plus[v] - minus[v]))) for v, d in dist.items()}


def kb_reach(
    kb: KnowledgeBase, drugs: Iterable[str], *, max_len: int = 3, footprint_genes: int = 12, min_regulon: int = 5
) -> KbReach:
    """Every drug's signed KB targets → the TFs (regulon ≥ `min_regulon` genes) and pathways (activity anchors)
    they reach in ≤ `max_len` signed steps, with the sign of the shortest paths; the KB genes of each end (regulon
    signs, the `footprint_genes` strongest footprint weights). Reads the KB only: no data, no traces."""
    adj = kb.adjacency()
    regulons = {tf: r for tf, r in kb.regulons().items() if len(r) >= min_regulon}
    anchors: dict[str, list[tuple[str, int]]] = {}
    for pw in kb.footprint_names():
        for rel in kb.pathway_anchors(pw):
            anchors.setdefault(rel.subject, []).append((pw, rel.sign or 1))
    targets: dict[str, dict[str, int]] = {}
    ends: dict[str, list[KbEnd]] = {}
    used: set[str] = set()
    for d in sorted(set(drugs)):
        tsign: dict[str, int] = {}
        for r in kb.drug_targets(d):
            if r.object_type == "gene" and r.sign:
                tsign[r.object] = -2 if tsign.get(r.object, r.sign) != r.sign else r.sign  # -2: sources disagree
        tsign = {t: s for t, s in tsign.items() if s in (-1, 1)}
        best: dict[tuple[str, str, int], KbEnd] = {}
        for t, ts in sorted(tsign.items()):
            for node, (dist, ps) in _signed_reach(adj, t, max_len).items():
                if ps == 0:
                    continue
                cands = [(node, "tf", ts * ps)] if node in regulons else []
                cands += [(pw, "pathway", ts * ps * a) for pw, a in anchors.get(node, [])]
                for end, kind, sign in cands:
                    k = (kind, end, sign)
                    if k not in best or dist < best[k].distance:
                        best[k] = KbEnd(end=end, kind=kind, sign=sign, distance=dist, target=t)  # type: ignore[arg-type]
        targets[d] = tsign
        ends[d] = sorted(best.values(), key=lambda e: (e.distance, e.kind, e.end, e.sign))
        used |= {f"{e.kind}:{e.end}" for e in ends[d]}
    end_genes: dict[str, dict[str, float]] = {}
    for name in sorted(used):
        kind, end = name.split(":", 1)
        if kind == "tf":
            end_genes[name] = {g: float(s) for g, s in regulons[end].items() if s}
        else:
            fp = {g: w for g, w in kb.footprint(end).items() if w}
            top = sorted(fp, key=lambda g: (-abs(fp[g]), g))[:footprint_genes]
            end_genes[name] = {g: float(fp[g]) for g in top}
    return KbReach(
        max_len=max_len,
        footprint_genes=footprint_genes,
        min_regulon=min_regulon,
        targets=targets,
        ends=ends,
        end_genes=end_genes,
    )


def _ends_of(m: Mechanism) -> dict[str, int]:
    """'tf:X' / 'pathway:X' → sign of a mechanism's regulators."""
    out = {f"tf:{k}": v for k, v in m.tfs.items()}
    out.update({f"pathway:{k}": v for k, v in m.pathways.items()})
    return out


def _ek(end: str, sign: int) -> str:
    """The JSON key of an (end, sign) pair: 'tf:TP53|+1'."""
    return f"{end}|{sign:+d}"


def _logit(p: float) -> float:
    q = min(max(p, 0.02), 0.98)
    return math.log(q / (1.0 - q))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(x, 30.0), -30.0)))


def _fit_logistic(X: np.ndarray, y: np.ndarray, lam: float) -> tuple[list[float], list[float], list[float]]:
    """(coef with intercept first, feature means, feature sds): L2-penalised logistic regression with a fractional
    response y ∈ [0, 1] on standardised features, by Newton steps. The intercept is penalised only lightly
    (towards the logit of the mean response) so that a corpus where every y is 1 stays finite. λ is fixed, not
    chosen: with ~20 training drugs there is nothing left to choose it on."""
    n, p = X.shape
    mu = X.mean(axis=0) if n else np.zeros(p)
    sd = X.std(axis=0) if n else np.ones(p)
    sd = np.where(sd > 1e-12, sd, 1.0)
    Z = np.column_stack([np.ones(n), (X - mu) / sd])
    b0 = _logit(float(y.mean())) if n else 0.0
    prior = np.zeros(p + 1)
    prior[0] = b0
    pen = np.full(p + 1, float(lam))
    pen[0] = 1e-2
    b = prior.copy()
    for _ in range(100):
        pr = 1.0 / (1.0 + np.exp(-np.clip(Z @ b, -30, 30)))
        g = Z.T @ (pr - y) + pen * (b - prior)
        H = (Z * (pr * (1 - pr))[:, None]).T @ Z + np.diag(pen)
        step = np.linalg.solve(H, g)
        b = b - step
        if float(np.abs(step).max()) < 1e-9:
            break
    return [float(x) for x in b], [float(x) for x in mu], [float(x) for x in sd]


def _predict_logistic(coef: Sequence[float], mu: Sequence[float], sd: Sequence[float], x: Sequence[float]) -> float:
    z = coef[0] + sum(c * (v - m) / s for c, v, m, s in zip(coef[1:], x, mu, sd, strict=True))
    return _sigmoid(z)


@dataclass
class _DrugContext:
    """What the end model reads about one drug's KB reach: nearest distances, primary targets, crowding."""

    min_dist: dict[str, int]
    primary: set[str]
    n_ends: dict[str, int]

    @classmethod
    def of(cls, ends: Sequence[KbEnd], max_len: int) -> _DrugContext:
        min_dist: dict[str, int] = {}
        names: dict[str, set[str]] = {"tf": set(), "pathway": set()}
        nearest_tf: dict[str, int] = {}
        for e in ends:
            min_dist[e.kind] = min(min_dist.get(e.kind, max_len + 1), e.distance)
            names[e.kind].add(e.end)
            if e.kind == "tf":
                nearest_tf[e.target] = min(nearest_tf.get(e.target, max_len + 1), e.distance)
        best = min(nearest_tf.values(), default=max_len + 1)
        primary = {t for t, d in nearest_tf.items() if d == best}
        return cls(min_dist, primary, {k: len(v) for k, v in names.items()})


def _end_features(e: KbEnd, ctx: _DrugContext, live: float, target_rate: float) -> list[float]:
    """One (drug, end) pair: kind, distance from the drug's nearest end of that kind (the world and biology both
    act nearest first), absolute distance, whether the end hangs off the drug's primary target (the one with the
    nearest TF), the end's and the target's verification rates in the corpus (logits), and how crowded the drug's
    reach is (many candidate ends share the same few planted ones)."""
    tf = 1.0 if e.kind == "tf" else 0.0
    rel = float(min(e.distance - ctx.min_dist.get(e.kind, e.distance), 3))
    return [
        tf,
        rel,
        rel * tf,
        float(e.distance),
        1.0 if e.target in ctx.primary else 0.0,
        _logit(live),
        _logit(target_rate),
        math.log1p(ctx.n_ends.get(e.kind, 0)),
    ]


def _activity_features(reach: KbReach, drug: str) -> list[float]:
    """A drug's KB features for P(active): how many signed targets, how near its nearest TF, how many ends."""
    ends = reach.ends.get(drug, [])
    tf = [e.distance for e in ends if e.kind == "tf"]
    return [
        math.log1p(len(reach.targets.get(drug, {}))),
        float(min(tf, default=reach.max_len + 1)),
        math.log1p(len({(e.kind, e.end) for e in ends})),
    ]


class FittedTracePrior(BaseModel):
    """A `TracePrior` fitted on one training corpus (JSON round-trippable: it travels inside a predictor checkpoint).

    Holds the corpus statistics (end and target verification rates, the genes verified under each end), the end
    model (P(a KB end is in a drug's verified mechanism | the drug is active)), the activity model (P(a condition of
    a drug like this one has an accepted trace)), the expected number of ends per kind, and which conditions and
    drugs it saw. `reach` is the KB reach of the drugs it will be asked about (`with_reach` swaps it for new drugs).
    """

    model_config = ConfigDict(frozen=True)

    schema_version: int = 2
    reach: KbReach
    ends_model: Literal["model", "rate"]
    activity: bool
    strength: float
    min_weight: float
    kb_gene_scale: float
    live: dict[str, float] = Field(description="'end|sign' → P(verified | KB predicts it), over all training drugs")
    base_rate: float
    live_active: dict[str, float] = Field(description="'end|sign' → the same among conditions with accepted traces")
    base_active: float
    target_rate: dict[str, float] = Field(description="target → P(named as engaged | active), training drugs")
    base_target: float
    end_coef: list[float] = Field(default_factory=list)
    end_mu: list[float] = Field(default_factory=list)
    end_sd: list[float] = Field(default_factory=list)
    act_coef: list[float] = Field(default_factory=list)
    act_mu: list[float] = Field(default_factory=list)
    act_sd: list[float] = Field(default_factory=list)
    expected_ends: dict[str, float] = Field(default_factory=dict, description="kind → verified KB ends per drug")
    gene_evidence: dict[str, dict[str, float]]
    seen_keys: list[str]
    seen_drugs: list[str]

    def live_rate(self, end: str, sign: int) -> float:
        """P(a KB-predicted end is verified with this sign), shrunk to the corpus base rate when rarely seen."""
        return self.live.get(_ek(end, sign), self.base_rate)

    def p_active(self, drug: str) -> float:
        """P(a condition of this drug has an accepted trace), from drugs with similar KB features (1 when off)."""
        if not self.activity or not self.act_coef:
            return 1.0
        return _predict_logistic(self.act_coef, self.act_mu, self.act_sd, _activity_features(self.reach, drug))

    def end_probabilities(self, drug: str) -> dict[str, tuple[int, float, KbEnd]]:
        """'tf:X' → (sign, P(in the drug's mechanism | active), the KB end): one sign per end (the likelier; the
        nearer on a tie), normalised per kind so the expected count matches the training drugs' (model mode)."""
        ends = self.reach.ends.get(drug, [])
        ctx = _DrugContext.of(ends, self.reach.max_len)
        chosen: dict[str, tuple[int, float, KbEnd]] = {}
        for e in ends:  # sorted nearest first, so a tie keeps the nearer sign
            name = f"{e.kind}:{e.end}"
            if self.ends_model == "rate" or not self.end_coef:
                w = self.live_rate(name, e.sign)
            else:
                live = self.live_active.get(_ek(name, e.sign), self.base_active)
                x = _end_features(e, ctx, live, self.target_rate.get(e.target, self.base_target))
                w = _predict_logistic(self.end_coef, self.end_mu, self.end_sd, x)
            if name not in chosen or w > chosen[name][1]:
                chosen[name] = (e.sign, w, e)
        if self.ends_model == "model":
            for kind, k in self.expected_ends.items():
                tot = sum(w for _, w, e in chosen.values() if e.kind == kind)
                if tot > k > 0:
                    chosen = {n: (s, w * k / tot if e.kind == kind else w, e) for n, (s, w, e) in chosen.items()}
        return chosen

    def mechanism(self, drug: str) -> Mechanism | None:
        """The trace-informed mechanism of a drug (None when the KB gives it no reachable end or none is likely)."""
        chosen = self.end_probabilities(drug)
        if not chosen:
            return None
        act = self.p_active(drug)
        tfs: dict[str, int] = {}
        pathways: dict[str, int] = {}
        weights: dict[str, float] = {}
        targets: list[str] = []
        val: dict[str, float] = {}
        for name, (sign, p, e) in sorted(chosen.items()):
            w = act * p
            if w < self.min_weight:
                continue
            (tfs if e.kind == "tf" else pathways)[e.end] = sign
            weights[name] = w
            targets.append(e.target)
            ev = self.gene_evidence.get(name)
            if ev:  # the directions the training traces listed under this end (relative to its activity)
                for g, x in ev.items():
                    val[g] = val.get(g, 0.0) + sign * w * x
            else:  # an end no training trace verified: the KB's genes, trusted less
                kg = self.reach.end_genes.get(name, {})
                top = max((abs(x) for x in kg.values()), default=1.0)
                for g, x in kg.items():
                    val[g] = val.get(g, 0.0) + sign * w * self.kb_gene_scale * x / top
        if not weights:
            return None
        genes = {g: int(np.sign(v)) for g, v in val.items() if v != 0}
        weights.update({f"gene:{g}": min(abs(v), 1.0) for g, v in val.items() if v != 0})
        return Mechanism(
            source="trace-prior",
            accepted=False,
            targets=list(dict.fromkeys(targets)),
            tfs=tfs,
            pathways=pathways,
            genes=genes,
            weights=weights,
        )

    def mechanisms(self, keys: Sequence[str], drugs: Sequence[str]) -> dict[str, Mechanism]:
        """condition key → its drug's trace-informed mechanism (one per drug; conditions of drugs without one are
        absent). Refuses a key the prior was fitted on: a prior must never predict what it has seen."""
        overlap = set(keys) & set(self.seen_keys)
        if overlap:
            raise InputError(f"trace prior asked for {len(overlap)} condition(s) it was fitted on, e.g. {min(overlap)}")
        cache: dict[str, Mechanism | None] = {}
        out: dict[str, Mechanism] = {}
        for k, d in zip(keys, drugs, strict=True):
            if d not in cache:
                cache[d] = self.mechanism(d)
            m = cache[d]
            if m is not None:
                out[k] = m
        return out

    def with_reach(self, reach: KbReach) -> FittedTracePrior:
        """The same fitted prior asked about other drugs (e.g. a checkpoint's prior on a new dataset): the new reach
        must be built with the same settings, or the end model would read features on another scale."""
        mine = (self.reach.max_len, self.reach.footprint_genes, self.reach.min_regulon)
        theirs = (reach.max_len, reach.footprint_genes, reach.min_regulon)
        if mine != theirs:
            raise InputError(f"KB reach settings {theirs} differ from the prior's {mine} (max_len, footprint, regulon)")
        return self.model_copy(update={"reach": reach})


@dataclass
class TracePrior:
    """Leakage-free mechanisms for unseen drugs from a corpus of verified traces of *other* drugs.

    The KB says where a drug's targets can lead (`kb_reach`: every TF / pathway within `max_len` signed steps);
    the training drugs' verified traces say which of those ends are live in this system. Two parts, multiplied:

    - P(end e with sign s | drug active) (`ends_model="model"`): a logistic model fitted on the training drugs'
      (drug, KB end) pairs — response: the share of the drug's accepted traces that verified (e, s); features:
      kind, distance from the drug's nearest end, distance, whether e hangs off the drug's primary target, e's
      and its target's verification rates among the *other* training drugs (leave-one-drug-out, shrunk with
      `strength` pseudo-drugs), how many ends the drug's reach holds. Per drug and kind, the probabilities are
      scaled down so their sum does not exceed the mean number of KB ends the training traces verified per active
      drug (a drug's reach lists many ends; a mechanism uses few). `ends_model="rate"`: round 1 — e's pooled
      verification rate over the training drugs the KB sends there, no model, no normalisation.
    - P(active) (`activity=True`): a logistic model of the share of a drug's conditions with an accepted trace on
      its KB features (number of signed targets, nearest-TF distance, number of ends): a drug predicted inactive
      gets its mechanism scaled down.

    An unseen drug gets every end with weight P(active) × P(end | active) ≥ `min_weight`, and the genes the
    training traces listed under each end (direction relative to the end's activity, × weight × how often listed);
    an end never verified falls back on its KB genes × `kb_gene_scale`. Settings are fixed, not tuned: `l2` = 1 on
    standardised features, `strength` = 1 pseudo-drug, `min_weight` = 0.1 (round 1's threshold).

    `cross_fit`: the training rows' own mechanisms are replaced by leave-one-drug-out priors of the training fold
    (so the model learns how far to trust a prior, not a verified trace); otherwise they keep their verified ones.
    """

    reach: KbReach
    strength: float = 1.0
    min_weight: float = 0.1
    kb_gene_scale: float = 0.5
    cross_fit: bool = True
    ends_model: Literal["model", "rate"] = "model"
    activity: bool = True
    l2: float = 1.0

    def fit(self, mechanisms: Mapping[str, Mechanism], keys: Sequence[str], drugs: Sequence[str]) -> FittedTracePrior:
        """Fit on the conditions `keys` (drug of each in `drugs`); only their mechanisms are read."""
        reach = self.reach
        by_drug: dict[str, list[str]] = {}
        for k, d in zip(keys, drugs, strict=True):
            by_drug.setdefault(d, []).append(k)
        ev: dict[str, dict[str, float]] = {}
        n_with: dict[str, int] = {}
        act: dict[str, float] = {}
        sup: dict[str, dict[tuple[str, int], float]] = {}  # drug → KB end → share of its accepted traces with it
        eng: dict[str, dict[str, float]] = {}  # drug → KB target → share of its accepted traces engaging it
        for d, ks in sorted(by_drug.items()):
            mechs = [mechanisms[k] for k in ks if k in mechanisms]
            act[d] = len(mechs) / len(ks)
            support: dict[tuple[str, int], float] = {}
            for m in mechs:
                for name, s in _ends_of(m).items():
                    support[(name, s)] = support.get((name, s), 0.0) + 1.0 / len(mechs)
                    reg = m.regulated.get(name.split(":", 1)[1], {})
                    if reg:
                        n_with[name] = n_with.get(name, 0) + 1
                        e = ev.setdefault(name, {})
                        for g, gd in reg.items():
                            e[g] = e.get(g, 0.0) + gd * s  # the gene's sign relative to the end's activity
            kb_ends = {(f"{x.kind}:{x.end}", x.sign) for x in reach.ends.get(d, [])}
            sup[d] = {e: support.get(e, 0.0) for e in kb_ends}
            if mechs:
                eng[d] = {t: sum(t in m.targets for m in mechs) / len(mechs) for t in reach.targets.get(d, {})}
        a = self.strength
        # round 1's live rate: unconditional (share of all the drug's conditions), pooled over training drugs
        sums: dict[tuple[str, int], float] = {}
        cnts: dict[tuple[str, int], int] = {}
        for d, s in sup.items():
            for e, v in s.items():
                sums[e] = sums.get(e, 0.0) + v * act[d]
                cnts[e] = cnts.get(e, 0) + 1
        total = sum(cnts.values())
        base = sum(sums.values()) / total if total else 0.0
        live = {_ek(*e): (sums[e] + a * base) / (cnts[e] + a) for e in cnts}
        # the same among active drugs, conditional on an accepted trace; and the targets' engagement rates
        active = [d for d in sorted(sup) if act[d] > 0]
        sa: dict[tuple[str, int], float] = {}
        ca: dict[tuple[str, int], int] = {}
        ts: dict[str, float] = {}
        tc: dict[str, int] = {}
        for d in active:
            for e, v in sup[d].items():
                sa[e] = sa.get(e, 0.0) + v
                ca[e] = ca.get(e, 0) + 1
            for t, v in eng[d].items():
                ts[t] = ts.get(t, 0.0) + v
                tc[t] = tc.get(t, 0) + 1
        n_a = sum(ca.values())
        base_a = sum(sa.values()) / n_a if n_a else base
        n_t = sum(tc.values())
        base_t = sum(ts.values()) / n_t if n_t else 0.5
        live_active = {_ek(*e): (sa[e] + a * base_a) / (ca[e] + a) for e in ca}
        target_rate = {t: (ts[t] + a * base_t) / (tc[t] + a) for t in tc}
        # the end model, on every active training drug's KB ends, each drug's own traces left out of its features
        end_coef: list[float] = []
        end_mu: list[float] = []
        end_sd: list[float] = []
        expected: dict[str, float] = {}
        if self.ends_model == "model" and active:
            X: list[list[float]] = []
            y: list[float] = []
            for d in active:
                ends = reach.ends.get(d, [])
                ctx = _DrugContext.of(ends, reach.max_len)
                for e in ends:
                    k = (f"{e.kind}:{e.end}", e.sign)
                    own = sup[d][k]
                    lv = (sa[k] - own + a * base_a) / (ca[k] - 1 + a)
                    t_own = eng[d].get(e.target, 0.0)
                    tr = (ts.get(e.target, 0.0) - t_own + a * base_t) / (tc.get(e.target, 1) - 1 + a)
                    X.append(_end_features(e, ctx, lv, tr))
                    y.append(own)
            if X:
                end_coef, end_mu, end_sd = _fit_logistic(np.asarray(X), np.asarray(y), self.l2)
            for kind in ("tf", "pathway"):
                expected[kind] = float(
                    np.mean([sum(v for (n, _), v in sup[d].items() if n.startswith(kind + ":")) for d in active])
                )
        act_coef: list[float] = []
        act_mu: list[float] = []
        act_sd: list[float] = []
        if self.activity and act:
            Xa = np.asarray([_activity_features(reach, d) for d in sorted(act)])
            act_coef, act_mu, act_sd = _fit_logistic(Xa, np.asarray([act[d] for d in sorted(act)]), self.l2)
        gene_evidence = {name: {g: x / n_with[name] for g, x in genes.items() if x != 0} for name, genes in ev.items()}
        return FittedTracePrior(
            reach=reach,
            ends_model=self.ends_model,
            activity=self.activity,
            strength=a,
            min_weight=self.min_weight,
            kb_gene_scale=self.kb_gene_scale,
            live=live,
            base_rate=base,
            live_active=live_active,
            base_active=base_a,
            target_rate=target_rate,
            base_target=base_t,
            end_coef=end_coef,
            end_mu=end_mu,
            end_sd=end_sd,
            act_coef=act_coef,
            act_mu=act_mu,
            act_sd=act_sd,
            expected_ends=expected,
            gene_evidence=gene_evidence,
            seen_keys=sorted(set(keys)),
            seen_drugs=sorted(by_drug),
        )

    def fold(self, train: Any, test: Any) -> tuple[Any, Any]:
        """One CV fold's `PredictorInputs` with mechanisms from this prior: the test rows get the prior fitted on
        the training rows only; the training rows keep their verified mechanisms, or (`cross_fit`) get the
        prior fitted on the training fold without their own drug."""
        from dataclasses import replace

        tr_keys, tr_drugs = list(train.table.keys), list(train.table.perturbations)
        own = {k: train.mechanisms[k] for k in tr_keys if k in train.mechanisms}  # training traces, nothing else
        fitted = self.fit(own, tr_keys, tr_drugs)
        test_m = fitted.mechanisms(list(test.table.keys), list(test.table.perturbations))
        if self.cross_fit:
            train_m: dict[str, Mechanism] = {}
            for d in sorted(set(tr_drugs)):
                rest = [i for i, x in enumerate(tr_drugs) if x != d]
                mine = [i for i, x in enumerate(tr_drugs) if x == d]
                f = self.fit(own, [tr_keys[i] for i in rest], [tr_drugs[i] for i in rest])
                train_m.update(f.mechanisms([tr_keys[i] for i in mine], [d] * len(mine)))
        else:
            train_m = own
        return (
            replace(train, mechanisms=train_m, mechanism_label="trace-prior"),
            replace(test, mechanisms=test_m, mechanism_label="trace-prior"),
        )
