"""`mechcell demo` end to end on a small world: world → store → signatures → pipeline → traces → report, and a
rerun that reuses what is there. (The full default demo is timed by benchmarks/bench_pipeline.py, not here.)"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mechcell.agents.demo import DemoConfig, choose_conditions, run_demo
from mechcell.cli import app
from mechcell.config import Settings
from mechcell.datasets.synthetic import load_truth
from mechcell.datasets.traces import TraceStore

SMALL = {"n_drugs": 4, "n_cell_lines": 2, "doses": [0.5, 5.0], "n_genes": 400, "cells_per_condition": 120}


def test_demo_runs_and_reruns(tmp_path: Path) -> None:
    store = tmp_path / "mechcell.duckdb"
    cfg = DemoConfig(out_dir=tmp_path / "demo_out", store_path=store, n_conditions=4, world=SMALL, n_permutations=200)
    stages: list[str] = []
    res = run_demo(cfg, settings=Settings(store_path=store), on_stage=stages.append)
    assert len(res.rows) == 4 and not res.world_reused
    assert any("generating" in s for s in stages) and any("explaining 4/4" in s for s in stages)
    truth = load_truth(res.world_dir)
    assert [r.key for r in res.rows] == choose_conditions(truth, 4)
    for r in res.rows:
        assert r.active == truth.condition(r.key).active
        assert r.recovered is not None and r.mechanism
    # every trace is in the store, and the report with its plots is written
    with TraceStore(store, read_only=True) as ts:
        ids = {r.trace_id for r in res.rows}
        assert {ts.get(i).id for i in ids} == ids  # type: ignore[arg-type]
    md = Path(res.report_path)
    assert md.is_file() and (md.parent / "demo_pr.png").is_file() and (md.parent / "demo_verdicts.png").is_file()
    assert all(f"`{r.key.replace('|', chr(92) + '|')}`" in md.read_text() for r in res.rows)
    # a rerun reuses the world, the signatures and the traces
    again = run_demo(cfg, settings=Settings(store_path=store))
    assert again.world_reused and [r.trace_id for r in again.rows] == [r.trace_id for r in res.rows]
    assert again.summary == res.summary


def test_choose_conditions_rotates_drugs_doses_and_lines(tmp_path: Path) -> None:
    from mechcell.datasets.synthetic import SyntheticWorldConfig, generate_world

    generate_world(SyntheticWorldConfig(**SMALL, seed=2), tmp_path / "w", layout="h5ad")
    truth = load_truth(tmp_path / "w")
    keys = choose_conditions(truth, 4)
    conds = [truth.condition(k) for k in keys]
    assert len(set(keys)) == 4 and {c.drug for c in conds} == {c.drug for c in truth.conditions.values()}
    assert len({c.dose for c in conds}) == 2 and len({c.context for c in conds}) == 2
    everything = choose_conditions(truth, 100)  # more than there are: every condition once, same order first
    assert sorted(everything) == sorted(truth.conditions) and everything[:4] == keys


def test_cli_demo_json(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    r = CliRunner().invoke(
        app,
        [
            "demo",
            "--out",
            str(tmp_path / "o"),
            "--store",
            str(store),
            "--conditions",
            "3",
            "--drugs",
            "3",
            "--cell-lines",
            "1",
            "--genes",
            "300",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert len(doc["rows"]) == 3 and Path(doc["report_path"]).is_file() and doc["store_path"] == str(store)
    assert {"edge_precision", "edge_recall", "path_recovery"} <= set(doc["summary"])
    r = CliRunner().invoke(
        app,
        [
            "demo",
            "--out",
            str(tmp_path / "o"),
            "--store",
            str(store),
            "--conditions",
            "3",
            "--drugs",
            "3",
            "--cell-lines",
            "1",
            "--genes",
            "300",
        ],
    )
    assert r.exit_code == 0 and "planted" in r.stdout and "world reused" in r.stdout
