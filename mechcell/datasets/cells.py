"""Per-cell access: a condition's treated cells plus its plate-matched control cells, with covariates.

`CellCounts` is what readers return (sparse counts over all genes — the DE methods need every gene and the
library size); `CellData` is the public, dense view over the genes a caller asks for, used later by the
doubly-robust kernel test that permutes at the well level (hence `covariates['sample']`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mechcell.datasets.schemas import Condition
from mechcell.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["CellCounts", "CellData", "G2M_GENES", "S_GENES", "score_cell_cycle"]

#: Tirosh et al. 2016 (Science 352:189) cell-cycle genes, with current HGNC symbols added beside renamed ones
#: (MLF1IP→CENPU, FAM64A→PIMREG, HN1→JPT1) so either vintage of annotation scores.
S_GENES: tuple[str, ...] = (
    "MCM5",
    "PCNA",
    "TYMS",
    "FEN1",
    "MCM2",
    "MCM4",
    "RRM1",
    "UNG",
    "GINS2",
    "MCM6",
    "CDCA7",
    "DTL",
    "PRIM1",
    "UHRF1",
    "MLF1IP",
    "CENPU",
    "HELLS",
    "RFC2",
    "RPA2",
    "NASP",
    "RAD51AP1",
    "GMNN",
    "WDR76",
    "SLBP",
    "CCNE2",
    "UBR7",
    "POLD3",
    "MSH2",
    "ATAD2",
    "RAD51",
    "RRM2",
    "CDC45",
    "CDC6",
    "EXO1",
    "TIPIN",
    "DSCC1",
    "BLM",
    "CASP8AP2",
    "USP1",
    "CLSPN",
    "POLA1",
    "CHAF1B",
    "BRIP1",
    "E2F8",
)
G2M_GENES: tuple[str, ...] = (
    "HMGB2",
    "CDK1",
    "NUSAP1",
    "UBE2C",
    "BIRC5",
    "TPX2",
    "TOP2A",
    "NDC80",
    "CKS2",
    "NUF2",
    "CKS1B",
    "MKI67",
    "TMPO",
    "CENPF",
    "TACC3",
    "FAM64A",
    "PIMREG",
    "SMC4",
    "CCNB2",
    "CKAP2L",
    "CKAP2",
    "AURKB",
    "BUB1",
    "KIF11",
    "ANP32E",
    "TUBB4B",
    "GTSE1",
    "KIF20B",
    "HJURP",
    "CDCA3",
    "HN1",
    "JPT1",
    "CDC20",
    "TTK",
    "CDC25C",
    "KIF2C",
    "RANGAP1",
    "NCAPD2",
    "DLGAP5",
    "CDCA2",
    "CDCA8",
    "ECT2",
    "KIF23",
    "HMMR",
    "AURKA",
    "PSRC1",
    "ANLN",
    "LBR",
    "CKAP5",
    "CENPE",
    "CTCF",
    "NEK2",
    "G2E3",
    "GAS2L3",
    "CBX5",
    "CENPA",
)
_MIN_CC_GENES = 5  # fewer detected phase genes than this and a score is noise: leave it out


@dataclass
class CellCounts:
    """Raw counts of a condition's cells and its matched controls over all genes (sparse CSR, float64).

    Rows are cells (treated first is NOT guaranteed; use `treated`), columns are `genes`. `covariates` is indexed
    by cell id and holds at least `batch`, `sample` (None when unknown) and `library_size` (total counts over
    all genes), plus `S_score`, `G2M_score`, `phase` when the dataset's obs carries them.
    """

    condition: Condition
    X: sp.csr_matrix
    genes: list[str]
    treated: np.ndarray
    covariates: pd.DataFrame

    def __post_init__(self) -> None:
        n, g = self.X.shape
        if len(self.genes) != g or len(self.treated) != n or len(self.covariates) != n:
            raise InputError(
                f"cells of {self.condition.key}: shapes disagree (X {self.X.shape}, genes "
                f"{len(self.genes)}, treated {len(self.treated)}, covariates {len(self.covariates)})"
            )
        self.treated = np.asarray(self.treated, dtype=bool)

    @property
    def n_treated(self) -> int:
        return int(self.treated.sum())

    @property
    def n_control(self) -> int:
        return int((~self.treated).sum())

    @property
    def library_size(self) -> np.ndarray:
        return np.asarray(self.covariates["library_size"], dtype=np.float64)


@dataclass
class CellData:
    """A condition's cells (treated) and its plate-matched controls of the same context, dense over `genes`.

    X: cells × genes float64 raw counts. treated: bool per cell. covariates (one row per cell, index = cell id):
    `batch` (plate), `sample` (well id; the unit of treatment assignment), `library_size` (total counts over all
    genes), `S_score`/`G2M_score`/`phase` when the dataset carries them or they are computable from the
    Tirosh cell-cycle genes.
    """

    condition: Condition
    X: np.ndarray
    genes: list[str]
    treated: np.ndarray
    covariates: pd.DataFrame = field(repr=False)

    def __post_init__(self) -> None:
        n, g = self.X.shape
        if len(self.genes) != g or len(self.treated) != n or len(self.covariates) != n:
            raise InputError(
                f"cells of {self.condition.key}: shapes disagree (X {self.X.shape}, genes "
                f"{len(self.genes)}, treated {len(self.treated)}, covariates {len(self.covariates)})"
            )

    @property
    def n_treated(self) -> int:
        return int(self.treated.sum())

    @property
    def n_control(self) -> int:
        return int((~self.treated).sum())

    def to_anndata(self):  # -> anndata.AnnData (import kept lazy: anndata is heavy)
        """An AnnData with counts in X and obs = covariates + `treated` (for scanpy users)."""
        import anndata as ad

        obs = self.covariates.copy()
        obs["treated"] = self.treated
        obs.index = obs.index.astype(str)
        return ad.AnnData(X=self.X.copy(), obs=obs, var=pd.DataFrame(index=pd.Index(self.genes, dtype=str)))


def score_cell_cycle(
    X: sp.csr_matrix, genes: Sequence[str], library_size: np.ndarray, *, seed: int = 0
) -> pd.DataFrame | None:
    """S / G2M scores and phase per cell (scanpy's `score_genes_cell_cycle` on log1p CP10k), or None.

    None when fewer than 5 S or G2M genes are detected: a score over a handful of genes is noise.
    """
    import anndata as ad
    import scanpy as sc

    gene_idx = {g: i for i, g in enumerate(genes)}
    detected = np.asarray((X != 0).sum(axis=0)).ravel() > 0
    s = [g for g in S_GENES if g in gene_idx and detected[gene_idx[g]]]
    g2m = [g for g in G2M_GENES if g in gene_idx and detected[gene_idx[g]]]
    if len(s) < _MIN_CC_GENES or len(g2m) < _MIN_CC_GENES or X.shape[0] < 2:
        return None
    keep = np.flatnonzero(detected)
    lib = np.where(library_size > 0, library_size, 1.0)
    norm = sp.diags(1e4 / lib) @ X[:, keep]
    norm = norm.tocsr()
    norm.data = np.log1p(norm.data)
    a = ad.AnnData(X=norm, var=pd.DataFrame(index=pd.Index([genes[i] for i in keep], dtype=str)))
    a.obs_names = [str(i) for i in range(X.shape[0])]
    sc.tl.score_genes_cell_cycle(a, s_genes=s, g2m_genes=g2m, random_state=seed)
    return pd.DataFrame(
        {
            "S_score": a.obs["S_score"].to_numpy(np.float64),
            "G2M_score": a.obs["G2M_score"].to_numpy(np.float64),
            "phase": a.obs["phase"].astype(str).to_numpy(),
        }
    )


def to_cell_data(counts: CellCounts, genes: Sequence[str] | None = None, *, cell_cycle: bool = True) -> CellData:
    """Dense view of `counts` over `genes` (None: every gene detected in these cells), adding phase scores."""
    gene_idx = {g: i for i, g in enumerate(counts.genes)}
    if genes is None:
        cols = np.flatnonzero(np.asarray((counts.X != 0).sum(axis=0)).ravel() > 0)
    else:
        missing = [g for g in genes if g not in gene_idx]
        if missing:
            raise InputError(
                f"gene(s) {missing[:5]} not in the dataset's genes ({len(counts.genes)} genes, e.g. {counts.genes[:3]})"
            )
        cols = np.array([gene_idx[g] for g in genes], dtype=np.int64)
    cov = counts.covariates.copy()
    if cell_cycle and "S_score" not in cov.columns:
        scores = score_cell_cycle(counts.X, counts.genes, counts.library_size)
        if scores is not None:
            for c in scores.columns:
                cov[c] = scores[c].to_numpy()
    X = counts.X[:, cols].toarray().astype(np.float64, copy=False)
    return CellData(
        condition=counts.condition,
        X=X,
        genes=[counts.genes[i] for i in cols],
        treated=counts.treated.copy(),
        covariates=cov,
    )
