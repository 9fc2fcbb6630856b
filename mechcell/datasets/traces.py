"""Traces: the record of one explanation run — and a small DuckDB `TraceStore` over the project store file.

A `Trace` keeps everything needed to audit or replay a run: the condition, the configuration (whose hash is the
trace id), the retrieved context, every attempt (raw text, parsed graph, the verifiers' report), the final graph,
metrics, provenance and timings. Why a content-derived id: the same condition explained with the same proposer,
model, prompts, KB, verifier settings and seed is the same trace, so a batch can skip it and a chat can reuse it.

Layering: this module sits in `datasets` (below `verifiers` and `agents`), so a verification report is stored as
its JSON document (`Attempt.report`) with its headline numbers lifted into typed fields; `agents` re-reads it as
a `VerificationReport` when it needs the verdicts.

One writer per DuckDB file (ARCHITECTURE.md): `TraceStore` can share the connection of an open `Store`.

Batch runs (`mechcell.agents.batch`) add two tables beside `traces`: `trace_runs`, the run ledger (run id, config
hash, started / finished, counts), and `trace_failures`, one row per trace id that did not produce a usable trace
(its error, kind and number of tries). A result is written with its ledger update and its failure bookkeeping in
one transaction (`record_result` / `record_failure`), so a crash at any moment leaves either all of it or none:
resume is "skip every id already in `traces` (or in `trace_failures`, unless retrying)".
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

import mechcell
from mechcell.datasets.schemas import Condition
from mechcell.errors import InputError, NotFoundError
from mechcell.graphs import ActionGraph

if TYPE_CHECKING:
    import duckdb

    from mechcell.datasets.store import Store

TRACE_SCHEMA_VERSION = 1
TraceStatus = Literal["accepted", "unverified", "abstained", "failed"]

__all__ = [
    "TRACE_SCHEMA_VERSION",
    "Attempt",
    "Provenance",
    "Trace",
    "TraceConfig",
    "TraceMetrics",
    "TraceStatus",
    "TraceStore",
    "TraceSummary",
    "TraceFailure",
    "TraceRun",
    "code_version",
    "config_hash",
    "trace_id",
]


class TraceConfig(BaseModel):
    """Everything that decides what a run produces besides the data: hashed (with the condition) into the id."""

    model_config = ConfigDict(frozen=True)

    proposer: str = Field(description="local, llm, llm-one-step, policy, ...")
    model: str | None = Field(None, description="the LLM / policy model name; None for the local proposer")
    prompt_version: str | None = Field(None, description="refs of the prompt templates used (name/version@sha)")
    kb_version: str
    verifier_settings: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    n_candidates: int = 1
    max_rounds: int = 0
    extra: dict[str, Any] = Field(default_factory=dict, description="proposer-specific knobs (temperature, ...)")


def trace_id(condition_key: str, config: TraceConfig) -> str:
    """`tr_` + 20 hex of sha256 over the condition key and the configuration (sorted-key JSON)."""
    doc = json.dumps({"condition": condition_key, "config": config.model_dump(mode="json")}, sort_keys=True)
    return "tr_" + hashlib.sha256(doc.encode()).hexdigest()[:20]


class Attempt(BaseModel):
    """One proposed graph and what the verifiers said about it.

    `report` is the `VerificationReport` as JSON (None when nothing could be parsed); `reward`, `accepted`, the
    precisions and `counts` repeat its headline numbers so summaries never need to parse it.
    """

    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0, description="position in Trace.attempts")
    round: int = Field(ge=0, description="0 = first proposal, k = k-th revision")
    candidate: int = Field(0, ge=0, description="which of the round's k candidates")
    proposer: str
    text: str = Field("", description="the raw four-tag text (the model's answer, or the local proposer's output)")
    graph: ActionGraph | None = None
    graph_hash: str | None = None
    parse_problems: list[str] = Field(default_factory=list)
    failure: str | None = Field(None, description="why no usable graph came out (bad output, transport error)")
    report: dict[str, Any] | None = None
    reward: float | None = None
    accepted: bool = False
    factual_precision: float | None = None
    expression_precision: float | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    note: str = Field("", description="what the proposer did (path used, edits made after feedback)")
    prompts: list[str] = Field(default_factory=list)
    llm_calls: list[dict[str, Any]] = Field(default_factory=list, description="LLMCall records (tokens, latency)")
    repairs: list[dict[str, Any]] = Field(default_factory=list, description="repair rounds: text and problems")
    intermediate: str | None = Field(None, description="two-step scheme: the mechanistic report behind the graph")
    seconds: float = 0.0


class TraceMetrics(BaseModel):
    model_config = ConfigDict(frozen=True)

    reward: float | None = None
    accepted: bool = False
    factual_precision: float | None = None
    expression_precision: float | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    n_attempts: int = 0
    n_failed_attempts: int = 0
    n_rounds: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Provenance(BaseModel):
    """Who and what produced the trace (never secrets)."""

    model_config = ConfigDict(frozen=True)

    proposer: str
    model: str | None = None
    endpoint: str | None = None
    prompt_version: str | None = None
    kb_version: str
    code_version: str
    seed: int
    python: str = Field(default_factory=platform.python_version)
    host: str | None = None


class Trace(BaseModel):
    """One explanation run: condition, config, retrieved context, every attempt, the final graph and its report."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = TRACE_SCHEMA_VERSION
    id: str
    condition: Condition
    dataset_id: str | None = None
    config: TraceConfig
    status: TraceStatus
    context: dict[str, Any] | None = Field(None, description="the RetrievedContext as JSON")
    context_text: str = ""
    signature_method: str | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    final_attempt: int | None = None
    final_graph: ActionGraph | None = None
    final_text: str | None = None
    answer: str = Field("", description="one line: the verified mechanism in words")
    metrics: TraceMetrics = Field(default_factory=TraceMetrics)
    provenance: Provenance
    timings: dict[str, float] = Field(default_factory=dict, description="seconds per pipeline stage and total")
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def condition_key(self) -> str:
        return self.condition.key

    @property
    def final(self) -> Attempt | None:
        return self.attempts[self.final_attempt] if self.final_attempt is not None else None

    @property
    def final_report(self) -> dict[str, Any] | None:
        f = self.final
        return f.report if f is not None else None


class TraceSummary(BaseModel):
    """One row of `TraceStore.list`: enough to choose a trace without loading its document."""

    model_config = ConfigDict(frozen=True)

    id: str
    condition_key: str
    dataset_id: str | None
    proposer: str
    model: str | None
    kb_version: str | None
    seed: int | None
    status: str
    reward: float | None
    accepted: bool | None
    created_at: datetime


class TraceRun(BaseModel):
    """One row of the run ledger: a `mechcell traces build` invocation and what it did."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    config_hash: str
    config: dict[str, Any] = Field(default_factory=dict, description="the batch configuration (no secrets)")
    started_at: datetime
    finished_at: datetime | None = None
    status: str = Field("running", description="running (or crashed: never finished) | finished | interrupted")
    n_conditions: int = 0
    n_skipped: int = 0
    n_todo: int = 0
    n_done: int = 0
    n_failed: int = 0
    host: str | None = None


class TraceFailure(BaseModel):
    """A trace id whose last try produced no usable trace: why, and how often it was tried."""

    model_config = ConfigDict(frozen=True)

    trace_id: str
    condition_key: str
    dataset_id: str | None = None
    run_id: str | None = None
    config_hash: str | None = None
    kind: str = Field(description="timeout | data | endpoint | no_graph | worker | error")
    error: str
    n_tries: int = 1
    first_at: datetime | None = None
    last_at: datetime | None = None


def config_hash(config: dict[str, Any] | BaseModel) -> str:
    """`cfg_` + 16 hex of sha256 over a configuration's sorted-key JSON (the run ledger's grouping key)."""
    doc = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
    return "cfg_" + hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def code_version() -> str:
    """`mechcell.__version__`, plus `+g<commit>` when running from a git checkout (read from .git, no git call)."""
    version = mechcell.__version__
    try:
        root = Path(mechcell.__file__).resolve().parents[1] / ".git"
        head = (root / "HEAD").read_text().strip()
        if head.startswith("ref:"):
            ref = head.split(None, 1)[1]
            ref_file = root / ref
            if ref_file.is_file():
                sha = ref_file.read_text().strip()
            else:  # packed refs
                sha = next(
                    (ln.split()[0] for ln in (root / "packed-refs").read_text().splitlines() if ln.endswith(ref)),
                    "",
                )
        else:
            sha = head
        if sha:
            version += f"+g{sha[:12]}"
    except (OSError, IndexError):
        pass
    return version


# ------------------------------------------------------------------------------------------------ the store

_DDL = """CREATE TABLE IF NOT EXISTS traces (
    id VARCHAR PRIMARY KEY, condition_key VARCHAR NOT NULL, dataset_id VARCHAR, proposer VARCHAR NOT NULL,
    model VARCHAR, kb_version VARCHAR, seed BIGINT, status VARCHAR NOT NULL, reward DOUBLE, accepted BOOLEAN,
    schema_version INTEGER NOT NULL, created_at TIMESTAMP NOT NULL, doc VARCHAR NOT NULL)"""
_DDL_RUNS = """CREATE TABLE IF NOT EXISTS trace_runs (
    run_id VARCHAR PRIMARY KEY, config_hash VARCHAR NOT NULL, config VARCHAR NOT NULL, started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP, status VARCHAR NOT NULL, n_conditions BIGINT NOT NULL, n_skipped BIGINT NOT NULL,
    n_todo BIGINT NOT NULL, n_done BIGINT NOT NULL, n_failed BIGINT NOT NULL, host VARCHAR)"""
_DDL_FAILURES = """CREATE TABLE IF NOT EXISTS trace_failures (
    trace_id VARCHAR PRIMARY KEY, condition_key VARCHAR NOT NULL, dataset_id VARCHAR, run_id VARCHAR,
    config_hash VARCHAR, kind VARCHAR NOT NULL, error VARCHAR NOT NULL, n_tries BIGINT NOT NULL,
    first_at TIMESTAMP NOT NULL, last_at TIMESTAMP NOT NULL)"""
_RUN_COLS = (
    "run_id, config_hash, config, started_at, finished_at, status, n_conditions, n_skipped, n_todo, n_done, "
    "n_failed, host"
)
_FAIL_COLS = "trace_id, condition_key, dataset_id, run_id, config_hash, kind, error, n_tries, first_at, last_at"
_COLS = "id, condition_key, dataset_id, proposer, model, kb_version, seed, status, reward, accepted, created_at"


class TraceStore:
    """Traces in the project DuckDB file (table `traces`: summary columns + the trace's JSON document).

    `TraceStore(store)` shares an open `Store`'s connection (one writer per file); `TraceStore(path)` opens the
    file itself (`read_only=True` for readers). The table is created on first write access, idempotently.
    """

    def __init__(self, store: Store | str | Path, *, read_only: bool = False) -> None:
        from mechcell.datasets.store import Store

        if isinstance(store, Store):
            self._store, self._own = store, False
        else:
            self._store, self._own = Store(store, read_only=read_only), True
        self.read_only = self._store.read_only
        self.path = self._store.path
        if not self.read_only:
            for ddl in (_DDL, _DDL_RUNS, _DDL_FAILURES):
                self.con.execute(ddl)

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        return self._store.con

    @property
    def store(self) -> Store:
        return self._store

    def close(self) -> None:
        if self._own:
            self._store.close()

    def __enter__(self) -> TraceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TraceStore({str(self.path)!r})"

    def _has_table(self, name: str = "traces") -> bool:
        row = self.con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()
        return bool(row and row[0])

    def _writable(self) -> None:
        if self.read_only:
            raise InputError(f"trace store {self.path} was opened read-only")

    @staticmethod
    def _insert(con: duckdb.DuckDBPyConnection, t: Trace) -> None:
        con.execute("DELETE FROM traces WHERE id = ?", [t.id])
        con.execute(
            "INSERT INTO traces VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                t.id,
                t.condition.key,
                t.dataset_id,
                t.config.proposer,
                t.config.model,
                t.config.kb_version,
                t.config.seed,
                t.status,
                t.metrics.reward,
                t.metrics.accepted,
                t.schema_version,
                t.created_at.astimezone(UTC).replace(tzinfo=None),
                t.model_dump_json(),
            ],
        )

    # ------------------------------------------------------------------ writes
    def put(self, trace: Trace) -> str:
        """Store a trace, replacing one with the same id (atomic). Returns the id."""
        self.put_many([trace])
        return trace.id

    def put_many(self, traces: list[Trace]) -> int:
        """Store several traces in one transaction."""
        self._writable()
        if not traces:
            return 0
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            for t in traces:
                self._insert(con, t)
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        return len(traces)

    def delete(self, trace_id: str) -> bool:
        if self.read_only:
            raise InputError(f"trace store {self.path} was opened read-only")
        if not self._has_table():
            return False
        n = self.con.execute("SELECT count(*) FROM traces WHERE id = ?", [trace_id]).fetchone()
        self.con.execute("DELETE FROM traces WHERE id = ?", [trace_id])
        return bool(n and n[0])

    # ------------------------------------------------------------------ reads
    def get(self, trace_id: str) -> Trace:
        """A trace by id (or by a unique prefix of at least 6 characters)."""
        if self._has_table():
            row = self.con.execute("SELECT doc FROM traces WHERE id = ?", [trace_id]).fetchone()
            if row is None and len(trace_id) >= 6:
                rows = self.con.execute(
                    "SELECT doc FROM traces WHERE starts_with(id, ?) LIMIT 2", [trace_id]
                ).fetchall()
                if len(rows) > 1:
                    raise InputError(f"trace id prefix {trace_id!r} is ambiguous in {self.path}")
                row = rows[0] if rows else None
            if row is not None:
                return Trace.model_validate_json(row[0])
        raise NotFoundError(f"trace {trace_id!r} not in {self.path}")

    def find(self, trace_id: str) -> Trace | None:
        try:
            return self.get(trace_id)
        except NotFoundError:
            return None

    def list(
        self,
        *,
        condition_key: str | None = None,
        proposer: str | None = None,
        dataset_id: str | None = None,
        limit: int | None = None,
    ) -> list[TraceSummary]:
        """Summaries, newest first, filtered by condition key / proposer / dataset."""
        if not self._has_table():
            return []
        where, params = [], []
        for col, val in (("condition_key", condition_key), ("proposer", proposer), ("dataset_id", dataset_id)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        sql = f"SELECT {_COLS} FROM traces" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created_at DESC, id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        names = [c.strip() for c in _COLS.split(",")]
        return [TraceSummary(**dict(zip(names, r, strict=True))) for r in self.con.execute(sql, params).fetchall()]

    def for_condition(self, condition_key: str, *, proposer: str | None = None) -> list[Trace]:
        """Every stored trace of one condition, newest first."""
        return [self.get(s.id) for s in self.list(condition_key=condition_key, proposer=proposer)]

    def latest(self, condition_key: str, *, proposer: str | None = None) -> Trace | None:
        rows = self.list(condition_key=condition_key, proposer=proposer, limit=1)
        return self.get(rows[0].id) if rows else None

    def count(self) -> int:
        if not self._has_table():
            return 0
        row = self.con.execute("SELECT count(*) FROM traces").fetchone()
        return int(row[0]) if row else 0

    def condition_keys(self) -> list[str]:
        if not self._has_table():
            return []
        return [r[0] for r in self.con.execute("SELECT DISTINCT condition_key FROM traces ORDER BY 1").fetchall()]

    def ids(self) -> set[str]:
        """Every stored trace id (what a resumed batch skips)."""
        if not self._has_table():
            return set()
        return {r[0] for r in self.con.execute("SELECT id FROM traces").fetchall()}

    def iter_docs(self, *, batch_size: int = 500) -> Iterator[Trace]:
        """Every stored trace, in id order, streamed in batches (exports never hold the corpus in memory)."""
        if not self._has_table():
            return
        last = ""
        while True:
            rows = self.con.execute(
                "SELECT id, doc FROM traces WHERE id > ? ORDER BY id LIMIT ?", [last, int(batch_size)]
            ).fetchall()
            if not rows:
                return
            for _, doc in rows:
                yield Trace.model_validate_json(doc)
            last = rows[-1][0]

    # ------------------------------------------------------------------ run ledger + failures (batch runs)
    def start_run(self, run: TraceRun) -> None:
        self._writable()
        self.con.execute(
            f"INSERT INTO trace_runs ({_RUN_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                run.run_id,
                run.config_hash,
                json.dumps(run.config, sort_keys=True, default=str),
                _naive(run.started_at),
                _naive(run.finished_at) if run.finished_at else None,
                run.status,
                run.n_conditions,
                run.n_skipped,
                run.n_todo,
                run.n_done,
                run.n_failed,
                run.host,
            ],
        )

    def finish_run(self, run_id: str, status: str = "finished") -> TraceRun:
        self._writable()
        self.con.execute(
            "UPDATE trace_runs SET finished_at = ?, status = ? WHERE run_id = ?",
            [_naive(datetime.now(UTC)), status, run_id],
        )
        return self.run(run_id)

    def run(self, run_id: str) -> TraceRun:
        row = None
        if self._has_table("trace_runs"):
            row = self.con.execute(f"SELECT {_RUN_COLS} FROM trace_runs WHERE run_id = ?", [run_id]).fetchone()
        if row is None:
            raise NotFoundError(f"run {run_id!r} not in {self.path}")
        return self._run_row(row)

    def runs(self) -> list[TraceRun]:
        """The run ledger, oldest first."""
        if not self._has_table("trace_runs"):
            return []
        rows = self.con.execute(f"SELECT {_RUN_COLS} FROM trace_runs ORDER BY started_at, run_id").fetchall()
        return [self._run_row(r) for r in rows]

    @staticmethod
    def _run_row(r: tuple[Any, ...]) -> TraceRun:
        names = [c.strip() for c in _RUN_COLS.split(",")]
        d = dict(zip(names, r, strict=True))
        d["config"] = json.loads(d["config"]) if d["config"] else {}
        return TraceRun(**d)

    def failures(self, *, kind: str | None = None) -> list[TraceFailure]:
        if not self._has_table("trace_failures"):
            return []
        sql = f"SELECT {_FAIL_COLS} FROM trace_failures" + (" WHERE kind = ?" if kind else "") + " ORDER BY trace_id"
        names = [c.strip() for c in _FAIL_COLS.split(",")]
        rows = self.con.execute(sql, [kind] if kind else []).fetchall()
        return [TraceFailure(**dict(zip(names, r, strict=True))) for r in rows]

    def failed_ids(self) -> set[str]:
        if not self._has_table("trace_failures"):
            return set()
        return {r[0] for r in self.con.execute("SELECT trace_id FROM trace_failures").fetchall()}

    def record_result(
        self,
        trace: Trace,
        *,
        run_id: str | None = None,
        expected_id: str | None = None,
        failure: TraceFailure | None = None,
    ) -> None:
        """Store a batch result in one transaction: the trace, its failure bookkeeping and the ledger's counts.

        `failure` (a trace that exists but is not usable, e.g. every attempt failed) is recorded beside the trace
        so `--retry-failed` finds it; otherwise an earlier failure of this id is cleared. `expected_id` is the id
        the coordinator predicted (cleared as well when the trace came out under another id)."""
        self._writable()
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            self._insert(con, trace)
            ids = [trace.id] + ([expected_id] if expected_id and expected_id != trace.id else [])
            for i in ids:
                con.execute("DELETE FROM trace_failures WHERE trace_id = ?", [i])
            if failure is not None:
                self._upsert_failure(con, failure)
            if run_id is not None:
                col = "n_failed" if failure is not None else "n_done"
                con.execute(f"UPDATE trace_runs SET {col} = {col} + 1 WHERE run_id = ?", [run_id])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise

    def record_failure(self, failure: TraceFailure) -> None:
        """Record (or count one more try of) a failed item, and the ledger's count, in one transaction."""
        self._writable()
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            self._upsert_failure(con, failure)
            if failure.run_id is not None:
                con.execute("UPDATE trace_runs SET n_failed = n_failed + 1 WHERE run_id = ?", [failure.run_id])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise

    @staticmethod
    def _upsert_failure(con: duckdb.DuckDBPyConnection, f: TraceFailure) -> None:
        now = _naive(f.last_at or datetime.now(UTC))
        prev = con.execute("SELECT n_tries, first_at FROM trace_failures WHERE trace_id = ?", [f.trace_id]).fetchone()
        n, first = (int(prev[0]) + 1, prev[1]) if prev else (f.n_tries, _naive(f.first_at or datetime.now(UTC)))
        con.execute("DELETE FROM trace_failures WHERE trace_id = ?", [f.trace_id])
        con.execute(
            f"INSERT INTO trace_failures ({_FAIL_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [f.trace_id, f.condition_key, f.dataset_id, f.run_id, f.config_hash, f.kind, f.error, n, first, now],
        )


def _naive(t: datetime) -> datetime:
    """UTC without tzinfo (DuckDB TIMESTAMP columns)."""
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo is not None else t
