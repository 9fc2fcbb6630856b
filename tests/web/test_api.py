"""The web API on real components: a copy of the demo store, the starter KB, the local proposer, threads in a real
SQLite checkpointer; HTTP through Starlette's TestClient (and one real `mechcell serve` process)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from web_support import FAST, DemoWorld, free_port, read_sse

from mechcell.config import Settings
from mechcell.datasets.traces import TraceStore
from mechcell.web import STATIC_DIR, WebLimits, create_app
from mechcell.web.security import RateLimiter

TOKEN = "s3cret-token-for-tests"


def client(store: Path, **kw: object) -> TestClient:
    token = kw.pop("token", None)
    settings = Settings(store_path=store, api_token=SecretStr(token) if token else None)
    return TestClient(create_app(settings, config=FAST, **kw), raise_server_exceptions=False)  # type: ignore[arg-type]


def ask(c: TestClient, thread: str, question: str, headers: dict[str, str] | None = None) -> list[tuple[str, dict]]:
    with c.stream("POST", f"/api/threads/{thread}/messages", json={"content": question}, headers=headers) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return read_sse(r.iter_lines())


def assert_json_error(r: httpx.Response, status: int | set[int]) -> str:
    assert r.status_code in (status if isinstance(status, set) else {status}), (r.status_code, r.text)
    doc = r.json()
    assert list(doc) == ["error"] and doc["error"]
    assert "Traceback" not in r.text and 'File "' not in r.text
    return doc["error"]


def test_health_openapi_and_offline_docs(served_store: Path) -> None:
    with client(served_store) as c:
        h = c.get("/api/health").json()
        assert h["status"] == "ok" and h["store_exists"] and h["proposer"] == "local" and h["auth"] is False
        assert h["conditions"] == 16 and h["traces"] == 4  # the small demo world: 16 conditions, 4 explained
        paths = c.get("/openapi.json").json()["paths"]
        for p in ("/api/threads", "/api/threads/{thread_id}/messages", "/api/traces/{trace_id}", "/api/conditions"):
            assert p in paths
        assert "/api/health" in paths and "text/event-stream" in json.dumps(paths["/api/threads/{thread_id}/messages"])
        docs = c.get("/docs")
        assert docs.status_code == 200 and "/static/docs.js" in docs.text
        page = c.get("/")
        assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]


def test_every_asset_ships_in_the_package_no_cdn() -> None:
    names = sorted(p.name for p in STATIC_DIR.iterdir())
    assert {"index.html", "app.js", "app.css", "docs.html", "docs.js"} <= set(names)
    external = re.compile(r"(?:https?:)?//(?!www\.w3\.org/2000/svg)[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)
    for p in STATIC_DIR.iterdir():
        text = p.read_text()
        assert not external.findall(text), (p.name, external.findall(text))
        for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in text, (p.name, sink)  # data reaches the page as text only


def test_a_question_streams_progress_verdicts_and_the_answer(demo_world: DemoWorld, served_store: Path) -> None:
    key = demo_world.untraced_active()
    question = demo_world.question(key)
    with client(served_store) as c:
        r = c.post("/api/threads")
        assert r.status_code == 201
        thread = r.json()["id"]
        events = ask(c, thread, question)
        kinds = [e for e, _ in events]
        assert kinds[0] == "start" and kinds[-1] == "done" and "error" not in kinds
        assert {"parsed", "run_started", "node_started", "node_finished", "verdict", "trace", "answer"} <= set(kinds)
        assert kinds.index("verdict") < kinds.index("answer")
        answer = next(d for e, d in events if e == "answer")
        assert answer["condition_key"] == key and answer["trace_id"] and not answer["reused"]
        trace_doc = c.get(f"/api/traces/{answer['trace_id']}").json()
        assert trace_doc["id"] == answer["trace_id"] and trace_doc["condition"]["perturbation"] in question
        # every claim of the final graph had its verdict streamed while the agents worked
        streamed = {d["claim_id"] for e, d in events if e == "verdict"}
        final_claims = {x["claim_id"] for x in trace_doc["attempts"][trace_doc["final_attempt"]]["report"]["claims"]}
        assert final_claims and final_claims <= streamed
        view = c.get(f"/api/traces/{answer['trace_id']}/view").json()
        assert len(view["nodes"]) == len(trace_doc["final_graph"]["nodes"])
        assert view["genes"] is not None and view["genes"]["condition_key"] == key
        # asking again reuses the stored trace; the verdicts are replayed from it
        again = ask(c, thread, question)
        kinds2 = [e for e, _ in again]
        assert "reused" in kinds2 and "run_started" not in kinds2
        replayed = [d for e, d in again if e == "verdict"]
        assert replayed and all(d["replayed"] for d in replayed)
        assert {d["claim_id"] for d in replayed} == final_claims
    # the trace the API served is the one in the store
    with TraceStore(served_store, read_only=True) as ts:
        assert ts.get(answer["trace_id"]).model_dump(mode="json") == trace_doc


def test_threads_persist_across_server_restarts(demo_world: DemoWorld, served_store: Path) -> None:
    key = demo_world.traced()[0]
    question = demo_world.question(key)
    with client(served_store) as c:
        thread = c.post("/api/threads").json()["id"]
        assert c.get(f"/api/threads/{thread}").json()["messages"] == []
        ask(c, thread, question)
        ask(c, thread, "why is n1 supported?")
    with client(served_store) as c:  # a new server process would see the same SQLite checkpointer
        listed = c.get("/api/threads").json()
        assert [t["id"] for t in listed] == [thread]
        assert listed[0]["title"] == question and listed[0]["n_messages"] == 4
        detail = c.get(f"/api/threads/{thread}").json()
        assert [m["role"] for m in detail["messages"]] == ["user", "assistant", "user", "assistant"]
        assert detail["condition_key"] == key and detail["trace_id"]
        assert_json_error(c.get("/api/threads/th_0000000000000000"), 404)


def test_conditions_search(demo_world: DemoWorld, served_store: Path) -> None:
    drug = demo_world.truth.condition(demo_world.traced()[0]).drug
    with client(served_store) as c:
        everything = c.get("/api/conditions", params={"limit": 500}).json()
        assert len(everything) == 16
        mine = c.get("/api/conditions", params={"query": drug.upper()}).json()
        assert mine and all(x["perturbation"] == drug for x in mine)
        assert {x["key"] for x in mine} == {k for k, t in demo_world.truth.conditions.items() if t.drug == drug}
        traced = [x["trace_id"] is not None for x in mine]
        assert traced == sorted(traced, reverse=True)  # conditions with a trace first
        assert c.get("/api/conditions", params={"query": "no-such-drug"}).json() == []
        assert_json_error(c.get("/api/conditions", params={"query": "x" * 500}), 422)


def test_the_token_guards_every_api_route(served_store: Path) -> None:
    with client(served_store, token=TOKEN) as c:
        routes = [r for r in c.app.routes if getattr(r, "path", "").startswith("/api/")]  # type: ignore[attr-defined]
        assert len(routes) >= 7
        good = {"Authorization": f"Bearer {TOKEN}"}
        for r in routes:
            path = r.path.replace("{thread_id}", "th_x").replace("{trace_id}", "tr_abcdef").replace("{rest:path}", "x")
            for method in sorted(r.methods):
                for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                    resp = c.request(method, path, headers=headers, json={"content": "hi"})
                    assert_json_error(resp, 401)
                    assert resp.headers["www-authenticate"].startswith("Bearer")
        assert c.get("/api/health", headers=good).status_code == 200
        thread = c.post("/api/threads", headers=good).json()["id"]
        events = ask(c, thread, "help", headers=good)
        assert events[-1][0] == "done"
        assert c.get("/").status_code == 200  # the page itself is public: it asks for the token


def test_errors_are_json_messages_never_tracebacks(served_store: Path) -> None:
    with client(served_store) as c:
        thread = c.post("/api/threads").json()["id"]
        assert_json_error(c.get("/api/traces/..%2F..%2Fetc%2Fpasswd"), {400, 404})  # no route, or an invalid id
        assert "invalid trace id" in assert_json_error(c.get("/api/traces/..%2E..%2Eetc"), 400)
        assert "invalid trace id" in assert_json_error(c.get("/api/traces/tr_abc';DROP TABLE traces;--"), 400)
        assert "not in" in assert_json_error(c.get("/api/traces/tr_0123456789abcdef0123"), 404)
        assert_json_error(c.get("/api/threads/..%2Fsecrets"), {400, 404})
        assert "invalid thread id" in assert_json_error(c.get("/api/threads/..secrets"), 400)
        assert_json_error(c.post("/api/threads/th_nope/messages", json={"content": "hi"}), 404)
        assert_json_error(c.post(f"/api/threads/{thread}/messages", json={"content": "   "}), 400)
        assert_json_error(c.post(f"/api/threads/{thread}/messages", json={"content": "x" * 2001}), 400)
        assert_json_error(c.post(f"/api/threads/{thread}/messages", json={"question": "hi"}), 422)
        bad_json = {"content-type": "application/json"}
        assert_json_error(c.post(f"/api/threads/{thread}/messages", content=b"{not json", headers=bad_json), 422)
        assert_json_error(c.get("/api/nothing/here"), 404)
        assert_json_error(c.get("/static/../../pyproject.toml"), 404)
        assert_json_error(c.get("/static/app.py"), 404)


def test_request_size_limit(served_store: Path) -> None:
    with client(served_store, limits=WebLimits(max_body_bytes=1024)) as c:
        thread = c.post("/api/threads").json()["id"]
        big = json.dumps({"content": "x" * 2000}).encode()
        hdr = {"content-type": "application/json"}
        assert "larger than 1024" in assert_json_error(
            c.post(f"/api/threads/{thread}/messages", content=big, headers=hdr), 413
        )

        def chunks():  # no Content-Length: the limit is counted while reading
            for i in range(0, len(big), 256):
                yield big[i : i + 256]

        assert_json_error(c.post(f"/api/threads/{thread}/messages", content=chunks(), headers=hdr), 413)


def test_rate_limits(served_store: Path) -> None:
    limits = WebLimits(requests_per_minute=1, burst=3, messages_per_minute=1, message_burst=1)
    with client(served_store, limits=limits) as c:
        thread = c.post("/api/threads").json()["id"]  # 1
        assert c.get("/api/threads").status_code == 200  # 2
        events = ask(c, thread, "help")  # 3 (and the one question)
        assert events[-1][0] == "done"
        r = c.get("/api/health")
        assert "too many requests" in assert_json_error(r, 429) and int(r.headers["retry-after"]) >= 1
        assert c.get("/").status_code == 200  # the page is not rate limited


def test_rate_limiter_refills_at_its_rate() -> None:
    rl = RateLimiter(per_minute=60, burst=2)  # one token a second
    assert rl.take("a", now=0.0) == 0 and rl.take("a", now=0.0) == 0
    assert rl.take("a", now=0.0) == pytest.approx(1.0)
    assert rl.take("b", now=0.0) == 0  # buckets are per client
    assert rl.take("a", now=0.5) == pytest.approx(0.5)
    assert rl.take("a", now=1.6) == 0


def test_mechcell_serve_starts_a_real_server(served_store: Path, tmp_path: Path) -> None:
    port = free_port()
    exe = Path(sys.executable).with_name("mechcell")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-c", "from mechcell.cli import main; main()"]
    env = {**os.environ, "MECHCELL_API_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [*cmd, "serve", "--port", str(port), "--store", str(served_store), "--log-level", "warning"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                r = httpx.get(f"{url}/api/health", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "mechcell serve did not answer in time"
            time.sleep(0.25)
        assert r.json()["auth"] is True and r.json()["conditions"] == 16
        assert_json_error(httpx.get(f"{url}/api/health"), 401)
        assert httpx.get(url).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
