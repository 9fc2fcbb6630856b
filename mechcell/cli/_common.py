"""Helpers every CLI group shares: the JSON convention, stderr console, and error rendering.

Why: every command that reports takes `--json` and then prints exactly one JSON document on stdout, while
progress and logs go to stderr, so scripts and tests can rely on stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console

from mechcell.errors import MechcellError

#: Human output (tables, progress) goes to stderr when --json is set, stdout otherwise.
err_console = Console(stderr=True, soft_wrap=True)
out_console = Console(soft_wrap=True)

StoreOpt = Annotated[
    Path | None,
    typer.Option("--store", help="project DuckDB store (default: Settings.store_path, ./mechcell.duckdb)"),
]
KbOpt = Annotated[
    Path | None,
    typer.Option("--kb", help="a built KB store (.duckdb) or a directory of source tables (built on first use)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print exactly one JSON document on stdout")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="random seed (default: Settings.seed)")]


def _default(o: Any) -> Any:
    if isinstance(o, BaseModel):
        return o.model_dump(mode="json")
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "isoformat"):
        return o.isoformat()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def emit_json(doc: Any) -> None:
    """Print one JSON document on stdout (the --json contract)."""
    sys.stdout.write(json.dumps(doc, default=_default, allow_nan=False) + "\n")
    sys.stdout.flush()


P = ParamSpec("P")
R = TypeVar("R")


def friendly_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a `MechcellError` into a one-line message and exit code 2 (never a traceback)."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except MechcellError as exc:
            err_console.print(f"[bold red]error:[/] {type(exc).__name__}: {exc}", highlight=False, markup=True)
            raise typer.Exit(2) from None

    return wrapper


@contextmanager
def progress(description: str, total: float | None = None) -> Iterator[Callable[[float], None]]:
    """A rich progress bar on stderr; yields `advance(n)`. Transient so it never pollutes logs."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f}" if total else "{task.completed:.0f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
