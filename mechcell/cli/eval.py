"""`mechcell eval`: how good we are. `eval recovery` scores stored traces against a synthetic world's truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mechcell.cli._common import JsonOpt, KbOpt, StoreOpt, emit_json, err_console, friendly_errors, out_console

app = typer.Typer(help="Evaluation: mechanism recovery against synthetic worlds.", no_args_is_help=True)


@app.command("recovery")
@friendly_errors
def recovery_cmd(
    truth: Annotated[Path, typer.Option("--truth", help="a world's truth.json (or the world directory)")],
    store: StoreOpt = None,
    kb: KbOpt = None,
    report: Annotated[Path, typer.Option("--report", help="directory for recovery.md and its PNG plots")] = Path(
        "recovery_report"
    ),
    proposer: Annotated[str | None, typer.Option("--proposer", help="only traces of this proposer")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Edge precision / recall of the newest stored trace of each condition against the planted graphs."""
    from rich.table import Table

    from mechcell.config import load_settings
    from mechcell.datasets.synthetic import load_truth
    from mechcell.datasets.traces import TraceStore
    from mechcell.errors import NotFoundError
    from mechcell.eval.recovery import evaluate_recovery, latest_traces
    from mechcell.eval.report import fmt, summary_lines, write_recovery_report
    from mechcell.knowledge import load_kb

    settings = load_settings(store_path=store, kb_path=kb)
    world = load_truth(truth)
    if not settings.store_path.is_file():
        raise NotFoundError(f"store {settings.store_path} does not exist (run `mechcell demo` or pass --store)")
    with TraceStore(settings.store_path, read_only=True) as ts:
        traces = latest_traces(ts, world.conditions, proposer=proposer)
    if not traces:
        raise NotFoundError(
            f"no trace in {settings.store_path} for any of the {len(world.conditions)} conditions of {truth}"
        )
    knowledge = load_kb(settings.kb_path, settings=settings)
    if knowledge.version != world.kb_version:
        err_console.print(
            f"note: the world was planted with KB {world.kb_version}; names are resolved with KB {knowledge.version}",
            highlight=False,
        )
    result = evaluate_recovery(world, traces, kb=knowledge)
    path = write_recovery_report(
        result,
        report,
        preamble=[
            f"Traces: newest per condition in `{settings.store_path}`"
            + (f", proposer `{proposer}`" if proposer else "")
            + "."
        ],
    )
    if json_out:
        emit_json({"report": str(path), **result.model_dump(mode="json")})
        return
    table = Table(title=f"recovery against {truth}", title_justify="left")
    for col in ("condition", "active", "status", "edge P", "edge R", "factual P", "planted path"):
        table.add_column(col, no_wrap=True)
    for r in result.rows:
        table.add_row(
            r.key,
            "yes" if r.active else "no",
            r.status,
            fmt(r.precision),
            fmt(r.recall),
            fmt(r.factual_precision),
            "—" if r.path_recovered is None else ("yes" if r.path_recovered else "no"),
        )
    out_console.print(table)
    for line in summary_lines(result):
        out_console.print(line.replace("**", ""), highlight=False, markup=False)
    out_console.print(f"report: {path}", highlight=False)
