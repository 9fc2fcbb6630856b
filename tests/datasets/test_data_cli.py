"""`mechcell data ingest / datasets / conditions / signature / signatures`: --store, --json (exactly one JSON
document on stdout), and one-line typed errors (exit 2) on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from typer.testing import CliRunner

from mechcell.cli import app

KEY = "Trametinib|0.05uM|CVCL_0023|plate1"


def _run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_ingest_conditions_signature_json(toy_world, tmp_path: Path) -> None:
    store = str(tmp_path / "p.duckdb")
    code, out, err = _run("data", "ingest", str(toy_world.root), "--store", store, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["layout"] == "tahoe" and doc["n_conditions"] == 12 and doc["n_cells"] == len(toy_world.obs)
    assert doc["schema"]["control_label"] == "DMSO_TF" and doc["conditions_without_controls"] == 0

    code, out, _ = _run("data", "conditions", "--store", store, "--perturbation", "Trametinib", "--json")
    conds = json.loads(out)["conditions"]
    assert code == 0 and len(conds) == 4 and {c["batch"] for c in conds} == {"plate1", "plate2"}
    assert all(c["n_control_cells"] > 0 and c["dataset_id"] == doc["dataset_id"] for c in conds)

    code, out, err = _run("data", "signature", KEY, "--store", store, "--json")
    assert code == 0, err
    sig = json.loads(out)
    assert sig["condition"] == KEY and sig["method"] == "wilcoxon" and sig["n_genes"] == len(sig["genes"])
    g0 = sig["genes"][0]
    assert set(g0) == {"gene", "log2fc", "pvalue", "padj", "method"} and g0["method"] == "wilcoxon"
    ps = [g["pvalue"] for g in sig["genes"]]
    assert ps == sorted(ps)  # most significant first
    assert g0["gene"] in toy_world.up[("Trametinib", "CVCL_0023")] + toy_world.down[("Trametinib", "CVCL_0023")]

    # pseudobulk with one well per arm has no p-values: JSON null, never NaN
    code, out, _ = _run(
        "data", "signature", KEY, "--store", store, "--method", "pseudobulk_lfc", "--top", "5", "--json"
    )
    pb = json.loads(out)
    assert code == 0 and len(pb["genes"]) == 5 and all(g["pvalue"] is None for g in pb["genes"])
    # the stored signature is served without recomputation; the most recent method is the default
    code, out, _ = _run("data", "signature", KEY, "--store", store, "--json", "--top", "3")
    assert json.loads(out)["method"] == "pseudobulk_lfc"

    code, out, err = _run(
        "data", "signatures", "--store", store, "--method", "welch_t", "--json", "--param", "min_cells=2"
    )
    rep = json.loads(out)
    assert code == 0 and rep["n_ok"] == 12 and rep["failed"] == [] and rep["params"]["min_cells"] == 2


def test_ingest_minimal_schema_and_typed_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    obs = pd.DataFrame({"perturbation": ["ctrl"] * 30 + ["KO1"] * 30}, index=[f"c{i}" for i in range(60)])
    a = ad.AnnData(
        X=sp.csr_matrix(rng.poisson(3, size=(60, 20)).astype(np.float32)),
        obs=obs,
        var=pd.DataFrame(index=[f"g{i}" for i in range(20)]),
    )
    h5 = tmp_path / "perturb.h5ad"
    a.write_h5ad(h5)
    store = str(tmp_path / "p.duckdb")
    # Tahoe names are the default: the error names the missing column, what the file has, and the flag
    code, out, err = _run("data", "ingest", str(h5), "--store", store, "--json")
    assert code == 2 and out == ""
    assert "MissingColumnError" in err and "'drug'" in err and "perturbation" in err and "--perturbation-col" in err
    code, _, err = _run("data", "ingest", str(h5), "--store", store, "--perturbation-col", "perturbation")
    assert code == 2 and "--control-label" in err
    code, _, err = _run(
        "data", "ingest", str(h5), "--store", store, "--perturbation-col", "perturbation", "--control-label", "DMSO"
    )
    assert code == 2 and "NoControlCellsError" in err and "'ctrl'" in err
    code, out, err = _run(
        "data",
        "ingest",
        str(h5),
        "--store",
        store,
        "--perturbation-col",
        "perturbation",
        "--control-label",
        "ctrl",
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["n_conditions"] == 1
    code, out, _ = _run("data", "signature", "KO1|-|-|-", "--store", store, "--method", "welch_t", "--json")
    assert code == 0 and json.loads(out)["n_control"] == 30
    code, _, err = _run("data", "signature", "KO2|-|-|-", "--store", store)
    assert code == 2 and "NotFoundError" in err
    code, _, err = _run("data", "conditions", "--store", str(tmp_path / "none.duckdb"))
    assert code == 2 and "does not exist" in err


def test_json_stdout_is_one_document_in_a_real_process(toy_world, tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "mechcell"
    store = str(tmp_path / "p.duckdb")
    cmds = [
        ["data", "ingest", str(toy_world.h5ad), "--store", store, "--json"],
        ["data", "signature", KEY, "--store", store, "--json", "--top", "2"],
    ]
    docs = []
    for cmd in cmds:
        p = subprocess.run([str(exe), *cmd], capture_output=True, text=True, check=False, timeout=300)
        assert p.returncode == 0, p.stderr
        docs.append(json.loads(p.stdout))  # exactly one JSON document (progress went to stderr)
    assert docs[0]["layout"] == "h5ad" and docs[0]["n_conditions"] == 12
    assert len(docs[1]["genes"]) == 2
    code, out, _ = _run("data", "datasets", "--store", store, "--json")
    assert code == 0 and json.loads(out)["datasets"][0]["id"] == docs[0]["dataset_id"]


def test_ingest_a_precomputed_de_table(tmp_path: Path) -> None:
    rows = [
        {
            "gene_name": g,
            "log2FoldChange": lfc,
            "lfcSE": 0.4,
            "pvalue": p,
            "padj": p * 3,
            "drug": "Trametinib",
            "concentration": 0.05,
            "Cell_ID_Cellosaur": "CVCL_0023",
            "plate": "plate1",
            "n_cells_trt": 900,
            "n_cells_ctrl": 2100,
        }
        for g, lfc, p in (("DUSP6", -2.5, 1e-9), ("SPRY4", -1.9, 1e-6), ("GAPDH", 0.01, 0.9))
    ]
    path = tmp_path / "de.parquet"
    pd.DataFrame(rows).to_parquet(path)
    store = str(tmp_path / "p.duckdb")
    code, out, err = _run("data", "ingest", str(path), "--store", store, "--json")
    assert code == 0, err
    assert json.loads(out)["layout"] == "de" and json.loads(out)["n_conditions"] == 1
    code, out, err = _run("data", "signature", KEY, "--store", store, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["method"] == "precomputed" and (doc["n_treated"], doc["n_control"]) == (900, 2100)
    assert [g["gene"] for g in doc["genes"]] == ["DUSP6", "SPRY4", "GAPDH"]
    assert doc["genes"][0]["log2fc"] == -2.5
