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
    "Mechanism",
    "kb_drug_features",
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

    def features(self) -> dict[str, float]:
        """Condition-level indicators: `mtarget:`, `act:`, `tf:`, `pathway:` (signed)."""
        f: dict[str, float] = {f"mtarget:{t}": 1.0 for t in self.targets}
        f.update({f"act:{k}": float(v) for k, v in self.activities.items()})
        f.update({f"tf:{k}": float(v) for k, v in self.tfs.items()})
        f.update({f"pathway:{k}": float(v) for k, v in self.pathways.items()})
        return f


def _sign(direction: str) -> int:
    return 1 if direction == "up" else -1


def mechanism_from_graph(graph: ActionGraph, *, source: str, accepted: bool = True) -> Mechanism:
    """Read a `Mechanism` off an action graph (targets, activities, TFs, pathways, predicted gene directions)."""
    targets: list[str] = []
    acts: dict[str, int] = {}
    pathways: dict[str, int] = {}
    regulators: list[str] = []
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
