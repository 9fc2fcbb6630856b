"""Condition signatures: each condition versus the plate-matched control cells of the same context.

One registry (`DE_METHODS`) lists every method with its level, its null, its reference and its default
parameters; `compute_signature` runs one condition, `compute_signatures` streams over many and writes each
result to the `Store` as it goes (a failed condition is recorded and the batch goes on).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, Field

from mechcell.datasets.cells import CellCounts
from mechcell.datasets.de import (
    bh_adjust,
    detected_genes,
    normalize_log1p,
    pseudobulk_log2fc,
    pydeseq2_test,
    scanpy_log2fc,
    welch_t_test,
    wilcoxon_test,
)
from mechcell.datasets.perturbation import ConditionSummary, NoControlCellsError
from mechcell.datasets.readers.base import Dataset, PseudobulkGroup
from mechcell.datasets.schemas import Condition, Signature
from mechcell.errors import InputError, MechcellError

__all__ = [
    "DE_METHODS",
    "DEMethod",
    "FailedCondition",
    "SignatureBatchReport",
    "compute_signature",
    "compute_signatures",
    "signature_from_cells",
    "signature_from_pseudobulk",
]


@dataclass(frozen=True)
class DEMethod:
    """One differential-expression method: what it compares, its null and unit, where it comes from."""

    name: str
    level: Literal["cell", "pseudobulk", "table"]
    description: str
    null: str
    reference: str
    defaults: dict[str, Any] = field(default_factory=dict)


DE_METHODS: dict[str, DEMethod] = {
    m.name: m
    for m in (
        DEMethod(
            "wilcoxon",
            "cell",
            "Wilcoxon rank-sum on log1p(CP10k), treated vs plate-matched control cells; "
            "log2fc as scanpy's logfoldchanges",
            "same distribution in treated and control cells; cells exchangeable (anti-conservative when "
            "treatment was assigned per well)",
            "scanpy.tl.rank_genes_groups(method='wilcoxon')",
            {"target_sum": 1e4, "tie_correct": True, "min_cells": 1},
        ),
        DEMethod(
            "welch_t",
            "cell",
            "Welch two-sample t on log1p(CP10k), treated vs plate-matched control cells",
            "equal mean log-expression; cells exchangeable",
            "scanpy.tl.rank_genes_groups(method='t-test')",
            {"target_sum": 1e4, "min_cells": 1},
        ),
        DEMethod(
            "pseudobulk_lfc",
            "pseudobulk",
            "log2 fold change of CPM of summed counts (treated wells vs control "
            "wells of the same context and plate); Welch t over wells when both arms have ≥ 2 wells",
            "equal mean per-well log CPM; wells exchangeable",
            "pseudobulk (e.g. Squair et al. 2021)",
            {"pseudocount": 1.0, "min_counts": 1},
        ),
        DEMethod(
            "pydeseq2",
            "pseudobulk",
            "PyDESeq2 negative-binomial Wald test on summed counts per well "
            "(pseudo-replicates of cells when there are too few wells)",
            "log2 fold change 0 under the NB GLM; wells (or pseudo-replicates) exchangeable",
            "Muzellec et al. 2023, PyDESeq2; Love et al. 2014, DESeq2",
            {"min_counts": 10, "pseudo_replicates": 3, "seed": 0},
        ),
        DEMethod(
            "precomputed",
            "table",
            "read from a precomputed DE table (Tahoe pseudobulk_differential_expression)",
            "as computed by the table's producer (DESeq2 for Tahoe)",
            "Tahoe-100M",
            {},
        ),
    )
}


class FailedCondition(BaseModel):
    key: str
    error: str
    message: str


class SignatureBatchReport(BaseModel):
    """What `compute_signatures` did: how many signatures it stored, which conditions failed and why."""

    dataset_id: str | None
    method: str
    params: dict[str, Any]
    n_conditions: int
    n_ok: int = 0
    n_skipped: int = 0
    failed: list[FailedCondition] = Field(default_factory=list)
    keys: list[str] = Field(default_factory=list)
    seconds: float = 0.0


def resolve_method(dataset: Dataset, method: str | None) -> DEMethod:
    name = method or ("precomputed" if dataset.layout == "de" else "wilcoxon")
    if name not in DE_METHODS:
        raise InputError(f"unknown DE method {name!r} (have: {', '.join(DE_METHODS)})")
    m = DE_METHODS[name]
    if (m.level == "table") != (dataset.layout == "de"):
        raise InputError(
            f"method {name!r} does not apply to {dataset.path} (layout {dataset.layout}); "
            + ("use 'precomputed'" if dataset.layout == "de" else "use wilcoxon, welch_t, pseudobulk_lfc or pydeseq2")
        )
    return m


def _params(m: DEMethod, params: dict[str, Any]) -> dict[str, Any]:
    allowed = set(m.defaults) | {"genes"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InputError(f"method {m.name!r} has no parameter(s) {unknown} (has: {sorted(allowed)})")
    return {**m.defaults, **params}


def _gene_subset(all_genes: list[str], genes: Iterable[str] | None) -> np.ndarray | None:
    if genes is None:
        return None
    idx = {g: i for i, g in enumerate(all_genes)}
    wanted = list(genes)
    missing = [g for g in wanted if g not in idx]
    if missing:
        raise InputError(f"gene(s) {missing[:5]} not in the dataset (e.g. {all_genes[:3]})")
    return np.array([idx[g] for g in wanted], dtype=np.int64)


# ------------------------------------------------------------------------------------------- cell level


def signature_from_cells(counts: CellCounts, method: str = "wilcoxon", **params: Any) -> Signature:
    """Cell-level DE (wilcoxon / welch_t) on a condition's cells vs its controls (BH over the tested genes).

    Genes detected in fewer than `min_cells` of these cells are not tested (0 tests every gene, as scanpy).
    """
    m = DE_METHODS[method]
    if m.level != "cell":
        raise InputError(f"{method!r} is not a cell-level method")
    p = _params(m, params)
    if counts.n_treated == 0:
        raise InputError(f"condition {counts.condition.key}: no treated cells")
    if counts.n_control == 0:
        raise NoControlCellsError(f"condition {counts.condition.key}: no matched control cells")
    cols = detected_genes(counts.X, int(p["min_cells"]))
    sub = _gene_subset(counts.genes, p.get("genes"))
    if sub is not None:
        cols = np.intersect1d(cols, sub) if int(p["min_cells"]) > 0 else sub
    Xlog = normalize_log1p(sp.csr_matrix(counts.X)[:, cols], counts.library_size, float(p["target_sum"]))
    if method == "wilcoxon":
        stat, pv = wilcoxon_test(Xlog, counts.treated, tie_correct=bool(p["tie_correct"]))
    else:
        stat, pv = welch_t_test(Xlog, counts.treated)
    lfc = scanpy_log2fc(Xlog, counts.treated)
    frame = pd.DataFrame(
        {"log2fc": lfc, "pvalue": pv, "padj": bh_adjust(pv), "stat": stat},
        index=pd.Index([counts.genes[i] for i in cols], name="gene"),
    )
    rec = {k: v for k, v in p.items() if k != "genes"}
    if p.get("genes") is not None:
        rec["genes"] = len(list(p["genes"]))
    rec.update(controls="plate-matched, same context", normalisation="log1p(CP10k)", correction="BH")
    return Signature.from_frame(
        counts.condition, frame, method=method, n_treated=counts.n_treated, n_control=counts.n_control, params=rec
    )


# ------------------------------------------------------------------------------------------- pseudobulk


def _pseudo_replicates(counts: CellCounts, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split each arm's cells at random into k groups and sum them (used when wells are too few)."""
    rng = np.random.default_rng(seed)
    out = []
    for arm in (counts.treated, ~counts.treated):
        idx = np.flatnonzero(arm)
        if idx.size < k:
            raise InputError(f"condition {counts.condition.key}: {idx.size} cells cannot make {k} pseudo-replicates")
        lab = rng.permutation(np.arange(idx.size) % k)
        ind = sp.csr_matrix((np.ones(idx.size), (lab, np.arange(idx.size))), shape=(k, idx.size))
        out.append(np.asarray((ind @ counts.X[idx]).todense(), dtype=np.float64))
    return out[0], out[1]


def signature_from_pseudobulk(
    group: PseudobulkGroup,
    summary: ConditionSummary,
    method: str = "pseudobulk_lfc",
    *,
    dataset: Dataset | None = None,
    **params: Any,
) -> Signature:
    """Pseudobulk DE for one condition of an aggregated context × batch group."""
    m = DE_METHODS[method]
    if m.level != "pseudobulk":
        raise InputError(f"{method!r} is not a pseudobulk method")
    p = _params(m, params)
    key = summary.key
    T, C, trows, crows = group.arms(key)
    if T.shape[0] == 0:
        raise InputError(f"condition {key}: no treated cells in the pseudobulk")
    if C.shape[0] == 0 or crows["n_cells"].sum() == 0:
        raise NoControlCellsError(
            f"condition {key}: no control cells with context {summary.condition.context!r} "
            f"in batch {summary.condition.batch!r}"
        )
    n_t, n_c = int(trows["n_cells"].sum()), int(crows["n_cells"].sum())
    total = T.sum(axis=0) + C.sum(axis=0)
    cols = np.flatnonzero(total >= float(p["min_counts"]))
    sub = _gene_subset(group.genes, p.get("genes"))
    if sub is not None:
        cols = np.intersect1d(cols, sub)
    rec: dict[str, Any] = {k: v for k, v in p.items() if k != "genes"}
    rec.update(controls="plate-matched, same context", n_treated_wells=int(T.shape[0]), n_control_wells=int(C.shape[0]))
    genes = [group.genes[i] for i in cols]
    if method == "pseudobulk_lfc":
        lfc, stat, pv = pseudobulk_log2fc(T, C, pseudocount=float(p["pseudocount"]))  # CPM over all genes
        frame = pd.DataFrame(
            {"log2fc": lfc[cols], "pvalue": pv[cols], "stat": stat[cols]}, index=pd.Index(genes, name="gene")
        )
        frame["padj"] = bh_adjust(frame["pvalue"].to_numpy())
        rec.update(
            normalisation="CPM",
            test="Welch t over wells"
            if T.shape[0] >= 2 and C.shape[0] >= 2
            else "none (one well in an arm: fold change only)",
        )
    else:
        k = int(p["pseudo_replicates"])
        if T.shape[0] + C.shape[0] >= 3 and min(T.shape[0], C.shape[0]) >= 1 and max(T.shape[0], C.shape[0]) >= 2:
            Tr, Cr = T, C
            rec["replicates"] = "wells"
        else:
            if dataset is None:
                raise InputError(
                    f"condition {key}: pydeseq2 needs ≥ 3 wells ({T.shape[0]} treated, {C.shape[0]} "
                    "control) or the dataset to form pseudo-replicates"
                )
            counts = dataset.load_cells(key)
            Tr, Cr = _pseudo_replicates(counts, k, int(p["seed"]))
            rec["replicates"] = f"{k} pseudo-replicates per arm (random split of cells, seed {p['seed']})"
        res = pydeseq2_test(Tr[:, cols], Cr[:, cols], genes, seed=int(p["seed"]))
        frame = res.reindex(genes)
        rec.update(test="DESeq2 Wald (pydeseq2)")
    return Signature.from_frame(summary.condition, frame, method=method, n_treated=n_t, n_control=n_c, params=rec)


def _subset(many: CellCounts, condition: Condition, cell_keys: np.ndarray) -> CellCounts:
    """One condition's treated cells and the shared controls out of a multi-condition load."""
    rows = np.flatnonzero((cell_keys == condition.key) | ~many.treated)
    return CellCounts(
        condition=condition,
        X=many.X[rows],
        genes=many.genes,
        treated=many.treated[rows],
        covariates=many.covariates.iloc[rows],
    )


# ------------------------------------------------------------------------------------------- entry points


def compute_signature(
    dataset: Dataset, condition: Condition | str, method: str | None = None, **params: Any
) -> Signature:
    """One condition's signature versus its plate-matched controls of the same context.

    method: wilcoxon (default for cells) | welch_t | pseudobulk_lfc | pydeseq2 | precomputed (default for DE
    tables). params override `DE_METHODS[method].defaults`; `genes=[...]` restricts the tested genes.
    """
    m = resolve_method(dataset, method)
    key = condition if isinstance(condition, str) else condition.key
    summary = dataset.summary(key)
    if m.level == "table":
        _params(m, params)
        return dataset.precomputed_signature(key)
    if m.level == "cell":
        _params(m, params)
        return signature_from_cells(dataset.load_cells(key), m.name, **params)
    _params(m, params)
    groups = list(dataset.pseudobulk([key]))
    return signature_from_pseudobulk(groups[0], summary, m.name, dataset=dataset, **params)


def compute_signatures(
    dataset: Dataset,
    conditions: Iterable[Condition | str] | None = None,
    method: str | None = None,
    *,
    store: Any = None,
    dataset_id: str | None = None,
    skip_existing: bool = False,
    on_progress: Callable[[int], None] | None = None,
    batch_conditions: int = 8,
    **params: Any,
) -> SignatureBatchReport:
    """Signatures for many conditions, streamed: each result goes to `store` (a `Store`) as soon as it exists.

    Pseudobulk methods aggregate all requested conditions in one out-of-core pass and then work one context ×
    batch group at a time; cell-level methods read up to `batch_conditions` conditions of one group together with
    the group's controls. A condition that fails
    (e.g. no matched controls) is recorded in the report and the batch goes on. `skip_existing` resumes a run.
    """
    t0 = time.perf_counter()
    m = resolve_method(dataset, method)
    p = _params(m, params)
    keys = (
        [s.key for s in dataset.summaries()]
        if conditions is None
        else [c if isinstance(c, str) else c.key for c in conditions]
    )
    for k in keys:
        dataset.summary(k)
    if store is not None and dataset_id is None:
        dataset_id = store.register(dataset)
    report = SignatureBatchReport(
        dataset_id=dataset_id,
        method=m.name,
        params={k: v for k, v in p.items() if k != "genes"},
        n_conditions=len(keys),
    )
    if skip_existing and store is not None:
        done = set(store.signature_keys(dataset_id=dataset_id, method=m.name))
        report.n_skipped = sum(k in done for k in keys)
        keys = [k for k in keys if k not in done]
        if on_progress and report.n_skipped:
            on_progress(report.n_skipped)

    def fail(key: str, exc: Exception) -> None:
        report.failed.append(FailedCondition(key=key, error=type(exc).__name__, message=str(exc)))

    def save(sigs: list[Signature]) -> None:
        if store is not None and sigs:
            store.put_signatures(sigs, dataset_id=dataset_id)
        report.n_ok += len(sigs)
        report.keys.extend(s.condition.key for s in sigs)

    if m.level == "pseudobulk":
        # Conditions whose group has no controls still aggregate (their failure is recorded per condition).
        try:
            groups = dataset.pseudobulk(keys)
            for group in groups:
                sigs = []
                for key in group.keys:
                    if key not in keys:
                        continue
                    try:
                        sigs.append(
                            signature_from_pseudobulk(group, dataset.summary(key), m.name, dataset=dataset, **params)
                        )
                    except (MechcellError, ValueError, np.linalg.LinAlgError) as exc:
                        fail(key, exc)
                    if on_progress:
                        on_progress(1)
                save(sigs)
        except MechcellError as exc:  # the aggregation itself failed: every pending condition fails with it
            done = set(report.keys) | {f.key for f in report.failed}
            for key in keys:
                if key not in done:
                    fail(key, exc)
    elif m.level == "table":
        for key in keys:
            try:
                save([dataset.precomputed_signature(key)])
            except (MechcellError, ValueError) as exc:
                fail(key, exc)
            if on_progress:
                on_progress(1)
    else:
        # Conditions of one context × batch group share their controls: read them together, a few at a time
        # (memory holds `batch_conditions` conditions' cells plus the group's controls, never a whole plate).
        combos = dataset.index.combos
        group_of = combos.dropna(subset=["key"]).drop_duplicates("key").set_index("key")["group"]
        by_group: dict[str, list[str]] = {}
        for key in keys:
            by_group.setdefault(str(group_of[key]), []).append(key)
        for group_keys in by_group.values():
            for i in range(0, len(group_keys), max(1, batch_conditions)):
                chunk = group_keys[i : i + max(1, batch_conditions)]
                try:
                    many = dataset.load_cells_many(chunk)
                except (MechcellError, ValueError) as exc:
                    for key in chunk:
                        fail(key, exc)
                        if on_progress:
                            on_progress(1)
                    continue
                ck = many.covariates["condition_key"].to_numpy()
                sigs = []
                for key in chunk:
                    try:
                        sigs.append(signature_from_cells(_subset(many, dataset.condition(key), ck), m.name, **params))
                    except (MechcellError, ValueError) as exc:
                        fail(key, exc)
                    if on_progress:
                        on_progress(1)
                save(sigs)
    report.seconds = time.perf_counter() - t0
    return report
