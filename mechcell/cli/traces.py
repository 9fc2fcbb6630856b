"""`mechcell traces build | export | stats | runs`: the dataset builder's door (VC-TRACES at scale).

Thin: parse options, call `mechcell.agents.batch.run_batch` / `mechcell.datasets.export`, render. Progress goes
to stderr; with `--json` stdout carries exactly one JSON document.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mechcell.cli._common import JsonOpt, KbOpt, SeedOpt, StoreOpt, emit_json, err_console, friendly_errors, out_console

app = typer.Typer(
    help="Batch trace building (resumable), exports for training, corpus statistics.", no_args_is_help=True
)


def _split(values: list[str] | None) -> list[str]:
    """`--drugs a,b --drugs c` → [a, b, c]."""
    out: list[str] = []
    for v in values or []:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


def _doses(values: list[str] | None) -> list[float]:
    from mechcell.errors import InputError

    out = []
    for v in _split(values):
        try:
            out.append(float(v))
        except ValueError:
            raise InputError(f"--doses: {v!r} is not a number") from None
    return out


@app.command("build")
@friendly_errors
def build_cmd(
    store: StoreOpt = None,
    kb: KbOpt = None,
    proposer: Annotated[str, typer.Option("--proposer", help="local | llm | policy | module:factory")] = "local",
    workers: Annotated[int, typer.Option("--workers", min=1, help="worker processes (local) or actors (ray)")] = 1,
    executor: Annotated[str, typer.Option("--executor", help="local | ray")] = "local",
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="items in flight in one process (LLM I/O; with --workers 1)")
    ] = 1,
    seed: SeedOpt = None,
    drugs: Annotated[
        list[str] | None, typer.Option("--drugs", help="perturbation names (repeat or comma-list)")
    ] = None,
    cell_lines: Annotated[
        list[str] | None, typer.Option("--cell-lines", help="cell line ids or names (repeat or comma-list)")
    ] = None,
    doses: Annotated[list[str] | None, typer.Option("--doses", help="doses (repeat or comma-list)")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="only this registered dataset id")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="at most this many conditions")] = None,
    candidates: Annotated[int | None, typer.Option("--candidates", min=1, help="candidates per round")] = None,
    rounds: Annotated[int | None, typer.Option("--rounds", min=0, help="revision rounds")] = None,
    cells: Annotated[bool, typer.Option("--cells/--no-cells", help="cell-level tests (slower)")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="run recorded failures again")] = False,
    timeout: Annotated[float | None, typer.Option("--timeout", help="seconds per item")] = None,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="ray.init(address=...); default: a local Ray instance")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Explain every condition of the store (or the filtered ones) not yet traced under this configuration.

    Resumable: a re-run after a crash, kill -9 or Ctrl-C skips completed traces. Failures are recorded
    (`mechcell traces stats`) and re-run with --retry-failed."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from mechcell.agents.batch import BatchConfig, BatchProgress, run_batch
    from mechcell.config import load_settings
    from mechcell.errors import InputError

    if executor not in ("local", "ray"):
        raise InputError(f"--executor {executor!r}: use local or ray")
    settings = load_settings(store_path=store, kb_path=kb, seed=seed)
    cfg = BatchConfig(
        proposer=proposer,
        kb=str(kb) if kb is not None else (str(settings.kb_path) if settings.kb_path else None),
        executor=executor,  # type: ignore[arg-type]
        workers=workers,
        concurrency=concurrency,
        seed=seed,
        n_candidates=candidates,
        max_rounds=rounds,
        use_cells=cells,
        dataset_id=dataset,
        drugs=_split(drugs),
        cell_lines=_split(cell_lines),
        doses=_doses(doses),
        limit=limit,
        retry_failed=retry_failed,
        timeout=timeout,
        ray_address=ray_address,
    )
    bar = Progress(
        TextColumn("[bold]traces[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}/min"),
        TextColumn("[red]{task.fields[failed]} failed[/]"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[last]}", style="dim"),
        console=err_console,
        transient=False,
    )
    state: dict[str, Any] = {}

    def on_start(p: BatchProgress) -> None:
        import time

        state["t0"] = time.perf_counter()
        state["task"] = bar.add_task("traces", total=p.total, rate="-", failed=0, last="")
        if p.skipped:
            err_console.print(f"resuming: {p.skipped} condition(s) already traced or failed are skipped")

    def on_progress(p: BatchProgress) -> None:
        import time

        dt = time.perf_counter() - state["t0"]
        n = p.done + p.failed
        rate = f"{60.0 * n / dt:.1f}" if dt > 0 else "-"
        bar.update(state["task"], completed=n, rate=rate, failed=p.failed, last=f"{p.last} {p.last_status}")
        if not err_console.is_terminal:  # logs, not a live bar: one line per item
            err_console.print(f"[{n}/{p.total}] {p.last} {p.last_status}", highlight=False, markup=False)

    with bar:
        report = run_batch(
            cfg, store=settings.store_path, settings=settings, on_start=on_start, on_progress=on_progress
        )
    if json_out:
        emit_json(report)
        return
    out_console.print(
        f"run {report.run_id}: {report.n_done} traced, {report.n_failed} failed, {report.n_skipped} skipped of "
        f"{report.n_conditions} condition(s) in {report.seconds:.1f} s"
        + (f" ({report.traces_per_minute:.1f} traces/min)" if report.traces_per_minute else ""),
        highlight=False,
    )
    if report.failures_by_kind:
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(report.failures_by_kind.items()))
        out_console.print(f"failures by kind — {kinds}; re-run them with --retry-failed", highlight=False)


@app.command("export")
@friendly_errors
def export_cmd(
    out: Annotated[
        Path, typer.Option("--out", help="output file (parquet, jsonl, sft, rewards, labels) or folder (hf)")
    ],
    fmt: Annotated[str, typer.Option("--format", help="parquet | jsonl | hf | sft | rewards | labels")] = "parquet",
    store: StoreOpt = None,
    accepted_only: Annotated[
        bool, typer.Option("--accepted-only", help="only accepted traces (parquet/jsonl/hf)")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Export the store's traces in a VC-TRACES-compatible layout or as a training view (see docs/traces.md)."""
    from mechcell.config import load_settings
    from mechcell.datasets.export import export_traces

    settings = load_settings(store_path=store)
    result = export_traces(settings.store_path, out, fmt, accepted_only=accepted_only)
    if json_out:
        emit_json(result)
        return
    out_console.print(f"wrote {result.n_rows} row(s) ({fmt}) to {result.path}", highlight=False)


@app.command("stats")
@friendly_errors
def stats_cmd(store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """Acceptance rate, factual precision distribution, failures by kind, tokens, runs."""
    from mechcell.config import load_settings
    from mechcell.datasets.export import trace_stats

    settings = load_settings(store_path=store)
    stats = trace_stats(settings.store_path)
    if json_out:
        emit_json(stats)
        return
    s = stats
    out_console.print(
        f"{s.n_traces} trace(s) over {s.n_conditions} condition(s); accepted {s.n_accepted} "
        f"({(s.acceptance_rate or 0) * 100:.1f}%); statuses: {s.statuses}",
        highlight=False,
    )
    fp = s.factual_precision
    if fp.get("n"):
        out_console.print(
            f"factual precision: mean {fp['mean']:.3f}, median {fp['median']:.3f}, p10 {fp['p10']:.3f}, "
            f"p90 {fp['p90']:.3f} (n={fp['n']})",
            highlight=False,
        )
    out_console.print(f"failures by kind: {s.failures_by_kind or 'none'}", highlight=False)
    out_console.print(
        f"tokens: {s.prompt_tokens} prompt + {s.completion_tokens} completion; {len(s.runs)} run(s) in the ledger",
        highlight=False,
    )
