"""The LLM client: the official `openai` SDK pointed at any OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp
server, OpenAI), with the robustness a batch of thousands of calls needs.

Why our own retry loop (the SDK's is switched off): we want full-jitter exponential backoff that honours
`Retry-After` (seconds or an HTTP date, capped), every failed attempt written into the call's record, and one
typed `LLMError` naming the endpoint and status when retries run out. Why a semaphore per event loop: it bounds
the requests in flight whatever the caller fans out. Why a repair loop that never raises for bad output: a
model that cannot write a valid graph is a *result* (a failed attempt in a trace), not a crash.

Async first (`complete`, `stream`, `complete_many`, `complete_parsed`); `complete_sync` and friends for scripts.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

import openai
from pydantic import BaseModel, ConfigDict, Field

from mechcell.agents.prompts import Prompt, load_prompt
from mechcell.config import Settings
from mechcell.errors import InputError, MechcellError
from mechcell.graphs import GraphProblem, ParsedExplanation, parse_text

T = TypeVar("T")
Messages = Sequence[Mapping[str, Any]]
ErrorKind = Literal["http", "timeout", "connection", "bad_response", "stream_interrupted", "not_configured"]

#: HTTP statuses worth retrying besides every 5xx: request timeout, conflict/lock, too early, rate limit.
RETRY_STATUSES: frozenset[int] = frozenset({408, 409, 425, 429})
_ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})
_HINTS = {
    401: "check the API key (MECHCELL_LLM_API_KEY)",
    403: "check the API key's permissions (MECHCELL_LLM_API_KEY)",
    404: "check the model name (MECHCELL_LLM_MODEL) and that the base URL ends in /v1 (MECHCELL_LLM_BASE_URL)",
}


# --------------------------------------------------------------------------------------------------- records


class LLMCall(BaseModel):
    """Accounting for one logical call (all its attempts): tokens, wall time, retries and why they happened.

    Token counts are what the server reported (None when it reported nothing). `latency_s` runs from the first
    attempt to the final answer, backoff waits included; `wait_s` is the part spent sleeping between attempts.
    """

    model_config = ConfigDict(frozen=True)

    model: str
    endpoint: str
    stream: bool = False
    ok: bool = True
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float = 0.0
    wait_s: float = 0.0
    first_token_s: float | None = Field(None, description="streaming: seconds from the request to the first delta")
    attempts: int = 1
    errors: list[str] = Field(default_factory=list, description="one line per failed attempt")
    status: int | None = Field(None, description="HTTP status of the last attempt that got a response")
    finish_reason: str | None = None
    request_id: str | None = None
    started_at: datetime

    @property
    def total_tokens(self) -> int:
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)


class LLMUsage(BaseModel):
    """Running totals over every call a client made (failed calls included)."""

    model_config = ConfigDict(frozen=True)

    calls: int = 0
    failed_calls: int = 0
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    wait_s: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def retries(self) -> int:
        return self.attempts - self.calls

    def add(self, call: LLMCall) -> LLMUsage:
        """A new total with `call` counted in."""
        return LLMUsage(
            calls=self.calls + 1,
            failed_calls=self.failed_calls + (not call.ok),
            attempts=self.attempts + call.attempts,
            prompt_tokens=self.prompt_tokens + (call.prompt_tokens or 0),
            completion_tokens=self.completion_tokens + (call.completion_tokens or 0),
            latency_s=self.latency_s + call.latency_s,
            wait_s=self.wait_s + call.wait_s,
        )

    @classmethod
    def of(cls, calls: Sequence[LLMCall]) -> LLMUsage:
        total = cls()
        for c in calls:
            total = total.add(c)
        return total


class ToolCall(BaseModel):
    """One function call the model made (OpenAI tool calling): its id, the function's name, the raw JSON arguments."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    arguments: str = ""


class LLMResponse(BaseModel):
    """The model's text, its tool calls (when `tools` were offered) and the call's accounting."""

    model_config = ConfigDict(frozen=True)

    text: str
    call: LLMCall
    tool_calls: list[ToolCall] = Field(default_factory=list)


class RepairAttempt(BaseModel):
    """One round of the repair loop: what the model wrote, what the parser found wrong with it, the call."""

    model_config = ConfigDict(frozen=True)

    round: int = Field(description="0 = the first answer, k = the k-th repair")
    text: str
    problems: list[str]
    call: LLMCall


class RepairOutcome(BaseModel, Generic[T]):
    """Result of `complete_parsed`: ok with the parsed result, or a recorded failure — never an exception.

    `result` is the last round's parse result, also when not ok (a partly readable graph is still worth
    recording); `problems` are the last round's. `prompt` is the repair template's ref, for the trace.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    ok: bool
    result: T | None = None
    text: str = ""
    problems: list[str] = Field(default_factory=list)
    attempts: list[RepairAttempt] = Field(default_factory=list)
    prompt: str | None = None
    failure: str | None = None

    @property
    def usage(self) -> LLMUsage:
        return LLMUsage.of([a.call for a in self.attempts])


class LLMError(MechcellError):
    """A call that failed for good: not configured, a non-retryable status, or retries exhausted.

    Carries the endpoint, model, HTTP status (None for timeouts and connection errors), the kind of failure,
    the number of attempts and the call's record (so a failed call is still accounted for).
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        model: str | None = None,
        status: int | None = None,
        kind: ErrorKind = "http",
        attempts: int = 0,
        call: LLMCall | None = None,
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.model = model
        self.status = status
        self.kind = kind
        self.attempts = attempts
        self.call = call
        #: set by `complete_parsed` when a transport error interrupts the repair loop: the rounds so far.
        self.partial: RepairOutcome[Any] | None = None


# -------------------------------------------------------------------------------------------------- helpers


def parse_retry_after(headers: Mapping[str, str] | None, *, now: datetime | None = None) -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms`, or `Retry-After` as seconds or an HTTP date.

    None when absent or unreadable; never negative.
    """
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    max_retry_after: float = 60.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds to sleep before retry number `attempt` (0-based).

    Full jitter, uniform on [0, min(cap, base·2^attempt)], spreads a burst of failed clients apart. When the
    server sent Retry-After, wait at least that long (capped at `max_retry_after`) plus a small jitter on
    [0, base] so the callers it throttled do not all come back in the same instant.
    """
    r = rng or random
    if retry_after is not None:
        return min(retry_after, max_retry_after) + r.uniform(0.0, base)
    return r.uniform(0.0, min(cap, base * (2.0**attempt)))


def format_problem(p: GraphProblem) -> str:
    """One located problem as the repair prompt shows it: `line 4 [missing_argument] node n2: ...`."""
    where = f"line {p.line}" if p.line is not None else "whole answer"
    return f"{where} [{p.kind}]: {p.message}"


def graph_parse_fn(text: str) -> tuple[ParsedExplanation, list[str]]:
    """Adapter for `complete_parsed`: the four-tag parser, with its error-level problems as located strings.

    Warnings (an isolated node, an ignored argument) do not trigger a repair round; they stay in `.issues`.
    """
    parsed = parse_text(text)
    problems = [format_problem(p) for p in parsed.issues if p.severity == "error"]
    if parsed.graph is None and not problems:
        problems = ["whole answer [empty_graph]: no primitive call was read from <explain>"]
    return parsed, problems


def _check_messages(messages: Messages) -> list[dict[str, Any]]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise InputError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    out: list[dict[str, Any]] = []
    for k, m in enumerate(messages):
        if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
            raise InputError(f"messages[{k}] must be a mapping with 'role' and 'content' (got {m!r:.80})")
        if m["role"] not in _ROLES:
            raise InputError(f"messages[{k}] has role {m['role']!r} (expected one of {', '.join(sorted(_ROLES))})")
        out.append(dict(m))
    return out


@dataclass
class _Attempts:
    """Mutable record of one logical call while it runs; frozen into an `LLMCall` at the end."""

    model: str
    endpoint: str
    stream: bool
    t0: float
    started_at: datetime
    attempts: int = 0
    wait_s: float = 0.0
    status: int | None = None
    request_id: str | None = None
    first_token_s: float | None = None
    errors: list[str] = field(default_factory=list)

    def freeze(
        self,
        *,
        ok: bool,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        finish_reason: str | None = None,
    ) -> LLMCall:
        return LLMCall(
            model=self.model,
            endpoint=self.endpoint,
            stream=self.stream,
            ok=ok,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=time.perf_counter() - self.t0,
            wait_s=self.wait_s,
            first_token_s=self.first_token_s,
            attempts=self.attempts,
            errors=list(self.errors),
            status=self.status,
            finish_reason=finish_reason,
            request_id=self.request_id,
            started_at=self.started_at,
        )


class _Retry(Exception):
    """Internal: one attempt failed in a way worth retrying (or not: `retryable`)."""

    def __init__(
        self,
        detail: str,
        *,
        kind: ErrorKind,
        status: int | None = None,
        retryable: bool = True,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.kind: ErrorKind = kind
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass
class _LoopState:
    client: openai.AsyncOpenAI
    semaphore: asyncio.Semaphore


# --------------------------------------------------------------------------------------------------- client


class LLMClient:
    """An OpenAI-compatible chat client with bounded concurrency, retries, accounting and a repair loop.

    Build it from `Settings` (`LLMClient(settings)`) or explicit arguments, which win over the settings. The
    HTTP client and the semaphore are created per event loop on first use, so the same object serves an async
    application and the `*_sync` wrappers alike; the concurrency bound holds within one event loop.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        max_concurrency: int | None = None,
        max_retries: int | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_after: float = 60.0,
        seed: int | None = None,
        stream_usage: bool = True,
        default_headers: Mapping[str, str] | None = None,
        on_call: Callable[[LLMCall], None] | None = None,
    ) -> None:
        s = settings
        self.base_url = base_url or (s.llm_base_url if s else None)
        self.model = model or (s.llm_model if s else None)
        if not self.base_url or not self.model:
            raise LLMError(
                "no LLM endpoint configured: set MECHCELL_LLM_BASE_URL and MECHCELL_LLM_MODEL "
                "(any OpenAI-compatible server: vLLM, Ollama, llama.cpp, OpenAI) or use the local proposer",
                endpoint=self.base_url,
                model=self.model,
                kind="not_configured",
            )
        key = api_key
        if key is None and s is not None and s.llm_api_key is not None:
            key = s.llm_api_key.get_secret_value()
        # Local servers ignore the key, but the SDK insists on one.
        self._api_key = key or "not-needed"
        self.timeout = float(timeout if timeout is not None else (s.llm_timeout if s else 60.0))
        if max_concurrency is None:
            max_concurrency = s.llm_max_concurrency if s else 4
        self.max_concurrency = int(max_concurrency)
        self.max_retries = int(max_retries if max_retries is not None else (s.llm_max_retries if s else 5))
        if self.timeout <= 0 or self.max_concurrency < 1 or self.max_retries < 0:
            raise InputError(
                f"LLM client: timeout must be > 0, max_concurrency ≥ 1, max_retries ≥ 0 (got {self.timeout}, "
                f"{self.max_concurrency}, {self.max_retries})"
            )
        if backoff_base < 0 or backoff_max < 0 or max_retry_after < 0:
            raise InputError("LLM client: backoff_base, backoff_max and max_retry_after must be ≥ 0")
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.stream_usage = stream_usage
        self._headers = dict(default_headers or {})
        self._rng = random.Random(seed)  # jitter only: it never changes what the model is asked
        self._lock = threading.Lock()
        self._usage = LLMUsage()
        self._listeners: list[Callable[[LLMCall], None]] = [on_call] if on_call else []
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()

    @property
    def provenance(self) -> dict[str, str]:
        """What a trace records about the model side: the endpoint and the model name (never the key)."""
        return {"endpoint": str(self.base_url), "model": str(self.model)}

    def __repr__(self) -> str:
        return (
            f"LLMClient(base_url={self.base_url!r}, model={self.model!r}, max_concurrency={self.max_concurrency}, "
            f"max_retries={self.max_retries}, timeout={self.timeout})"
        )

    # ---------------------------------------------------------------------------------------- bookkeeping

    @property
    def usage(self) -> LLMUsage:
        """Totals over every call so far (a snapshot)."""
        with self._lock:
            return self._usage

    def add_listener(self, fn: Callable[[LLMCall], None]) -> None:
        """Call `fn(call)` after every call, failed ones included (e.g. to stream events to a chat)."""
        self._listeners.append(fn)

    def _record(self, call: LLMCall) -> LLMCall:
        with self._lock:
            self._usage = self._usage.add(call)
        for fn in self._listeners:
            fn(call)
        return call

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            client = openai.AsyncOpenAI(
                base_url=self.base_url,
                api_key=self._api_key,
                timeout=self.timeout,
                max_retries=0,  # ours, below
                default_headers=self._headers or None,
            )
            state = self._states[loop] = _LoopState(client, asyncio.Semaphore(self.max_concurrency))
        return state

    async def aclose(self) -> None:
        """Close the HTTP client of the running event loop (others close with their loops)."""
        state = self._states.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.client.close()

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------------------------------ requests

    def _params(
        self,
        messages: Messages,
        *,
        model: str | None,
        temperature: float | None,
        max_tokens: int | None,
        stop: str | Sequence[str] | None,
        seed: int | None,
        top_p: float | None,
        extra_body: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"model": model or self.model, "messages": _check_messages(messages)}
        for key, value in (
            ("temperature", temperature),
            ("max_tokens", max_tokens),
            ("seed", seed),
            ("top_p", top_p),
        ):
            if value is not None:
                params[key] = value
        if stop is not None:
            params["stop"] = [stop] if isinstance(stop, str) else list(stop)
        if extra_body:
            params["extra_body"] = dict(extra_body)
        return params

    def _classify(self, exc: BaseException, timeout: float) -> _Retry:
        """Map an SDK exception onto retry-or-not, with a one-line description for the call's record."""
        if isinstance(exc, openai.APITimeoutError):
            return _Retry(f"timeout after {timeout:g} s", kind="timeout")
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            return _Retry(f"connection error: {type(cause).__name__}: {cause}"[:300], kind="connection")
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            retry_after = parse_retry_after(exc.response.headers)
            retryable = status in RETRY_STATUSES or status >= 500
            msg = _error_message(exc)
            detail = f"HTTP {status}" + (f": {msg}" if msg else "")
            if retry_after is not None:
                detail += f" (Retry-After {retry_after:g} s)"
            if not retryable and status in _HINTS:
                detail += f"; {_HINTS[status]}"
            return _Retry(detail[:500], kind="http", status=status, retryable=retryable, retry_after=retry_after)
        if isinstance(exc, openai.APIResponseValidationError):
            return _Retry(f"malformed response: {exc}"[:300], kind="bad_response", status=exc.status_code)
        if isinstance(exc, openai.APIError):  # e.g. an error event inside a stream (the server gave up mid-way)
            return _Retry(f"API error: {exc.message}"[:300], kind="http")
        if isinstance(exc, ValueError):  # an event stream whose data is not JSON
            return _Retry(f"malformed response: {type(exc).__name__}: {exc}"[:300], kind="bad_response")
        raise exc

    async def _pause(self, rec: _Attempts, failure: _Retry, attempt: int) -> None:
        delay = backoff_delay(
            attempt,
            base=self.backoff_base,
            cap=self.backoff_max,
            retry_after=failure.retry_after,
            max_retry_after=self.max_retry_after,
            rng=self._rng,
        )
        rec.wait_s += delay
        await asyncio.sleep(delay)

    def _fail(self, rec: _Attempts, failure: _Retry) -> LLMError:
        call = self._record(rec.freeze(ok=False))
        tries = f"after {rec.attempts} attempt{'s' * (rec.attempts != 1)}"
        return LLMError(
            f"LLM endpoint {self.base_url} (model {rec.model}) failed {tries}: {failure.detail}",
            endpoint=self.base_url,
            model=rec.model,
            status=failure.status,
            kind=failure.kind,
            attempts=rec.attempts,
            call=call,
        )

    def _new_record(self, params: Mapping[str, Any], stream: bool) -> _Attempts:
        return _Attempts(
            model=str(params["model"]),
            endpoint=str(self.base_url),
            stream=stream,
            t0=time.perf_counter(),
            started_at=datetime.now(UTC),
        )

    async def complete(
        self,
        messages: Messages,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        top_p: float | None = None,
        model: str | None = None,
        timeout: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
    ) -> LLMResponse:
        """One chat completion (non-streaming), retried on 429 / 5xx / timeouts / connection errors.

        `tools` / `tool_choice` offer functions in the OpenAI format; the calls come back in `tool_calls`.
        Raises `LLMError` when retries run out or the server refuses for good (4xx); the failed call is still
        counted in `usage`.
        """
        params = self._params(
            messages,
            model=model,
            temperature=temperature,
            max_tokens=max_tokens,
            stop=stop,
            seed=seed,
            top_p=top_p,
            extra_body=extra_body,
        )
        if tools:
            params["tools"] = [dict(t) for t in tools]
        if tool_choice is not None:
            params["tool_choice"] = tool_choice
        per_request = timeout if timeout is not None else self.timeout
        state = self._state()
        rec = self._new_record(params, stream=False)
        for attempt in range(self.max_retries + 1):
            rec.attempts += 1
            try:
                async with state.semaphore:
                    raw = await state.client.chat.completions.with_raw_response.create(**params, timeout=per_request)
                rec.status = raw.status_code
                rec.request_id = raw.headers.get("x-request-id") or rec.request_id
                try:
                    completion = raw.parse()
                except ValueError as exc:  # a body that is not JSON, or not a chat completion
                    raise _Retry(
                        f"malformed response: {exc}"[:300], kind="bad_response", status=raw.status_code
                    ) from exc
                if not getattr(completion, "choices", None):
                    raise _Retry(
                        f"malformed response: no choices in {str(completion)[:120]!r}",
                        kind="bad_response",
                        status=raw.status_code,
                    )
                choice = completion.choices[0]
                usage = completion.usage
                call = rec.freeze(
                    ok=True,
                    prompt_tokens=usage.prompt_tokens if usage else None,
                    completion_tokens=usage.completion_tokens if usage else None,
                    finish_reason=choice.finish_reason,
                )
                calls = [
                    ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments or "")
                    for c in (getattr(choice.message, "tool_calls", None) or [])
                    if getattr(c, "function", None) is not None
                ]
                return LLMResponse(text=choice.message.content or "", call=self._record(call), tool_calls=calls)
            except (openai.APIError, _Retry) as exc:
                failure = exc if isinstance(exc, _Retry) else self._classify(exc, per_request)
                if failure.status is not None:
                    rec.status = failure.status
                rec.errors.append(f"attempt {rec.attempts}: {failure.detail}")
                if not failure.retryable or attempt == self.max_retries:
                    raise self._fail(rec, failure) from (None if isinstance(exc, _Retry) else exc)
                await self._pause(rec, failure, attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def stream(
        self,
        messages: Messages,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        top_p: float | None = None,
        model: str | None = None,
        timeout: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> LLMStream:
        """A streamed completion: `async for delta in client.stream(msgs)`; afterwards `.text` and `.call`.

        Retries happen only before the first delta arrives (a half-delivered answer cannot be retried
        transparently); a failure after that raises `LLMError(kind="stream_interrupted")`.
        """
        params = self._params(
            messages,
            model=model,
            temperature=temperature,
            max_tokens=max_tokens,
            stop=stop,
            seed=seed,
            top_p=top_p,
            extra_body=extra_body,
        )
        return LLMStream(self, params, timeout if timeout is not None else self.timeout)

    async def complete_many(
        self,
        batch: Sequence[Messages],
        *,
        return_exceptions: bool = False,
        **params: Any,
    ) -> list[LLMResponse | LLMError]:
        """Fan a list of message lists out under the concurrency bound; results in input order.

        Every call runs to its end; then, unless `return_exceptions`, the first `LLMError` is raised. With
        `return_exceptions=True` failed items come back as their `LLMError` (a batch records them and goes on).
        """
        results = await asyncio.gather(*(self.complete(m, **params) for m in batch), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, LLMError):
                raise r
        if not return_exceptions:
            for r in results:
                if isinstance(r, LLMError):
                    raise r
        return list(results)  # type: ignore[arg-type]

    async def complete_parsed(
        self,
        messages: Messages,
        parse: Callable[[str], tuple[T, Sequence[str]]],
        *,
        max_repairs: int = 2,
        repair_prompt: Prompt | None = None,
        **params: Any,
    ) -> RepairOutcome[T]:
        """Ask, parse, and while the parser reports problems send them back (at most `max_repairs` rounds).

        `parse(text) -> (result, problems)`; no problems means success. Each repair round shows the model its
        previous answer and the located problems (the `repair` prompt). When rounds run out the outcome is
        returned with `ok=False` and every attempt recorded; bad output never raises. A parser that raises is
        recorded as a problem of that round. Transport failures raise `LLMError`, with `.partial` holding the
        rounds so far.
        """
        if max_repairs < 0:
            raise InputError(f"max_repairs must be ≥ 0 (got {max_repairs})")
        base = _check_messages(messages)
        template = repair_prompt or load_prompt("repair")
        attempts: list[RepairAttempt] = []
        convo = base
        result: T | None = None
        problems: list[str] = []
        text = ""
        for rnd in range(max_repairs + 1):
            try:
                response = await self.complete(convo, **params)
            except LLMError as exc:
                exc.partial = RepairOutcome(
                    ok=False,
                    result=result,
                    text=text,
                    problems=problems,
                    attempts=attempts,
                    prompt=template.ref,
                    failure=str(exc),
                )
                raise
            text = response.text
            try:
                result, found = parse(text)
                problems = [str(p) for p in found]
            except Exception as exc:  # noqa: BLE001 — a parser crash on model output is a recorded failure
                result, problems = None, [f"the parser raised {type(exc).__name__}: {exc}"]
            attempts.append(RepairAttempt(round=rnd, text=text, problems=problems, call=response.call))
            if not problems:
                return RepairOutcome(
                    ok=True, result=result, text=text, attempts=attempts, prompt=template.ref, problems=[]
                )
            if rnd == max_repairs:
                break
            # The conversation stays bounded: the original request, the last answer, the problems in it.
            repair = template.render(
                problems="\n".join(f"- {p}" for p in problems), round=rnd + 1, max_rounds=max_repairs
            )
            convo = [*base, {"role": "assistant", "content": text}, {"role": "user", "content": repair}]
        return RepairOutcome(
            ok=False,
            result=result,
            text=text,
            problems=problems,
            attempts=attempts,
            prompt=template.ref,
            failure=f"{len(problems)} problem(s) remain after {max_repairs} repair round(s): {problems[0]}",
        )

    # ------------------------------------------------------------------------------------ sync wrappers

    def _run(self, factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise InputError("LLMClient.*_sync cannot run inside an event loop; await the async method instead")

        async def main() -> T:
            try:
                return await factory()
            finally:
                await self.aclose()  # the loop dies with asyncio.run: close its HTTP client first

        return asyncio.run(main())

    def complete_sync(self, messages: Messages, **params: Any) -> LLMResponse:
        """`complete` for scripts (not inside a running event loop)."""
        return self._run(lambda: self.complete(messages, **params))

    def complete_many_sync(
        self, batch: Sequence[Messages], *, return_exceptions: bool = False, **params: Any
    ) -> list[LLMResponse | LLMError]:
        """`complete_many` for scripts."""
        return self._run(lambda: self.complete_many(batch, return_exceptions=return_exceptions, **params))

    def complete_parsed_sync(
        self,
        messages: Messages,
        parse: Callable[[str], tuple[T, Sequence[str]]],
        *,
        max_repairs: int = 2,
        **params: Any,
    ) -> RepairOutcome[T]:
        """`complete_parsed` for scripts."""
        return self._run(lambda: self.complete_parsed(messages, parse, max_repairs=max_repairs, **params))


class LLMStream:
    """An async iterator of text deltas; `.text` and `.call` are filled as it runs and complete at its end.

    Iterate it once. Breaking out early is fine: the connection is closed and the partial call recorded.
    """

    def __init__(self, client: LLMClient, params: dict[str, Any], timeout: float) -> None:
        self._client = client
        self._params = params
        self._timeout = timeout
        self._started = False
        self.text = ""
        self.call: LLMCall | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        if self._started:
            raise InputError("an LLMStream can be iterated only once")
        self._started = True
        return self._run()

    async def _run(self) -> AsyncIterator[str]:
        c = self._client
        state = c._state()
        rec = c._new_record(self._params, stream=True)
        extra: dict[str, Any] = {"stream": True}
        if c.stream_usage:
            extra["stream_options"] = {"include_usage": True}
        parts: list[str] = []
        usage: Any = None
        finish: str | None = None
        done = recorded = False
        try:
            for attempt in range(c.max_retries + 1):
                rec.attempts += 1
                try:
                    async with state.semaphore:
                        stream = await state.client.chat.completions.create(
                            **self._params, **extra, timeout=self._timeout
                        )
                        rec.status = 200
                        try:
                            async for chunk in stream:
                                if chunk.usage is not None:
                                    usage = chunk.usage
                                for choice in chunk.choices:
                                    if choice.finish_reason:
                                        finish = choice.finish_reason
                                    delta = choice.delta.content if choice.delta else None
                                    if delta:
                                        if rec.first_token_s is None:
                                            rec.first_token_s = time.perf_counter() - rec.t0
                                        parts.append(delta)
                                        self.text += delta
                                        yield delta
                        finally:
                            await stream.close()
                    done = True
                    break
                except (openai.APIError, ValueError) as exc:
                    failure = c._classify(exc, self._timeout)
                    if failure.status is not None:
                        rec.status = failure.status
                    rec.errors.append(f"attempt {rec.attempts}: {failure.detail}")
                    if parts:
                        failure = _Retry(
                            f"stream interrupted after {len(self.text)} characters: {failure.detail}",
                            kind="stream_interrupted",
                            status=failure.status,
                        )
                    if parts or not failure.retryable or attempt == c.max_retries:
                        recorded = True
                        error = c._fail(rec, failure)
                        self.call = error.call
                        raise error from exc
                    await c._pause(rec, failure, attempt)
        finally:
            if not recorded:
                # Completed, or the consumer stopped early / was cancelled: record what was received.
                self.call = c._record(
                    rec.freeze(
                        ok=done or bool(parts),
                        prompt_tokens=getattr(usage, "prompt_tokens", None),
                        completion_tokens=getattr(usage, "completion_tokens", None),
                        finish_reason=finish if done else "cancelled",
                    )
                )


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        err = body.get("error", body)
        if isinstance(err, Mapping) and err.get("message"):
            return str(err["message"])[:200]
        if isinstance(err, str):
            return err[:200]
    try:
        return exc.response.text[:200].strip()
    except Exception:  # noqa: BLE001 — a streamed error body may be unreadable; the status still speaks
        return ""


__all__ = [
    "RETRY_STATUSES",
    "LLMCall",
    "LLMClient",
    "LLMError",
    "LLMResponse",
    "ToolCall",
    "LLMStream",
    "LLMUsage",
    "RepairAttempt",
    "RepairOutcome",
    "backoff_delay",
    "format_problem",
    "graph_parse_fn",
    "parse_retry_after",
]
