"""Graphs for LangGraph Studio (`langgraph dev` reads them through `langgraph.json` at the repo root).

- `pipeline`: the explanation pipeline's own graph (retrieve → propose → verify → revise → finalize), to inspect.
  Its nodes take their per-run inputs from `config["configurable"]["run"]`, which only `Pipeline.astream` builds,
  so run conditions through `explain` below.
- `explain`: one condition key in (`{"condition": "Drug|0.5uM|CVCL_0023|plate1"}`), the pipeline's progress out
  on the custom stream, the trace id, status and answer in the state.
- `chat`: the chat graph (parse → run → respond); Studio supplies the thread persistence.

Configuration comes from `Settings` (MECHCELL_STORE_PATH, MECHCELL_KB_PATH, ...), as everywhere else. The objects
are built once per process and kept (they hold the KB and the store connection).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from mechcell.agents.chat import ChatSession
    from mechcell.agents.pipeline import Pipeline

__all__ = ["chat_graph", "explain_graph", "pipeline_graph"]


@functools.cache
def _pipeline() -> Pipeline:
    from mechcell.agents.pipeline import Pipeline
    from mechcell.config import Settings

    settings = Settings()
    store = Path(settings.store_path)
    return Pipeline(
        kb=settings.kb_path, store=store if store.is_file() else None, settings=settings, save=store.is_file()
    )


@functools.cache
def _session() -> ChatSession:
    from mechcell.agents.chat import ChatSession
    from mechcell.config import Settings

    settings = Settings()
    return ChatSession(store=settings.store_path, kb=settings.kb_path, settings=settings)


def pipeline_graph(config: Any = None) -> Any:
    """The pipeline's compiled LangGraph graph (for inspection; see the module docstring)."""
    return _pipeline()._graph  # the compiled graph has no public accessor yet


class ExplainState(TypedDict, total=False):
    condition: str
    trace_id: str
    status: str
    answer: str


def explain_graph(config: Any = None) -> Any:
    """A one-node graph that runs the pipeline on `condition` and streams its events."""
    from langgraph.config import get_stream_writer
    from langgraph.graph import END, START, StateGraph

    async def explain(state: ExplainState) -> dict[str, Any]:
        write = get_stream_writer()
        trace = None
        async for ev in _pipeline().astream(state["condition"]):
            write(ev.model_dump(mode="json", exclude={"trace"}))
            if ev.trace is not None:
                trace = ev.trace
        assert trace is not None
        return {"trace_id": trace.id, "status": trace.status, "answer": trace.answer}

    g = StateGraph(ExplainState)
    g.add_node("explain", explain)
    g.add_edge(START, "explain")
    g.add_edge("explain", END)
    return g.compile()


def chat_graph(config: Any = None) -> Any:
    """The chat graph, compiled without a checkpointer (LangGraph's server brings its own)."""
    return _session()._build().compile()  # the uncompiled graph has no public accessor yet
