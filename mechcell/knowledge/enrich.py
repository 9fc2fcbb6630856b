"""A fast enrichment score of a weighted gene set (TF regulon, pathway footprint) against a signature.

score(S) = Σ_g w_g z_g / sqrt(Σ_g w_g²), over the set's genes present in the signature, where z is the rank-based
inverse-normal transform of the signature statistic (`stat` when the signature has it, else log2 fold change).

Null and unit of exchangeability: gene labels are exchangeable (a random set of the same size and weights), so
Σ w z has mean 0 and variance ≈ Σ w² and the score is ≈ N(0, 1); the rank transform keeps this true for
heavy-tailed signatures. Genes are correlated in real data, so the p-value is a ranking aid (like decoupler's
ulm/wsum), not a test a verdict should rest on; `tests/knowledge/test_enrich.py` checks size and power by
simulation. All arithmetic is float64.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.special import ndtr, ndtri

MIN_GENES = 3


def signature_z(genes: list[str], values: list[float] | np.ndarray) -> pd.Series:
    """Rank-based inverse-normal scores (gene-indexed, float64); NaNs dropped, duplicate genes averaged."""
    s = pd.Series(np.asarray(values, dtype=np.float64), index=pd.Index(genes, dtype=object))
    s = s[np.isfinite(s.to_numpy())]
    if s.index.has_duplicates:
        s = s.groupby(level=0).mean()
    n = len(s)
    if n == 0:
        return s
    ranks = s.rank(method="average").to_numpy(dtype=np.float64)
    return pd.Series(ndtri((ranks - 0.5) / n), index=s.index, dtype=np.float64)


class SetScorer:
    """Scores many weighted gene sets at once (sparse sets × genes matrix)."""

    def __init__(self, sets: Mapping[str, Mapping[str, float]]) -> None:
        self.names = sorted(sets)
        genes = sorted({g for w in sets.values() for g in w})
        self.genes = genes
        self._col = {g: i for i, g in enumerate(genes)}
        rows, cols, vals = [], [], []
        for i, name in enumerate(self.names):
            for g, w in sets[name].items():
                rows.append(i)
                cols.append(self._col[g])
                vals.append(float(w))
        shape = (len(self.names), len(genes))
        self.W = sparse.csr_matrix((np.asarray(vals, dtype=np.float64), (rows, cols)), shape=shape)
        self.W2 = self.W.multiply(self.W).tocsr()
        self.B = (self.W != 0).astype(np.float64).tocsr()

    def columns(self, genes: list[str] | pd.Index) -> np.ndarray:
        """Column of each signature gene in this scorer (−1 for genes no set contains); cache it per gene list."""
        col = self._col
        return np.fromiter((col.get(g, -1) for g in genes), dtype=np.int64, count=len(genes))

    def score_array(self, z: np.ndarray, cols: np.ndarray, min_genes: int = MIN_GENES) -> pd.DataFrame:
        """Like `score`, from a z array aligned with `cols` (see `columns`); duplicate genes are averaged."""
        z = np.asarray(z, dtype=np.float64)
        m = (cols >= 0) & np.isfinite(z)
        g = len(self.genes)
        counts = np.bincount(cols[m], minlength=g).astype(np.float64)
        sums = np.bincount(cols[m], weights=z[m], minlength=g)
        vec = np.divide(sums, counts, out=np.zeros(g, dtype=np.float64), where=counts > 0)
        present = (counts > 0).astype(np.float64)
        num = self.W @ vec
        den = np.sqrt(self.W2 @ present)
        n = self.B @ present
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where((n >= min_genes) & (den > 0), num / den, np.nan)
        p = 2.0 * ndtr(-np.abs(score))
        return pd.DataFrame({"score": score, "pvalue": p, "n_genes": n.astype(int)}, index=self.names)

    def score(self, z: pd.Series, min_genes: int = MIN_GENES) -> pd.DataFrame:
        """DataFrame indexed by set name: score, pvalue (two-sided, normal), n_genes (present in the signature)."""
        return self.score_array(z.to_numpy(), self.columns(z.index), min_genes)


def rank_normal(values: np.ndarray) -> np.ndarray:
    """Rank-based inverse-normal transform of an array (NaN stays NaN); ties get their average rank."""
    from scipy.stats import rankdata  # imported here: scipy.stats costs ~1 s to import, most callers never rank

    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    out = np.full(len(v), np.nan)
    n = int(ok.sum())
    if n:
        out[ok] = ndtri((rankdata(v[ok], method="average") - 0.5) / n)
    return out
