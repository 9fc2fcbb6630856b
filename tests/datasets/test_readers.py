"""Both readers on fixtures written in the real layouts (Tahoe shards + metadata; h5ad with Tahoe's obs names)
and the precomputed-DE reader, checked against the numpy truth the fixture wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mechcell.datasets import PerturbationSchema, TahoeSource, detect_layout, open_dataset
from mechcell.datasets.perturbation import parse_drugconc
from mechcell.errors import InputError, MissingColumnError

KEY = "Trametinib|0.05uM|CVCL_0023|plate1"


def _truth_rows(world, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (in the fixture's matrix) of a condition's cells and of its matched controls."""
    pert, dose, ctx, plate = key.split("|")
    o = world.obs
    drug = o["drug"].str.strip()
    treated = np.flatnonzero(
        (drug == pert)
        & (o["cell_line"] == ctx)
        & (o["plate"] == plate)
        & (o["drugname_drugconc"].map(lambda s: f"{parse_drugconc(s)[0][1]:g}uM") == dose)
    )
    ctrl = np.flatnonzero((drug == "DMSO_TF") & (o["cell_line"] == ctx) & (o["plate"] == plate))
    return treated, ctrl


def _by_barcode(cells) -> pd.DataFrame:
    return pd.DataFrame(cells.X.toarray(), index=cells.covariates.index)


@pytest.mark.parametrize("layout", ["tahoe", "h5ad"])
def test_reader_cells_equal_the_written_counts(toy_world, layout: str) -> None:
    ds = open_dataset(toy_world.root if layout == "tahoe" else toy_world.h5ad)
    assert ds.layout == layout and ds.genes == toy_world.genes
    cells = ds.load_cells(KEY)
    t, c = _truth_rows(toy_world, KEY)
    assert (cells.n_treated, cells.n_control) == (len(t), len(c))
    got = _by_barcode(cells)
    bc = toy_world.obs["BARCODE_SUB_LIB_ID"].to_numpy()
    want = pd.DataFrame(toy_world.counts[np.concatenate([t, c])].toarray(), index=bc[np.concatenate([t, c])])
    pd.testing.assert_frame_equal(got.loc[want.index], want, check_names=False, check_dtype=False)
    # the marker entry (token 1, value -2) is dropped: counts are non-negative and libraries are exact
    assert cells.X.min() >= 0
    np.testing.assert_allclose(cells.covariates["library_size"], np.asarray(cells.X.sum(axis=1)).ravel())
    assert set(cells.covariates.loc[cells.treated, "sample"]) == set(toy_world.obs["sample"].iloc[t])
    assert set(cells.covariates["batch"]) == {"plate1"}
    # S/G2M scores come from Tahoe's obs_metadata (shards) or from obs (h5ad), matched per barcode
    s_truth = toy_world.obs.set_index("BARCODE_SUB_LIB_ID")["S_score"]
    np.testing.assert_allclose(cells.covariates["S_score"], s_truth.loc[cells.covariates.index])
    ds.close()


def test_both_layouts_list_the_same_conditions(toy_world) -> None:
    with open_dataset(toy_world.root) as a, open_dataset(toy_world.h5ad) as b:
        sa = {s.key: (s.n_cells, s.n_control_cells, s.n_samples) for s in a.summaries()}
        sb = {s.key: (s.n_cells, s.n_control_cells, s.n_samples) for s in b.summaries()}
        assert sa == sb and len(sa) == 12
        assert a.condition(KEY).context_name == "A549"  # from cell_line_metadata
        assert {k.split("|")[0] for k in sa} == {"Trametinib", "Trametinib (DMSO_TF solvate)", "Erdafitinib"}


def test_backed_h5ad_reads_the_same_cells(toy_world) -> None:
    with open_dataset(toy_world.h5ad, backed=True, chunk_size=97) as b, open_dataset(toy_world.h5ad) as m:
        assert b.backed and not m.backed
        cb, cm = b.load_cells(KEY), m.load_cells(KEY)
        assert (cb.X != cm.X).nnz == 0 and list(cb.covariates.index) == list(cm.covariates.index)
        gb = {g.group: g.counts for g in b.pseudobulk()}
        gm = {g.group: g.counts for g in m.pseudobulk()}
        assert gb.keys() == gm.keys() and all(np.array_equal(gb[k], gm[k]) for k in gb)


def test_cell_data_is_dense_over_requested_genes(toy_world) -> None:
    with open_dataset(toy_world.root) as ds:
        cd = ds.cells(KEY, genes=["MCM5", "G003"])
        assert cd.X.shape == (cd.n_treated + cd.n_control, 2) and cd.X.dtype == np.float64
        assert {"batch", "sample", "context", "condition_key", "library_size", "S_score", "G2M_score", "phase"} <= set(
            cd.covariates.columns
        )
        assert set(cd.covariates.loc[cd.treated, "condition_key"]) == {KEY}
        assert cd.covariates.loc[~cd.treated, "condition_key"].isna().all()
        full = ds.load_cells(KEY)
        np.testing.assert_array_equal(cd.X[:, 0], full.X[:, ds.genes.index("MCM5")].toarray().ravel())
        with pytest.raises(InputError, match="NOPE"):
            ds.cells(KEY, genes=["NOPE"])


def test_cell_cycle_scores_are_computed_when_obs_lacks_them(toy_world, real_world) -> None:
    import anndata as ad
    import scanpy as sc

    from mechcell.datasets.cells import G2M_GENES, S_GENES

    a = ad.read_h5ad(toy_world.h5ad)
    a.obs = a.obs.drop(columns=["S_score", "G2M_score", "phase"])
    with open_dataset(a) as ds:
        cd = ds.cells(KEY, genes=["G001"])
    # the toy genes hold only 4 phase genes (< 5 per phase): not computable, so no score columns
    assert "S_score" not in cd.covariates.columns
    # real genes include ≥ 5 of each phase: scores computed as scanpy does on the same cells
    a = ad.read_h5ad(real_world.h5ad)
    a.obs = a.obs.drop(columns=["S_score", "G2M_score", "phase"])
    with open_dataset(a) as ds:
        key = ds.summaries()[0].key
        cd = ds.cells(key, genes=["MCM5"])
        counts = ds.load_cells(key)
    ref = ad.AnnData(X=counts.X.copy(), var=pd.DataFrame(index=counts.genes))
    ref = ref[:, np.asarray((counts.X != 0).sum(axis=0)).ravel() > 0].copy()
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    s = [g for g in S_GENES if g in ref.var_names]
    g2m = [g for g in G2M_GENES if g in ref.var_names]
    sc.tl.score_genes_cell_cycle(ref, s_genes=s, g2m_genes=g2m, random_state=0)
    np.testing.assert_allclose(cd.covariates["S_score"], ref.obs["S_score"], rtol=1e-6, atol=1e-9)
    assert set(cd.covariates["phase"]) <= {"G1", "S", "G2M"}


def test_tahoe_missing_columns_and_metadata_errors(toy_world, tmp_path: Path) -> None:
    with pytest.raises(MissingColumnError, match=r"'well'.*--sample-col"):
        open_dataset(toy_world.root, PerturbationSchema.tahoe().model_copy(update={"sample_col": "well"}))
    src = TahoeSource.discover(toy_world.root)
    no_samples = src.model_copy(update={"sample_metadata": None})
    from mechcell.datasets.readers.tahoe import TahoeDataset

    with pytest.raises(MissingColumnError, match=r"'drugname_drugconc'.*sample_metadata.parquet, which was not found"):
        TahoeDataset(no_samples)
    with pytest.raises(InputError, match="gene_metadata"):
        TahoeDataset(src.model_copy(update={"gene_metadata": None}))
    with pytest.raises(InputError, match="does not exist"):
        open_dataset(tmp_path / "nowhere", layout="tahoe")


def test_tahoe_from_a_glob_with_explicit_metadata(toy_world) -> None:
    meta = toy_world.root / "metadata"
    ds = open_dataset(
        str(toy_world.root / "data" / "train-*.parquet"),
        layout="tahoe",
        gene_metadata=str(meta / "gene_metadata.parquet"),
        sample_metadata=str(meta / "sample_metadata.parquet"),
    )
    assert len(ds.conditions()) == 12 and ds.options["gene_metadata"].endswith("gene_metadata.parquet")
    assert detect_layout(toy_world.root) == "tahoe" and detect_layout(toy_world.h5ad) == "h5ad"


# ------------------------------------------------------------------------------------------ real design


def test_tahoe_reader_on_the_real_design(world_factory, real_design_fn) -> None:
    """Every real sample (14 plates × 96 wells) × 2 real cell lines, one or two cells each: the reader must
    recover Tahoe's true condition set — plate-confounded doses, the solvate trap, stripped names."""
    samples, lines, genes = real_design_fn(None, None, n_lines=2, n_genes=30)
    w = world_factory("real", samples, lines, genes, cells_per_well=(1, 2), seed=3, n_shards=4, write_obs=False)
    with open_dataset(w.root) as ds:
        summ = ds.summaries()
        trt = samples[samples["drug"] != "DMSO_TF"].copy()
        trt["d"] = trt["drugname_drugconc"].map(lambda s: parse_drugconc(s)[0][1])
        expected = {(r.drug.strip(), r.d, r.plate) for r in trt.itertuples()}
        got = {(s.condition.perturbation, s.condition.dose, s.condition.batch) for s in summ}
        assert got == expected and len(summ) == 2 * len(expected)
        assert all(s.condition.dose_unit == "uM" and s.n_control_cells > 0 for s in summ)
        names = {s.condition.perturbation for s in summ}
        assert "Trametinib (DMSO_TF solvate)" in names and "Trametinib" in names and "DMSO_TF" not in names
        assert not any(n != n.strip() for n in names)
        # wells with the same drug and dose on one plate pool into one condition with several samples
        multi = trt.groupby(["drug", "d", "plate"]).size()
        k = multi[multi > 1].index[0]
        s = next(
            x
            for x in summ
            if (x.condition.perturbation, x.condition.dose, x.condition.batch) == (k[0].strip(), k[1], k[2])
        )
        assert s.n_samples == multi[k]
        # the cells of one condition equal the written counts
        key = next(x.key for x in summ if x.condition.perturbation == "Trametinib" and x.condition.batch == "plate2")
        cells = ds.load_cells(key)
        t, c = _truth_rows(w, key)
        assert (cells.n_treated, cells.n_control) == (len(t), len(c))
        assert abs(cells.X.sum() - w.counts[np.concatenate([t, c])].sum()) < 1e-9


# ------------------------------------------------------------------------------------------ precomputed DE


def _de_table(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for drug, conc, ctx, plate in (
        ("Trametinib", 0.05, "CVCL_0023", "plate1"),
        ("Erdafitinib ", 5.0, "CVCL_0023", "plate3"),
    ):
        for g in ("DUSP6", "FOSL1", "EGR1", "GAPDH"):
            p = float(rng.uniform(1e-6, 1))
            rows.append(
                {
                    "gene_name": g,
                    "baseMean": 10.0,
                    "log2FoldChange": float(rng.normal()),
                    "lfcSE": 0.5,
                    "pvalue": p,
                    "padj": min(1.0, p * 4),
                    "drug": drug,
                    "concentration": conc,
                    "Cell_ID_Cellosaur": ctx,
                    "plate": plate,
                    "n_cells_trt": 812,
                    "n_cells_ctrl": 1500,
                }
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_precomputed_de_reader(tmp_path: Path, fmt: str) -> None:
    df = _de_table()
    path = tmp_path / f"de.{fmt}"
    df.to_parquet(path) if fmt == "parquet" else df.to_csv(path, index=False)
    assert detect_layout(path) == "de"
    with open_dataset(path) as ds:
        keys = sorted(s.key for s in ds.summaries())
        assert keys == ["Erdafitinib|5uM|CVCL_0023|plate3", "Trametinib|0.05uM|CVCL_0023|plate1"]
        sig = ds.precomputed_signature("Trametinib|0.05uM|CVCL_0023|plate1")
        want = df[df["drug"] == "Trametinib"].set_index("gene_name").sort_index()
        assert sig.method == "precomputed" and (sig.n_treated, sig.n_control) == (812, 1500)
        np.testing.assert_allclose(sig.log2fc, want["log2FoldChange"])
        np.testing.assert_allclose(sig.padj, want["padj"])
        np.testing.assert_allclose(sig.stat, want["log2FoldChange"] / want["lfcSE"])
        with pytest.raises(InputError, match="not cells"):
            ds.load_cells(keys[0])


def test_precomputed_de_missing_column(tmp_path: Path) -> None:
    p = tmp_path / "de.parquet"
    _de_table().drop(columns=["padj"]).to_parquet(p)
    from mechcell.datasets.readers.precomputed import PrecomputedDEDataset

    with pytest.raises(MissingColumnError, match="'padj'"):
        PrecomputedDEDataset(p)


def test_sparse_h5ad_counts_layer_is_preferred(toy_world, tmp_path: Path) -> None:
    import anndata as ad

    a = ad.read_h5ad(toy_world.h5ad)
    a.layers["counts"] = a.X.copy()
    a.X = sp.csr_matrix(np.log1p(a.X.toarray()))  # a normalised X, as many files have
    p = tmp_path / "with_layer.h5ad"
    a.write_h5ad(p)
    with open_dataset(p) as ds, open_dataset(toy_world.h5ad) as ref:
        assert ds.counts_element == "layers/counts"
        assert (ds.load_cells(KEY).X != ref.load_cells(KEY).X).nnz == 0
