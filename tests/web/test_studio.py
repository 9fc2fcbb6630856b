"""langgraph.json exposes the pipeline and chat graphs the way `langgraph dev` loads them: each entry is
`./file.py:factory`, imported from its file path, called, and must give a compiled graph."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load(ref: str) -> Any:
    path, attr = ref.split(":")
    file = (ROOT / path).resolve()
    assert file.is_file() and ROOT in file.parents, ref
    spec = importlib.util.spec_from_file_location(f"studio_{attr}", file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attr)


@pytest.fixture
def graphs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    # No project store: the graphs work from the starter KB alone (as on a fresh machine).
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MECHCELL_STORE_PATH", str(tmp_path / "absent.duckdb"))
    doc = json.loads((ROOT / "langgraph.json").read_text())
    assert doc["dependencies"] == ["."]
    return {name: load(ref)() for name, ref in doc["graphs"].items()}


def test_langgraph_json_exposes_the_pipeline_and_chat_graphs(graphs: dict[str, Any]) -> None:
    assert {"pipeline", "chat", "explain"} <= set(graphs)
    nodes = {name: set(g.get_graph().nodes) for name, g in graphs.items()}
    assert {"retrieve", "propose", "verify", "revise", "finalize"} <= nodes["pipeline"]
    assert {"parse", "run", "respond"} <= nodes["chat"]
    # the chat graph runs as Studio would run it (Studio brings the checkpointer)
    out = asyncio.run(graphs["chat"].ainvoke({"question": "help", "reused": False}))
    assert out["parsed"]["intent"] == "help" and "why is n3 supported" in out["answer"]
    # and a condition runs through `explain`, its events on the custom stream
    events: list[Any] = []

    async def run() -> dict[str, Any]:
        final: dict[str, Any] = {}
        async for mode, chunk in graphs["explain"].astream(
            {"condition": "Trametinib|0.5uM|-|-"}, stream_mode=["custom", "values"]
        ):
            if mode == "custom":
                events.append(chunk)
            else:
                final = chunk
        return final

    final = asyncio.run(run())
    assert final["trace_id"].startswith("tr_") and final["status"] in ("accepted", "unverified", "abstained")
    assert events[0]["type"] == "run_started" and events[-1]["type"] == "trace"
