"""The Trace schema and the DuckDB TraceStore: ids from content, JSON round trips, put/get/list on a real file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import mechcell
from mechcell.datasets.schemas import Condition
from mechcell.datasets.store import Store
from mechcell.datasets.traces import (
    Attempt,
    Provenance,
    Trace,
    TraceConfig,
    TraceMetrics,
    TraceStore,
    code_version,
    trace_id,
)
from mechcell.errors import InputError, NotFoundError
from mechcell.graphs import parse_text

GRAPH = """<think>t</think><answer>a</answer>
<explain>
set_context(id="n0", cell_type="A549")
binds_to(id="n1", actor="Trametinib", target="MAP2K1")
modulates_molecule_activity(id="n2", target="MAP2K1", direction="down")
regulates_expression(id="n3", regulator="MAP2K1", gene_list=["DUSP6", "SPRY4"], direction="down")
</explain>
<dag>
edge("n1", "n2", relation="causal")
edge("n2", "n3", relation="causal")
</dag>"""


def _config(**kw: object) -> TraceConfig:
    base: dict = {"proposer": "local", "kb_version": "kb1", "verifier_settings": {"alpha": 0.05}, "seed": 0}
    base.update(kw)
    return TraceConfig(**base)


def _trace(key: str = "Trametinib|0.5uM|CVCL_0023|plate2", *, seed: int = 0, created: datetime | None = None) -> Trace:
    cond = Condition.from_key(key)
    cfg = _config(seed=seed)
    graph = parse_text(GRAPH).graph
    assert graph is not None
    att = Attempt(
        index=0,
        round=0,
        proposer="local",
        text=GRAPH,
        graph=graph,
        graph_hash=graph.content_hash(),
        report={"reward": 0.8, "accepted": True, "verdicts": []},
        reward=0.8,
        accepted=True,
        counts={"supported": 4},
    )
    return Trace(
        id=trace_id(cond.key, cfg),
        condition=cond,
        config=cfg,
        status="accepted",
        attempts=[att],
        final_attempt=0,
        final_graph=graph,
        final_text=GRAPH,
        metrics=TraceMetrics(reward=0.8, accepted=True, n_attempts=1),
        provenance=Provenance(proposer="local", kb_version="kb1", code_version=code_version(), seed=seed),
        created_at=created or datetime.now(UTC),
    )


def test_trace_id_is_a_hash_of_condition_and_config() -> None:
    key = "Trametinib|0.5uM|CVCL_0023|plate2"
    base = trace_id(key, _config())
    assert base == trace_id(key, _config()) and base.startswith("tr_")
    # every configuration field the brief names changes the id, and so does the condition
    variants = [
        _config(proposer="llm"),
        _config(model="m"),
        _config(prompt_version="report/v1@abc"),
        _config(kb_version="kb2"),
        _config(verifier_settings={"alpha": 0.01}),
        _config(seed=1),
    ]
    ids = {trace_id(key, c) for c in variants} | {trace_id("Trametinib|5uM|CVCL_0023|plate3", _config())}
    assert base not in ids and len(ids) == len(variants) + 1


def test_trace_json_round_trip_keeps_graph_and_attempts() -> None:
    t = _trace()
    back = Trace.model_validate_json(t.model_dump_json())
    assert back == t
    assert back.final is not None and back.final.graph is not None
    assert back.final_graph is not None and back.final_graph.content_hash() == t.final_graph.content_hash()  # type: ignore[union-attr]
    assert back.final_report == {"reward": 0.8, "accepted": True, "verdicts": []}


def test_code_version_names_the_package_version() -> None:
    assert code_version().startswith(mechcell.__version__)


def test_store_put_get_list_on_a_real_file(tmp_path: Path) -> None:
    path = tmp_path / "mechcell.duckdb"
    now = datetime.now(UTC)
    a = _trace(created=now - timedelta(minutes=2))
    b = _trace(seed=1, created=now - timedelta(minutes=1))
    c = _trace("Gefitinib|1uM|CVCL_0023|plate1", created=now)
    with TraceStore(path) as ts:
        assert ts.count() == 0 and ts.list() == []
        ts.put(a)
        ts.put_many([b, c])
        assert ts.count() == 3
        assert ts.get(a.id) == a
        assert ts.get(a.id[:10]) == a  # unique prefix
        rows = ts.list(condition_key=a.condition.key)
        assert [r.id for r in rows] == [b.id, a.id]  # newest first
        assert ts.latest(a.condition.key) == b
        assert ts.latest("nothing|-|-|-") is None
        assert ts.condition_keys() == sorted({a.condition.key, c.condition.key})
        # putting the same id again replaces it (one row per id)
        changed = a.model_copy(update={"status": "unverified"})
        ts.put(changed)
        assert ts.count() == 3 and ts.get(a.id).status == "unverified"
        with pytest.raises(NotFoundError):
            ts.get("tr_doesnotexist")
        assert ts.delete(c.id) and not ts.delete(c.id)
    # reopening the file finds what was written, and the project store still opens and migrates cleanly
    with Store(path) as st:
        assert "traces" in st.tables() and "datasets" in st.tables()
        assert TraceStore(st).get(b.id) == b


def test_read_only_store_reads_but_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    t = _trace()
    with TraceStore(path) as ts:
        ts.put(t)
    with TraceStore(path, read_only=True) as ro:
        assert ro.get(t.id) == t
        with pytest.raises(InputError, match="read-only"):
            ro.put(t)


def test_read_only_store_without_traces_table_lists_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    Store(path).close()  # a project store created before any trace was written
    with TraceStore(path, read_only=True) as ro:
        assert ro.list() == [] and ro.count() == 0 and ro.find("tr_x") is None
