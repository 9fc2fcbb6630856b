"""The panel end to end on a small synthetic world: store, signatures, cells, DR test, obs-exp, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mechcell.cli import app
from mechcell.datasets.readers import open_dataset
from mechcell.datasets.signatures import compute_signatures
from mechcell.datasets.store import Store
from mechcell.datasets.synthetic import H5AD_FILE, SyntheticWorldConfig, Truth, generate_world, load_truth
from mechcell.verifiers.api import CellCache, verify
from mechcell.verifiers.obsexp import extrapolate

CFG = SyntheticWorldConfig(seed=5, n_drugs=3, n_cell_lines=2, doses=[0.5, 5.0], cells_per_condition=90, n_genes=500)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Truth]:
    out = tmp_path_factory.mktemp("vworld")
    generate_world(CFG, out / "world", "h5ad")
    store_path = out / "store.duckdb"
    with Store(store_path) as st, open_dataset(out / "world" / H5AD_FILE) as ds:
        compute_signatures(ds, store=st, method="welch_t")
    return out, store_path, load_truth(out / "world")


def strongest(truth: Truth) -> str:
    return max(truth.active_keys(), key=lambda k: (truth.conditions[k].effect_scale, k))


def test_planted_graph_verified_with_cells(world) -> None:
    _, store_path, truth = world
    key = strongest(truth)
    r = verify(truth.conditions[key].graph, key, kb=None, store=store_path)
    assert not r.structural and r.reward > 0.5
    dr = [v for v in r.verdicts if v.verifier == "expression-dr"]
    assert dr and all(v.p_value is not None and "unit" in v.null for v in dr)
    assert any(v.status == "supported" for v in dr)
    # obs-exp verdicts never say "supported"
    assert all(v.status != "supported" for v in r.verdicts if v.verifier == "obs-exp")


def test_cli_verify_json(world, tmp_path: Path) -> None:
    _, store_path, truth = world
    key = strongest(truth)
    f = tmp_path / "g.txt"
    f.write_text(truth.conditions[key].graph)
    res = CliRunner().invoke(
        app, ["verify", str(f), "--condition", key, "--store", str(store_path), "--json", "--no-cells"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["condition_key"] == key and doc["verdicts"]
    v = doc["verdicts"][0]
    assert {"status", "p_value", "e_value", "evidence", "claim"} <= set(v)


def test_extrapolation_is_labelled_and_wider_off_support(world) -> None:
    _, store_path, truth = world
    key = strongest(truth)
    c = truth.conditions[key]
    genes = [g.gene for g in c.down][:5] or [g.gene for g in c.up][:5]
    direction = "down" if c.down else "up"
    with Store(store_path, read_only=True) as st:
        found = st.find_condition(key)
        cells = CellCache(st, found.dataset_id, found.condition, genes)(genes)
    assert cells is not None
    Xq = np.array([[0.0] + [0.0] * 2, [8.0] + [0.0] * 2])[
        :, : 1 + sum(k in cells.covariates for k in ("S_score", "G2M_score"))
    ]
    ex = extrapolate(cells, direction, omega=0.1, X_query=Xq, omega_query=0.1, max_units=120)
    assert ex.label == "extrapolation" and ex.in_support[0] and not ex.in_support[1]
    assert (ex.upper[1] - ex.lower[1]) > (ex.upper[0] - ex.lower[0])
