"""Exports of the trace store: the VC-TRACES-compatible corpus (Parquet, JSONL, a Hugging Face folder) and the
training views (SFT pairs, reward-labelled attempts, per-condition expression labels), plus corpus statistics.

    export_traces("mechcell.duckdb", "traces.parquet", "parquet")
    trace_stats("mechcell.duckdb").acceptance_rate

Why streamed: a Tahoe-scale corpus is ~57k traces with several attempts each; traces are read from DuckDB in
id order in batches and written batch by batch, so memory stays flat. Column layout: docs/traces.md.
The store is opened read-only (exports run beside a finished build; a running build holds the writer lock).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from mechcell.datasets.traces import Trace, TraceRun, TraceStore
from mechcell.errors import InputError

__all__ = [
    "EXPORT_FORMATS",
    "LABEL_CONVENTIONS",
    "ExportResult",
    "TraceStats",
    "export_traces",
    "label_rows",
    "reward_rows",
    "sft_prompt",
    "sft_rows",
    "trace_row",
    "trace_stats",
]

ExportFormat = Literal["parquet", "jsonl", "hf", "sft", "rewards", "labels"]
EXPORT_FORMATS: tuple[str, ...] = ("parquet", "jsonl", "hf", "sft", "rewards", "labels")
#: column names of the labels view, as STATE / cell-load / cell-eval name them in their configs
LABEL_CONVENTIONS = {"pert_col": "drug", "cell_type_key": "cell_line", "batch_col": "plate", "control_pert": "DMSO_TF"}
_BATCH = 256


class ExportResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    format: str
    path: str
    n_rows: int
    files: list[str] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ rows


def _verdicts(report: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not report:
        return []
    return [
        {"claim_id": c.get("claim_id"), "kind": c.get("kind"), "status": c.get("status")}
        for c in report.get("claims", [])
    ]


def trace_row(t: Trace, *, nested: bool = False) -> dict[str, Any]:
    """One trace as a flat VC-TRACES-style row. Nested values (graph, verdicts, attempts, context) are JSON
    strings unless `nested` (JSONL keeps them as objects)."""

    def enc(v: Any) -> Any:
        return v if nested else (json.dumps(v, sort_keys=True) if v is not None else None)

    c = t.condition
    final = t.final
    return {
        "id": t.id,
        "schema_version": t.schema_version,
        "condition_key": c.key,
        "drug": c.perturbation,
        "dose": c.dose,
        "dose_unit": c.dose_unit,
        "cell_line_id": c.context,
        "cell_line": c.context_name or c.context,
        "plate": c.batch,
        "control": c.control,
        "dataset_id": t.dataset_id,
        "status": t.status,
        "accepted": t.metrics.accepted,
        "reward": t.metrics.reward,
        "factual_precision": t.metrics.factual_precision,
        "expression_precision": t.metrics.expression_precision,
        "text": t.final_text,
        "answer": t.answer,
        "graph": enc(t.final_graph.model_dump(mode="json") if t.final_graph is not None else None),
        "graph_hash": final.graph_hash if final is not None else None,
        "verdicts": enc(_verdicts(t.final_report)),
        "counts": enc(dict(t.metrics.counts)),
        "n_attempts": t.metrics.n_attempts,
        "n_rounds": t.metrics.n_rounds,
        "attempts": enc(
            [
                {
                    "index": a.index,
                    "round": a.round,
                    "candidate": a.candidate,
                    "text": a.text,
                    "graph_hash": a.graph_hash,
                    "reward": a.reward,
                    "accepted": a.accepted,
                    "failure": a.failure,
                }
                for a in t.attempts
            ]
        ),
        "context": t.context_text,
        "proposer": t.provenance.proposer,
        "model": t.provenance.model,
        "prompt_version": t.provenance.prompt_version,
        "kb_version": t.provenance.kb_version,
        "code_version": t.provenance.code_version,
        "seed": t.provenance.seed,
        "prompt_tokens": t.metrics.prompt_tokens,
        "completion_tokens": t.metrics.completion_tokens,
        "seconds": t.timings.get("total"),
        "created_at": t.created_at.isoformat(),
    }


_TRACE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("schema_version", pa.int32()),
        ("condition_key", pa.string()),
        ("drug", pa.string()),
        ("dose", pa.float64()),
        ("dose_unit", pa.string()),
        ("cell_line_id", pa.string()),
        ("cell_line", pa.string()),
        ("plate", pa.string()),
        ("control", pa.string()),
        ("dataset_id", pa.string()),
        ("status", pa.string()),
        ("accepted", pa.bool_()),
        ("reward", pa.float64()),
        ("factual_precision", pa.float64()),
        ("expression_precision", pa.float64()),
        ("text", pa.string()),
        ("answer", pa.string()),
        ("graph", pa.string()),
        ("graph_hash", pa.string()),
        ("verdicts", pa.string()),
        ("counts", pa.string()),
        ("n_attempts", pa.int32()),
        ("n_rounds", pa.int32()),
        ("attempts", pa.string()),
        ("context", pa.string()),
        ("proposer", pa.string()),
        ("model", pa.string()),
        ("prompt_version", pa.string()),
        ("kb_version", pa.string()),
        ("code_version", pa.string()),
        ("seed", pa.int64()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("seconds", pa.float64()),
        ("created_at", pa.string()),
    ]
)

SFT_SYSTEM = (
    "You explain drug perturbations in single-cell expression data. Answer in the four-tag format: "
    "<think>…</think> <answer>…</answer> <explain>…</explain> <dag>…</dag>, where <dag> lists action primitives "
    "(drug → target → activity → pathway/TF → expression change) and their edges."
)


def sft_prompt(t: Trace) -> str:
    """The SFT prompt of a trace: the condition and the retrieved context the proposer saw (self-contained, so a
    trainer needs no KB; `prompt_version` in the row says which proposer templates produced the completion)."""
    c = t.condition
    dose = f" at {c.dose:g} {c.dose_unit or ''}".rstrip() if c.dose is not None else ""
    cell = c.context_name or c.context or "an unnamed context"
    plate = f", plate {c.batch}" if c.batch else ""
    return (
        f"Condition: {c.perturbation}{dose} in {cell}{plate}, compared with {c.control} controls "
        f"(key {c.key}).\n\nRetrieved context:\n{t.context_text.strip() or '(none)'}\n\n"
        "Propose the mechanistic action graph that explains the expression response."
    )


def sft_rows(t: Trace) -> list[dict[str, Any]]:
    """Prompt → accepted text (one row per accepted trace)."""
    if not (t.metrics.accepted and t.final_text):
        return []
    return [
        {
            "id": t.id,
            "condition_key": t.condition.key,
            "system": SFT_SYSTEM,
            "prompt": sft_prompt(t),
            "completion": t.final_text,
            "reward": t.metrics.reward,
            "proposer": t.provenance.proposer,
            "prompt_version": t.provenance.prompt_version,
            "kb_version": t.provenance.kb_version,
        }
    ]


def reward_rows(t: Trace) -> list[dict[str, Any]]:
    """Every attempt with its reward (RL / f-TB samples); an attempt with no readable graph has reward 0 and
    `valid=False`, so policies learn what not to write."""
    prompt = sft_prompt(t)
    return [
        {
            "trace_id": t.id,
            "condition_key": t.condition.key,
            "attempt": a.index,
            "round": a.round,
            "candidate": a.candidate,
            "prompt": prompt,
            "text": a.text,
            "graph_hash": a.graph_hash,
            "valid": a.report is not None,
            "reward": float(a.reward) if a.reward is not None else 0.0,
            "accepted": a.accepted,
            "factual_precision": a.factual_precision,
            "expression_precision": a.expression_precision,
            "n_supported": int(a.counts.get("supported", 0)),
            "n_contradicted": int(a.counts.get("contradicted", 0)),
            "n_inconclusive": int(a.counts.get("inconclusive", 0)),
            "final": a.index == t.final_attempt,
            "failure": a.failure,
            "proposer": a.proposer,
        }
        for a in t.attempts
    ]


def label_rows(sig: Any, t: Trace | None, *, alpha: float = 0.05) -> list[dict[str, Any]]:
    """Per-condition, per-gene labels from a stored signature: the log2 fold change (delta), DE flag
    (padj < alpha) and direction (+1 / −1 / 0 when not DE), keyed by the STATE / cell-eval column names."""
    c = sig.condition
    pert, cell, batch = (
        LABEL_CONVENTIONS["pert_col"],
        LABEL_CONVENTIONS["cell_type_key"],
        LABEL_CONVENTIONS["batch_col"],
    )
    lfc = np.asarray(sig.log2fc, dtype=np.float64)
    padj = np.asarray(sig.padj, dtype=np.float64)
    de = np.isfinite(padj) & (padj < alpha) & np.isfinite(lfc)
    direction = np.where(de, np.sign(lfc), 0).astype(np.int8)
    out = []
    for i, g in enumerate(sig.genes):
        out.append(
            {
                pert: c.perturbation,
                cell: c.context_name or c.context,
                batch: c.batch,
                "control_pert": c.control,
                "dose": c.dose,
                "dose_unit": c.dose_unit,
                "condition_key": c.key,
                "gene": g,
                "delta": float(lfc[i]) if np.isfinite(lfc[i]) else None,
                "pvalue": float(sig.pvalue[i]) if math.isfinite(sig.pvalue[i]) else None,
                "padj": float(padj[i]) if np.isfinite(padj[i]) else None,
                "de": bool(de[i]),
                "direction": int(direction[i]),
                "method": sig.method,
                "trace_id": t.id if t is not None else None,
                "trace_accepted": t.metrics.accepted if t is not None else None,
            }
        )
    return out


# ------------------------------------------------------------------------------------------------ writers


class _ParquetSink:
    """Batched Parquet writing; the schema comes from `schema` or the first batch."""

    def __init__(self, path: Path, schema: pa.Schema | None = None, meta: dict[str, str] | None = None) -> None:
        self.path, self.schema, self.meta = path, schema, meta
        self.writer: pq.ParquetWriter | None = None
        self.buf: list[dict[str, Any]] = []
        self.n = 0

    def add(self, rows: list[dict[str, Any]]) -> None:
        self.buf.extend(rows)
        if len(self.buf) >= 4 * _BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.buf:
            return
        table = pa.Table.from_pylist(self.buf, schema=self.schema)
        if self.writer is None:
            schema = table.schema
            if self.meta:
                schema = schema.with_metadata({**(schema.metadata or {}), **self.meta})
            self.schema = schema
            self.writer = pq.ParquetWriter(self.path, schema)
        self.writer.write_table(table.cast(self.schema))
        self.n += len(self.buf)
        self.buf = []

    def close(self) -> None:
        self.flush()
        if self.writer is None:  # nothing written: an empty file with the schema, still loadable
            schema = self.schema if self.schema is not None else pa.schema([("id", pa.string())])
            if self.meta:
                schema = schema.with_metadata(self.meta)
            pq.write_table(schema.empty_table(), self.path)
        else:
            self.writer.close()


def _traces(ts: TraceStore, accepted_only: bool) -> Iterator[Trace]:
    for t in ts.iter_docs(batch_size=_BATCH):
        if not accepted_only or t.metrics.accepted:
            yield t


def _hf_card(n: int, store: Path) -> str:
    return (
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*.parquet\n"
        "tags:\n- biology\n- single-cell\n- mechanistic-reasoning\n---\n\n"
        "# mechcell traces (VC-TRACES layout)\n\n"
        f"{n} verified explanation traces exported by `mechcell traces export --format hf` from `{store.name}`.\n"
        "Each row is one condition (drug × dose × cell line × plate): the final four-tag text (`text`), the parsed "
        "graph (`graph`, JSON), the verifiers' per-claim verdicts (`verdicts`, JSON), the reward and precisions, "
        "every attempt (`attempts`, JSON) and the provenance (proposer, model, prompt, KB and code versions, seed).\n"
        "Column reference: docs/traces.md of the mechcell repository.\n\n"
        "```python\nfrom datasets import load_dataset\nds = load_dataset('path/to/this/folder')['train']\n```\n"
    )


def export_traces(
    store: str | Path, out: str | Path, fmt: str = "parquet", *, accepted_only: bool = False, alpha: float = 0.05
) -> ExportResult:
    """Write the store's traces as `fmt` (see EXPORT_FORMATS) to `out` (a file; a folder for `hf`)."""
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"--format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
    out = Path(out)
    store = Path(store)
    with TraceStore(store, read_only=True) as ts:
        if fmt == "jsonl":
            out.parent.mkdir(parents=True, exist_ok=True)
            n = 0
            tmp = out.with_name(out.name + ".part")
            with tmp.open("w", encoding="utf-8") as fh:
                for t in _traces(ts, accepted_only):
                    row = trace_row(t, nested=True)
                    fh.write(json.dumps(row, sort_keys=False, allow_nan=False, default=str) + "\n")
                    n += 1
            tmp.replace(out)
            return ExportResult(format=fmt, path=str(out), n_rows=n, files=[str(out)])
        if fmt in ("parquet", "hf"):
            if fmt == "hf":
                (out / "data").mkdir(parents=True, exist_ok=True)
                target = out / "data" / "train-00000-of-00001.parquet"
            else:
                out.parent.mkdir(parents=True, exist_ok=True)
                target = out
            sink = _ParquetSink(target, _TRACE_SCHEMA, {"mechcell.layout": "vc-traces/1"})
            for t in _traces(ts, accepted_only):
                sink.add([trace_row(t)])
            sink.close()
            files = [str(target)]
            if fmt == "hf":
                (out / "README.md").write_text(_hf_card(sink.n, store), encoding="utf-8")
                files.append(str(out / "README.md"))
            return ExportResult(format=fmt, path=str(out), n_rows=sink.n, files=files)
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "sft":
            sink = _ParquetSink(out)
            for t in _traces(ts, True):
                sink.add(sft_rows(t))
            sink.close()
            return ExportResult(format=fmt, path=str(out), n_rows=sink.n, files=[str(out)])
        if fmt == "rewards":
            sink = _ParquetSink(out)
            for t in _traces(ts, accepted_only):
                sink.add(reward_rows(t))
            sink.close()
            return ExportResult(format=fmt, path=str(out), n_rows=sink.n, files=[str(out)])
        # labels: one block per traced condition that has a stored signature
        from mechcell.errors import NotFoundError

        meta = {**LABEL_CONVENTIONS, "alpha": alpha, "layout": "long: one row per condition × gene"}
        sink = _ParquetSink(out, meta={"mechcell.labels": json.dumps(meta)})
        seen: set[tuple[str | None, str]] = set()
        missing = 0
        for t in _traces(ts, accepted_only):
            k = (t.dataset_id, t.condition.key)
            if k in seen:
                continue
            seen.add(k)
            try:
                sig = ts.store.signature(t.condition.key, t.signature_method, dataset_id=t.dataset_id)
            except NotFoundError:
                missing += 1
                continue
            sink.add(label_rows(sig, t, alpha=alpha))
        sink.close()
        side = out.with_name(out.name + ".meta.json")
        side.write_text(json.dumps({**meta, "n_conditions": len(seen) - missing}, indent=1), encoding="utf-8")
        return ExportResult(
            format=fmt,
            path=str(out),
            n_rows=sink.n,
            files=[str(out), str(side)],
            meta={**meta, "n_conditions": len(seen) - missing, "n_without_signature": missing},
        )


# ------------------------------------------------------------------------------------------------ stats


class TraceStats(BaseModel):
    """`mechcell traces stats --json`."""

    model_config = ConfigDict(frozen=True)

    store: str
    n_traces: int
    n_conditions: int
    n_accepted: int
    acceptance_rate: float | None
    statuses: dict[str, int]
    factual_precision: dict[str, Any]
    expression_precision: dict[str, Any]
    reward: dict[str, Any]
    failures_by_kind: dict[str, int]
    n_failures: int
    prompt_tokens: int
    completion_tokens: int
    n_llm_calls: int
    by_proposer: dict[str, int]
    runs: list[TraceRun]


def _dist(values: list[float]) -> dict[str, Any]:
    """n, mean, quantiles and a 10-bin histogram on [0, 1] (float64)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"n": 0}
    hist, edges = np.histogram(np.clip(v, 0.0, 1.0), bins=10, range=(0.0, 1.0))
    q = np.quantile(v, [0.1, 0.25, 0.5, 0.75, 0.9])
    return {
        "n": int(v.size),
        "mean": float(v.mean()),
        "p10": float(q[0]),
        "p25": float(q[1]),
        "median": float(q[2]),
        "p75": float(q[3]),
        "p90": float(q[4]),
        "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in hist]},
    }


def trace_stats(store: str | Path) -> TraceStats:
    """Acceptance rate, precision / reward distributions, failures by kind, token cost, the run ledger."""
    store = Path(store)
    with TraceStore(store, read_only=True) as ts:
        statuses: Counter[str] = Counter()
        by_proposer: Counter[str] = Counter()
        fp: list[float] = []
        ep: list[float] = []
        rw: list[float] = []
        conds: set[str] = set()
        n = n_acc = pt = ct = calls = 0
        for t in ts.iter_docs(batch_size=_BATCH):
            n += 1
            statuses[t.status] += 1
            by_proposer[t.provenance.proposer] += 1
            conds.add(t.condition.key)
            n_acc += bool(t.metrics.accepted)
            if t.metrics.factual_precision is not None:
                fp.append(t.metrics.factual_precision)
            if t.metrics.expression_precision is not None:
                ep.append(t.metrics.expression_precision)
            if t.metrics.reward is not None:
                rw.append(t.metrics.reward)
            pt += t.metrics.prompt_tokens
            ct += t.metrics.completion_tokens
            calls += sum(len(a.llm_calls) for a in t.attempts)
        fails = ts.failures()
        return TraceStats(
            store=str(store),
            n_traces=n,
            n_conditions=len(conds),
            n_accepted=n_acc,
            acceptance_rate=(n_acc / n) if n else None,
            statuses=dict(statuses),
            factual_precision=_dist(fp),
            expression_precision=_dist(ep),
            reward=_dist(rw),
            failures_by_kind=dict(Counter(f.kind for f in fails)),
            n_failures=len(fails),
            prompt_tokens=pt,
            completion_tokens=ct,
            n_llm_calls=calls,
            by_proposer=dict(by_proposer),
            runs=ts.runs(),
        )
