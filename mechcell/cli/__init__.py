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
from mechcell.cli import data_synth as _data_synth  # noqa: E402, F401 - registers `data synth` on the data group
from mechcell.cli import kb as _kb  # noqa: E402

app.add_typer(_kb.app, name="kb")
from mechcell.cli import verify as _verify  # noqa: E402

app.command("verify")(_verify.verify_cmd)
from mechcell.cli import explain as _explain  # noqa: E402

app.command("explain")(_explain.explain_cmd)
from mechcell.cli import demo as _demo  # noqa: E402

app.command("demo")(_demo.demo_cmd)
from mechcell.cli import eval as _eval  # noqa: E402

app.add_typer(_eval.app, name="eval")
from mechcell.cli import eval_predictor as _eval_predictor  # noqa: E402, F401 - registers `eval predictor`
from mechcell.cli import train as _train  # noqa: E402

app.add_typer(_train.app, name="train")
from mechcell.cli import chat as _chat  # noqa: E402

app.command("chat")(_chat.chat_cmd)
from mechcell.cli import serve as _serve  # noqa: E402

app.command("serve")(_serve.serve_cmd)
from mechcell.cli import traces as _traces  # noqa: E402

app.add_typer(_traces.app, name="traces")


def main() -> None:
    """Console-script entry point."""
    app()
