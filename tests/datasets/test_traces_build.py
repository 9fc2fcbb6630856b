"""`mechcell traces build` as a user runs it: a real subprocess over a real synthetic world in a real DuckDB store,
killed with SIGKILL mid-run and resumed — the final store must equal an uninterrupted run's.

`trace_world` (shared with test_export.py) is generated once per session under pytest's base temp directory:
4 drugs × 2 cell lines × 2 doses, 60 cells per condition, 300 genes, signatures computed by the datasets code.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from typer.testing import CliRunner

from mechcell.cli import app
from mechcell.datasets.readers import open_dataset
from mechcell.datasets.signatures import compute_signatures
from mechcell.datasets.store import Store
from mechcell.datasets.synthetic import SyntheticWorldConfig, generate_world
from mechcell.datasets.traces import TraceStore

WORLD = SyntheticWorldConfig(
    seed=3,
    n_drugs=4,
    n_cell_lines=2,
    doses=[0.5, 5.0],
    n_genes=300,
    cells_per_condition=60,
    frac_inactive=0.4,
    frac_decoy=0.25,
)
#: fast pipeline knobs for every build in these tests (part of the trace ids)
FAST = ["--candidates", "2", "--rounds", "1", "--seed", "0"]


@dataclass
class TraceWorld:
    root: Path
    store: Path
    n_conditions: int

    def copy_store(self, dest: Path, name: str = "mechcell.duckdb") -> Path:
        out = dest / name
        shutil.copy(self.store, out)
        return out


def trace_world(base: Path) -> TraceWorld:
    root = base / "traces-world"
    if not (root / "READY").is_file():
        if root.exists():
            shutil.rmtree(root)
        generate_world(WORLD, root / "world", layout="h5ad")
        with Store(root / "store.duckdb") as st:
            ds = open_dataset(root / "world" / "world.h5ad")
            did = st.register(ds)
            rep = compute_signatures(ds, None, store=st, dataset_id=did)
            assert not rep.failed, rep.failed
        (root / "READY").write_text("ok")
    with Store(root / "store.duckdb", read_only=True) as st:
        n = len(st.conditions())
    return TraceWorld(root=root, store=root / "store.duckdb", n_conditions=n)


@pytest.fixture(scope="module")
def tworld(tmp_path_factory: pytest.TempPathFactory) -> TraceWorld:
    return trace_world(tmp_path_factory.getbasetemp())


def content(store: Path) -> dict[str, dict[str, Any]]:
    """Every stored trace without what legitimately differs between runs (wall-clock times)."""
    out = {}
    with TraceStore(store, read_only=True) as ts:
        for t in ts.iter_docs():
            doc = t.model_dump(mode="json", exclude={"created_at", "timings"})
            for a in doc["attempts"]:
                a.pop("seconds")
                if a["report"] is not None:
                    a["report"].pop("seconds", None)
            out[t.id] = doc
    return out


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from mechcell.cli import main; main()", *args]


def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(tworld: TraceWorld, tmp_path: Path) -> None:
    """Null: a killed-and-resumed build differs from an uninterrupted one. Kill -9 after a few traces were
    committed, resume (with 2 worker processes, so the process executor is held to the same content), compare."""
    whole = tworld.copy_store(tmp_path, "whole.duckdb")
    r = subprocess.run(_cli("traces", "build", "--store", str(whole), *FAST, "--json"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    assert first["n_done"] + first["n_failed"] == tworld.n_conditions and first["status"] == "finished"

    crashed = tworld.copy_store(tmp_path, "crashed.duckdb")
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(
        _cli("traces", "build", "--store", str(crashed), *FAST), stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stderr is not None
    seen = 0
    deadline = time.monotonic() + 120
    while seen < 4 and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen += line.startswith("[")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert seen == 4, "the build ended before it could be killed"

    # the file is readable after the crash, with whole rows only and the run left unfinished in the ledger
    con = duckdb.connect(str(crashed), read_only=True)
    try:
        n_mid = con.execute("SELECT count(*) FROM traces").fetchone()[0]
        assert con.execute("SELECT count(*) FROM traces WHERE doc IS NULL OR length(doc) < 100").fetchone()[0] == 0
        status, n_done = con.execute("SELECT status, n_done FROM trace_runs").fetchone()
    finally:
        con.close()
    assert 4 <= n_mid < tworld.n_conditions and status == "running" and n_done == n_mid
    with TraceStore(crashed, read_only=True) as ts:
        assert all(ts.get(i).id == i for i in ts.ids())  # every stored document parses

    r = subprocess.run(
        _cli("traces", "build", "--store", str(crashed), *FAST, "--workers", "2", "--json"),
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    resumed = json.loads(r.stdout)
    assert resumed["n_skipped"] == n_mid and resumed["n_todo"] == tworld.n_conditions - n_mid

    a, b = content(whole), content(crashed)
    assert sorted(a) == sorted(b)
    assert a == b
    con = duckdb.connect(str(crashed), read_only=True)
    try:
        assert con.execute("SELECT count(*), count(DISTINCT id) FROM traces").fetchone() == (len(a), len(a))
        runs = con.execute("SELECT status FROM trace_runs ORDER BY started_at").fetchall()
    finally:
        con.close()
    assert [s for (s,) in runs] == ["running", "finished"]


def test_cli_build_filters_json_and_clean_errors(tworld: TraceWorld, tmp_path: Path) -> None:
    store = tworld.copy_store(tmp_path)
    runner = CliRunner()
    with Store(store, read_only=True) as st:
        conds = st.conditions()
    drug = sorted({c.perturbation for c in conds})[0]
    dose = sorted({c.dose for c in conds if c.dose is not None})[-1]
    want = [c for c in conds if c.perturbation == drug and c.dose == dose]
    res = runner.invoke(
        app,
        ["traces", "build", "--store", str(store), *FAST, "--drugs", drug, "--doses", str(dose), "--json"],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert doc["n_conditions"] == len(want) == doc["n_done"] + doc["n_failed"]
    with TraceStore(store, read_only=True) as ts:
        assert sorted(s.condition_key for s in ts.list()) == sorted(c.key for c in want)

    res = runner.invoke(app, ["traces", "build", "--store", str(store), "--drugs", "no-such-drug", "--json"])
    assert res.exit_code == 2 and "no condition" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["traces", "build", "--store", str(store), "--doses", "lots"])
    assert res.exit_code == 2 and "'lots'" in res.output
