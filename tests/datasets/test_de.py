"""DE statistics: agreement with scanpy.tl.rank_genes_groups, BH against statsmodels, and size / power by
simulation.

Nulls and units: the cell-level tests' H0 is "treated and control cells draw a gene from the same
distribution", with cells as the exchangeable unit (the simulations assign labels per cell, so H0 holds
exactly). The pseudobulk Welch test's unit is the well.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
from scipy import stats

from mechcell.datasets import open_dataset
from mechcell.datasets.cells import CellCounts
from mechcell.datasets.de import bh_adjust, normalize_log1p, pseudobulk_log2fc, welch_t_test, wilcoxon_test
from mechcell.datasets.schemas import Condition
from mechcell.datasets.signatures import signature_from_cells

KEY = "Trametinib|0.05uM|CVCL_0023|plate1"


def _scanpy(counts: CellCounts, method: str, **kw) -> pd.DataFrame:
    a = ad.AnnData(X=counts.X.copy(), var=pd.DataFrame(index=counts.genes))
    a.obs["grp"] = pd.Categorical(np.where(counts.treated, "treated", "control"))
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    sc.tl.rank_genes_groups(
        a,
        "grp",
        groups=["treated"],
        reference="control",
        method=method,
        n_genes=a.n_vars,
        corr_method="benjamini-hochberg",
        **kw,
    )
    return sc.get.rank_genes_groups_df(a, group="treated").set_index("names")


@pytest.mark.parametrize(
    ("method", "sc_method", "kw"),
    [
        ("wilcoxon", "wilcoxon", {"tie_correct": True}),
        ("wilcoxon", "wilcoxon", {"tie_correct": False}),
        ("welch_t", "t-test", {}),
    ],
)
def test_cell_level_tests_agree_with_scanpy(real_world, method: str, sc_method: str, kw: dict) -> None:
    """Same cells (a real-design condition and its plate-matched controls), every gene tested (min_cells=0)."""
    with open_dataset(real_world.root) as ds:
        key = next(
            s.key
            for s in ds.summaries()
            if s.condition.perturbation == "Trametinib"
            and s.condition.batch == "plate1"
            and s.condition.context == real_world.obs["cell_line"].iloc[0]
        )
        counts = ds.load_cells(key)
    ref = _scanpy(counts, sc_method, **kw)
    sig = signature_from_cells(counts, method, min_cells=0, **kw).to_frame()
    ref = ref.loc[sig.index]
    # scanpy stores scores and log fold changes as float32
    np.testing.assert_allclose(sig["stat"], ref["scores"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sig["log2fc"], ref["logfoldchanges"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(sig["pvalue"], ref["pvals"], rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(sig["padj"], ref["pvals_adj"], rtol=1e-5, atol=1e-12)
    assert len(sig) == len(counts.genes)


def test_bh_matches_statsmodels_and_keeps_nans() -> None:
    from statsmodels.stats.multitest import multipletests

    p = np.random.default_rng(1).uniform(size=500) ** 3
    np.testing.assert_allclose(bh_adjust(p), multipletests(p, method="fdr_bh")[1], rtol=1e-12)
    q = bh_adjust(np.array([0.01, np.nan, 0.04]))
    assert np.isnan(q[1]) and np.allclose(q[[0, 2]], [0.02, 0.04])


def _nb(rng: np.random.Generator, n: int, mu: np.ndarray, phi: float = 0.5) -> np.ndarray:
    return rng.poisson(rng.gamma(1.0 / phi, mu * phi, size=(n, mu.size))).astype(np.float64)


def test_size_under_the_null_by_simulation() -> None:
    """H0 true for 3000 genes (labels assigned to cells at random): P(p < 0.05) must be 0.05 within ±4 SE."""
    rng = np.random.default_rng(2024)
    G, n1, n2 = 3000, 150, 250
    mu = rng.lognormal(0.5, 0.8, size=G)
    X = sp.csr_matrix(_nb(rng, n1 + n2, mu))
    treated = rng.permutation(np.r_[np.ones(n1, bool), np.zeros(n2, bool)])
    lib = np.asarray(X.sum(axis=1)).ravel()
    Xlog = normalize_log1p(X, lib)
    se = np.sqrt(0.05 * 0.95 / G)
    for name, p in (("wilcoxon", wilcoxon_test(Xlog, treated)[1]), ("welch_t", welch_t_test(Xlog, treated)[1])):
        rate = float(np.mean(p < 0.05))
        assert abs(rate - 0.05) < 4 * se, (name, rate)
        # and the whole null distribution is close to uniform
        assert stats.kstest(p, "uniform").statistic < 0.04, name
    # BH at 5%: with no true effects, almost never any discovery
    assert np.mean(bh_adjust(wilcoxon_test(Xlog, treated)[1]) < 0.05) < 0.002


def test_power_and_fdr_by_simulation() -> None:
    """200 of 2000 genes shifted 1.6×: most are found, and BH keeps the false discovery proportion ≤ ~5%."""
    rng = np.random.default_rng(7)
    G, n = 2000, 200
    mu = rng.lognormal(0.8, 0.6, size=G)
    eff = np.ones(G)
    hit = rng.choice(G, 200, replace=False)
    eff[hit] = np.where(rng.uniform(size=200) < 0.5, 1.6, 1 / 1.6)
    X = sp.csr_matrix(np.vstack([_nb(rng, n, mu * eff), _nb(rng, n, mu)]))
    treated = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    Xlog = normalize_log1p(X, np.asarray(X.sum(axis=1)).ravel())
    truth = np.zeros(G, bool)
    truth[hit] = True
    for test in (wilcoxon_test, welch_t_test):
        q = bh_adjust(test(Xlog, treated)[1])
        found = q < 0.05
        assert found[truth].mean() > 0.8, test.__name__
        assert (found & ~truth).sum() / max(found.sum(), 1) < 0.08, test.__name__


def test_wilcoxon_equals_scipy_mannwhitneyu_with_ties() -> None:
    rng = np.random.default_rng(3)
    X = rng.poisson(0.7, size=(60, 40)).astype(np.float64)
    t = np.r_[np.ones(25, bool), np.zeros(35, bool)]
    z, p = wilcoxon_test(sp.csr_matrix(X), t, tie_correct=True)
    for j in range(40):
        if X[:, j].max() == X[:, j].min():
            assert p[j] == 1.0
            continue
        ref = stats.mannwhitneyu(X[t, j], X[~t, j], use_continuity=False, method="asymptotic")
        assert p[j] == pytest.approx(ref.pvalue, rel=1e-9)


def test_pseudobulk_lfc_recovers_a_known_fold_and_tests_over_wells() -> None:
    rng = np.random.default_rng(5)
    mu = rng.lognormal(3, 1, size=300)
    fold = np.ones(300)
    fold[:20] = 4.0
    T = np.vstack([rng.poisson(mu * fold * 50) for _ in range(3)]).astype(float)
    C = np.vstack([rng.poisson(mu * 50) for _ in range(3)]).astype(float)
    lfc, stat, p = pseudobulk_log2fc(T, C)
    # CPM renormalises: planted genes ≈ log2(4) minus the library shift they cause
    shift = np.log2((mu * fold).sum() / mu.sum())
    np.testing.assert_allclose(np.median(lfc[:20]), 2.0 - shift, atol=0.1)
    assert abs(np.median(lfc[20:]) + shift) < 0.1
    # Welch over 3 vs 3 wells (unit: the well): planted genes found...
    assert np.mean(p[:20] < 0.01) >= 0.9 and np.isfinite(stat).all()
    # ...and with nothing planted (H0 for every gene; Poisson wells) the size is about nominal
    C2 = np.vstack([rng.poisson(mu * 50) for _ in range(3)]).astype(float)
    p0 = pseudobulk_log2fc(C2, C)[2]
    assert np.mean(p0 < 0.05) < 0.05 + 4 * np.sqrt(0.05 * 0.95 / p0.size)
    # one well per arm: fold change only, no p-value
    lfc1, stat1, p1 = pseudobulk_log2fc(T[:1], C[:1])
    assert np.isnan(p1).all() and np.isnan(stat1).all() and np.isfinite(lfc1).all()


def test_signature_rejects_arms_without_cells() -> None:
    cond = Condition(perturbation="A")
    c = CellCounts(
        condition=cond,
        X=sp.csr_matrix(np.ones((3, 2))),
        genes=["a", "b"],
        treated=np.ones(3, bool),
        covariates=pd.DataFrame({"library_size": [2.0] * 3, "batch": None, "sample": None}),
    )
    from mechcell.datasets.perturbation import NoControlCellsError

    with pytest.raises(NoControlCellsError):
        signature_from_cells(c, "wilcoxon")
