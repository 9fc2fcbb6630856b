"""`mechcell chat`: the terminal door — ask why a drug does what it does; follow up in the same thread.

Interactive by default (rich rendering, progress while the pipeline runs); `-q QUESTION` (repeatable) asks and
exits, and with `--json` prints the turns as one JSON document. Threads persist (SQLite) beside the store, so
`--thread NAME` resumes a conversation. With an LLM endpoint configured, questions are read by a tool call
(`--parser dictionary` keeps the offline dictionary parser); each turn records which parser read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mechcell.cli._common import JsonOpt, KbOpt, StoreOpt, emit_json, err_console, friendly_errors, out_console

_BYE = {"exit", "quit", "bye", ":q"}


def _render(turn: Any) -> None:
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.panel import Panel

    title = turn.condition_key or turn.intent
    parts = [
        f"trace {turn.trace_id}" if turn.trace_id else "",
        f"read by {turn.parser}" if turn.parser != "dictionary" else "",
    ]
    sub = " · ".join(x for x in parts if x) or None
    # a wrapping console (the shared one does not wrap, for logs): answers are prose
    Console(highlight=False).print(Panel(Markdown(turn.answer), title=title, subtitle=sub, expand=True))


@friendly_errors
def chat_cmd(
    store: StoreOpt = None,
    kb: KbOpt = None,
    question: Annotated[
        list[str] | None, typer.Option("--question", "-q", help="ask this and exit (repeatable: a conversation)")
    ] = None,
    thread: Annotated[str, typer.Option("--thread", help="conversation id (resumes it when it exists)")] = "main",
    threads: Annotated[
        Path | None, typer.Option("--threads", help="SQLite file of the threads (default: beside the store)")
    ] = None,
    proposer: Annotated[str | None, typer.Option("--proposer", help="local | llm | ... (default: automatic)")] = None,
    parser: Annotated[
        str,
        typer.Option(
            "--parser",
            help="how questions are read: llm (a tool call; the dictionary when it fails), dictionary, or auto "
            "(llm when an LLM endpoint is configured)",
        ),
    ] = "auto",
    cells: Annotated[bool, typer.Option("--cells/--no-cells", help="cell-level tests in new runs")] = True,
    history: Annotated[bool, typer.Option("--history", help="print the thread so far and exit")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Chat about conditions: "why does Trametinib change DUSP6 in A549?", "why is n3 supported?", …"""
    from mechcell.agents.chat import ChatSession
    from mechcell.agents.pipeline import PipelineConfig
    from mechcell.config import load_settings

    settings = load_settings(store_path=store, kb_path=kb)
    config = PipelineConfig.from_settings(settings, use_cells=cells)
    with ChatSession(
        store=settings.store_path,
        kb=settings.kb_path,
        settings=settings,
        checkpoint_path=threads,
        proposer=proposer,
        config=config,
        parser=parser,  # type: ignore[arg-type]  # checked by ChatSession (a clear InputError)
    ) as session:
        if history:
            msgs = session.history(thread)
            if json_out:
                emit_json({"thread_id": thread, "messages": msgs})
                return
            for m in msgs:
                out_console.print(f"[bold]{m['role']}>[/] {m['content']}", highlight=False)
            return
        if question:
            turns = []
            for q in question:
                turn = _ask(session, q, thread, quiet=json_out)
                turns.append(turn)
                if not json_out:
                    _render(turn)
            if json_out:
                emit_json(turns[0] if len(turns) == 1 else {"thread_id": thread, "turns": turns})
            return
        if json_out:
            raise typer.BadParameter("--json needs --question (an interactive chat prints no JSON)")
        out_console.print(
            f"mechcell chat — thread [bold]{thread}[/], store {settings.store_path}. "
            "Ask e.g. [italic]why does Trametinib change DUSP6 in A549?[/]  (exit with Ctrl-D or 'exit')",
            highlight=False,
        )
        while True:
            try:
                q = out_console.input("[bold cyan]you>[/] ").strip()
            except (EOFError, KeyboardInterrupt):
                out_console.print()
                return
            if not q:
                continue
            if q.casefold() in _BYE:
                return
            try:
                _render(_ask(session, q, thread, quiet=False))
            except Exception as exc:  # noqa: BLE001 — one bad question must not end the conversation
                err_console.print(f"[red]error:[/] {type(exc).__name__}: {exc}", highlight=False)


def _ask(session: Any, q: str, thread: str, *, quiet: bool) -> Any:
    if quiet:
        return session.ask(q, thread)
    with err_console.status("thinking …", spinner="dots") as status:

        def show(ev: Any) -> None:
            if ev.type == "pipeline" and ev.pipeline is not None:
                status.update(ev.pipeline.line().strip())

        return session.ask(q, thread, on_event=show)
