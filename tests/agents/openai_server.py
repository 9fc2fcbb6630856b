"""A real OpenAI-compatible HTTP server for tests and benchmarks: FastAPI served by uvicorn on 127.0.0.1.

It speaks the chat-completions wire format (JSON, and server-sent events for `stream=true`, with the usage chunk
when `stream_options.include_usage` is set), so the real `openai` SDK talks to it exactly as to vLLM or OpenAI.
Behaviour is scripted per test: a queue of `Reply`s (text, an HTTP error with headers such as Retry-After, a
delay, a non-JSON body, a function call), then a default reply; every request is logged with its arrival time,
and the server counts requests in flight and their maximum (to check a client's concurrency bound).

Usage: `with OpenAIServer() as srv: srv.script(Reply(text="hi")); LLMClient(base_url=srv.base_url, ...)`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse


@dataclass
class Reply:
    """What the server does with one request.

    `status` ≠ 200 answers with an OpenAI-style error body and `headers` (e.g. Retry-After); `delay` seconds
    pass before anything is sent (a slow model, or a timeout for a client with a shorter one); `raw_body`
    sends that text as-is with `content_type` (garbage on the wire); `chunk_chars` sets the size of the streamed
    deltas, and `error_after_chunks` ends a stream with an error event after that many deltas (as vLLM does when
    generation fails mid-way). `tool_calls` (a list of `(name, arguments)`; arguments a dict, sent as its JSON
    text, or a str sent as-is so tests can send malformed JSON) answers with the function-calling wire format:
    `message.tool_calls=[{id, type: "function", function: {name, arguments}}]`, content null, finish_reason
    "tool_calls" (non-streaming only).
    """

    text: str = "ok"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    finish_reason: str = "stop"
    raw_body: str | None = None
    content_type: str = "application/json"
    chunk_chars: int = 8
    error_after_chunks: int | None = None
    tool_calls: list[tuple[str, dict[str, Any] | str]] | None = None

    @classmethod
    def tool_call(cls, name: str, arguments: dict[str, Any] | str, **kw: Any) -> Reply:
        """One function call, as a model forced by `tool_choice` sends it."""
        return cls(tool_calls=[(name, arguments)], finish_reason="tool_calls", text="", **kw)

    @classmethod
    def rate_limited(cls, retry_after: str | None = "1", **kw: Any) -> Reply:
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        return cls(status=429, headers=headers, text="Rate limit reached; slow down", **kw)

    @classmethod
    def error(cls, status: int = 500, message: str = "internal server error", **kw: Any) -> Reply:
        return cls(status=status, text=message, **kw)


@dataclass
class Logged:
    """One request as the server saw it."""

    body: dict[str, Any]
    headers: dict[str, str]
    arrived: float  # time.perf_counter() on arrival
    reply: Reply


def _tokens(text: str) -> int:
    """A stand-in tokenizer: whitespace words (deterministic, so tests can predict usage)."""
    return len(text.split())


def prompt_tokens(body: dict[str, Any]) -> int:
    return sum(_tokens(str(m.get("content") or "")) for m in body.get("messages", []))


class OpenAIServer:
    """The scriptable server. Thread-safe: tests script it from their thread, uvicorn serves in another."""

    def __init__(self, *, latency: float = 0.0, model: str = "test-model") -> None:
        self.model = model
        self.latency = latency
        self.default: Reply | Callable[[dict[str, Any]], Reply] = Reply()
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self.requests: list[Logged] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._generation = 0  # bumped by reset(): a straggler from an earlier test does not touch the counters
        self.app = self._build_app()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    # ------------------------------------------------------------------------------------------ scripting

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order; afterwards `default` answers."""
        with self._lock:
            self._queue.extend(replies)

    def reset(self) -> None:
        """Forget the script, the log and the counters (between tests)."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.in_flight = 0
            self.max_in_flight = 0
            self._generation += 1
            self.default = Reply()
            self.latency = 0.0

    @property
    def n_requests(self) -> int:
        with self._lock:
            return len(self.requests)

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self.port}/v1"

    def _next(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[Reply, int]:
        with self._lock:
            if self._queue:
                reply = self._queue.popleft()
            else:
                reply = self.default(body) if callable(self.default) else self.default
            self.requests.append(Logged(body=body, headers=headers, arrived=time.perf_counter(), reply=reply))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return reply, self._generation

    def _done(self, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                self.in_flight -= 1

    # ------------------------------------------------------------------------------------------ the app

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "tests"}]}

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            body = await request.json()
            reply, generation = self._next(body, dict(request.headers))
            streaming = False
            try:
                wait = self.latency + reply.delay
                if wait > 0:
                    await asyncio.sleep(wait)
                if reply.raw_body is not None:
                    return Response(reply.raw_body, status_code=reply.status, media_type=reply.content_type)
                if reply.status != 200:
                    error = {
                        "error": {
                            "message": reply.text,
                            "type": "rate_limit_error" if reply.status == 429 else "server_error",
                            "code": None,
                        }
                    }
                    return JSONResponse(error, status_code=reply.status, headers=reply.headers)
                if body.get("stream"):
                    if reply.tool_calls:  # a scripting mistake: say so rather than stream something half-right
                        msg = {"error": {"message": "the test server streams text only, not tool calls"}}
                        return JSONResponse(msg, status_code=400)
                    streaming = True
                    return StreamingResponse(
                        self._events(body, reply, generation), media_type="text/event-stream", headers=reply.headers
                    )
                return JSONResponse(self._completion(body, reply), headers=reply.headers)
            finally:
                if not streaming:
                    self._done(generation)

        return app

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        p, c = prompt_tokens(body), _tokens(reply.text)
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.tool_calls:
            calls = []
            for name, args in reply.tool_calls:
                text = args if isinstance(args, str) else json.dumps(args)
                c += _tokens(text)
                fn = {"name": name, "arguments": text}
                calls.append({"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function", "function": fn})
            message = {"role": "assistant", "content": reply.text or None, "tool_calls": calls}
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": reply.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
        }

    async def _events(self, body: dict[str, Any], reply: Reply, generation: int) -> AsyncIterator[str]:
        try:
            cid, created, model = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time()), body.get("model")

            def chunk(delta: dict[str, Any], finish: str | None, usage: dict[str, int] | None = None) -> str:
                choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
                doc = {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": choices,
                    "usage": usage,
                }
                return f"data: {json.dumps(doc)}\n\n"

            yield chunk({"role": "assistant", "content": ""}, None)
            step = max(1, reply.chunk_chars)
            for n, k in enumerate(range(0, len(reply.text), step)):
                if reply.error_after_chunks is not None and n >= reply.error_after_chunks:
                    yield f"data: {json.dumps({'error': {'message': 'generation failed', 'code': 500}})}\n\n"
                    return
                yield chunk({"content": reply.text[k : k + step]}, None)
                await asyncio.sleep(0)
            yield chunk({}, reply.finish_reason)
            if (body.get("stream_options") or {}).get("include_usage"):
                p, c = prompt_tokens(body), _tokens(reply.text)
                yield chunk({}, None, {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
            yield "data: [DONE]\n\n"
        finally:
            self._done(generation)

    # ------------------------------------------------------------------------------------- start / stop

    def start(self) -> OpenAIServer:
        """Serve on a free port of 127.0.0.1 in a background thread; returns once it accepts connections."""
        # proto=IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections, as it does for uvicorn's own
        # sockets (without it, Nagle + delayed ACK add ~40 ms to every keep-alive response on Linux).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="openai-test-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10.0
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test OpenAI server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10.0)
        self._server = self._thread = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released), for connection-error tests."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
