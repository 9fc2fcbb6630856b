"""`mechcell explain KEY`: run the pipeline on one condition; print the final graph, its report and the trace id.

A thin door over `mechcell.agents.pipeline.explain`. Without an LLM endpoint configured the local proposer serves.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mechcell.cli._common import (
    JsonOpt,
    KbOpt,
    SeedOpt,
    StoreOpt,
    emit_json,
    err_console,
    friendly_errors,
    out_console,
)

if TYPE_CHECKING:
    from mechcell.datasets.traces import Trace

ProposerOpt = Annotated[
    str | None,
    typer.Option(
        "--proposer",
        help="local | llm | llm-one-step | policy (MECHCELL_POLICY_CHECKPOINT) | a registered name | module:factory "
        "(default: llm when an endpoint "
        "is configured, else local)",
    ),
]


def trace_document(trace: Trace) -> dict[str, Any]:
    """The JSON the CLI prints for a trace: id, condition, status, answer, graph text, report, metrics."""
    final = trace.final
    return {
        "trace_id": trace.id,
        "condition_key": trace.condition.key,
        "status": trace.status,
        "answer": trace.answer,
        "graph": (trace.final_text or trace.final_graph.to_text()) if trace.final_graph is not None else None,
        "report": final.report if final is not None else None,
        "metrics": trace.metrics.model_dump(mode="json"),
        "provenance": trace.provenance.model_dump(mode="json"),
        "timings": trace.timings,
        "attempts": [
            {
                "index": a.index,
                "round": a.round,
                "candidate": a.candidate,
                "reward": a.reward,
                "accepted": a.accepted,
                "failure": a.failure,
                "note": a.note,
            }
            for a in trace.attempts
        ],
    }


def render_trace(trace: Trace) -> None:
    """Human output: the graph (four-tag text), the verdict table, the headline numbers and the trace id."""
    from rich.panel import Panel

    from mechcell.cli.verify import render_report
    from mechcell.verifiers.types import VerificationReport

    out_console.print(f"[bold]{trace.condition.key}[/] — {trace.status}", highlight=False)
    out_console.print(trace.answer, highlight=False, markup=False)
    if trace.final_graph is not None:
        text = trace.final_text or trace.final_graph.to_text()
        out_console.print(Panel(text.strip(), title="final graph", expand=False), markup=False, highlight=False)
    final = trace.final
    if final is not None and final.report is not None:
        render_report(VerificationReport.model_validate(final.report))
    fails = [a for a in trace.attempts if a.failure]
    for a in fails[:5]:
        out_console.print(f"  attempt {a.index} failed: {a.failure}", highlight=False, markup=False)
    out_console.print(
        f"trace {trace.id}  ({len(trace.attempts)} attempt(s), {trace.metrics.n_rounds} revision round(s), "
        f"{trace.timings.get('total', 0):.1f} s, proposer {trace.provenance.proposer})",
        highlight=False,
    )


@friendly_errors
def explain_cmd(
    key: Annotated[str, typer.Argument(help="condition key, e.g. 'Trametinib|0.5uM|CVCL_0023|plate2'")],
    store: StoreOpt = None,
    kb: KbOpt = None,
    proposer: ProposerOpt = None,
    seed: SeedOpt = None,
    candidates: Annotated[int | None, typer.Option("--candidates", help="candidates per round")] = None,
    rounds: Annotated[int | None, typer.Option("--rounds", help="revision rounds")] = None,
    cells: Annotated[
        bool, typer.Option("--cells/--no-cells", help="give the panel the condition's cells (slower, thorough)")
    ] = True,
    reuse: Annotated[bool, typer.Option("--reuse/--no-reuse", help="return a stored trace with the same id")] = True,
    progress: Annotated[bool, typer.Option("--progress", help="print pipeline events to stderr")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Explain one condition: retrieve → propose → verify → revise → finalize; the trace goes to the store."""
    from mechcell.agents.pipeline import explain
    from mechcell.config import load_settings

    settings = load_settings(store_path=store, kb_path=kb, seed=seed)

    def show(ev: Any) -> None:
        if progress:
            err_console.print(ev.line(), highlight=False, markup=False)

    busy = err_console.status(f"explaining {key} …", spinner="dots") if not (progress or json_out) else nullcontext()
    with busy:
        trace = explain(
            key,
            settings=settings,
            proposer=proposer,
            seed=seed,
            n_candidates=candidates,
            max_rounds=rounds,
            use_cells=cells,
            reuse=reuse,
            on_event=show,
        )
    if json_out:
        emit_json(trace_document(trace))
        return
    render_trace(trace)
