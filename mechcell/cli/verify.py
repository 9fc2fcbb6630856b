"""`mechcell verify GRAPH_FILE --condition KEY`: the panel's report for one graph and condition."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mechcell.cli._common import JsonOpt, KbOpt, SeedOpt, StoreOpt, emit_json, friendly_errors, out_console
from mechcell.config import load_settings
from mechcell.errors import InputError


@friendly_errors
def verify_cmd(
    graph_file: Annotated[Path, typer.Argument(help="four-tag text or ActionGraph JSON ('-' = stdin)")],
    condition: Annotated[
        str | None, typer.Option("--condition", "-c", help="condition key (see `data conditions`)")
    ] = None,
    store: StoreOpt = None,
    kb: KbOpt = None,
    method: Annotated[str | None, typer.Option("--method", help="signature method to test against")] = None,
    no_cells: Annotated[bool, typer.Option("--no-cells", help="skip cell-level (distributional) tests")] = False,
    seed: SeedOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Verify every claim of a graph against the KB and the condition's data; print the report."""
    from mechcell.cli.graph import read_graph_file
    from mechcell.verifiers import PanelSettings, verify

    settings = load_settings(store_path=store, kb_path=kb, seed=seed)
    parsed = read_graph_file(graph_file)
    if parsed.graph is None and not parsed.issues:
        raise InputError(f"{graph_file}: no graph could be read")
    # An unparsable graph still gets a report: its structural problems, reward 0.
    graph = parsed.graph if parsed.graph is not None else graph_file.read_text(errors="replace")
    have_store = store is not None or settings.store_path.is_file()
    if condition is not None and not have_store and not json_out:
        out_console.print(f"note: store {settings.store_path} not found: checking against the KB only")
    report = verify(
        graph,
        condition,
        kb=settings.kb_path,
        store=settings.store_path if have_store else None,
        method=method,
        use_cells=not no_cells,
        settings=PanelSettings(seed=settings.seed, n_permutations=settings.n_permutations),
    )
    if json_out:
        emit_json(report)
        return
    render_report(report)


def render_report(report) -> None:
    from rich.table import Table

    status_style = {"supported": "green", "contradicted": "red", "inconclusive": "yellow", "uncheckable": "dim"}
    t = Table("claim", "kind", "verifier", "status", "p", "e", "reason", show_lines=False)
    for v in report.verdicts:
        st = status_style.get(v.status, "")
        t.add_row(
            v.claim.id,
            v.claim.kind,
            v.verifier,
            f"[{st}]{v.status}[/]",
            "" if v.p_value is None else f"{v.p_value:.2g}",
            "" if v.e_value is None else f"{v.e_value:.2g}",
            v.reason[:90],
        )
    out_console.print(t)
    fp = "-" if report.factual_precision is None else f"{report.factual_precision:.2f}"
    ep = "-" if report.expression_precision is None else f"{report.expression_precision:.2f}"
    out_console.print(
        f"reward {report.reward:.3f}  accepted {report.accepted}  factual precision {fp}  "
        f"expression precision {ep}  counts {report.counts}",
        highlight=False,
    )
    for f in report.feedback[:20]:
        out_console.print(f"  - {f}", highlight=False, markup=False)
