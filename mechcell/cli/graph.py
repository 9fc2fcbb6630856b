"""`mechcell graph`: read, check and decompose action-graph files (the four-tag text format or JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mechcell.cli._common import JsonOpt, emit_json, friendly_errors, out_console
from mechcell.errors import InputError
from mechcell.graphs import ActionGraph, ParsedExplanation, parse_text

app = typer.Typer(help="Read, check and decompose action graphs (four-tag text or JSON).", no_args_is_help=True)

FileArg = Annotated[Path, typer.Argument(help="a four-tag text file, or an ActionGraph JSON file ('-' = stdin)")]


def read_graph_file(path: Path) -> ParsedExplanation:
    """Parse a graph file: JSON (an ActionGraph) when it starts with '{', else the four-tag text format."""
    import sys

    if str(path) == "-":
        text = sys.stdin.read()
    else:
        if not path.is_file():
            raise InputError(f"graph file {path} does not exist")
        text = path.read_text(encoding="utf-8", errors="replace")
    if text.lstrip().startswith("{"):
        try:
            g = ActionGraph.model_validate_json(text)
        except ValueError as exc:
            raise InputError(f"{path}: not a valid ActionGraph JSON document: {exc}") from exc
        return ParsedExplanation(graph=g, issues=g.problems())
    return parse_text(text)


@app.command("check")
@friendly_errors
def check(file: FileArg, json_out: JsonOpt = False) -> None:
    """Parse and validate a graph; print located problems and the canonical content hash. Exit 1 if invalid."""
    parsed = read_graph_file(file)
    g = parsed.graph
    doc = {
        "valid": parsed.ok,
        "n_nodes": len(g.nodes) if g else 0,
        "n_edges": len(g.edges) if g else 0,
        "hash": g.content_hash() if g else None,
        "problems": [p.model_dump() | {"severity": p.severity} for p in parsed.issues],
    }
    if json_out:
        emit_json(doc)
    else:
        status = "[green]valid[/]" if parsed.ok else "[red]invalid[/]"
        out_console.print(f"{file}: {status}, {doc['n_nodes']} nodes, {doc['n_edges']} edges, hash {doc['hash']}")
        for p in parsed.issues:
            where = f"line {p.line}" if p.line else "-"
            out_console.print(f"  {p.severity:7s} {where:>8s}  {p.kind}: {p.message}", highlight=False, markup=False)
    if not parsed.ok:
        raise typer.Exit(1)


@app.command("claims")
@friendly_errors
def claims(file: FileArg, json_out: JsonOpt = False) -> None:
    """List the checkable claims of a graph and the expression signature it predicts."""
    parsed = read_graph_file(file)
    if parsed.graph is None:
        raise InputError(f"{file}: no graph could be read ({len(parsed.issues)} problems; run `mechcell graph check`)")
    cl = parsed.graph.claims()
    sig = parsed.graph.predicted_signature()
    if json_out:
        emit_json({"claims": cl, "predicted_signature": sig})
        return
    from rich.table import Table

    t = Table("claim", "kind", "subject", "object", "direction", "causal")
    for c in cl:
        t.add_row(c.id, c.kind, c.subject or "", c.object or "", c.direction or "", "yes" if c.causal else "no")
    out_console.print(t)
    for p in sig:
        out_console.print(f"  {p.gene} {p.direction}  via {' -> '.join(p.path)}", highlight=False)
