"""Schema, dose parsing, condition keys, control matching and the typed errors a user sees on bad input."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mechcell.datasets import Condition, PerturbationSchema, open_dataset, parse_drugconc
from mechcell.datasets.perturbation import (
    DoseParseError,
    NoControlCellsError,
    build_condition_index,
    parse_dose,
)
from mechcell.errors import InputError, MissingColumnError


def test_parse_drugconc_tahoe_strings() -> None:
    assert parse_drugconc("[('Trametinib', 0.05, 'uM')]") == [("Trametinib", 0.05, "uM")]
    assert parse_drugconc("[('Erdafitinib ', 5, 'uM')]") == [("Erdafitinib", 5.0, "uM")]  # stray space, int dose
    assert parse_drugconc("[('DMSO_TF', 0.0, 'uM')]") == [("DMSO_TF", 0.0, "uM")]
    assert parse_drugconc("[('A', 1.0, 'uM'), ('B', 2, 'nM')]") == [("A", 1.0, "uM"), ("B", 2.0, "nM")]
    assert parse_drugconc("  [('Trametinib (DMSO_TF solvate)', 0.5, 'uM')] ") == [
        ("Trametinib (DMSO_TF solvate)", 0.5, "uM")
    ]


@pytest.mark.parametrize(
    "bad",
    [
        "Trametinib 0.05uM",
        "[]",
        "[('Trametinib', 'high', 'uM')]",
        "[('Trametinib', -1, 'uM')]",
        "[('Trametinib', 0.05)]",
        "[('x', True, 'uM')]",
    ],
)
def test_parse_drugconc_rejects_with_the_value_named(bad: str) -> None:
    with pytest.raises(DoseParseError) as e:
        parse_drugconc(bad)
    assert bad.strip()[:8] in str(e.value)


def test_parse_dose_numbers_strings_and_combinations() -> None:
    kw = {"column": "dose", "default_unit": "uM"}
    assert parse_dose(0.5, perturbation="X", **kw) == (0.5, "uM")
    assert parse_dose("5", perturbation="X", **kw) == (5.0, "uM")
    assert parse_dose(np.float32(0.05), perturbation="X", **kw)[0] == pytest.approx(0.05)
    assert parse_dose(None, perturbation="X", **kw) == (None, None)
    assert parse_dose(float("nan"), perturbation="X", **kw) == (None, None)
    assert parse_dose("[('B', 2, 'nM'), ('A', 1.0, 'uM')]", perturbation="A ", **kw) == (1.0, "uM")
    with pytest.raises(DoseParseError, match="several drugs"):
        parse_dose("[('B', 2, 'nM'), ('A', 1.0, 'uM')]", perturbation="C", **kw)
    with pytest.raises(DoseParseError, match="'conc'.*'high'"):
        parse_dose("high", perturbation="X", column="conc", default_unit=None)


def test_condition_keys_are_stable_and_invertible() -> None:
    c = Condition(perturbation="Trametinib ", dose=0.05, dose_unit="uM", context="CVCL_0023", batch="plate1")
    assert c.key == "Trametinib|0.05uM|CVCL_0023|plate1"
    assert Condition.from_key(c.key) == c
    assert Condition(perturbation="X", dose=5.0, dose_unit="uM").key == "X|5uM|-|-"


def test_tahoe_preset() -> None:
    s = PerturbationSchema.tahoe()
    assert (s.perturbation_col, s.dose_col, s.context_col, s.batch_col, s.sample_col, s.control_label) == (
        "drug",
        "drugname_drugconc",
        "cell_line",
        "plate",
        "sample",
        "DMSO_TF",
    )
    assert PerturbationSchema.tahoe(context_col="cell_line_id").context_col == "cell_line_id"
    assert set(s.roles()) == {"perturbation", "dose", "context", "batch", "sample"}


def _combos(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["raw_perturbation", "raw_dose", "raw_context", "raw_batch", "n_cells"])


def test_exact_control_matching_and_whitespace_names() -> None:
    """`Trametinib (DMSO_TF solvate)` is a treatment, `DMSO_TF ` (stray space) is the control, and
    `Erdafitinib ` / `Erdafitinib` are one drug whose cells pool into one condition."""
    combos = _combos(
        [
            ("DMSO_TF ", "[('DMSO_TF', 0.0, 'uM')]", "L1", "p1", 10),
            ("Trametinib (DMSO_TF solvate)", "[('Trametinib (DMSO_TF solvate)', 0.05, 'uM')]", "L1", "p1", 7),
            ("Erdafitinib ", "[('Erdafitinib ', 0.05, 'uM')]", "L1", "p1", 3),
            ("Erdafitinib", "[('Erdafitinib', 0.05, 'uM')]", "L1", "p1", 4),
        ]
    )
    idx = build_condition_index(PerturbationSchema.tahoe(), combos, where="t")
    keys = {s.key: s for s in idx.summaries}
    assert set(keys) == {"Trametinib (DMSO_TF solvate)|0.05uM|L1|p1", "Erdafitinib|0.05uM|L1|p1"}
    assert keys["Erdafitinib|0.05uM|L1|p1"].n_cells == 7
    assert all(s.n_control_cells == 10 for s in idx.summaries)
    assert idx.combos["is_control"].tolist() == [True, False, False, False]


def test_controls_are_plate_and_context_matched() -> None:
    combos = _combos(
        [
            ("DMSO_TF", None, "L1", "p1", 10),
            ("DMSO_TF", None, "L2", "p1", 20),
            ("DMSO_TF", None, "L1", "p2", 30),
            ("A", 1.0, "L1", "p1", 5),
            ("A", 1.0, "L1", "p2", 6),
            ("A", 1.0, "L2", "p1", 7),
        ]
    )
    idx = build_condition_index(PerturbationSchema.tahoe(), combos, where="t")
    n = {s.key: s.n_control_cells for s in idx.summaries}
    assert n == {"A|1uM|L1|p1": 10, "A|1uM|L1|p2": 30, "A|1uM|L2|p1": 20}
    sel = idx.selection("A|1uM|L1|p2")
    assert sel.loc[~sel["treated"], "n_cells"].tolist() == [30]


def test_no_control_cells_in_a_batch_is_a_typed_error_naming_column_and_value() -> None:
    combos = _combos([("DMSO_TF", None, "L1", "p1", 10), ("A", 1.0, "L1", "p1", 5), ("A", 1.0, "L1", "p9", 5)])
    with pytest.raises(NoControlCellsError) as e:
        build_condition_index(PerturbationSchema.tahoe(), combos, where="data.h5ad obs")
    msg = str(e.value)
    assert "'p9'" in msg and "'plate'" in msg and "DMSO_TF" in msg
    # opting out keeps the condition, with zero controls; asking for its cells then fails the same way
    idx = build_condition_index(PerturbationSchema.tahoe(), combos, where="t", require_controls=False)
    assert {s.key: s.n_control_cells for s in idx.summaries}["A|1uM|L1|p9"] == 0
    with pytest.raises(NoControlCellsError, match="p9"):
        idx.selection("A|1uM|L1|p9")


def test_no_control_label_at_all_names_the_values_seen() -> None:
    combos = _combos([("DMSO", None, "L1", "p1", 10), ("A", 1.0, "L1", "p1", 5)])
    with pytest.raises(NoControlCellsError, match=r"'DMSO_TF'.*'drug'.*'DMSO'.*--control-label"):
        build_condition_index(PerturbationSchema.tahoe(), combos, where="t")


def test_unparsable_dose_names_column_and_value() -> None:
    combos = _combos([("DMSO_TF", None, "L1", "p1", 10), ("A", "lots", "L1", "p1", 5)])
    with pytest.raises(DoseParseError, match=r"'drugname_drugconc'.*'lots'"):
        build_condition_index(PerturbationSchema.tahoe(), combos, where="t")


def _adata(obs: dict[str, list]) -> ad.AnnData:
    n = len(next(iter(obs.values())))
    X = sp.csr_matrix(np.random.default_rng(0).poisson(2.0, size=(n, 5)).astype(np.float32))
    return ad.AnnData(
        X=X,
        obs=pd.DataFrame(obs, index=[f"c{i}" for i in range(n)]),
        var=pd.DataFrame(index=[f"g{i}" for i in range(5)]),
    )


def test_missing_column_error_names_column_have_list_and_flag() -> None:
    a = _adata({"perturbation": ["ctrl", "A", "A", "ctrl"], "cell_type": ["x"] * 4})
    with pytest.raises(MissingColumnError) as e:
        open_dataset(a).conditions()  # Tahoe preset expects 'drug'
    msg = str(e.value)
    assert "'drug'" in msg and "perturbation, cell_type" in msg and "--perturbation-col" in msg
    schema = PerturbationSchema(perturbation_col="perturbation", control_label="ctrl", batch_col="plate")
    with pytest.raises(MissingColumnError, match=r"'plate'.*--batch-col"):
        open_dataset(a, schema).conditions()


def test_a_dataset_with_only_perturbation_and_control() -> None:
    """No dose, context or batch columns: every perturbation is compared with all control cells."""
    a = _adata({"perturbation": ["ctrl", "A", "A", "ctrl", "B", " A"]})
    ds = open_dataset(a, PerturbationSchema(perturbation_col="perturbation", control_label="ctrl"))
    s = {x.key: (x.n_cells, x.n_control_cells) for x in ds.summaries()}
    assert s == {"A|-|-|-": (3, 2), "B|-|-|-": (1, 2)}
    cells = ds.load_cells("A|-|-|-")
    assert (cells.n_treated, cells.n_control) == (3, 2)


def test_negative_counts_are_rejected() -> None:
    a = _adata({"drug": ["DMSO_TF", "A"]})
    a.X = np.array([[1.0, -0.5, 0, 0, 0], [0, 1, 0, 0, 2]])
    with pytest.raises(InputError, match="negative"):
        open_dataset(a, PerturbationSchema(perturbation_col="drug", control_label="DMSO_TF"))
