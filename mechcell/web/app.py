"""The biologist's web door: a FastAPI app serving a self-contained chat page and the API behind it.

    from mechcell.web import create_app
    app = create_app(Settings(store_path="mechcell.duckdb"))      # uvicorn.run(app) — or `mechcell serve`

The page (static/: index.html, app.js, app.css; nothing from a CDN) streams a chat turn's progress as server-sent
events, draws the verified action graph as SVG and opens the evidence behind any node or edge. The API is
documented with OpenAPI (`/openapi.json`, browsable at `/docs`, an offline page of this package).

Thin door (STYLE.md): parsing, calling `mechcell.agents.chat.ChatSession` and rendering; the rules about what a
view shows live in `mechcell.web.views`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

import mechcell
from mechcell.errors import InputError, MechcellError, NotFoundError
from mechcell.web.backend import ConditionOut, ThreadDetail, ThreadSummary, WebBackend
from mechcell.web.security import GuardMiddleware, WebLimits, check_thread_id
from mechcell.web.views import TraceView

if TYPE_CHECKING:
    from mechcell.agents.pipeline import PipelineConfig
    from mechcell.config import Settings

__all__ = ["STATIC_DIR", "create_app"]

log = logging.getLogger("mechcell.web")
STATIC_DIR = Path(str(files("mechcell.web") / "static"))
_PAGES = {"/": "index.html", "/docs": "docs.html"}
_ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "docs.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


ThreadId = Annotated[str, PathParam(max_length=64, description="a thread id from POST /api/threads")]
TraceId = Annotated[str, PathParam(max_length=70, description="a trace id (tr_ + hex)")]


class ThreadCreated(BaseModel):
    id: str = Field(description="the new thread's id (letters, digits, '_' and '-')")


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = Field(min_length=1, description="the question, plain text")


class ErrorOut(BaseModel):
    error: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "bad input (an invalid id, an empty question)"},
    401: {"model": ErrorOut, "description": "missing or wrong bearer token (when MECHCELL_API_TOKEN is set)"},
    404: {"model": ErrorOut, "description": "no such thread or trace"},
    413: {"model": ErrorOut, "description": "request body too large"},
    422: {"model": ErrorOut, "description": "malformed request"},
    429: {"model": ErrorOut, "description": "rate limit: retry after the Retry-After seconds"},
}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_app(
    settings: Settings | None = None,
    *,
    limits: WebLimits | None = None,
    config: PipelineConfig | None = None,
    proposer: str | None = None,
    checkpoint_path: Path | None = None,
) -> FastAPI:
    """The web app over `settings.store_path` and `settings.kb_path`; `settings.api_token` (MECHCELL_API_TOKEN),
    when set, is required as a bearer token on every /api route. `config`/`proposer` are the pipeline's for new
    runs (default: from settings; the local proposer unless an LLM endpoint is configured); threads persist in
    `checkpoint_path` (default: beside the store)."""
    from mechcell.config import Settings

    settings = settings or Settings()
    limits = limits or WebLimits()
    backend = WebBackend(settings, config=config, proposer=proposer, checkpoint_path=checkpoint_path)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(backend.open)
        try:
            yield
        finally:
            await asyncio.to_thread(backend.close)

    app = FastAPI(
        title="mechcell",
        version=mechcell.__version__,
        summary="Ask why a drug does what it does; read the verified mechanism and the evidence behind each step.",
        description=(
            "Every /api route requires `Authorization: Bearer <token>` when the server was started with "
            'MECHCELL_API_TOKEN set. Errors are JSON `{"error": message}`.'
        ),
        docs_url=None,  # FastAPI's own pages load from a CDN: /docs is an offline page of this package
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.backend = backend
    app.state.limits = limits
    token = settings.api_token.get_secret_value() if settings.api_token is not None else None
    app.add_middleware(GuardMiddleware, token=token or None, limits=limits)

    # ------------------------------------------------------------------ errors: JSON, never a traceback
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        msg = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and msg == "Not Found":
            msg = f"no route {request.method} {request.url.path}"
        return _error(exc.status_code, msg, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors()[:5]:
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg", "invalid")))
        return _error(422, "invalid request: " + "; ".join(parts))

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(MechcellError)
    async def _bad_input(request: Request, exc: MechcellError) -> JSONResponse:
        return _error(400, f"{type(exc).__name__}: {exc}")

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal error (see the server log)")

    # ------------------------------------------------------------------ the page
    def _page(name: str) -> FileResponse:
        return FileResponse(
            STATIC_DIR / name, media_type="text/html; charset=utf-8", headers={"cache-control": "no-cache"}
        )

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return _page("index.html")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        return _page("docs.html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> FileResponse:
        if name not in _ASSETS:  # a fixed list: nothing else on disk can be named
            raise NotFoundError(f"no asset {name[:80]!r}")
        return FileResponse(STATIC_DIR / name, media_type=_ASSETS[name], headers={"cache-control": "no-cache"})

    # ------------------------------------------------------------------ the API
    @app.get("/api/health", tags=["meta"], responses=_ERRORS)
    async def health() -> dict[str, Any]:
        """Liveness and what the server serves: store, KB version, proposer, counts."""
        return await asyncio.to_thread(backend.health)

    @app.get("/api/conditions", tags=["data"], responses=_ERRORS)
    async def conditions(
        query: Annotated[
            str, Query(max_length=200, description="words that must all appear (drug, cell line, key)")
        ] = "",
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> list[ConditionOut]:
        """Stored conditions matching `query`, those with a trace first."""
        return await asyncio.to_thread(backend.conditions, query, limit)

    @app.post("/api/threads", status_code=201, tags=["chat"], responses=_ERRORS)
    async def new_thread() -> ThreadCreated:
        """Start a conversation; ask in it with POST /api/threads/{id}/messages."""
        return ThreadCreated(id=backend.new_thread())

    @app.get("/api/threads", tags=["chat"], responses=_ERRORS)
    async def list_threads(limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[ThreadSummary]:
        """Conversations so far (from the SQLite checkpointer), newest first."""
        return await backend.threads(limit)

    @app.get("/api/threads/{thread_id}", tags=["chat"], responses=_ERRORS)
    async def get_thread(thread_id: ThreadId) -> ThreadDetail:
        """A conversation's messages and the trace its last answer is about."""
        return await backend.thread(check_thread_id(thread_id))

    @app.post(
        "/api/threads/{thread_id}/messages",
        tags=["chat"],
        response_class=StreamingResponse,
        responses={
            **_ERRORS,
            200: {
                "description": "server-sent events: start, parsed, reused, run_started, node_started, note, "
                "candidate, verdict, attempt, node_finished, trace, answer (the turn), done — or error",
                "content": {"text/event-stream": {}},
            },
        },
    )
    async def post_message(thread_id: ThreadId, message: MessageIn) -> StreamingResponse:
        """Ask a question in a thread; the answer streams as server-sent events (the last is `done` or `error`)."""
        check_thread_id(thread_id)
        question = message.content.strip()
        if not question:
            raise InputError("the question is empty")
        if len(question) > limits.max_question_chars:
            raise InputError(f"the question has {len(question)} characters (at most {limits.max_question_chars})")
        if not await backend.thread_exists(thread_id):
            raise NotFoundError(f"thread {thread_id!r} does not exist (create one with POST /api/threads)")
        return StreamingResponse(
            backend.stream_turn(thread_id, question),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    @app.get("/api/traces/{trace_id}", tags=["traces"], responses=_ERRORS)
    async def get_trace(trace_id: TraceId) -> Response:
        """The whole trace document (condition, config, context, every attempt and report, final graph)."""
        trace = await asyncio.to_thread(backend.trace, trace_id)
        return Response(
            trace.model_dump_json(),
            media_type="application/json",
            headers={"content-disposition": f'inline; filename="{trace.id}.json"'},
        )

    @app.get("/api/traces/{trace_id}/view", tags=["traces"], responses=_ERRORS)
    async def get_view(trace_id: TraceId, genes: Annotated[int, Query(ge=0, le=100)] = 10) -> TraceView:
        """What the page draws: nodes and edges with their verdict status, every claim's verdicts and evidence,
        and the condition's top up/down genes."""
        return await asyncio.to_thread(backend.view, trace_id, genes)

    @app.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
    async def api_404(request: Request, rest: str) -> JSONResponse:
        return _error(404, f"no route {request.method} /api/{rest[:100]}")

    return app
