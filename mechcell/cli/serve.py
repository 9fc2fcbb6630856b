"""`mechcell serve`: the biologist's web door — a chat page with the verified graph and its evidence.

Thin: settings from flags and env (MECHCELL_API_TOKEN for the bearer token), `mechcell.web.create_app`, uvicorn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mechcell.cli._common import KbOpt, StoreOpt, err_console, friendly_errors


@friendly_errors
def serve_cmd(
    host: Annotated[str, typer.Option("--host", help="interface to listen on (0.0.0.0 exposes it to the network)")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port")] = 8000,
    store: StoreOpt = None,
    kb: KbOpt = None,
    proposer: Annotated[str | None, typer.Option("--proposer", help="local | llm | ... (default: automatic)")] = None,
    cells: Annotated[bool, typer.Option("--cells/--no-cells", help="cell-level tests in new runs")] = False,
    threads: Annotated[
        Path | None, typer.Option("--threads", help="SQLite file of the chat threads (default: beside the store)")
    ] = None,
    questions_per_minute: Annotated[
        float, typer.Option("--questions-per-minute", min=0.1, help="rate limit of questions per client")
    ] = 20.0,
    requests_per_minute: Annotated[
        float, typer.Option("--requests-per-minute", min=1.0, help="rate limit of /api requests per client")
    ] = 240.0,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level")] = "info",
) -> None:
    """Serve the web page and its API (OpenAPI at /docs). Set MECHCELL_API_TOKEN to require a bearer token."""
    import uvicorn

    from mechcell.agents.pipeline import PipelineConfig
    from mechcell.config import load_settings
    from mechcell.web import WebLimits, create_app

    settings = load_settings(store_path=store, kb_path=kb)
    if host not in ("127.0.0.1", "localhost", "::1") and settings.api_token is None:
        err_console.print(
            f"[yellow]warning:[/] serving on {host} without MECHCELL_API_TOKEN: anyone who can reach it can use it",
            highlight=False,
        )
    if not Path(settings.store_path).is_file():
        err_console.print(
            f"[yellow]note:[/] no store at {settings.store_path} (run `mechcell demo` first); answering from the "
            "knowledge base alone",
            highlight=False,
        )
    limits = WebLimits(requests_per_minute=requests_per_minute, messages_per_minute=questions_per_minute)
    app = create_app(
        settings,
        limits=limits,
        config=PipelineConfig.from_settings(settings, use_cells=cells),
        proposer=proposer,
        checkpoint_path=threads,
    )
    err_console.print(f"mechcell serve: http://{host}:{port}/  (API docs: /docs)", highlight=False)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
