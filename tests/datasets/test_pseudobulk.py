"""The DuckDB pseudobulk aggregation over Tahoe shards equals a direct numpy sum of the written counts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mechcell.datasets import open_dataset


def _numpy_sums(world) -> dict[tuple[str, str, str], np.ndarray]:
    """(sample, cell line, plate) → summed counts, straight from the matrix the fixture wrote."""
    o = world.obs
    out = {}
    for (s, line, plate), idx in o.groupby(["sample", "cell_line", "plate"]).indices.items():
        out[(s, line, plate)] = np.asarray(world.counts[idx].sum(axis=0), dtype=np.float64).ravel()
    return out


def _check(world, ds) -> int:
    truth = _numpy_sums(world)
    seen = 0
    for g in ds.pseudobulk():
        ctx, plate = g.group.split("|")
        for (_, row), vec in zip(g.units.iterrows(), g.counts, strict=True):
            want = truth[(row["sample"], ctx, plate)]
            np.testing.assert_array_equal(vec, want)  # integer-valued counts: sums are exact in float64
            assert row["library_size"] == want.sum()
            seen += 1
    return seen


def test_duckdb_pseudobulk_equals_numpy_sum(toy_world) -> None:
    with open_dataset(toy_world.root, memory_limit="256MB", threads=2) as ds:
        n = _check(toy_world, ds)
    assert n == len(_numpy_sums(toy_world))  # every well of every context, controls included


def test_h5ad_pseudobulk_equals_numpy_sum(toy_world) -> None:
    with open_dataset(toy_world.h5ad, backed=True, chunk_size=64) as ds:
        assert _check(toy_world, ds) == len(_numpy_sums(toy_world))


def test_pseudobulk_on_the_real_design(real_world) -> None:
    with open_dataset(real_world.root) as ds:
        assert _check(real_world, ds) == len(_numpy_sums(real_world))


def test_pseudobulk_of_selected_conditions_holds_their_groups_only(toy_world) -> None:
    key = "Trametinib|5uM|CVCL_1055|plate2"
    with open_dataset(toy_world.root) as ds:
        groups = list(ds.pseudobulk([key]))
    assert [g.group for g in groups] == ["CVCL_1055|plate2"]
    u = groups[0].units
    assert set(u["key"].dropna()) == {key} and u["is_control"].sum() == 2  # two DMSO_TF wells on the plate
    T, C, tr, cr = groups[0].arms(key)
    assert T.shape[0] == 1 and C.shape[0] == 2 and tr["n_cells"].sum() == ds.summary(key).n_cells
    assert cr["n_cells"].sum() == ds.summary(key).n_control_cells


def test_shards_are_pruned_by_plate(toy_world) -> None:
    """Loading one plate's condition reads only the shards holding that plate (the scan indexes files)."""
    with open_dataset(toy_world.root) as ds:
        ds.validate()
        sel = ds.index.selection("Trametinib|0.05uM|CVCL_0023|plate1")
        files = ds._files_for(sel)
    plates = pd.Series([p for f in files for p in pd.read_parquet(f, columns=["plate"])["plate"]])
    assert set(plates) >= {"plate1"} and len(files) < 3
