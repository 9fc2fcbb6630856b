"""The work behind the web API: one `ChatSession` per server, its store connection, threads and streamed turns.

Why one session: it owns the project store's DuckDB connection (one writer per file) and the loaded KB, so every
request goes through it; store reads take the pipeline's lock, and chat turns run one at a time (the local
proposer and the verifiers are CPU-bound Python — queueing is fairer than interleaving).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from mechcell.errors import MechcellError, NotFoundError
from mechcell.web.security import check_thread_id, check_trace_id
from mechcell.web.views import TraceView, trace_view

if TYPE_CHECKING:
    from mechcell.agents.chat import ChatSession
    from mechcell.agents.pipeline import PipelineConfig
    from mechcell.config import Settings
    from mechcell.datasets.traces import Trace

__all__ = ["ConditionOut", "ThreadDetail", "ThreadSummary", "WebBackend", "sse"]

log = logging.getLogger("mechcell.web")
T = TypeVar("T")


class ConditionOut(BaseModel):
    """A stored condition, with its newest trace when there is one."""

    model_config = ConfigDict(frozen=True)

    key: str
    perturbation: str
    dose: float | None = None
    dose_unit: str | None = None
    context: str | None = None
    context_name: str | None = None
    batch: str | None = None
    trace_id: str | None = None
    trace_status: str | None = None


class ThreadSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    title: str = Field(description="the thread's first question (plain text: the page escapes it)")
    updated_at: str | None = None
    n_messages: int = 0
    condition_key: str | None = None
    trace_id: str | None = None


class ThreadDetail(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    messages: list[dict[str, str]] = Field(default_factory=list)
    condition_key: str | None = None
    trace_id: str | None = None


def _clean(x: Any) -> Any:
    """JSON-safe: non-finite floats become null (JSON has no NaN)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, BaseModel):
        return _clean(x.model_dump(mode="json"))
    if isinstance(x, (Path, datetime)):
        return str(x)
    return x


def sse(event: str, data: Any) -> bytes:
    """One server-sent event: `event: <name>` and one `data:` line of JSON."""
    return f"event: {event}\ndata: {json.dumps(_clean(data), allow_nan=False)}\n\n".encode()


class WebBackend:
    """Store, traces, threads and chat turns for the web API (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        config: PipelineConfig | None = None,
        proposer: str | None = None,
        checkpoint_path: Path | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.proposer = proposer
        self.checkpoint_path = checkpoint_path
        self._session: ChatSession | None = None
        self._turn = asyncio.Lock()
        self._known_threads: set[str] = set()
        # parsed traces by id (ids are content hashes: the same id is the same run); an answer, its verdict
        # replay and the page's view request read the same ~100 kB document
        self._traces: OrderedDict[str, Trace] = OrderedDict()
        self.started = time.time()

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        """Load the KB and open the store (blocking: call it from a thread at start-up)."""
        from mechcell.agents.chat import ChatSession

        if self._session is None:
            self._session = ChatSession(
                store=self.settings.store_path,
                kb=self.settings.kb_path,
                settings=self.settings,
                checkpoint_path=self.checkpoint_path,
                proposer=self.proposer,
                config=self.config,
            )

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    @property
    def session(self) -> ChatSession:
        if self._session is None:
            self.open()
        assert self._session is not None
        return self._session

    def _with_store(self, fn: Callable[[Any], T], default: T) -> T:
        """Run `fn(store)` under the session's store lock (one DuckDB connection for the whole server)."""
        return self.session.with_store(fn, default)

    # ------------------------------------------------------------------ reads
    def health(self) -> dict[str, Any]:
        import mechcell

        s = self.session
        traces = s.pipeline.traces
        n_traces = self._with_store(lambda _st: traces.count() if traces is not None else 0, 0)
        return {
            "status": "ok",
            "version": mechcell.__version__,
            "store": str(s.store_path),
            "store_exists": s.pipeline.store is not None,
            "conditions": len(s.conditions()),
            "traces": n_traces,
            "kb_version": s.kb.version,
            "proposer": s.pipeline.proposer.name,
            "auth": self.settings.api_token is not None,
            "uptime_s": round(time.time() - self.started, 1),
        }

    def conditions(self, query: str = "", limit: int = 50) -> list[ConditionOut]:
        """Stored conditions whose key, drug or cell line contains every word of `query` (case-insensitive)."""
        words = [w for w in query.casefold().split() if w]
        out: list[ConditionOut] = []
        traces = self.session.pipeline.traces
        latest: dict[str, tuple[str, str]] = {}
        if traces is not None:
            for t in self._with_store(lambda _st: traces.list(), []):
                latest.setdefault(t.condition_key, (t.id, t.status))
        for c in self.session.conditions():
            hay = " ".join(str(x) for x in (c.key, c.perturbation, c.context, c.context_name) if x).casefold()
            if all(w in hay for w in words):
                tid, status = latest.get(c.key, (None, None))
                out.append(
                    ConditionOut(
                        key=c.key,
                        perturbation=c.perturbation,
                        dose=c.dose,
                        dose_unit=c.dose_unit,
                        context=c.context,
                        context_name=c.context_name,
                        batch=c.batch,
                        trace_id=tid,
                        trace_status=status,
                    )
                )
        out.sort(key=lambda c: (c.trace_id is None, c.key))
        return out[:limit]

    def trace(self, trace_id: str) -> Trace:
        check_trace_id(trace_id)
        s = self.session
        found = s.remembered(trace_id)  # traces a store-less session made
        if found is not None:
            return found
        if trace_id in self._traces:
            self._traces.move_to_end(trace_id)
            return self._traces[trace_id]
        traces = s.pipeline.traces
        if traces is None:
            raise NotFoundError(f"trace {trace_id!r}: no project store at {s.store_path}")
        trace: Trace = self._with_store(lambda _st: traces.get(trace_id), None)  # type: ignore[assignment]
        self._traces[trace_id] = trace
        while len(self._traces) > 32:
            self._traces.popitem(last=False)
        return trace

    def view(self, trace_id: str, n_genes: int = 10) -> TraceView:
        trace = self.trace(trace_id)

        def sig(st: Any) -> Any:
            try:
                return st.signature(trace.condition.key, trace.signature_method, dataset_id=trace.dataset_id)
            except MechcellError:
                return None

        signature = self._with_store(sig, None) if trace.signature_method is not None else None
        return trace_view(trace, signature, n_genes=n_genes)

    # ------------------------------------------------------------------ threads
    def new_thread(self) -> str:
        tid = "th_" + secrets.token_hex(8)
        self._known_threads.add(tid)
        return tid

    async def _saver_do(self, fn: Callable[[Any], Any]) -> Any:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        path = self.session.checkpoint_path
        if not path.is_file():
            return None
        async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
            return await fn(saver)

    async def threads(self, limit: int = 50) -> list[ThreadSummary]:
        """Threads in the checkpointer, newest first (title = first question)."""

        async def collect(saver: Any) -> list[ThreadSummary]:
            await saver.setup()
            # Root checkpoints only (the pipeline nested in a turn checkpoints under its own namespace): the
            # newest per thread, straight from the checkpointer's table, then each thread's state.
            async with saver.conn.execute(
                "SELECT thread_id, max(checkpoint_id) AS last FROM checkpoints WHERE checkpoint_ns = '' "
                "GROUP BY thread_id ORDER BY last DESC LIMIT ?",
                (int(limit),),
            ) as cur:
                ids = [str(r[0]) for r in await cur.fetchall()]
            out: list[ThreadSummary] = []
            for tid in ids:
                tup = await saver.aget_tuple({"configurable": {"thread_id": tid}})
                if tup is None:
                    continue
                vals = tup.checkpoint.get("channel_values", {}) or {}
                msgs = vals.get("messages") or []
                first = next((str(m.get("content", "")) for m in msgs if m.get("role") == "user"), "")
                out.append(
                    ThreadSummary(
                        id=tid,
                        title=(first or "(empty)")[:200],
                        updated_at=tup.checkpoint.get("ts"),
                        n_messages=len(msgs),
                        condition_key=vals.get("condition_key"),
                        trace_id=vals.get("trace_id"),
                    )
                )
            return out

        return await self._saver_do(collect) or []

    async def thread_exists(self, thread_id: str) -> bool:
        check_thread_id(thread_id)
        if thread_id in self._known_threads:
            return True

        async def has(saver: Any) -> bool:
            return await saver.aget_tuple({"configurable": {"thread_id": thread_id}}) is not None

        found = bool(await self._saver_do(has))
        if found:
            self._known_threads.add(thread_id)
        return found

    async def thread(self, thread_id: str) -> ThreadDetail:
        if not await self.thread_exists(thread_id):
            raise NotFoundError(f"thread {thread_id!r} does not exist (create one with POST /api/threads)")

        async def latest(saver: Any) -> dict[str, Any]:
            tup = await saver.aget_tuple({"configurable": {"thread_id": thread_id}})
            return (tup.checkpoint.get("channel_values", {}) or {}) if tup is not None else {}

        vals = await self._saver_do(latest) or {}
        msgs = [{"role": str(m.get("role")), "content": str(m.get("content"))} for m in vals.get("messages") or []]
        return ThreadDetail(
            id=thread_id,
            messages=msgs,
            condition_key=vals.get("condition_key"),
            trace_id=vals.get("trace_id"),
        )

    # ------------------------------------------------------------------ a chat turn, streamed
    async def stream_turn(self, thread_id: str, question: str) -> AsyncIterator[bytes]:
        """Server-sent events of one turn: start, parsed, reused, the pipeline's events (node_started, verdict,
        ...), verdict replays for a reused trace, answer, done — or error. Never raises to the client."""
        t0 = time.perf_counter()
        yield sse("start", {"thread_id": thread_id, "question": question})
        if self._turn.locked():
            yield sse("queued", {"message": "another question is being answered; waiting for it"})
        async with self._turn:
            live_verdicts = 0
            try:
                async for ev in self.session.astream(question, thread_id):
                    if ev.type == "pipeline" and ev.pipeline is not None:
                        p = ev.pipeline
                        data = {
                            "condition_key": p.condition_key,
                            "node": p.node,
                            "round": p.round,
                            "t": p.t,
                            **p.data,
                        }
                        live_verdicts += p.type == "verdict"
                        yield sse(p.type, data)
                    elif ev.type == "parsed":
                        kind = str(ev.data.get("kind", "parsed"))
                        yield sse("reused" if kind == "reused" else "parsed", ev.data)
                    elif ev.type == "error":
                        yield sse("error", {"message": str(ev.data.get("message", "the question failed"))})
                        return
                    elif ev.type == "answer" and ev.turn is not None:
                        turn = ev.turn
                        if turn.trace_id and turn.reused and not live_verdicts:
                            for data in await asyncio.to_thread(self._replayed_verdicts, turn.trace_id):
                                yield sse("verdict", data)
                        yield sse("answer", turn.model_dump(mode="json"))
            except MechcellError as exc:
                yield sse("error", {"message": f"{type(exc).__name__}: {exc}"})
                return
            except Exception:  # noqa: BLE001 — a bug: logged here, never a traceback to the page
                log.exception("chat turn failed (thread %s)", thread_id)
                yield sse("error", {"message": "internal error while answering (see the server log)"})
                return
        self._known_threads.add(thread_id)
        yield sse("done", {"seconds": time.perf_counter() - t0})

    def _replayed_verdicts(self, trace_id: str) -> list[dict[str, Any]]:
        """The stored trace's claim verdicts, as `verdict` events marked `replayed` (nothing ran this time)."""
        try:
            trace = self.trace(trace_id)
        except MechcellError:
            return []
        rep = trace.final_report or {}
        return [
            {
                "condition_key": trace.condition.key,
                "claim_id": c["claim_id"],
                "kind": c.get("kind"),
                "status": c.get("status"),
                "verifiers": c.get("verifiers", {}),
                "replayed": True,
            }
            for c in rep.get("claims", [])
        ]
