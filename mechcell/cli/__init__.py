"""The typer CLI: one command group per door (see ARCHITECTURE.md). Doors are thin: parse, call, render."""

from __future__ import annotations

import typer

import mechcell

app = typer.Typer(
    name="mechcell",
    help="Mechanistic reasoning about virtual cells: verified drug → target → pathway/TF → expression graphs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(mechcell.__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version"),
) -> None:
    """mechcell command line."""


# Command groups register here, one import and one add_typer line each (modules live beside this file).
from mechcell.cli import graph as _graph  # noqa: E402

app.add_typer(_graph.app, name="graph")
from mechcell.cli import data as _data  # noqa: E402

app.add_typer(_data.app, name="data")
from mechcell.cli import kb as _kb  # noqa: E402

app.add_typer(_kb.app, name="kb")


def main() -> None:
    """Console-script entry point."""
    app()
