"""The page in a real browser: Debian's chromium (/usr/bin/chromium, headless) driven by Playwright against a live
uvicorn server over a copy of the demo store. Never downloads a browser; skips when chromium or playwright is absent.

Screenshots go to $MECHCELL_WEB_SCREENSHOTS when set (docs/img/ was made that way), else to the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from web_support import FAST, DemoWorld, LiveServer

from mechcell.config import Settings
from mechcell.web import STATIC_DIR, create_app

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "browser-test-token"
TIMEOUT = 90_000  # ms: a pipeline run on a shared 2-core machine

if not CHROMIUM.is_file():
    pytest.skip(
        "Debian's chromium is not installed at /usr/bin/chromium (apt-get install chromium)", allow_module_level=True
    )
try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    pytest.skip("playwright is not installed (pip install 'playwright>=1.40')", allow_module_level=True)


def palette() -> dict[str, str]:
    """The verdict colours the page ships (read from app.js: the page is the spec of its own palette)."""
    js = (STATIC_DIR / "app.js").read_text()
    block = re.search(r"const COLORS = \{(.*?)\};", js, re.S)
    assert block is not None
    return dict(re.findall(r"(\w+): \"(#[0-9a-f]{6})\"", block.group(1)))


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = os.environ.get("MECHCELL_WEB_SCREENSHOTS")
    path = Path(out) if out else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def server(demo_world: DemoWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    store = demo_world.copy_store(tmp_path_factory.mktemp("browser-store"))
    with LiveServer(create_app(Settings(store_path=store), config=FAST)) as srv:
        yield srv


@pytest.fixture(scope="module")
def playwright_() -> Iterator[Any]:
    with sync_playwright() as p:
        yield p


@pytest.fixture
def page(playwright_: Any, tmp_path: Path) -> Iterator[Page]:
    ctx = playwright_.chromium.launch_persistent_context(
        str(tmp_path / "profile"),  # a fresh user-data dir per test
        executable_path=str(CHROMIUM),
        headless=True,
        args=ARGS,
        viewport={"width": 1500, "height": 1100},
        accept_downloads=True,
    )
    pg = ctx.pages[0] if ctx.pages else ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.set_default_timeout(TIMEOUT)
    try:
        yield pg
        assert not errors, errors  # no script error on the page, whatever the test did
    finally:
        ctx.close()
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def ask(page: Page, question: str) -> None:
    page.fill("#question", question)
    page.click("#ask-button")
    page.wait_for_selector("#events li.ev-done, #events li.ev-error", state="attached")
    page.wait_for_selector("body[data-state=idle]", state="attached")


def test_ask_watch_the_verdicts_read_the_graph_and_its_evidence(
    page: Page, server: LiveServer, demo_world: DemoWorld, shots: Path, tmp_path: Path
) -> None:
    key = demo_world.untraced_active()  # no stored trace: the agents run while the page watches
    question = demo_world.question(key)
    page.goto(server.url)
    page.wait_for_selector("body[data-state=idle]", state="attached")
    page.fill("#question", question)
    page.click("#ask-button")
    # the verdicts stream in before the answer arrives
    page.wait_for_selector("#events li.ev-verdict", state="attached")
    page.wait_for_selector("#events li.ev-done", state="attached")
    page.wait_for_selector("body[data-state=idle]", state="attached")
    types = page.eval_on_selector_all("#events li", "els => els.map(e => e.dataset.type)")
    assert types.index("verdict") < types.index("answer") and "node_started" in types and "error" not in types
    assert page.locator(".msg.assistant").count() == 1 and key in page.inner_text(".msg.assistant")

    # the SVG has the graph's nodes and its edges coloured by verdict
    trace_id = page.evaluate("document.body.dataset.trace")
    view = httpx.get(f"{server.url}/api/traces/{trace_id}/view").json()
    assert view["condition_key"] == key
    drawn = page.eval_on_selector_all("#graph g.node", "els => els.map(e => e.dataset.id)")
    assert sorted(drawn) == sorted(n["id"] for n in view["nodes"]) and len(drawn) >= 3
    colours = palette()
    edges = page.eval_on_selector_all(
        "#graph g.edge",
        "els => els.map(e => [e.dataset.src, e.dataset.tgt, e.dataset.status, "
        "e.querySelector('.edge-line').getAttribute('stroke')])",
    )
    assert sorted((s, t, st) for s, t, st, _ in edges) == sorted(
        (e["src"], e["tgt"], e["status"]) for e in view["edges"]
    )
    for _s, _t, status, stroke in edges:
        assert stroke == colours[status]
    assert any(st == "supported" for _, _, st, _ in edges)
    labels = page.eval_on_selector_all("#graph g.node", "els => els.map(e => e.textContent)")
    for n in view["nodes"]:
        if n["primitive"] != "set_context":
            assert any(n["primitive"][:20] in lab for lab in labels), n["primitive"]
    page.screenshot(path=str(shots / "web_answer.png"))

    # clicking an edge opens the evidence of the step it asserts: claims, verifiers, p/e-values, KB records
    e = next(x for x in view["edges"] if any(c["verdicts"] for c in view["claims"] if c["node_id"] == x["tgt"]))
    page.click(f'#graph g.edge[data-src="{e["src"]}"][data-tgt="{e["tgt"]}"] .edge-hit', force=True)
    page.wait_for_selector("#evidence[data-kind=edge]", state="attached")
    text = page.inner_text("#evidence")
    assert f"{e['src']} → {e['tgt']}" in text
    claims = [c for c in view["claims"] if c["node_id"] == e["tgt"]]
    for c in claims:
        assert c["claim_id"] in text
        for v in c["verdicts"]:
            assert v["verifier"] in text
            for ev in v["evidence"][:3]:
                assert ev["source"] in text
    if any(v["p_value"] is not None for c in claims for v in c["verdicts"]):
        assert "p-value" in text and "e-value" in text and "null tested" in text
    page.screenshot(path=str(shots / "web_evidence.png"))

    # the top genes panel shows the condition's signature
    up = [g["gene"] for g in view["genes"]["up"]]
    assert up and page.inner_text("#genes table.genes-up tbody tr:first-child td:first-child") == up[0]

    # downloads: the trace as JSON, the graph as SVG and PNG
    with page.expect_download() as d:
        page.click("#dl-json")
    doc = json.loads(Path(d.value.path()).read_text())
    assert doc["id"] == trace_id and doc["condition"]["perturbation"] in question
    with page.expect_download() as d:
        page.click("#dl-svg")
    root = ET.fromstring(Path(d.value.path()).read_bytes())
    ns = "{http://www.w3.org/2000/svg}"
    assert len([g for g in root.iter(f"{ns}g") if g.get("class") == "node"]) == len(view["nodes"])
    with page.expect_download() as d:
        page.click("#dl-png")
    assert Path(d.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # reload: the thread is in the history and its graph comes back
    page.reload()
    page.wait_for_selector("body[data-state=idle]", state="attached")
    titles = page.eval_on_selector_all("#threads li", "els => els.map(e => e.getAttribute('title'))")
    assert question in titles
    page.wait_for_selector("#graph g.node", state="attached")
    assert page.inner_text("#result-title") == key
    assert page.locator(".msg.user").first.inner_text() == question
    page.screenshot(path=str(shots / "web_history.png"))


def test_html_in_a_question_is_shown_as_text(page: Page, server: LiveServer, demo_world: DemoWorld) -> None:
    key = demo_world.traced()[0]
    evil = (
        '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
        f"{demo_world.question(key)} <b>bold?</b>"
    )
    page.goto(server.url)
    page.wait_for_selector("body[data-state=idle]", state="attached")
    page.click("#new-thread")
    ask(page, evil)
    assert page.locator(".msg.user").last.inner_text() == evil
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#messages script, #messages img, #messages b").count() == 0
    page.reload()
    page.wait_for_selector("body[data-state=idle]", state="attached")
    titles = page.eval_on_selector_all("#threads li", "els => els.map(e => e.getAttribute('title'))")
    assert evil[:200] in titles
    assert page.locator("#threads script, #threads img, #threads b").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_with_a_token_the_page_asks_for_it(page: Page, demo_world: DemoWorld, tmp_path: Path, shots: Path) -> None:
    store = demo_world.copy_store(tmp_path / "token-store")
    app = create_app(Settings(store_path=store, api_token=SecretStr(TOKEN)), config=FAST)
    with LiveServer(app) as srv:
        page.goto(srv.url)
        page.wait_for_selector("#token-dialog[open]", state="attached")
        status = page.evaluate("fetch('/api/health').then(r => r.status)")
        assert status == 401
        assert httpx.get(f"{srv.url}/api/conditions").status_code == 401
        assert page.inner_text("#health") == "token needed"
        page.screenshot(path=str(shots / "web_token.png"))
        page.fill("#token-input", TOKEN)
        page.click("#token-save")
        page.wait_for_selector("#health:has-text('16 conditions')", state="attached")
        # The list is filled by its own request after the health check: wait for it rather than race it
        # (a locator wait, not wait_for_function: the page's CSP forbids evaluating strings).
        expect(page.locator("#conditions li[data-key]")).to_have_count(16)
