"""The batch runner behind `mechcell traces build`: every (filtered) condition of the project store explained,
resumably, with one writer.

    report = run_batch(BatchConfig(proposer="local", workers=4), store="mechcell.duckdb")

Why it is shaped this way:

- **One writer.** DuckDB lets one process write a file and no other process open it meanwhile, so workers never
  open the project store. The coordinator reads each item's inputs (dataset record, condition, signature) and
  hands them over; a worker loads them into its own in-memory store, runs the ordinary `Pipeline` on it with
  `save=False`, and returns the `Trace` (plus a signature it had to compute). The coordinator writes each result
  in one transaction with its ledger and failure bookkeeping (`TraceStore.record_result`).
- **Resume by content id.** The coordinator predicts every item's trace id (condition + configuration, the
  pipeline's own `trace_config`) before dispatching, and skips ids already stored — or recorded as failed,
  unless `retry_failed`. Since each write is atomic, a crash, `kill -9` or Ctrl-C loses at most the items in
  flight, and a re-run completes exactly the rest. A changed configuration gives new ids: nothing stale is reused.
- **Failures are data.** An exception, a timeout or a trace whose every attempt failed (an LLM's garbage, a dead
  endpoint) is recorded in `trace_failures` with its kind and error; the run goes on.
- **Executors.** `local` with `workers=1` runs items in the coordinator's event loop with `concurrency` in flight
  (for LLM I/O); `workers>1` uses that many spawned processes (for CPU-bound verification); `ray` runs the same
  worker as Ray actors (`ray_address`, or a local Ray instance).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import json
import multiprocessing as mp
import platform
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from mechcell.datasets.traces import Trace, TraceFailure, TraceRun, TraceStore, config_hash, trace_id
from mechcell.errors import InputError, MechcellError

if TYPE_CHECKING:
    from mechcell.agents.pipeline import Pipeline, PipelineConfig
    from mechcell.config import Settings
    from mechcell.datasets.schemas import Signature
    from mechcell.datasets.store import DatasetRecord, Store, StoredCondition

__all__ = [
    "BatchConfig",
    "BatchItem",
    "BatchProgress",
    "BatchReport",
    "BatchWorker",
    "ItemResult",
    "WorkerSpec",
    "classify_error",
    "plan_batch",
    "run_batch",
]

Executor = Literal["local", "ray"]


class BatchConfig(BaseModel):
    """What `mechcell traces build` was asked to do. Everything that changes results goes into the trace ids
    (through the pipeline's configuration); the rest (workers, executor, timeout) only changes how fast."""

    model_config = ConfigDict(frozen=True)

    proposer: str = Field("local", description="local | llm | policy | a registered name | module:factory")
    kb: str | None = Field(None, description="KB store or source directory (default: Settings.kb_path / starter)")
    executor: Executor = "local"
    workers: int = Field(1, ge=1, le=512, description="processes (local) or actors (ray)")
    concurrency: int = Field(1, ge=1, le=1024, description="items in flight per in-process event loop (LLM I/O)")
    seed: int | None = None
    n_candidates: int | None = Field(None, ge=1)
    max_rounds: int | None = Field(None, ge=0)
    use_cells: bool = Field(False, description="distributional tests on cells (thorough, slower)")
    signature_method: str | None = None
    dataset_id: str | None = None
    drugs: list[str] = Field(default_factory=list)
    cell_lines: list[str] = Field(default_factory=list, description="context ids or names")
    doses: list[float] = Field(default_factory=list)
    limit: int | None = Field(None, ge=1)
    retry_failed: bool = False
    timeout: float | None = Field(None, gt=0, description="seconds per item (enforced inside the worker's loop)")
    ray_address: str | None = Field(None, description="ray.init(address=...): 'auto', 'ray://host:10001', ...")


class WorkerSpec(BaseModel):
    """How a worker (process or Ray actor) builds its pipeline: picklable, secrets as plain values in memory."""

    model_config = ConfigDict(frozen=True)

    settings: dict[str, Any]
    kb: str | None
    proposer: str
    pipeline: dict[str, Any]
    timeout: float | None = None


class BatchItem(BaseModel):
    """One unit of work: everything a worker needs, read by the coordinator from the store."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    trace_id: str
    condition_key: str
    dataset: Any  # DatasetRecord
    condition: Any  # StoredCondition
    signature: Any = None  # Signature | None


class ItemResult(BaseModel):
    """What a worker hands back: a trace (and a signature it computed), or an error with its kind."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    trace_id: str
    condition_key: str
    dataset_id: str | None = None
    trace: Trace | None = None
    signature: Any = None  # Signature | None: computed by the worker, to be stored by the coordinator
    kind: str | None = None
    error: str | None = None
    seconds: float = 0.0


class BatchProgress(BaseModel):
    """A progress tick for bars and logs."""

    model_config = ConfigDict(frozen=True)

    total: int
    done: int
    failed: int
    skipped: int
    last: str | None = None
    last_status: str | None = None


class BatchReport(BaseModel):
    """The `--json` document of `mechcell traces build`."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    config_hash: str
    status: str
    n_conditions: int
    n_skipped: int
    n_todo: int
    n_done: int
    n_failed: int
    failures_by_kind: dict[str, int]
    statuses: dict[str, int]
    seconds: float
    plan_seconds: float
    write_seconds: float
    traces_per_minute: float | None
    executor: str
    workers: int
    store: str


# ------------------------------------------------------------------------------------------------ errors


def classify_error(exc: BaseException) -> str:
    """The failure kind recorded for an exception: timeout | data | endpoint | worker | error."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, MechcellError):
        return "data"
    mod = type(exc).__module__ or ""
    if mod.startswith(("openai", "httpx", "httpcore")) or isinstance(exc, ConnectionError):
        return "endpoint"
    if isinstance(exc, BrokenProcessPool) or mod.startswith("ray"):
        return "worker"
    return "error"


def _failure_of(trace: Trace) -> tuple[str, str] | None:
    """A stored trace that is not usable (every attempt failed): (kind, error) for the failures table."""
    if trace.status != "failed":
        return None
    reasons = Counter(a.failure or "no graph" for a in trace.attempts)
    top = "; ".join(f"{n}× {r[:200]}" for r, n in reasons.most_common(3))
    return "no_graph", f"every attempt failed ({len(trace.attempts)}): {top}"


# ------------------------------------------------------------------------------------------------ the worker


def _plain_settings(settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in type(settings).model_fields:
        v = getattr(settings, name)
        out[name] = v.get_secret_value() if isinstance(v, SecretStr) else v
    return out


class BatchWorker:
    """Runs items on the ordinary `Pipeline` over a private in-memory store (so it never opens the project file).

    One event loop per worker, kept for its lifetime: LLM clients bind to the loop they were first used on."""

    def __init__(self, spec: WorkerSpec) -> None:
        from mechcell.agents.pipeline import Pipeline, PipelineConfig
        from mechcell.config import Settings
        from mechcell.datasets.store import Store
        from mechcell.knowledge import load_kb

        self.spec = spec
        self.settings = Settings(**spec.settings)
        kb = load_kb(spec.kb, settings=self.settings)
        self.mini = Store(":memory:")
        self.pipe: Pipeline = Pipeline(
            kb=kb,
            store=self.mini,
            proposer=spec.proposer,
            settings=self.settings,
            config=PipelineConfig.model_validate(spec.pipeline),
            save=False,
        )
        self._datasets: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _load(self, item: BatchItem) -> None:
        from mechcell.datasets.store import Store

        rec: DatasetRecord = item.dataset
        sc: StoredCondition = item.condition
        with self.pipe.lock:
            if rec.id not in self._datasets:
                self.mini.register_dataset(
                    rec.path,
                    rec.layout,
                    rec.perturbation_schema,
                    summaries=None,
                    n_cells=rec.n_cells,
                    n_genes=rec.n_genes,
                    options=rec.options,
                    dataset_id=rec.id,
                )
                self._datasets.add(rec.id)
            con = self.mini.con
            con.execute("DELETE FROM conditions WHERE dataset_id = ? AND key = ?", [rec.id, item.condition_key])
            con.execute("DELETE FROM signatures WHERE condition_key = ?", [item.condition_key])
            Store._insert_conditions(con, rec.id, [sc.summary])
            if item.signature is not None:
                self.mini.put_signature(item.signature, dataset_id=rec.id)

    def _unload(self, item: BatchItem) -> Signature | None:
        """Drop the item's rows; return a signature the pipeline computed (the coordinator stores it)."""
        from mechcell.errors import NotFoundError

        with self.pipe.lock:
            computed = None
            if item.signature is None:
                try:
                    computed = self.mini.signature(item.condition_key, dataset_id=item.condition.dataset_id)
                except NotFoundError:
                    computed = None
            con = self.mini.con
            con.execute("DELETE FROM conditions WHERE key = ?", [item.condition_key])
            con.execute("DELETE FROM signatures WHERE condition_key = ?", [item.condition_key])
        return computed

    async def arun(self, item: BatchItem) -> ItemResult:
        """One item; never raises (an exception becomes a recorded failure)."""
        t0 = time.perf_counter()
        base = {"trace_id": item.trace_id, "condition_key": item.condition_key, "dataset_id": item.dataset.id}
        try:
            await asyncio.to_thread(self._load, item)
            try:
                coro = self.pipe.arun(item.condition_key, reuse=False)
                trace = await (asyncio.wait_for(coro, self.spec.timeout) if self.spec.timeout else coro)
            finally:
                sig = await asyncio.to_thread(self._unload, item)
        except Exception as exc:  # noqa: BLE001 — a failed item is recorded, never fatal
            if isinstance(exc, TimeoutError | asyncio.TimeoutError):
                msg = f"timed out after {self.spec.timeout:g} s"
            else:
                msg = f"{type(exc).__name__}: {exc}"
            return ItemResult(**base, kind=classify_error(exc), error=msg[:4000], seconds=time.perf_counter() - t0)
        return ItemResult(**base, trace=trace, signature=sig, seconds=time.perf_counter() - t0)

    def run(self, item: BatchItem) -> ItemResult:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(self.arun(item))

    def close(self) -> None:
        self.pipe.close()
        self.mini.close()
        if self._loop is not None:
            self._loop.close()


# process-pool plumbing: one BatchWorker per process, built by the initializer
_WORKER: BatchWorker | None = None


def _init_process(spec_json: str) -> None:
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's to handle
    _WORKER = BatchWorker(WorkerSpec.model_validate_json(spec_json))


def _run_in_process(item: BatchItem) -> ItemResult:
    assert _WORKER is not None, "worker process not initialised"
    return _WORKER.run(item)


# ------------------------------------------------------------------------------------------------ planning


@dataclass
class Plan:
    """Which conditions to run, under which predicted trace ids, and what was skipped."""

    todo: list[tuple[str, StoredCondition]]  # (predicted trace id, condition)
    n_conditions: int
    n_skipped: int
    config_hash: str
    trace_config: dict[str, Any]
    seconds: float
    skipped_done: int = 0
    skipped_failed: int = 0
    methods: dict[tuple[str, str], str] = field(default_factory=dict)


def _match(values: Sequence[str], *candidates: str | None) -> bool:
    want = {v.strip().lower() for v in values}
    return any(c is not None and c.strip().lower() in want for c in candidates)


def _pipeline_config(cfg: BatchConfig, settings: Settings) -> PipelineConfig:
    from mechcell.agents.pipeline import PipelineConfig

    return PipelineConfig.from_settings(
        settings,
        seed=cfg.seed,
        n_candidates=cfg.n_candidates,
        max_rounds=cfg.max_rounds,
        use_cells=cfg.use_cells,
        signature_method=cfg.signature_method,
    )


def plan_batch(pipe: Pipeline, store: Store, traces: TraceStore, cfg: BatchConfig) -> Plan:
    """Filter the store's conditions and predict their trace ids; drop those already done (or failed)."""
    from mechcell.datasets.signatures import resolve_method

    t0 = time.perf_counter()
    conds = store.condition_summaries(dataset_id=cfg.dataset_id)
    if cfg.drugs:
        conds = [c for c in conds if _match(cfg.drugs, c.condition.perturbation)]
    if cfg.cell_lines:
        conds = [c for c in conds if _match(cfg.cell_lines, c.condition.context, c.condition.context_name)]
    if cfg.doses:
        conds = [
            c
            for c in conds
            if c.condition.dose is not None
            and any(abs(c.condition.dose - d) <= 1e-9 * max(abs(d), 1.0) for d in cfg.doses)
        ]
    if cfg.limit is not None:
        conds = conds[: cfg.limit]
    if not conds:
        have = len(store.condition_summaries())
        raise InputError(
            f"no condition of store {store.path} matches the filters (store has {have} condition(s)); "
            "ingest a dataset with `mechcell data ingest` or relax --drugs / --cell-lines / --doses"
        )
    # the signature method each condition will use: the stored one (newest, or the asked-for one), else the one
    # the pipeline will compute — both decide the trace id, exactly as the pipeline does
    stored: dict[tuple[str, str], str] = {}
    sql = "SELECT dataset_id, condition_key, method, max(created_at) t FROM signatures"
    params: list[Any] = []
    if cfg.signature_method:
        sql += " WHERE method = ?"
        params.append(cfg.signature_method)
    for did, key, meth, _t in store.con.execute(sql + " GROUP BY 1, 2, 3 ORDER BY t", params).fetchall():
        stored[(did, key)] = meth  # ordered by time: the newest wins
    records = {d.id: d for d in store.datasets()}
    default_method: dict[str, str | None] = {}
    for did, rec in records.items():
        try:
            default_method[did] = resolve_method(
                SimpleNamespace(layout=rec.layout, path=rec.path),  # type: ignore[arg-type]
                cfg.signature_method,
            ).name
        except InputError:
            default_method[did] = None
    done = traces.ids()
    failed = traces.failed_ids()
    todo: list[tuple[str, StoredCondition]] = []
    methods: dict[tuple[str, str], str] = {}
    skipped_done = skipped_failed = 0
    for c in conds:
        meth = stored.get((c.dataset_id, c.summary.key)) or default_method.get(c.dataset_id)
        if meth is not None:
            methods[(c.dataset_id, c.summary.key)] = meth
        tid = trace_id(c.summary.key, pipe.trace_config(c.dataset_id, signature=meth))
        if tid in done and not (cfg.retry_failed and tid in failed):
            skipped_done += 1
            continue
        if tid in failed and not cfg.retry_failed:
            skipped_failed += 1
            continue
        todo.append((tid, c))
    template = pipe.trace_config(None).model_dump(mode="json")
    template["extra"] = {k: v for k, v in template["extra"].items() if k not in ("dataset_id", "signature")}
    return Plan(
        todo=todo,
        n_conditions=len(conds),
        n_skipped=skipped_done + skipped_failed,
        config_hash=config_hash(template),
        trace_config=template,
        seconds=time.perf_counter() - t0,
        skipped_done=skipped_done,
        skipped_failed=skipped_failed,
        methods=methods,
    )


# ------------------------------------------------------------------------------------------------ running


class _Coordinator:
    """Owns the store: builds items, writes results, keeps the ledger's counts."""

    def __init__(self, store: Store, traces: TraceStore, run_id: str, chash: str, plan: Plan) -> None:
        self.store, self.traces, self.run_id, self.chash = store, traces, run_id, chash
        self.records = {d.id: d for d in store.datasets()}
        self.plan = plan
        self.done = 0
        self.failed = 0
        self.kinds: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.write_seconds = 0.0

    def item(self, tid: str, sc: StoredCondition, method: str | None) -> BatchItem:
        from mechcell.errors import NotFoundError

        sig = None
        try:
            sig = self.store.signature(sc.summary.key, method, dataset_id=sc.dataset_id)
        except NotFoundError:
            sig = None
        return BatchItem(
            trace_id=tid,
            condition_key=sc.summary.key,
            dataset=self.records[sc.dataset_id],
            condition=sc,
            signature=sig,
        )

    def write(self, res: ItemResult) -> str:
        """Persist one result (atomically); returns the status shown in progress."""
        t = time.perf_counter()
        try:
            if res.trace is None:
                self.traces.record_failure(self._failure(res.kind or "error", res.error or "unknown error", res))
                self.failed += 1
                self.kinds[res.kind or "error"] += 1
                return f"failed ({res.kind})"
            if res.signature is not None:
                self.store.put_signature(res.signature, dataset_id=res.dataset_id)
            trace = res.trace
            bad = _failure_of(trace)
            if bad is None and trace.id != res.trace_id:
                # the run used other inputs than planned (e.g. the signature could not be computed): keep the
                # trace, and mark the planned id failed so a resume does not redo it forever
                bad = ("data", f"trace came out as {trace.id}: {trace.answer[:300]}")
            fail = self._failure(bad[0], bad[1], res) if bad else None
            self.traces.record_result(trace, run_id=self.run_id, expected_id=res.trace_id, failure=fail)
            self.statuses[trace.status] += 1
            if fail is not None:
                self.failed += 1
                self.kinds[fail.kind] += 1
                return f"failed ({fail.kind})"
            self.done += 1
            return trace.status
        finally:
            self.write_seconds += time.perf_counter() - t

    def _failure(self, kind: str, error: str, res: ItemResult) -> TraceFailure:
        return TraceFailure(
            trace_id=res.trace_id,
            condition_key=res.condition_key,
            dataset_id=res.dataset_id,
            run_id=self.run_id,
            config_hash=self.chash,
            kind=kind,
            error=error,
        )


def _items(coord: _Coordinator, plan: Plan) -> Iterator[BatchItem]:
    for tid, sc in plan.todo:
        yield coord.item(tid, sc, plan.methods.get((sc.dataset_id, sc.summary.key)))


def _run_inprocess(
    worker: BatchWorker, coord: _Coordinator, plan: Plan, concurrency: int, tick: Callable[[str, str], None]
) -> None:
    async def main() -> None:
        sem = asyncio.Semaphore(concurrency)
        pending: set[asyncio.Task[ItemResult]] = set()

        async def drain(block: bool) -> None:
            nonlocal pending
            if not pending:
                return
            done, pending = await asyncio.wait(
                pending, return_when=asyncio.FIRST_COMPLETED if block else asyncio.ALL_COMPLETED
            )
            for t in done:
                res = t.result()
                with worker.pipe.lock:
                    status = coord.write(res)
                sem.release()
                tick(res.condition_key, status)

        for item in _items(coord, plan):
            while sem.locked():
                await drain(True)
            await sem.acquire()
            pending.add(asyncio.ensure_future(worker.arun(item)))
        await drain(False)

    if worker._loop is None:
        worker._loop = asyncio.new_event_loop()
    worker._loop.run_until_complete(main())


def _run_processes(
    spec: WorkerSpec, coord: _Coordinator, plan: Plan, workers: int, tick: Callable[[str, str], None]
) -> None:
    ctx = mp.get_context("spawn")  # never fork a process holding a DuckDB connection and threads
    items = _items(coord, plan)
    with cf.ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_init_process, initargs=(spec.model_dump_json(),)
    ) as pool:
        inflight: dict[cf.Future[ItemResult], BatchItem] = {}

        def fill() -> None:
            while len(inflight) < 2 * workers:
                item = next(items, None)
                if item is None:
                    return
                inflight[pool.submit(_run_in_process, item)] = item

        fill()
        while inflight:
            finished, _ = cf.wait(list(inflight), return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                item = inflight.pop(fut)
                try:
                    res = fut.result()
                except Exception as exc:  # noqa: BLE001 — a dead worker process: record and go on
                    res = ItemResult(
                        trace_id=item.trace_id,
                        condition_key=item.condition_key,
                        dataset_id=item.dataset.id,
                        kind=classify_error(exc),
                        error=f"{type(exc).__name__}: {exc}",
                    )
                tick(res.condition_key, coord.write(res))
            if any(isinstance(f.exception(), BrokenProcessPool) for f in finished if f.done()):
                raise _PoolBroken
            fill()


class _PoolBroken(Exception):
    """The process pool died (a worker was killed): the coordinator restarts it for the remaining items."""


def _run_ray(
    spec: WorkerSpec, coord: _Coordinator, plan: Plan, cfg: BatchConfig, tick: Callable[[str, str], None]
) -> None:
    try:
        import ray
    except ImportError:
        raise InputError("--executor ray needs the `ray` extra: pip install 'mechcell[ray]'") from None
    started = False
    if not ray.is_initialized():
        ray.init(address=cfg.ray_address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        actor_cls = ray.remote(_RayWorker)
        actors = [actor_cls.remote(spec.model_dump_json()) for _ in range(cfg.workers)]
        idle = list(range(len(actors)))
        items = _items(coord, plan)
        inflight: dict[Any, tuple[int, BatchItem]] = {}
        while True:
            while idle:
                item = next(items, None)
                if item is None:
                    break
                a = idle.pop()
                inflight[actors[a].run.remote(_item_json(item))] = (a, item)
            if not inflight:
                break
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                a, item = inflight.pop(ref)
                idle.append(a)
                try:
                    res = ItemResult.model_validate_json(ray.get(ref))
                except Exception as exc:  # noqa: BLE001 — a dead actor: record and go on
                    res = ItemResult(
                        trace_id=item.trace_id,
                        condition_key=item.condition_key,
                        dataset_id=item.dataset.id,
                        kind="worker",
                        error=f"{type(exc).__name__}: {exc}",
                    )
                tick(res.condition_key, coord.write(res))
    finally:
        if started:
            ray.shutdown()


class _RayWorker:
    """A Ray actor around `BatchWorker` (JSON in and out: no pickled pydantic classes cross the cluster)."""

    def __init__(self, spec_json: str) -> None:
        self.worker = BatchWorker(WorkerSpec.model_validate_json(spec_json))

    def run(self, item_json: str) -> str:
        return self.worker.run(_item_from_json(item_json)).model_dump_json()


def _item_json(item: BatchItem) -> str:
    return json.dumps(
        {
            "trace_id": item.trace_id,
            "condition_key": item.condition_key,
            "dataset": item.dataset.model_dump(mode="json"),
            "condition": item.condition.model_dump(mode="json"),
            "signature": item.signature.model_dump(mode="json") if item.signature is not None else None,
        }
    )


def _item_from_json(doc: str) -> BatchItem:
    from mechcell.datasets.schemas import Signature
    from mechcell.datasets.store import DatasetRecord, StoredCondition

    d = json.loads(doc)
    return BatchItem(
        trace_id=d["trace_id"],
        condition_key=d["condition_key"],
        dataset=DatasetRecord.model_validate(d["dataset"]),
        condition=StoredCondition.model_validate(d["condition"]),
        signature=Signature.model_validate(d["signature"]) if d["signature"] is not None else None,
    )


def run_batch(
    cfg: BatchConfig,
    *,
    store: str | Path,
    settings: Settings | None = None,
    on_start: Callable[[BatchProgress], None] | None = None,
    on_progress: Callable[[BatchProgress], None] | None = None,
) -> BatchReport:
    """Explain every (filtered) condition of `store` not yet traced under this configuration; see the module doc.

    Returns the run's report. Ctrl-C marks the run `interrupted` in the ledger and re-raises: what was written
    stays, the items in flight are simply run again by the next (resumed) run."""
    from mechcell.agents.pipeline import Pipeline
    from mechcell.config import Settings
    from mechcell.datasets.store import Store
    from mechcell.errors import NotFoundError
    from mechcell.knowledge import load_kb

    settings = settings or Settings()
    if not Path(store).is_file():
        raise NotFoundError(
            f"store {store} does not exist; ingest a dataset first (`mechcell data ingest ... --store {store}`)"
        )
    t0 = time.perf_counter()
    kb = load_kb(cfg.kb, settings=settings)
    pcfg = _pipeline_config(cfg, settings)
    spec = WorkerSpec(
        settings=_plain_settings(settings),
        kb=cfg.kb,
        proposer=cfg.proposer,
        pipeline=pcfg.model_dump(mode="json"),
        timeout=cfg.timeout,
    )
    with Store(store) as st:
        traces = TraceStore(st)
        local: BatchWorker | None = None
        if cfg.executor == "local" and cfg.workers == 1:
            local = BatchWorker(spec)  # the in-process worker doubles as the planner's pipeline
            planner = local.pipe
        else:
            planner = Pipeline(kb=kb, store=None, proposer=cfg.proposer, settings=settings, config=pcfg, save=False)
        plan = plan_batch(planner, st, traces, cfg)
        run_id = "run_" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "_" + uuid.uuid4().hex[:6]
        traces.start_run(
            TraceRun(
                run_id=run_id,
                config_hash=plan.config_hash,
                config={"batch": cfg.model_dump(mode="json"), "trace_config": plan.trace_config},
                started_at=datetime.now(UTC),
                n_conditions=plan.n_conditions,
                n_skipped=plan.n_skipped,
                n_todo=len(plan.todo),
                host=platform.node() or None,
            )
        )
        coord = _Coordinator(st, traces, run_id, plan.config_hash, plan)
        total = len(plan.todo)
        if on_start is not None:
            on_start(BatchProgress(total=total, done=0, failed=0, skipped=plan.n_skipped))

        def tick(key: str, status: str) -> None:
            if on_progress is not None:
                on_progress(
                    BatchProgress(
                        total=total,
                        done=coord.done,
                        failed=coord.failed,
                        skipped=plan.n_skipped,
                        last=key,
                        last_status=status,
                    )
                )

        status = "finished"
        t_run = time.perf_counter()
        try:
            if local is not None:
                _run_inprocess(local, coord, plan, cfg.concurrency, tick)
            elif cfg.executor == "local":
                remaining = plan
                while True:
                    try:
                        _run_processes(spec, coord, remaining, cfg.workers, tick)
                        break
                    except _PoolBroken:
                        left = traces.ids() | traces.failed_ids()
                        remaining = Plan(
                            todo=[(tid, sc) for tid, sc in remaining.todo if tid not in left],
                            n_conditions=plan.n_conditions,
                            n_skipped=plan.n_skipped,
                            config_hash=plan.config_hash,
                            trace_config=plan.trace_config,
                            seconds=0.0,
                            methods=plan.methods,
                        )
            else:
                _run_ray(spec, coord, plan, cfg, tick)
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            run = traces.finish_run(run_id, status)
            if local is not None:
                local.close()
            else:
                planner.close()
        elapsed = time.perf_counter() - t_run
    n = coord.done + coord.failed
    return BatchReport(
        run_id=run_id,
        config_hash=plan.config_hash,
        status=run.status,
        n_conditions=plan.n_conditions,
        n_skipped=plan.n_skipped,
        n_todo=total,
        n_done=coord.done,
        n_failed=coord.failed,
        failures_by_kind=dict(coord.kinds),
        statuses=dict(coord.statuses),
        seconds=time.perf_counter() - t0,
        plan_seconds=plan.seconds,
        write_seconds=coord.write_seconds,
        traces_per_minute=(60.0 * n / elapsed) if n and elapsed > 0 else None,
        executor=cfg.executor,
        workers=cfg.workers,
        store=str(store),
    )
