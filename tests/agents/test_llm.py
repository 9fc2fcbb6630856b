"""LLMClient against a real OpenAI-compatible HTTP server (tests/agents/openai_server.py) through the real
`openai` SDK: no monkeypatching. Latencies and backoff are kept small; no assertion is on wall time except the
Retry-After behaviour check (the wait must be at least what the server asked for).
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, TypeVar

import pytest
from openai_server import OpenAIServer, Reply, closed_port, prompt_tokens

from mechcell.agents.llm import (
    LLMCall,
    LLMClient,
    LLMError,
    LLMUsage,
    backoff_delay,
    graph_parse_fn,
    parse_retry_after,
)
from mechcell.config import Settings
from mechcell.errors import InputError, MechcellError

T = TypeVar("T")

GOOD_GRAPH = """<think> Trametinib binds MEK1 [causal]; ERK activity falls [causal]; ETS targets fall [causal]. </think>
<answer> Trametinib inhibits MEK1, ERK activity falls and DUSP6, SPRY4, ETV5 and FOSL1 go down. </answer>
<explain>
set_context(id="n0", cell_type="A549", genotype="KRAS G12S; STK11 LoF")
binds_to(id="n1", actor="Trametinib", target="MAP2K1", affinity="0.9", unit="nM")
modulates_molecule_activity(id="n2", target="MAP2K1", direction="down", via="allosteric inhibition")
modulates_molecule_activity(id="n3", target="MAPK1", direction="down", via="loss of MEK phosphorylation")
regulates_expression(id="n4", regulator="MAPK1", gene_list=["DUSP6","SPRY4","ETV5","FOSL1"], direction="down")
</explain>
<dag>
edge("n1", "n2", relation="causal")
edge("n2", "n3", relation="causal")
edge("n3", "n4", relation="causal")
</dag>
"""
# Two located errors: n3 lacks its direction (line 7), and the dag uses an undeclared id n9 (line 13).
BAD_GRAPH = GOOD_GRAPH.replace(', direction="down", via="loss of MEK', ', via="loss of MEK').replace(
    'edge("n3", "n4"', 'edge("n9", "n4"'
)
MESSAGES = [
    {"role": "system", "content": "You write action graphs."},
    {"role": "user", "content": "Explain Trametinib 0.1 uM in A549."},
]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def make_client(server: OpenAIServer, **kw: Any) -> LLMClient:
    """Test settings: short timeout, tiny backoff, fixed jitter seed."""
    args: dict[str, Any] = {
        "base_url": server.base_url,
        "model": "test-model",
        "timeout": 5.0,
        "max_retries": 3,
        "max_concurrency": 4,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "seed": 0,
    }
    args.update(kw)
    return LLMClient(**args)


async def _complete(client: LLMClient, messages: Any = MESSAGES, **kw: Any) -> Any:
    async with client:
        return await client.complete(messages, **kw)


# ------------------------------------------------------------------------------------------- well-formed


def test_well_formed_answer_is_returned_with_its_accounting(openai_server: OpenAIServer) -> None:
    openai_server.script(Reply(text=GOOD_GRAPH))
    client = make_client(openai_server)
    res = run(_complete(client, temperature=0.3, max_tokens=500, stop="</dag>", seed=7))
    assert res.text == GOOD_GRAPH
    (req,) = openai_server.requests
    # What went over the wire is what we asked for.
    assert req.body["messages"] == MESSAGES
    assert req.body["model"] == "test-model"
    assert (req.body["temperature"], req.body["max_tokens"], req.body["seed"]) == (0.3, 500, 7)
    assert req.body["stop"] == ["</dag>"]
    assert "stream" not in req.body or not req.body["stream"]
    # Accounting: the server's counts, one attempt, no errors.
    call = res.call
    assert call.ok and call.attempts == 1 and call.errors == [] and call.wait_s == 0.0
    assert call.prompt_tokens == prompt_tokens(req.body)
    assert call.completion_tokens == len(GOOD_GRAPH.split())
    assert call.finish_reason == "stop" and call.status == 200 and call.model == "test-model"
    assert call.latency_s > 0
    assert client.usage == LLMUsage().add(call)
    parsed, problems = graph_parse_fn(res.text)
    assert problems == [] and parsed.ok


def test_client_built_from_settings_sends_key_model_and_bounds(openai_server: OpenAIServer) -> None:
    settings = Settings(
        llm_base_url=openai_server.base_url,
        llm_model="from-settings",
        llm_api_key="sk-test-123",
        llm_timeout=3.0,
        llm_max_concurrency=3,
        llm_max_retries=1,
    )
    client = LLMClient(settings, backoff_base=0.01)
    assert (client.timeout, client.max_concurrency, client.max_retries) == (3.0, 3, 1)
    run(_complete(client))
    (req,) = openai_server.requests
    assert req.headers["authorization"] == "Bearer sk-test-123"
    assert req.body["model"] == "from-settings"
    # Explicit arguments win over settings.
    assert LLMClient(settings, model="other", max_retries=0).model == "other"
    # What a trace records: endpoint and model, never the key.
    assert client.provenance == {"endpoint": openai_server.base_url, "model": "from-settings"}
    assert "sk-test" not in repr(client) + str(client.provenance)


def test_importing_the_agents_package_stays_light() -> None:
    code = (
        "import sys, mechcell.agents as a; assert 'openai' not in sys.modules; "
        "a.LLMClient; print('openai' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"  # the lazy name resolved on first use


def test_unconfigured_endpoint_is_a_typed_error() -> None:
    with pytest.raises(LLMError, match="MECHCELL_LLM_BASE_URL") as err:
        LLMClient(Settings(llm_base_url=None, llm_model=None))
    assert err.value.kind == "not_configured"
    assert isinstance(err.value, MechcellError)


def test_bad_messages_are_input_errors(openai_server: OpenAIServer) -> None:
    client = make_client(openai_server)
    with pytest.raises(InputError, match="non-empty list"):
        run(_complete(client, messages="hello"))
    with pytest.raises(InputError, match=r"messages\[1\] has role 'robot'"):
        run(_complete(client, messages=[MESSAGES[0], {"role": "robot", "content": "x"}]))
    assert openai_server.n_requests == 0


# ---------------------------------------------------------------------------------------------- streaming


def test_streaming_uses_server_sent_events_and_records_usage(openai_server: OpenAIServer) -> None:
    openai_server.script(Reply(text=GOOD_GRAPH, chunk_chars=16))
    client = make_client(openai_server)

    async def go() -> tuple[list[str], Any]:
        async with client:
            s = client.stream(MESSAGES, temperature=0.0)
            deltas = [d async for d in s]
            return deltas, s

    deltas, s = run(go())
    assert len(deltas) == -(-len(GOOD_GRAPH) // 16)  # one delta per 16-character chunk
    assert "".join(deltas) == GOOD_GRAPH == s.text
    (req,) = openai_server.requests
    assert req.body["stream"] is True and req.body["stream_options"] == {"include_usage": True}
    call: LLMCall = s.call
    assert call.stream and call.ok and call.finish_reason == "stop" and call.attempts == 1
    assert call.prompt_tokens == prompt_tokens(req.body) and call.completion_tokens == len(GOOD_GRAPH.split())
    assert call.first_token_s is not None and 0 < call.first_token_s <= call.latency_s
    assert client.usage.calls == 1


def test_stream_retries_errors_before_the_first_delta(openai_server: OpenAIServer) -> None:
    openai_server.script(Reply.error(503, "overloaded"), Reply.rate_limited("0"), Reply(text="fine answer"))
    client = make_client(openai_server)

    async def go() -> Any:
        async with client:
            s = client.stream(MESSAGES)
            return "".join([d async for d in s]), s.call

    text, call = run(go())
    assert text == "fine answer"
    assert call.attempts == 3 and "HTTP 503" in call.errors[0] and "HTTP 429" in call.errors[1]
    assert openai_server.n_requests == 3


def test_stream_stopped_early_is_still_accounted(openai_server: OpenAIServer) -> None:
    openai_server.script(Reply(text="x" * 200, chunk_chars=10))
    client = make_client(openai_server)

    async def go() -> Any:
        async with client:
            s = client.stream(MESSAGES)
            it = aiter(s)
            first = await anext(it)
            await it.aclose()  # the consumer walks away
            return first, s

    first, s = run(go())
    assert first == "x" * 10 and s.text == first
    assert s.call is not None and s.call.finish_reason == "cancelled"
    assert client.usage.calls == 1 and client.usage.failed_calls == 0


def test_garbage_event_stream_is_retried_then_reported(openai_server: OpenAIServer) -> None:
    openai_server.default = Reply(raw_body="data: {not json\n\n", content_type="text/event-stream")
    client = make_client(openai_server, max_retries=1)

    async def go() -> None:
        async with client:
            async for _ in client.stream(MESSAGES):
                pass

    with pytest.raises(LLMError) as err:
        run(go())
    assert err.value.kind == "bad_response" and err.value.attempts == 2
    assert openai_server.n_requests == 2


def test_error_event_before_any_delta_is_retried(openai_server: OpenAIServer) -> None:
    openai_server.script(Reply(text="never sent", error_after_chunks=0), Reply(text="second try"))
    client = make_client(openai_server)

    async def go() -> Any:
        async with client:
            s = client.stream(MESSAGES)
            return "".join([d async for d in s]), s.call

    text, call = run(go())
    assert text == "second try" and call.attempts == 2 and "generation failed" in call.errors[0]


def test_a_stream_broken_after_some_deltas_is_not_silently_retried(openai_server: OpenAIServer) -> None:
    openai_server.script(Reply(text="abcdefghij" * 3, chunk_chars=10, error_after_chunks=2))
    client = make_client(openai_server)
    s = client.stream(MESSAGES)

    async def go() -> None:
        async with client:
            async for _ in s:
                pass

    with pytest.raises(LLMError, match="stream interrupted after 20 characters") as err:
        run(go())
    assert err.value.kind == "stream_interrupted" and err.value.attempts == 1
    assert s.text == "abcdefghij" * 2  # what arrived is kept
    assert s.call is not None and not s.call.ok and openai_server.n_requests == 1
    assert client.usage.failed_calls == 1


# -------------------------------------------------------------------------------------------- repair loop


def test_repair_loop_fixes_a_malformed_graph(openai_server: OpenAIServer) -> None:
    openai_server.script(Reply(text=BAD_GRAPH), Reply(text=GOOD_GRAPH))
    client = make_client(openai_server)

    async def go() -> Any:
        async with client:
            return await client.complete_parsed(MESSAGES, graph_parse_fn, max_repairs=2, temperature=0.0)

    out = run(go())
    assert out.ok and out.failure is None and out.text == GOOD_GRAPH
    assert out.result is not None and out.result.graph is not None and len(out.result.graph.nodes) == 5
    assert [a.round for a in out.attempts] == [0, 1]
    first = out.attempts[0]
    assert first.text == BAD_GRAPH
    assert any(p.startswith("line 7 [missing_argument]") and "'direction'" in p for p in first.problems)
    assert any(p.startswith("line 13 [undeclared_id]") and "'n9'" in p for p in first.problems)
    assert out.attempts[1].problems == []
    assert out.prompt is not None and out.prompt.startswith("repair/v1@")
    # The second request carried the original conversation, the bad answer and every located problem.
    second = openai_server.requests[1].body["messages"]
    assert second[:2] == MESSAGES
    assert second[2] == {"role": "assistant", "content": BAD_GRAPH}
    assert second[3]["role"] == "user"
    for p in first.problems:
        assert f"- {p}" in second[3]["content"]
    assert "Repair round 1 of 2" in second[3]["content"]
    assert out.usage.calls == 2 and client.usage.calls == 2


def test_garbage_ends_as_a_recorded_failure_not_an_exception(openai_server: OpenAIServer) -> None:
    garbage = 'As an AI model I would rather talk about the weather. {"graph": null}'
    openai_server.default = Reply(text=garbage)
    client = make_client(openai_server)

    async def go() -> Any:
        async with client:
            return await client.complete_parsed(MESSAGES, graph_parse_fn, max_repairs=2)

    out = run(go())
    assert not out.ok
    assert len(out.attempts) == 3 and openai_server.n_requests == 3
    assert all(a.text == garbage and a.problems for a in out.attempts)
    assert out.problems == out.attempts[-1].problems
    assert out.failure is not None and "after 2 repair round(s)" in out.failure
    assert out.result is not None and out.result.graph is None  # the last parse is kept for the trace
    # Each repair request shows only the last answer: the conversation stays bounded.
    assert [len(r.body["messages"]) for r in openai_server.requests] == [2, 4, 4]


def test_a_parser_that_raises_is_a_recorded_problem(openai_server: OpenAIServer) -> None:
    client = make_client(openai_server)

    def parse(text: str) -> tuple[int, list[str]]:
        raise KeyError("boom")

    out = client.complete_parsed_sync(MESSAGES, parse, max_repairs=0)
    assert not out.ok and len(out.attempts) == 1
    assert out.problems == ["the parser raised KeyError: 'boom'"]


def test_transport_failure_inside_repair_loop_keeps_the_rounds_so_far(openai_server: OpenAIServer) -> None:
    openai_server.script(Reply(text=BAD_GRAPH), Reply.error(400, "context length exceeded"))
    client = make_client(openai_server)
    with pytest.raises(LLMError) as err:
        client.complete_parsed_sync(MESSAGES, graph_parse_fn, max_repairs=2)
    assert err.value.status == 400
    partial = err.value.partial
    assert partial is not None and not partial.ok and len(partial.attempts) == 1
    assert partial.attempts[0].text == BAD_GRAPH


# ------------------------------------------------------------------------------------------------ retries


def test_429_retry_after_is_honoured(openai_server: OpenAIServer) -> None:
    openai_server.script(Reply.rate_limited("0.4"), Reply(text="after the wait"))
    client = make_client(openai_server)
    res = run(_complete(client))
    assert res.text == "after the wait"
    first, second = openai_server.requests
    # Behaviour check: the client waited at least what the header asked for.
    assert second.arrived - first.arrived >= 0.4
    assert res.call.wait_s >= 0.4
    assert res.call.attempts == 2
    assert "HTTP 429" in res.call.errors[0] and "Retry-After 0.4 s" in res.call.errors[0]


def test_retry_after_header_forms() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_retry_after({"retry-after": "2.5"}) == 2.5
    assert parse_retry_after({"retry-after": format_datetime(now + timedelta(seconds=3), usegmt=True)}, now=now) == 3
    assert parse_retry_after({"retry-after": format_datetime(now - timedelta(seconds=9), usegmt=True)}, now=now) == 0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25  # the finer header wins
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "-4"}) == 0.0
    assert parse_retry_after({}) is None and parse_retry_after(None) is None
    # A huge Retry-After is capped.
    rng = random.Random(0)
    assert 5.0 <= backoff_delay(0, base=0.1, cap=1.0, retry_after=3600, max_retry_after=5.0, rng=rng) <= 5.1


def test_backoff_is_full_jitter_within_its_bounds() -> None:
    """Null: delays ~ Uniform(0, min(cap, base·2^k)). Unit: one draw. 4000 draws per attempt number; the mean
    must lie within 5 standard errors of bound/2 (a false alarm rate below 1e-6), and no draw may leave the range.
    """
    rng = random.Random(12345)
    base, cap, n = 0.5, 4.0, 4000
    for k in range(6):
        bound = min(cap, base * 2**k)
        draws = [backoff_delay(k, base=base, cap=cap, rng=rng) for _ in range(n)]
        assert min(draws) >= 0.0 and max(draws) <= bound
        se = bound / (12 * n) ** 0.5
        assert abs(sum(draws) / n - bound / 2) < 5 * se
        assert max(draws) > 0.95 * bound  # the whole range is used, not only the bottom of it


def test_server_errors_are_retried_then_succeed(openai_server: OpenAIServer) -> None:
    openai_server.script(Reply.error(500), Reply.error(502, "bad gateway"), Reply(text="third time"))
    client = make_client(openai_server)
    res = run(_complete(client))
    assert res.text == "third time" and res.call.attempts == 3
    assert res.call.errors[0].startswith("attempt 1: HTTP 500") and res.call.errors[1].startswith("attempt 2: HTTP 502")
    assert res.call.wait_s > 0
    assert client.usage.attempts == 3 and client.usage.retries == 2


def test_exhausted_retries_raise_llm_error_naming_endpoint_and_status(openai_server: OpenAIServer) -> None:
    openai_server.default = Reply.error(500, "the GPU caught fire")
    client = make_client(openai_server, max_retries=2)
    with pytest.raises(LLMError) as err:
        run(_complete(client))
    e = err.value
    assert e.status == 500 and e.kind == "http" and e.attempts == 3
    assert openai_server.base_url in str(e) and "HTTP 500" in str(e) and "the GPU caught fire" in str(e)
    assert openai_server.n_requests == 3
    assert e.call is not None and not e.call.ok and len(e.call.errors) == 3
    assert client.usage.failed_calls == 1 and client.usage.calls == 1


def test_client_errors_fail_fast_with_a_hint(openai_server: OpenAIServer) -> None:
    openai_server.default = Reply.error(401, "invalid api key")
    client = make_client(openai_server)
    with pytest.raises(LLMError, match="MECHCELL_LLM_API_KEY") as err:
        run(_complete(client))
    assert err.value.status == 401 and err.value.attempts == 1
    assert openai_server.n_requests == 1


def test_timeouts_are_retried(openai_server: OpenAIServer) -> None:
    openai_server.script(Reply(delay=2.0, text="too late"), Reply(text="in time"))
    client = make_client(openai_server, timeout=0.5)
    res = run(_complete(client))
    assert res.text == "in time"
    assert res.call.attempts == 2 and "timeout after 0.5 s" in res.call.errors[0]


def test_timeouts_exhausted_raise_a_timeout_error(openai_server: OpenAIServer) -> None:
    openai_server.default = Reply(delay=1.5)
    client = make_client(openai_server, timeout=0.3, max_retries=1)
    with pytest.raises(LLMError) as err:
        run(_complete(client))
    assert err.value.kind == "timeout" and err.value.status is None and err.value.attempts == 2


def test_connection_errors_are_retried_then_reported() -> None:
    port = closed_port()
    client = LLMClient(base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=2, backoff_base=0.01, timeout=2.0)
    with pytest.raises(LLMError) as err:
        client.complete_sync(MESSAGES)
    e = err.value
    assert e.kind == "connection" and e.attempts == 3 and f"127.0.0.1:{port}" in str(e)


def test_a_body_that_is_not_a_completion_is_retried(openai_server: OpenAIServer) -> None:
    openai_server.script(
        Reply(raw_body="{not json", content_type="application/json"),
        Reply(raw_body="<html>proxy error</html>", content_type="text/html"),
        Reply(text="real answer"),
    )
    client = make_client(openai_server)
    res = run(_complete(client))
    assert res.text == "real answer" and res.call.attempts == 3
    assert all("malformed response" in e for e in res.call.errors)


# -------------------------------------------------------------------------------------------- concurrency


def _echo(body: dict[str, Any]) -> Reply:
    content = body["messages"][-1]["content"]
    if "refuse" in content:
        return Reply.error(400, f"refused {content}")
    return Reply(text=f"echo: {content}")


@pytest.mark.parametrize("bound", [1, 4])
def test_slow_server_sees_exactly_the_concurrency_bound(openai_server: OpenAIServer, bound: int) -> None:
    openai_server.latency = 0.08
    openai_server.default = _echo
    client = make_client(openai_server, max_concurrency=bound)
    batch = [[{"role": "user", "content": f"q{k}"}] for k in range(3 * bound)]
    results = client.complete_many_sync(batch)
    assert [r.text for r in results] == [f"echo: q{k}" for k in range(3 * bound)]  # input order kept
    assert openai_server.n_requests == 3 * bound
    assert openai_server.max_in_flight == bound  # reached, never exceeded


def test_streams_share_the_concurrency_bound(openai_server: OpenAIServer) -> None:
    openai_server.latency = 0.05
    client = make_client(openai_server, max_concurrency=2)

    async def one(k: int) -> str:
        return "".join([d async for d in client.stream([{"role": "user", "content": f"s{k}"}])])

    async def go() -> list[str]:
        async with client:
            return await asyncio.gather(*(one(k) for k in range(6)))

    assert run(go()) == ["ok"] * 6
    assert openai_server.max_in_flight == 2


def test_complete_many_returns_or_raises_failed_items(openai_server: OpenAIServer) -> None:
    openai_server.default = _echo
    client = make_client(openai_server)
    batch = [[{"role": "user", "content": c}] for c in ("a", "refuse b", "c")]
    results = client.complete_many_sync(batch, return_exceptions=True)
    assert results[0].text == "echo: a" and results[2].text == "echo: c"  # type: ignore[union-attr]
    assert isinstance(results[1], LLMError) and results[1].status == 400
    with pytest.raises(LLMError, match="refused refuse b"):
        client.complete_many_sync(batch)
    assert client.usage.calls == 6 and client.usage.failed_calls == 2


# ---------------------------------------------------------------------------------------------- plumbing


def test_sync_wrappers_work_across_event_loops_and_refuse_inside_one(openai_server: OpenAIServer) -> None:
    seen: list[LLMCall] = []
    client = make_client(openai_server, on_call=seen.append)
    assert client.complete_sync(MESSAGES).text == "ok"
    assert client.complete_sync(MESSAGES).text == "ok"  # a second asyncio.run: a fresh HTTP client
    assert len(seen) == 2 and client.usage.calls == 2

    async def inside() -> None:
        client.complete_sync(MESSAGES)

    with pytest.raises(InputError, match="await the async method"):
        run(inside())
