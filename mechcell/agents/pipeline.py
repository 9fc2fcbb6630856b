"""The main job: retrieve → propose → verify → revise (bounded rounds) → finalize, as a LangGraph `StateGraph`.

    trace = explain("Trametinib|0.5uM|CVCL_0023|plate2", store="mechcell.duckdb")      # sync, returns a Trace
    async for event in astream_explain(key, store=...): ...                            # progress for chat / web

Why LangGraph: the loop is a small state machine whose nodes stream progress (node started / finished, every
verdict) to whoever watches — the terminal chat, the web page — through LangGraph's `custom` stream, and the same
graph serves one condition from the CLI and thousands from a batch.

Selection of the final graph, over every verified attempt (`selection_key`): accepted first, then net verified
content (supported − inconclusive − 2 × contradicted claims), then reward, then the earlier round. The loop stops
at the first round with an accepted candidate, when the rounds run out, or when the proposer
has nothing new to offer.

Determinism: the proposer, the panel (`PanelSettings.seed`) and the LLM calls (`seed`) all take the run's seed;
the trace id is a hash of the condition and the configuration, so a rerun with the same inputs finds the stored
trace (`reuse=True`) instead of recomputing it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, ConfigDict, Field

from mechcell.agents.proposers import Feedback, Proposal, ProposalContext, Proposer, graph_summary, make_proposer
from mechcell.datasets.schemas import Condition
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
from mechcell.verifiers.base import PanelSettings

if TYPE_CHECKING:
    from mechcell.config import Settings
    from mechcell.datasets.schemas import Signature
    from mechcell.datasets.store import Store
    from mechcell.knowledge import KnowledgeBase, RetrievedContext, Retriever
    from mechcell.verifiers.types import VerificationReport

__all__ = [
    "Pipeline",
    "PipelineConfig",
    "PipelineEvent",
    "astream_explain",
    "default_proposer_name",
    "explain",
    "selection_key",
]

EventType = Literal[
    "run_started", "node_started", "node_finished", "note", "candidate", "verdict", "attempt", "trace", "error"
]
NODES = ("retrieve", "propose", "verify", "revise", "finalize")


class PipelineConfig(BaseModel):
    """The pipeline's knobs (the proposer's own live on the proposer). Recorded in every trace."""

    model_config = ConfigDict(frozen=True)

    n_candidates: int = Field(3, ge=1, le=64, description="candidates per round")
    max_rounds: int = Field(2, ge=0, le=20, description="revision rounds after the first proposal")
    seed: int = 0
    context_budget: int = Field(2000, ge=100, description="tokens for the retrieved context's prompt rendering")
    use_cells: bool = Field(True, description="give the panel the condition's cells (distributional tests)")
    signature_method: str | None = Field(None, description="which stored signature (default: the newest)")
    compute_signatures: bool = Field(
        True, description="compute (and store) a missing signature when the store holds the condition's dataset"
    )
    panel: PanelSettings = Field(default_factory=PanelSettings)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> PipelineConfig:
        """Pipeline knobs from `Settings` (n_candidates, max_revise_rounds, seed, n_permutations)."""
        panel = PanelSettings(n_permutations=settings.n_permutations, seed=settings.seed)
        base: dict[str, Any] = {
            "n_candidates": settings.n_candidates,
            "max_rounds": settings.max_revise_rounds,
            "seed": settings.seed,
            "panel": panel,
        }
        base.update({k: v for k, v in overrides.items() if v is not None})
        if "seed" in overrides and overrides["seed"] is not None and "panel" not in overrides:
            base["panel"] = base["panel"].model_copy(update={"seed": overrides["seed"]})
        return cls(**base)


class PipelineEvent(BaseModel):
    """One progress event. `t` is seconds since the run started; `trace` is set on the final `trace` event."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    type: EventType
    condition_key: str
    node: str | None = None
    round: int | None = None
    t: float = 0.0
    data: dict[str, Any] = Field(default_factory=dict)
    trace: Trace | None = None

    def line(self) -> str:
        """A one-line rendering for logs and the terminal."""
        d = self.data
        if self.type == "node_started":
            return f"[{self.t:6.2f}s] {self.node} …"
        if self.type == "node_finished":
            return f"[{self.t:6.2f}s] {self.node} done ({d.get('seconds', 0):.2f}s)"
        if self.type == "verdict":
            return f"[{self.t:6.2f}s]   {d.get('claim_id')}: {d.get('status')} ({d.get('kind')})"
        if self.type == "attempt":
            return (
                f"[{self.t:6.2f}s] attempt {d.get('index')}: reward {d.get('reward')} "
                f"accepted={d.get('accepted')} — {d.get('summary', '')}"
            )
        if self.type == "trace":
            return f"[{self.t:6.2f}s] trace {d.get('id')} ({d.get('status')}{', reused' if d.get('reused') else ''})"
        return f"[{self.t:6.2f}s] {self.type}: {d}"


def selection_key(attempt: Attempt) -> tuple:
    """Order attempts: accepted first; then net verified content — supported minus inconclusive minus twice the
    contradicted claims (a branch is worth adding when it brings more verified than unverified claims); then
    reward; then the earlier round and candidate."""
    c = attempt.counts
    net = c.get("supported", 0) - c.get("inconclusive", 0) - 2 * c.get("contradicted", 0)
    return (attempt.accepted, net, round(attempt.reward or 0.0, 4), -attempt.round, -attempt.candidate)


def default_proposer_name(settings: Settings | None) -> str:
    """`llm` when an endpoint is configured, else `local` (the pipeline always runs offline)."""
    return "llm" if settings is not None and settings.llm_configured else "local"


class _State(TypedDict, total=False):
    """The graph's state (LangGraph resolves these hints at compile time: only module-level names)."""

    round: int
    pending: list[Proposal]
    attempts: list[Attempt]
    proposals: list[Proposal]
    reports: list[Any]  # VerificationReport | None, aligned with attempts
    exhausted: bool
    trace: Trace


class _Run:
    """Per-condition inputs the graph's nodes share (not part of the LangGraph state: they are not data)."""

    def __init__(
        self,
        condition: Condition,
        dataset_id: str | None,
        signature: Signature | None,
        config: PipelineConfig,
        tconfig: TraceConfig,
        tid: str,
        notes: list[str],
    ) -> None:
        self.condition = condition
        self.dataset_id = dataset_id
        self.signature = signature
        self.config = config
        self.tconfig = tconfig
        self.trace_id = tid
        self.notes = notes
        self.t0 = time.perf_counter()
        self.timings: dict[str, float] = {}
        self.retrieved: RetrievedContext | None = None
        self.pctx: ProposalContext | None = None
        self.cells: Any = None
        self.doses: Any = None  # DoseSeries: the drug's other doses in this line (dose pooling)


class Pipeline:
    """The explanation pipeline for one KB, one store and one proposer; reuse it for many conditions.

    store: a `Store`, a `TraceStore`, a path to the project DuckDB file, or None (no data: the proposer works from
    the KB alone and expression claims are uncheckable). With `save=True` traces are written to the store.
    """

    def __init__(
        self,
        *,
        kb: KnowledgeBase | str | Path | None = None,
        store: Store | TraceStore | str | Path | None = None,
        proposer: Proposer | str | None = None,
        settings: Settings | None = None,
        config: PipelineConfig | None = None,
        save: bool = True,
        retriever: Retriever | None = None,
    ) -> None:
        from mechcell.config import Settings
        from mechcell.knowledge import KnowledgeBase, Retriever, load_kb

        self.settings = settings or Settings()
        self.kb = kb if isinstance(kb, KnowledgeBase) else load_kb(kb, settings=self.settings)
        self.retriever = retriever or Retriever(self.kb)
        self.config = config or PipelineConfig.from_settings(self.settings)
        if proposer is None:
            proposer = default_proposer_name(self.settings)
        self.proposer: Proposer = (
            make_proposer(proposer, settings=self.settings) if isinstance(proposer, str) else proposer
        )
        self.save = save
        self._lock = threading.Lock()  # one DuckDB connection: one user at a time
        self.traces: TraceStore | None = None
        self.store: Store | None = None
        self._own_store = False
        self._open_store(store)
        self._graph = self._build()

    # ------------------------------------------------------------------ plumbing
    def _open_store(self, store: Store | TraceStore | str | Path | None) -> None:
        from mechcell.datasets.store import Store

        if store is None:
            return
        if isinstance(store, TraceStore):
            self.traces, self.store = store, store.store
        elif isinstance(store, Store):
            self.store = store
        else:
            p = Path(store)
            if not self.save and not p.is_file():
                return  # nothing to read and nothing to write
            self.store = Store(p, read_only=not self.save)
            self._own_store = True
        if self.traces is None:
            self.traces = TraceStore(self.store)

    @property
    def graph(self) -> Any:
        """The compiled LangGraph (nodes read their per-run inputs from `config["configurable"]["run"]`, which
        `astream` builds: run conditions through `astream` / `run`)."""
        return self._graph

    @property
    def lock(self) -> threading.Lock:
        """The lock around the store's DuckDB connection: hold it to use `store` / `traces` from another task."""
        return self._lock

    def close(self) -> None:
        if self._own_store and self.store is not None:
            self.store.close()
        self.store = None
        self.traces = None

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def trace_config(
        self, dataset_id: str | None, config: PipelineConfig | None = None, signature: str | None = None
    ) -> TraceConfig:
        """The configuration hashed into the trace id; `signature` is the method of the signature the run used
        (None: no data), so a trace made before the data existed is not mistaken for one made with it."""
        cfg = config or self.config
        prov = self.proposer.provenance()
        return TraceConfig(
            proposer=self.proposer.name,
            model=prov.get("model"),
            prompt_version=prov.get("prompt_version"),
            kb_version=self.kb.version,
            verifier_settings=cfg.panel.model_dump(mode="json"),
            seed=cfg.seed,
            n_candidates=cfg.n_candidates,
            max_rounds=cfg.max_rounds,
            extra={
                **(prov.get("extra") or {}),
                "dataset_id": dataset_id,
                "use_cells": cfg.use_cells,
                "signature": signature,
                "context_budget": cfg.context_budget,
            },
        )

    def resolve(self, condition: Condition | str) -> tuple[Condition, str | None, list[str]]:
        """(condition, dataset id, notes): the stored condition when the store has it, else the key parsed."""
        notes: list[str] = []
        key = condition if isinstance(condition, str) else condition.key
        if self.store is not None:
            with self._lock:
                try:
                    found = self.store.find_condition(key)
                    return found.condition, found.dataset_id, notes
                except NotFoundError as exc:
                    notes.append(f"{exc}; explaining from the knowledge base alone")
        if isinstance(condition, Condition):
            return condition, None, notes
        return Condition.from_key(key), None, notes

    def _signature(
        self, condition: Condition, dataset_id: str | None, cfg: PipelineConfig
    ) -> tuple[Signature | None, str | None]:
        """The stored signature; when the store holds the condition's dataset but not its signature, computed
        now and stored (`compute_signatures`). Returns (signature, a note for the user or None)."""
        if self.store is None:
            return None, "no store: expression claims are uncheckable"
        with self._lock:
            try:
                return self.store.signature(condition.key, cfg.signature_method, dataset_id=dataset_id), None
            except NotFoundError:
                pass
            if not cfg.compute_signatures or dataset_id is None or self.store.read_only:
                return None, "no signature stored for this condition: expression claims are uncheckable"
            from mechcell.datasets.signatures import compute_signature

            try:
                sig = compute_signature(self.store.open(dataset_id), condition.key, cfg.signature_method)
                self.store.put_signature(sig, dataset_id=dataset_id)
            except Exception as exc:  # noqa: BLE001 — a dataset moved or unreadable: explain without data
                return (
                    None,
                    f"could not compute the signature ({type(exc).__name__}: {exc}); expression claims are uncheckable",
                )
            return sig, f"computed and stored the {sig.method} signature of this condition"

    # ------------------------------------------------------------------ the graph
    def _build(self) -> Any:
        from langgraph.graph import END, START, StateGraph

        g = StateGraph(_State)
        g.add_node("retrieve", self._node("retrieve", self._retrieve))
        g.add_node("propose", self._node("propose", self._propose))
        g.add_node("verify", self._node("verify", self._verify))
        g.add_node("revise", self._node("revise", self._revise))
        g.add_node("finalize", self._node("finalize", self._finalize))
        g.add_edge(START, "retrieve")
        g.add_edge("retrieve", "propose")
        g.add_edge("propose", "verify")
        g.add_conditional_edges("verify", self._next, {"revise": "revise", "finalize": "finalize"})
        g.add_edge("revise", "verify")
        g.add_edge("finalize", END)
        return g.compile()

    def _node(self, name: str, fn: Callable[[_State, _Run, Callable[[dict], None]], Any]) -> Callable:
        """Wrap a node: emit node_started / node_finished and add its time to the run's timings."""

        async def node(state: _State, config: RunnableConfig) -> dict:
            from langgraph.config import get_stream_writer

            run: _Run = config["configurable"]["run"]
            write = get_stream_writer()

            def emit(type_: str, **data: Any) -> None:
                write(
                    {
                        "type": type_,
                        "node": name,
                        "round": state.get("round", 0),
                        "t": time.perf_counter() - run.t0,
                        "data": data,
                    }
                )

            emit("node_started")
            t = time.perf_counter()
            out = await fn(state, run, emit)
            dt = time.perf_counter() - t
            run.timings[name] = run.timings.get(name, 0.0) + dt
            emit("node_finished", seconds=dt)
            return out

        return node

    async def _retrieve(self, state: _State, run: _Run, emit: Callable) -> dict:
        def work() -> tuple[RetrievedContext, Any]:
            from mechcell.verifiers.doses import dose_series

            with self._lock:
                ctx = self.retriever.context(run.condition, run.signature, budget=run.config.context_budget)
                doses = None
                if (
                    self.store is not None
                    and run.signature is not None
                    and (run.config.panel.dose_pooling or run.config.panel.require_drug_effect)
                ):
                    doses = dose_series(
                        self.store, run.condition, dataset_id=run.dataset_id, method=run.signature.method
                    )
                return ctx, doses

        ctx, run.doses = await asyncio.to_thread(work)
        run.retrieved = ctx
        run.pctx = ProposalContext(
            condition=run.condition,
            retrieved=ctx,
            kb=self.kb,
            signature=run.signature,
            seed=run.config.seed,
            alpha=run.config.panel.alpha,
            doses=run.doses,
        )
        emit(
            "note",
            kind=ctx.kind,
            targets=[t.gene for t in ctx.targets],
            n_paths=len(ctx.paths),
            signature=run.signature is not None,
        )
        return {"round": 0, "attempts": [], "proposals": [], "reports": []}

    async def _propose(self, state: _State, run: _Run, emit: Callable) -> dict:
        assert run.pctx is not None
        props = await self.proposer.propose(run.pctx, None, k=run.config.n_candidates)
        for i, p in enumerate(props):
            emit("candidate", candidate=i, ok=p.ok, note=p.note, failure=p.failure)
        return {"pending": list(props), "round": 0, "exhausted": not props}

    def _cells(self, run: _Run, genes: Sequence[str]) -> Any:
        if not run.config.use_cells or self.store is None or run.dataset_id is None:
            return None
        from mechcell.verifiers.api import CellCache

        store = self.store
        lock = self._lock
        cache = CellCache(store, run.dataset_id, run.condition, genes)

        def cells(sub: Sequence[str]) -> Any:
            with lock:
                return cache(sub)

        return cells

    async def _verify(self, state: _State, run: _Run, emit: Callable) -> dict:
        from mechcell.verifiers.panel import run_panel

        attempts = list(state.get("attempts", []))
        proposals = list(state.get("proposals", []))
        reports = list(state.get("reports", []))
        rnd = state.get("round", 0)
        for cand, p in enumerate(state.get("pending", [])):
            t = time.perf_counter()
            report: VerificationReport | None = None
            if p.graph is not None:
                genes = [g for c in p.graph.claims() for g in c.genes]
                cells = self._cells(run, genes)
                # The panel needs no lock: the KB serialises its own queries and the cell loader takes ours.
                report = await asyncio.to_thread(
                    run_panel,
                    p.graph,
                    condition=run.condition,
                    kb=self.kb,
                    signature=run.signature,
                    cells=cells,
                    settings=run.config.panel,
                    doses=run.doses,
                )
                for r in report.claims:
                    emit("verdict", candidate=cand, claim_id=r.claim_id, kind=r.kind, status=r.status)
            a = _attempt(len(attempts), rnd, cand, p, report, time.perf_counter() - t)
            attempts.append(a)
            proposals.append(p)
            reports.append(report)
            emit(
                "attempt",
                index=a.index,
                candidate=cand,
                reward=None if a.reward is None else round(a.reward, 3),
                accepted=a.accepted,
                counts=a.counts,
                failure=a.failure,
                summary=graph_summary(p.graph),
            )
        return {"attempts": attempts, "proposals": proposals, "reports": reports, "pending": []}

    def _next(self, state: _State, config: RunnableConfig) -> str:
        run: _Run = config["configurable"]["run"]
        attempts = state.get("attempts", [])
        if state.get("exhausted") or not attempts:
            return "finalize"
        if any(a.accepted for a in attempts):
            return "finalize"
        if state.get("round", 0) >= run.config.max_rounds:
            return "finalize"
        return "revise"

    async def _revise(self, state: _State, run: _Run, emit: Callable) -> dict:
        assert run.pctx is not None
        attempts = state.get("attempts", [])
        proposals = state.get("proposals", [])
        reports = state.get("reports", [])
        with_report = [i for i, r in enumerate(reports) if r is not None]
        rnd = state.get("round", 0) + 1
        if not with_report:
            # Nothing parsed yet (e.g. an LLM's unreadable answers): ask afresh.
            props = await self.proposer.propose(run.pctx, None, k=run.config.n_candidates)
        else:
            best = max(with_report, key=lambda i: selection_key(attempts[i]))
            history = [(proposals[i], reports[i]) for i in with_report if i != best]
            fb = Feedback(round=rnd, previous=proposals[best], report=reports[best], history=history)  # type: ignore[arg-type]
            props = await self.proposer.propose(run.pctx, fb, k=run.config.n_candidates)
        seen = {a.graph_hash for a in attempts if a.graph_hash}
        fresh = [p for p in props if p.graph is None or p.graph.content_hash() not in seen]
        for i, p in enumerate(fresh):
            emit("candidate", candidate=i, ok=p.ok, note=p.note, failure=p.failure)
        return {"pending": fresh, "round": rnd, "exhausted": not fresh}

    async def _finalize(self, state: _State, run: _Run, emit: Callable) -> dict:
        attempts: list[Attempt] = state.get("attempts", [])
        usable = [a for a in attempts if a.report is not None]
        final = max(usable, key=selection_key) if usable else None
        if final is None:
            status = "failed" if attempts else "abstained"
        else:
            status = "accepted" if final.accepted else "unverified"
        ctx = run.retrieved
        prov = self.proposer.provenance()
        pt = sum(int(c.get("prompt_tokens") or 0) for a in attempts for c in a.llm_calls)
        ct = sum(int(c.get("completion_tokens") or 0) for a in attempts for c in a.llm_calls)
        timings = dict(run.timings)
        timings["total"] = time.perf_counter() - run.t0
        trace = Trace(
            id=run.trace_id,
            condition=run.condition,
            dataset_id=run.dataset_id,
            config=run.tconfig,
            status=status,  # type: ignore[arg-type]
            context=ctx.model_dump(mode="json", exclude={"text"}) if ctx is not None else None,
            context_text=ctx.text if ctx is not None else "",
            signature_method=run.signature.method if run.signature is not None else None,
            attempts=attempts,
            final_attempt=final.index if final is not None else None,
            final_graph=final.graph if final is not None else None,
            final_text=final.text if final is not None else None,
            answer=_answer(run, final, status),
            metrics=TraceMetrics(
                reward=final.reward if final else None,
                accepted=bool(final and final.accepted),
                factual_precision=final.factual_precision if final else None,
                expression_precision=final.expression_precision if final else None,
                counts=dict(final.counts) if final else {},
                n_attempts=len(attempts),
                n_failed_attempts=sum(a.failure is not None for a in attempts),
                n_rounds=state.get("round", 0),
                prompt_tokens=pt,
                completion_tokens=ct,
            ),
            provenance=Provenance(
                proposer=self.proposer.name,
                model=prov.get("model"),
                endpoint=prov.get("endpoint"),
                prompt_version=prov.get("prompt_version"),
                kb_version=self.kb.version,
                code_version=code_version(),
                seed=run.config.seed,
            ),
            timings=timings,
        )
        return {"trace": trace}

    # ------------------------------------------------------------------ running
    async def astream(
        self, condition: Condition | str, *, reuse: bool = True, config: PipelineConfig | None = None
    ) -> AsyncIterator[PipelineEvent]:
        """Run one condition, yielding progress events; the last event is `trace` with the Trace attached."""
        cfg = config or self.config
        t0 = time.perf_counter()
        cond, dataset_id, notes = await asyncio.to_thread(self.resolve, condition)
        key = cond.key
        signature, msg = await asyncio.to_thread(self._signature, cond, dataset_id, cfg)
        if msg is not None:
            notes.append(msg)
        tconfig = self.trace_config(dataset_id, cfg, signature.method if signature is not None else None)
        tid = trace_id(key, tconfig)
        yield PipelineEvent(
            type="run_started",
            condition_key=key,
            data={"trace_id": tid, "proposer": self.proposer.name, "notes": list(notes)},
        )
        if msg is not None:
            yield PipelineEvent(type="note", condition_key=key, t=time.perf_counter() - t0, data={"message": msg})
        if reuse and self.traces is not None:
            with self._lock:
                found = self.traces.find(tid)
            if found is not None:
                yield PipelineEvent(
                    type="trace",
                    condition_key=key,
                    t=time.perf_counter() - t0,
                    data={"id": found.id, "status": found.status, "reused": True},
                    trace=found,
                )
                return
        run = _Run(cond, dataset_id, signature, cfg, tconfig, tid, notes)
        run.t0 = t0
        final: dict[str, Any] = {}
        async for mode, chunk in self._graph.astream(
            {},
            config={"configurable": {"run": run}, "recursion_limit": 10 + 4 * cfg.max_rounds},
            stream_mode=["custom", "values"],
        ):
            if mode == "custom":
                yield PipelineEvent(condition_key=key, **chunk)
            else:
                final = chunk
        trace: Trace = final["trace"]
        # finalize's own time is known only now
        trace = trace.model_copy(update={"timings": {**run.timings, "total": time.perf_counter() - t0}})
        if self.save and self.traces is not None and not self.traces.read_only:
            with self._lock:
                self.traces.put(trace)
        yield PipelineEvent(
            type="trace",
            condition_key=key,
            t=time.perf_counter() - t0,
            data={"id": trace.id, "status": trace.status, "reused": False},
            trace=trace,
        )

    async def arun(
        self,
        condition: Condition | str,
        *,
        reuse: bool = True,
        config: PipelineConfig | None = None,
        on_event: Callable[[PipelineEvent], None] | None = None,
    ) -> Trace:
        trace: Trace | None = None
        async for ev in self.astream(condition, reuse=reuse, config=config):
            if on_event is not None:
                on_event(ev)
            if ev.trace is not None:
                trace = ev.trace
        assert trace is not None
        return trace

    def run(
        self,
        condition: Condition | str,
        *,
        reuse: bool = True,
        config: PipelineConfig | None = None,
        on_event: Callable[[PipelineEvent], None] | None = None,
    ) -> Trace:
        """`arun` for scripts (not inside a running event loop)."""
        _no_running_loop("Pipeline.run")
        return asyncio.run(self.arun(condition, reuse=reuse, config=config, on_event=on_event))

    async def arun_many(
        self,
        conditions: Iterable[Condition | str],
        *,
        concurrency: int = 1,
        reuse: bool = True,
        on_trace: Callable[[Trace], None] | None = None,
    ) -> list[Trace]:
        """Several conditions at once (at most `concurrency` in flight), results in input order.

        Worth it when the proposer waits on a remote model; the verifiers are CPU-bound Python and share the
        process, so a local run gains little from concurrency.
        """
        sem = asyncio.Semaphore(max(1, int(concurrency)))

        async def one(c: Condition | str) -> Trace:
            async with sem:
                t = await self.arun(c, reuse=reuse)
            if on_trace is not None:
                on_trace(t)
            return t

        return list(await asyncio.gather(*(one(c) for c in conditions)))

    def run_many(
        self,
        conditions: Iterable[Condition | str],
        *,
        reuse: bool = True,
        on_trace: Callable[[Trace], None] | None = None,
    ) -> list[Trace]:
        """Conditions one after another in one event loop (a failed condition raises: batches live elsewhere)."""
        _no_running_loop("Pipeline.run_many")

        async def main() -> list[Trace]:
            out = []
            for c in conditions:
                t = await self.arun(c, reuse=reuse)
                if on_trace is not None:
                    on_trace(t)
                out.append(t)
            return out

        return asyncio.run(main())


def _no_running_loop(what: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise InputError(f"{what} cannot run inside an event loop; use the async API (arun / astream)")


def _attempt(
    index: int, rnd: int, cand: int, p: Proposal, report: VerificationReport | None, seconds: float
) -> Attempt:
    graph = p.graph
    return Attempt(
        index=index,
        round=rnd,
        candidate=cand,
        proposer=p.proposer,
        text=p.text,
        graph=graph,
        graph_hash=graph.content_hash() if graph is not None else None,
        parse_problems=list(p.problems),
        failure=p.failure,
        report=report.model_dump(mode="json") if report is not None else None,
        reward=report.reward if report is not None else None,
        accepted=bool(report and report.accepted),
        factual_precision=report.factual_precision if report is not None else None,
        expression_precision=report.expression_precision if report is not None else None,
        counts=dict(report.counts) if report is not None else {},
        note=p.note,
        prompts=list(p.prompts),
        llm_calls=list(p.llm_calls),
        repairs=list(p.repairs),
        intermediate=p.intermediate,
        seconds=seconds,
    )


def _answer(run: _Run, final: Attempt | None, status: str) -> str:
    if final is None:
        if status == "abstained":
            ctx = run.retrieved
            if ctx is not None and ctx.kind == "unknown":
                why = ctx.kind_reason
            elif ctx is not None and not ctx.paths:
                why = "the knowledge base has no signed path from its targets to a TF or pathway"
            else:
                why = "the data supports no retrieved path" if run.signature is not None else "no path was found"
            return f"No mechanism proposed for {run.condition.perturbation}: {why}."
        return "No readable graph was produced (every attempt failed)."
    return graph_summary(final.graph)


# ------------------------------------------------------------------------------------------ the Python API


def _pipeline(
    *,
    store: Store | TraceStore | str | Path | None,
    kb: KnowledgeBase | str | Path | None,
    proposer: Proposer | str | None,
    settings: Settings | None,
    seed: int | None,
    n_candidates: int | None,
    max_rounds: int | None,
    use_cells: bool | None,
    save: bool,
) -> Pipeline:
    from mechcell.config import Settings

    settings = settings or Settings()
    config = PipelineConfig.from_settings(
        settings, seed=seed, n_candidates=n_candidates, max_rounds=max_rounds, use_cells=use_cells
    )
    if store is None:
        store = settings.store_path
    return Pipeline(kb=kb, store=store, proposer=proposer, settings=settings, config=config, save=save)


def explain(
    condition: Condition | str,
    *,
    store: Store | TraceStore | str | Path | None = None,
    kb: KnowledgeBase | str | Path | None = None,
    proposer: Proposer | str | None = None,
    settings: Settings | None = None,
    seed: int | None = None,
    n_candidates: int | None = None,
    max_rounds: int | None = None,
    use_cells: bool | None = None,
    save: bool = True,
    reuse: bool = True,
    on_event: Callable[[PipelineEvent], None] | None = None,
) -> Trace:
    """Explain one condition (a `Condition` or its key) and return its `Trace`.

    store: the project store (default `Settings.store_path`); kb: a KB, a path, or None (Settings.kb_path, else
    the starter KB); proposer: `local`, `llm`, `llm-one-step`, a registered name or a `Proposer` (default: `llm`
    when an endpoint is configured, else `local`). The trace is saved to the store unless `save=False`, and a
    stored trace with the same id is returned as is unless `reuse=False`.
    """
    pipe = _pipeline(
        store=store,
        kb=kb,
        proposer=proposer,
        settings=settings,
        seed=seed,
        n_candidates=n_candidates,
        max_rounds=max_rounds,
        use_cells=use_cells,
        save=save,
    )
    try:
        return pipe.run(condition, reuse=reuse, on_event=on_event)
    finally:
        pipe.close()


async def astream_explain(
    condition: Condition | str,
    *,
    store: Store | TraceStore | str | Path | None = None,
    kb: KnowledgeBase | str | Path | None = None,
    proposer: Proposer | str | None = None,
    settings: Settings | None = None,
    seed: int | None = None,
    n_candidates: int | None = None,
    max_rounds: int | None = None,
    use_cells: bool | None = None,
    save: bool = True,
    reuse: bool = True,
) -> AsyncIterator[PipelineEvent]:
    """`explain` as an async generator of progress events (for the web door); the last event carries the Trace."""
    pipe = await asyncio.to_thread(
        _pipeline,
        store=store,
        kb=kb,
        proposer=proposer,
        settings=settings,
        seed=seed,
        n_candidates=n_candidates,
        max_rounds=max_rounds,
        use_cells=use_cells,
        save=save,
    )
    try:
        async for ev in pipe.astream(condition, reuse=reuse):
            yield ev
    finally:
        pipe.close()
