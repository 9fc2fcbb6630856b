"""Differential-expression statistics: cell-level Wilcoxon rank-sum and Welch t (scanpy-compatible), pseudobulk
log2 fold change on CPM-normalised counts, PyDESeq2 (optional), and Benjamini–Hochberg.

All arithmetic is float64. The cell-level tests reproduce `scanpy.tl.rank_genes_groups(..., reference=control)`
on log1p(CP10k) data (same scores, p-values and log fold changes) but work on sparse columns directly, so a
condition with thousands of cells and 60k genes never becomes a dense matrix.

Null and unit of exchangeability: the cell-level tests take cells as exchangeable between treated and control
(H0: a gene's distribution is the same in both). When treatment was assigned per well this ignores well-to-well
variation and is anti-conservative; the pseudobulk methods and the later well-level permutation tests exist for
that. Their p-values are per gene; BH controls the false discovery rate across the genes of one condition.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from mechcell.errors import InputError

__all__ = [
    "bh_adjust",
    "detected_genes",
    "normalize_log1p",
    "pseudobulk_log2fc",
    "pydeseq2_test",
    "scanpy_log2fc",
    "welch_t_test",
    "wilcoxon_test",
]


def bh_adjust(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (step-up, monotone, clipped at 1). NaNs stay NaN and do not count."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    pv = p[ok]
    order = np.argsort(pv, kind="mergesort")
    ranked = pv[order] * m / np.arange(1, m + 1)
    adj = np.minimum.accumulate(ranked[::-1])[::-1]
    res = np.empty(m)
    res[order] = np.minimum(adj, 1.0)
    out[ok] = res
    return out


def normalize_log1p(X: sp.spmatrix | np.ndarray, library_size: np.ndarray, target_sum: float = 1e4) -> sp.csr_matrix:
    """log1p(counts / library_size × target_sum): scanpy's normalize_total + log1p with library sizes over
    *all* genes (so a gene subset is normalised exactly as the full matrix would be)."""
    lib = np.asarray(library_size, dtype=np.float64)
    Xn = sp.csr_matrix(X, dtype=np.float64, copy=True)
    # Divide by (library / target) exactly as scanpy does, so equal ratios tie (or not) bit-for-bit alike.
    per_cell = np.where(lib > 0, lib / target_sum, 1.0)
    Xn.data = np.log1p(Xn.data / np.repeat(per_cell, np.diff(Xn.indptr)))
    return Xn


def detected_genes(X: sp.spmatrix, min_cells: int) -> np.ndarray:
    """Column indices of genes with a non-zero value in at least `min_cells` cells (all genes when 0)."""
    if min_cells <= 0:
        return np.arange(X.shape[1])
    nnz = np.asarray((sp.csr_matrix(X) != 0).sum(axis=0)).ravel()
    return np.flatnonzero(nnz >= min_cells)


def _means_vars(X: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Column means and unbiased variances (ddof=1, R/scanpy convention)."""
    n = X.shape[0]
    mean = np.asarray(X.sum(axis=0), dtype=np.float64).ravel() / n
    sq = np.asarray(X.multiply(X).sum(axis=0), dtype=np.float64).ravel() / n
    var = np.maximum(sq - mean**2, 0.0)
    if n > 1:
        var *= n / (n - 1)
    return mean, var


def scanpy_log2fc(Xlog: sp.csr_matrix, treated: np.ndarray) -> np.ndarray:
    """scanpy's logfoldchanges: log2((expm1(mean log1p treated) + 1e-9) / (expm1(mean log1p control) + 1e-9))."""
    t = np.asarray(treated, dtype=bool)
    m1 = np.asarray(Xlog[t].mean(axis=0), dtype=np.float64).ravel()
    m2 = np.asarray(Xlog[~t].mean(axis=0), dtype=np.float64).ravel()
    return np.log2((np.expm1(m1) + 1e-9) / (np.expm1(m2) + 1e-9))


def welch_t_test(Xlog: sp.csr_matrix, treated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Welch's two-sample t per gene (treated vs control): (t, two-sided p). Undefined t → 0, p → 1 (scanpy)."""
    t = np.asarray(treated, dtype=bool)
    n1, n2 = int(t.sum()), int((~t).sum())
    if n1 < 2 or n2 < 2:
        raise InputError(f"Welch t needs ≥ 2 treated and ≥ 2 control cells (have {n1} and {n2})")
    X = sp.csr_matrix(Xlog)
    m1, v1 = _means_vars(X[t])
    m2, v2 = _means_vars(X[~t])
    with np.errstate(invalid="ignore", divide="ignore"):
        tstat, p = stats.ttest_ind_from_stats(m1, np.sqrt(v1), n1, m2, np.sqrt(v2), n2, equal_var=False)
    tstat = np.where(np.isnan(tstat), 0.0, tstat)
    p = np.where(np.isnan(p), 1.0, p)
    return np.asarray(tstat, dtype=np.float64), np.asarray(p, dtype=np.float64)


def wilcoxon_test(Xlog: sp.spmatrix, treated: np.ndarray, *, tie_correct: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Wilcoxon rank-sum per gene, normal approximation: (z of the treated rank sum, two-sided p).

    Ranks are computed per column from the sparse non-zeros (all zeros share one average rank), so the cost
    is O(nnz log nnz). `tie_correct` divides the variance by the tie correction — single-cell data are mostly
    tied zeros, so without it the test is conservative (scanpy's default is False; both are reproduced).
    """
    t = np.asarray(treated, dtype=bool)
    N = t.size
    n1 = int(t.sum())
    n2 = N - n1
    if n1 == 0 or n2 == 0:
        raise InputError(f"Wilcoxon needs treated and control cells (have {n1} and {n2})")
    X = sp.csc_matrix(Xlog, dtype=np.float64)
    X.eliminate_zeros()
    if X.data.size and X.data.min() < 0:
        raise InputError("wilcoxon_test expects non-negative (log1p-normalised) values")
    G = X.shape[1]
    indptr = X.indptr.astype(np.int64)
    k = np.diff(indptr)
    zeros = (N - k).astype(np.float64)
    nnz = int(indptr[-1])
    colid = np.repeat(np.arange(G, dtype=np.int64), k)
    order = np.lexsort((X.data, colid))
    sd = X.data[order]
    sc = colid[order]
    rows = X.indices[order]
    pos = np.arange(nnz, dtype=np.float64) - indptr[sc] + 1.0  # 1-based position among the column's non-zeros
    new = np.ones(nnz, dtype=bool)
    if nnz > 1:
        new[1:] = (sc[1:] != sc[:-1]) | (sd[1:] != sd[:-1])
    starts = np.flatnonzero(new)
    size = np.diff(np.append(starts, nnz)).astype(np.float64)
    gid = np.cumsum(new) - 1
    avg = pos[starts] + (size - 1.0) / 2.0
    rank = zeros[sc] + avg[gid]
    tr = t[rows]
    r1 = np.bincount(sc[tr], weights=rank[tr], minlength=G)
    k1 = np.bincount(sc[tr], minlength=G).astype(np.float64)
    r1 += (n1 - k1) * (zeros + 1.0) / 2.0
    var = n1 * n2 * (N + 1.0) / 12.0
    if tie_correct:
        ties = np.bincount(sc[starts], weights=size**3 - size, minlength=G) + zeros**3 - zeros
        tc = 1.0 - ties / (float(N) ** 3 - N) if N > 1 else np.ones(G)
        var = var * tc
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (r1 - n1 * (N + 1.0) / 2.0) / np.sqrt(var)
    z = np.where(np.isfinite(z), z, 0.0)
    p = 2.0 * stats.norm.sf(np.abs(z))
    return z, p


def pseudobulk_log2fc(
    treated: np.ndarray, control: np.ndarray, *, pseudocount: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log2 fold change of CPM-normalised summed counts, treated vs control: (log2fc, stat, p).

    `treated` / `control`: units (wells) × genes summed raw counts. The fold change pools each arm's wells
    (CPM of the arm's total). With ≥ 2 wells in both arms, a Welch t on per-well log2(CPM + pseudocount) gives
    stat and p (H0: equal mean log-expression; unit of exchangeability: the well); otherwise they are NaN —
    one well per arm carries no information about well-to-well variance.
    """
    T = np.asarray(treated, dtype=np.float64)
    C = np.asarray(control, dtype=np.float64)
    if T.shape[0] == 0 or C.shape[0] == 0:
        raise InputError(f"pseudobulk needs treated and control wells (have {T.shape[0]} and {C.shape[0]})")
    tt, ct = T.sum(), C.sum()
    if tt <= 0 or ct <= 0:
        raise InputError("pseudobulk arm with zero total counts")
    cpm_t = T.sum(axis=0) / tt * 1e6
    cpm_c = C.sum(axis=0) / ct * 1e6
    lfc = np.log2(cpm_t + pseudocount) - np.log2(cpm_c + pseudocount)
    stat = np.full(lfc.shape, np.nan)
    p = np.full(lfc.shape, np.nan)
    if T.shape[0] >= 2 and C.shape[0] >= 2:
        lt = T.sum(axis=1, keepdims=True)
        lc = C.sum(axis=1, keepdims=True)
        if (lt > 0).all() and (lc > 0).all():
            a = np.log2(T / lt * 1e6 + pseudocount)
            b = np.log2(C / lc * 1e6 + pseudocount)
            with np.errstate(invalid="ignore", divide="ignore"):
                res = stats.ttest_ind(a, b, axis=0, equal_var=False)
            stat = np.asarray(res.statistic, dtype=np.float64)
            p = np.asarray(res.pvalue, dtype=np.float64)
            const = np.isnan(stat)
            stat[const], p[const] = 0.0, 1.0
    return lfc, stat, p


def pydeseq2_test(
    treated: np.ndarray, control: np.ndarray, genes: list[str], *, seed: int = 0, **options: Any
) -> pd.DataFrame:
    """PyDESeq2 (Wald test, treated vs control) on replicate × gene counts → gene-indexed log2fc/pvalue/padj/stat.

    Raises `InputError` when pydeseq2 is not installed (it is an optional extra: `pip install mechcell[de]`).
    """
    try:
        from pydeseq2.dds import DeseqDataSet
        from pydeseq2.ds import DeseqStats
    except ImportError:
        raise InputError("method 'pydeseq2' needs the optional package pydeseq2 (pip install 'mechcell[de]')") from None
    T = np.rint(np.asarray(treated, dtype=np.float64)).astype(np.int64)
    C = np.rint(np.asarray(control, dtype=np.float64)).astype(np.int64)
    counts = pd.DataFrame(
        np.vstack([T, C]), columns=genes, index=[f"t{i}" for i in range(len(T))] + [f"c{i}" for i in range(len(C))]
    )
    meta = pd.DataFrame({"condition": ["treated"] * len(T) + ["control"] * len(C)}, index=counts.index)
    kw: dict[str, Any] = {"refit_cooks": True, "quiet": True, "n_cpus": 1, **options}
    np.random.seed(seed)  # pydeseq2 draws nothing random today; pinned in case a version does
    with warnings.catch_warnings():  # few-replicate fits warn about the dispersion prior: expected here
        warnings.simplefilter("ignore", UserWarning)
        try:
            dds = DeseqDataSet(counts=counts, metadata=meta, design="~condition", **kw)
        except TypeError:  # pydeseq2 < 0.5
            dds = DeseqDataSet(counts=counts, metadata=meta, design_factors="condition", **kw)
        dds.deseq2()
        st = DeseqStats(dds, contrast=["condition", "treated", "control"], quiet=True)
        st.summary()
    r = st.results_df
    out = pd.DataFrame(
        {
            "log2fc": r["log2FoldChange"].to_numpy(np.float64),
            "pvalue": r["pvalue"].to_numpy(np.float64),
            "padj": r["padj"].to_numpy(np.float64),
            "stat": r["stat"].to_numpy(np.float64),
        },
        index=pd.Index(r.index.astype(str), name="gene"),
    )
    return out
