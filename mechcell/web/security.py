"""The web door's guards: bearer token, request-size and rate limits, id validation, security headers.

Pure ASGI middleware (no `BaseHTTPMiddleware`): it must not buffer the server-sent-event stream of a chat turn.
Every refusal is JSON `{"error": message}` like every other error of the API.
"""

from __future__ import annotations

import hmac
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mechcell.errors import InputError

__all__ = [
    "THREAD_ID",
    "TRACE_ID",
    "GuardMiddleware",
    "RateLimiter",
    "WebLimits",
    "check_thread_id",
    "check_trace_id",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Ids reach the store and the checkpointer only after matching these (no path or SQL tricks can pass).
THREAD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
TRACE_ID = re.compile(r"^tr_[0-9a-f]{6,64}$")

#: Served with every response: scripts, styles and connections only from this origin; nothing inline.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


class WebLimits(BaseModel):
    """Request limits of the web door (per client address)."""

    model_config = ConfigDict(frozen=True)

    max_body_bytes: int = Field(16_384, ge=256, description="largest request body accepted (413 beyond)")
    max_question_chars: int = Field(2000, ge=10, description="longest question accepted (422 beyond)")
    requests_per_minute: float = Field(240.0, gt=0, description="sustained rate of /api requests per client")
    burst: int = Field(60, ge=1, description="requests a client may make at once before the rate applies")
    messages_per_minute: float = Field(20.0, gt=0, description="sustained rate of questions per client")
    message_burst: int = Field(5, ge=1)


def check_thread_id(value: str) -> str:
    if not THREAD_ID.fullmatch(value):
        raise InputError(f"invalid thread id {value[:80]!r}: letters, digits, '_' and '-' only (≤ 64)")
    return value


def check_trace_id(value: str) -> str:
    if not TRACE_ID.fullmatch(value):
        raise InputError(f"invalid trace id {value[:80]!r}: expected 'tr_' followed by hex digits")
    return value


class RateLimiter:
    """Token buckets keyed by client: `burst` tokens, refilled at `per_minute / 60` per second.

    Bounded memory: the least recently seen clients are forgotten beyond `max_clients`.
    """

    def __init__(self, per_minute: float, burst: int, *, max_clients: int = 10_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str, now: float | None = None) -> float:
        """Spend one token; 0.0 when allowed, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[client] = (tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait


async def send_json(send: Send, status: int, doc: dict[str, Any], headers: list[tuple[bytes, bytes]] = ()) -> None:  # type: ignore[assignment]
    body = json.dumps(doc).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """Security headers on every response; on /api: bearer token (when set), body size and rate limits."""

    def __init__(self, app: ASGIApp, *, token: str | None, limits: WebLimits) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.limits = limits
        self.requests = RateLimiter(limits.requests_per_minute, limits.burst)
        self.messages = RateLimiter(limits.messages_per_minute, limits.message_burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                message["headers"] = headers
            await send(message)

        path: str = scope.get("path", "")
        if not path.startswith("/api"):
            await self.app(scope, receive, send_with_headers)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        if self.token is not None:
            auth = headers.get(b"authorization", b"")
            scheme, _, given = auth.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
                await send_json(
                    send_with_headers,
                    401,
                    {"error": "missing or wrong bearer token (set the Authorization: Bearer <token> header)"},
                    [(b"www-authenticate", b'Bearer realm="mechcell"')],
                )
                return
        client = (scope.get("client") or ("?", 0))[0]
        wait = self.requests.take(client)
        if not wait and scope.get("method") == "POST" and path.endswith("/messages"):
            wait = self.messages.take(client)
        if wait:
            await send_json(
                send_with_headers,
                429,
                {"error": f"too many requests: retry in {wait:.1f} s"},
                [(b"retry-after", str(max(1, round(wait))).encode())],
            )
            return
        limit = self.limits.max_body_bytes
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > limit
            except ValueError:
                too_big = True
            if too_big:
                await send_json(send_with_headers, 413, {"error": f"request body larger than {limit} bytes"})
                return
        seen = 0
        exceeded = False
        replied = False

        async def counted_receive() -> Message:
            # A body without (or lying about) Content-Length: stop reading at the limit; the reply becomes 413.
            nonlocal seen, exceeded
            if exceeded:
                return {"type": "http.request", "body": b"", "more_body": False}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    exceeded = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal replied
            if exceeded:
                if not replied:
                    replied = True
                    await send_json(send_with_headers, 413, {"error": f"request body larger than {limit} bytes"})
                return
            await send_with_headers(message)

        await self.app(scope, counted_receive, guarded_send)
