"""Signatures recover planted effects, inactive conditions stay quiet, and batches stream into the store."""

from __future__ import annotations

import numpy as np
import pytest

from mechcell.datasets import DE_METHODS, Store, compute_signature, compute_signatures, open_dataset
from mechcell.errors import InputError

KEY = "Trametinib|0.05uM|CVCL_0023|plate1"
CELL_METHODS = ["wilcoxon", "welch_t"]
PB_METHODS = ["pseudobulk_lfc", "pydeseq2"]


def _assert_at_the_top(ranked: list[str], up: list[str], down: list[str]) -> None:
    k = max(len(ranked) // 20, len(up) + 2)
    assert set(up) <= set(ranked[:k]) and set(down) <= set(ranked[-k:]), (ranked[:k], ranked[-k:])
    assert len(set(up) & set(ranked[: len(up)])) >= len(up) - 1
    assert len(set(down) & set(ranked[-len(down) :])) >= len(down) - 1


def _ranked(sig) -> list[str]:
    """Genes from most up to most down: by the test statistic when the method has one, else by log2fc."""
    f = sig.to_frame()
    col = "stat" if "stat" in f.columns and np.isfinite(f["stat"]).all() else "log2fc"
    return f.sort_values(col, ascending=False).index.tolist()


@pytest.mark.parametrize("method", CELL_METHODS + PB_METHODS)
@pytest.mark.parametrize("layout", ["tahoe", "h5ad"])
def test_planted_effects_rank_at_the_top(toy_world, method: str, layout: str) -> None:
    """Trametinib in A549 has 6 genes planted 4× up and 6 planted 4× down among 200 (the rest unchanged): they
    must hold the top and bottom ranks (all within the first 5% or 8, at least 5 in the first 6), and be
    significant where the method gives p-values."""
    if method == "pydeseq2":
        pytest.importorskip("pydeseq2")
        if layout == "h5ad":
            pytest.skip("pydeseq2 is layout-independent (same pseudobulk); run once to keep the suite fast")
    with open_dataset(toy_world.root if layout == "tahoe" else toy_world.h5ad) as ds:
        sig = compute_signature(ds, KEY, method)
    up, down = toy_world.up[("Trametinib", "CVCL_0023")], toy_world.down[("Trametinib", "CVCL_0023")]
    _assert_at_the_top(_ranked(sig), up, down)
    f = sig.to_frame()
    if method != "pseudobulk_lfc":  # one treated well: pseudobulk_lfc gives fold changes only
        assert (f.loc[up + down, "padj"] < 0.05).all()
    assert sig.method == method and sig.params["controls"] == "plate-matched, same context"
    assert sig.n_treated == ds.summary(KEY).n_cells and sig.n_control == ds.summary(KEY).n_control_cells


def test_inactive_conditions_have_no_discoveries(toy_world) -> None:
    """No effect was planted for Erdafitinib or the solvate: with plate-matched controls, nothing passes BH."""
    with open_dataset(toy_world.root) as ds:
        for s in ds.summaries():
            if s.condition.perturbation == "Trametinib" and s.condition.context == "CVCL_0023":
                continue
            sig = compute_signature(ds, s.key, "wilcoxon")
            assert min(sig.padj) > 0.05, s.key


def test_planted_effects_on_the_real_design(real_world) -> None:
    (drug, ctx), up = next(iter(real_world.up.items()))
    down = real_world.down[(drug, ctx)]
    with open_dataset(real_world.root) as ds:
        keys = [s.key for s in ds.summaries() if s.condition.perturbation == drug and s.condition.context == ctx]
        assert len(keys) == 3  # one per plate, dose confounded with plate: 0.05, 0.5, 5 µM
        assert sorted(ds.condition(k).dose for k in keys) == [0.05, 0.5, 5.0]
        for k in keys:
            for method in ("wilcoxon", "pseudobulk_lfc"):
                _assert_at_the_top(_ranked(compute_signature(ds, k, method)), up, down)


def test_compute_signatures_streams_into_the_store(toy_world, tmp_path) -> None:
    with open_dataset(toy_world.root) as ds, Store(tmp_path / "s.duckdb") as st:
        rep = compute_signatures(ds, method="pseudobulk_lfc", store=st)
        assert rep.n_ok == 12 and not rep.failed and rep.dataset_id
        got = st.signature(KEY, "pseudobulk_lfc")
        ref = compute_signature(ds, KEY, "pseudobulk_lfc")
        np.testing.assert_allclose(got.log2fc, ref.log2fc)
        assert got.genes == ref.genes and got.params == ref.params
        assert np.isnan(got.pvalue).all()  # one well per arm: no p-value, stored as NULL, read back as NaN
        # resumable: a second run with skip_existing computes nothing
        rep2 = compute_signatures(ds, method="pseudobulk_lfc", store=st, skip_existing=True)
        assert rep2.n_skipped == 12 and rep2.n_ok == 0
        rep3 = compute_signatures(ds, [KEY], method="welch_t", store=st, dataset_id=rep.dataset_id)
        assert rep3.n_ok == 1
        assert [m for _, m in st.signature_methods(KEY)] == ["welch_t", "pseudobulk_lfc"]
        assert st.signature(KEY).method == "welch_t"  # most recent


def test_a_failed_condition_is_recorded_and_the_batch_goes_on(toy_world, tmp_path) -> None:
    """Drop the DMSO_TF cells of A-427 on plate2: its conditions fail (no matched controls), the rest succeed."""
    import anndata as ad

    a = ad.read_h5ad(toy_world.h5ad)
    drop = (a.obs["drug"] == "DMSO_TF") & (a.obs["cell_line"] == "CVCL_1055") & (a.obs["plate"] == "plate2")
    a = a[~drop.to_numpy()].copy()
    with open_dataset(a, require_controls=False) as ds, Store(tmp_path / "s.duckdb") as st:
        for method in ("wilcoxon", "pseudobulk_lfc"):
            rep = compute_signatures(ds, method=method, store=st)
            failed = {f.key for f in rep.failed}
            assert failed == {s.key for s in ds.summaries() if s.n_control_cells == 0} and len(failed) == 3
            assert rep.n_ok == 9 and {f.error for f in rep.failed} == {"NoControlCellsError"}
            assert len(st.signature_keys(method=method)) == 9


def test_method_registry_and_bad_parameters(toy_world) -> None:
    assert set(DE_METHODS) == {"wilcoxon", "welch_t", "pseudobulk_lfc", "pydeseq2", "precomputed"}
    assert all(m.null and m.reference for m in DE_METHODS.values())
    with open_dataset(toy_world.h5ad) as ds:
        with pytest.raises(InputError, match="no parameter"):
            compute_signature(ds, KEY, "wilcoxon", alpha=0.1)
        with pytest.raises(InputError, match="unknown DE method"):
            compute_signature(ds, KEY, "edgeR")
        with pytest.raises(InputError, match="does not apply"):
            compute_signature(ds, KEY, "precomputed")
        sig = compute_signature(ds, KEY, "wilcoxon", genes=["G001", "MCM5"])
        assert sig.genes == ["G001", "MCM5"] and sig.params["genes"] == 2


def test_batched_cell_level_signatures_equal_one_at_a_time(toy_world, tmp_path) -> None:
    """compute_signatures reads several conditions of a plate × line group with their shared controls at once;
    each result must equal the condition computed alone."""
    with open_dataset(toy_world.root) as ds, Store(tmp_path / "s.duckdb") as st:
        rep = compute_signatures(ds, method="wilcoxon", store=st, batch_conditions=2)
        assert rep.n_ok == 12 and not rep.failed
        for s in ds.summaries():
            one = compute_signature(ds, s.key, "wilcoxon")
            got = st.signature(s.key, "wilcoxon")
            assert got.genes == one.genes and (got.n_treated, got.n_control) == (one.n_treated, one.n_control)
            np.testing.assert_allclose(got.stat, one.stat, rtol=1e-12)
            np.testing.assert_allclose(got.padj, one.padj, rtol=1e-12)


def test_pydeseq2_falls_back_to_pseudo_replicates(world_factory, toy_design_fn, tmp_path) -> None:
    """One treated and one control well per plate cannot estimate dispersion: the cells of each arm are split
    into 3 seeded pseudo-replicates (read while the pseudobulk stream is still open)."""
    pytest.importorskip("pydeseq2")
    samples, lines, genes = toy_design_fn()
    samples = samples.drop_duplicates(["drug", "plate"]).reset_index(drop=True)  # one DMSO_TF well per plate
    w = world_factory(
        "onewell", samples, lines, genes, cells_per_well=(40, 60), effects={("Trametinib", "CVCL_0023"): 4.0}, seed=7
    )
    with open_dataset(w.root) as ds, Store(tmp_path / "s.duckdb") as st:
        rep = compute_signatures(ds, [KEY], "pydeseq2", store=st)
        assert rep.n_ok == 1 and not rep.failed
        sig = st.signature(KEY, "pydeseq2")
    assert sig.params["replicates"].startswith("3 pseudo-replicates")
    _assert_at_the_top(_ranked(sig), w.up[("Trametinib", "CVCL_0023")], w.down[("Trametinib", "CVCL_0023")])
