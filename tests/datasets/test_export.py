"""Exports and stats of a real trace store (built by the batch runner over the synthetic world), checked against
the store itself: every row must say what the stored trace says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_traces_build import TraceWorld, trace_world
from typer.testing import CliRunner

from mechcell.agents.batch import BatchConfig, run_batch
from mechcell.cli import app
from mechcell.datasets.export import EXPORT_FORMATS, LABEL_CONVENTIONS, export_traces, trace_stats
from mechcell.datasets.store import Store
from mechcell.datasets.traces import Trace, TraceStore
from mechcell.errors import InputError
from mechcell.graphs import parse_text


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Trace]]:
    w: TraceWorld = trace_world(tmp_path_factory.getbasetemp())
    store = w.copy_store(tmp_path_factory.mktemp("export"))
    rep = run_batch(BatchConfig(n_candidates=2, max_rounds=1, seed=0), store=store)
    assert rep.n_done == w.n_conditions
    with TraceStore(store, read_only=True) as ts:
        traces = {t.id: t for t in ts.iter_docs()}
    assert any(t.metrics.accepted for t in traces.values()) and not all(t.metrics.accepted for t in traces.values())
    return store, traces


def test_parquet_and_jsonl_say_what_the_store_says(built: tuple[Path, dict[str, Trace]], tmp_path: Path) -> None:
    store, traces = built
    res = export_traces(store, tmp_path / "t.parquet", "parquet")
    rows = pq.read_table(res.path).to_pylist()
    assert res.n_rows == len(rows) == len(traces) and {r["id"] for r in rows} == set(traces)
    for r in rows:
        t = traces[r["id"]]
        assert (r["status"], r["accepted"], r["reward"]) == (t.status, t.metrics.accepted, t.metrics.reward)
        assert (r["drug"], r["cell_line_id"], r["plate"]) == (
            t.condition.perturbation,
            t.condition.context,
            t.condition.batch,
        )
        assert len(json.loads(r["attempts"])) == len(t.attempts)
        if t.final_graph is not None:
            assert parse_text(r["text"]).graph.content_hash() == t.final_graph.content_hash() == r["graph_hash"]
            statuses = [v["status"] for v in json.loads(r["verdicts"])]
            assert statuses == [c["status"] for c in t.final_report["claims"]]
        else:
            assert r["text"] is None and r["graph"] is None
    res = export_traces(store, tmp_path / "t.jsonl", "jsonl", accepted_only=True)
    lines = [json.loads(x) for x in Path(res.path).read_text().splitlines()]
    assert len(lines) == sum(t.metrics.accepted for t in traces.values()) == res.n_rows
    for d in lines:
        assert isinstance(d["graph"], dict) and isinstance(d["verdicts"], list) and d["accepted"] is True
        assert d["graph"] == traces[d["id"]].final_graph.model_dump(mode="json")


def test_hf_folder_layout_and_load(built: tuple[Path, dict[str, Trace]], tmp_path: Path) -> None:
    store, traces = built
    out = tmp_path / "hf"
    res = export_traces(store, out, "hf")
    card = (out / "README.md").read_text()
    assert card.startswith("---\nconfigs:") and "data/train-*.parquet" in card
    assert pq.read_table(next((out / "data").glob("train-*.parquet"))).num_rows == len(traces) == res.n_rows
    datasets = pytest.importorskip("datasets")
    if not hasattr(datasets, "load_dataset"):  # tests/datasets itself can shadow the name on sys.path
        pytest.skip("Hugging Face `datasets` is not installed")
    ds = datasets.load_dataset(str(out))["train"]
    assert ds.num_rows == len(traces) and set(ds["id"]) == set(traces)


def test_training_views(built: tuple[Path, dict[str, Trace]], tmp_path: Path) -> None:
    store, traces = built
    sft = pq.read_table(export_traces(store, tmp_path / "sft.parquet", "sft").path).to_pylist()
    acc = {i: t for i, t in traces.items() if t.metrics.accepted}
    assert sorted(r["id"] for r in sft) == sorted(acc)
    for r in sft:
        assert r["completion"] == acc[r["id"]].final_text and acc[r["id"]].condition.key in r["prompt"]
    rw = pq.read_table(export_traces(store, tmp_path / "rw.parquet", "rewards").path).to_pylist()
    assert len(rw) == sum(len(t.attempts) for t in traces.values())
    for r in rw:
        a = traces[r["trace_id"]].attempts[r["attempt"]]
        assert r["reward"] == (a.reward if a.reward is not None else 0.0) and r["valid"] == (a.report is not None)
        assert r["final"] == (r["attempt"] == traces[r["trace_id"]].final_attempt)
    res = export_traces(store, tmp_path / "labels.parquet", "labels")
    tab = pq.read_table(res.path)
    meta = json.loads(tab.schema.metadata[b"mechcell.labels"])
    assert {k: meta[k] for k in LABEL_CONVENTIONS} == LABEL_CONVENTIONS
    assert {LABEL_CONVENTIONS["pert_col"], LABEL_CONVENTIONS["cell_type_key"], "control_pert"} <= set(tab.column_names)
    df = tab.to_pandas()
    assert df["condition_key"].nunique() == len({t.condition.key for t in traces.values()})
    key = df["condition_key"].iloc[0]
    with Store(store, read_only=True) as st:
        sig = st.signature(key)
    sub = df[df["condition_key"] == key].set_index("gene")
    padj = np.asarray(sig.padj, dtype=np.float64)
    lfc = np.asarray(sig.log2fc, dtype=np.float64)
    de = np.isfinite(padj) & (padj < 0.05) & np.isfinite(lfc)
    assert sub.loc[sig.genes, "de"].tolist() == de.tolist()
    assert sub.loc[sig.genes, "direction"].tolist() == np.where(de, np.sign(lfc), 0).astype(int).tolist()
    with pytest.raises(InputError, match="--format"):
        export_traces(store, tmp_path / "x", "csv")
    assert set(EXPORT_FORMATS) == {"parquet", "jsonl", "hf", "sft", "rewards", "labels"}


def test_stats_and_cli(built: tuple[Path, dict[str, Trace]], tmp_path: Path) -> None:
    store, traces = built
    s = trace_stats(store)
    n_acc = sum(t.metrics.accepted for t in traces.values())
    assert s.n_traces == len(traces) and s.n_accepted == n_acc and s.acceptance_rate == n_acc / len(traces)
    fps = [t.metrics.factual_precision for t in traces.values() if t.metrics.factual_precision is not None]
    assert s.factual_precision["n"] == len(fps) and s.factual_precision["mean"] == pytest.approx(np.mean(fps))
    assert sum(s.factual_precision["histogram"]["counts"]) == len(fps) and len(s.runs) == 1
    runner = CliRunner()
    res = runner.invoke(app, ["traces", "stats", "--store", str(store), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["n_traces"] == len(traces)
    out = tmp_path / "c.jsonl"
    res = runner.invoke(
        app, ["traces", "export", "--store", str(store), "--format", "jsonl", "--out", str(out), "--json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["n_rows"] == len(out.read_text().splitlines()) == len(traces)
