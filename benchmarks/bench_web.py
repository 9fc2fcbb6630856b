"""The web door's latency and weight on the demo world with the local proposer.

1. Time to the first streamed event and to the full answer, over HTTP (`mechcell serve` in its own process, as a
   user runs it; httpx streams the server-sent events), for questions whose condition has no trace yet (the agents
   run live) and for questions answered from a stored trace. Baseline in the same run: the same kind of questions
   asked of `ChatSession.astream` directly (no HTTP, no server), so the ratio is the web door's own overhead.
2. Page weight: the bytes a first visit loads (index.html, app.js, app.css, favicon), raw and gzip, against the
   payload of one answer (its event stream plus the graph view).

Run: .venv/bin/python benchmarks/bench_web.py [--questions 6] [--small]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from _machine import machine

from mechcell.agents.chat import ChatSession  # noqa: E402
from mechcell.agents.demo import DemoConfig, run_demo  # noqa: E402
from mechcell.agents.pipeline import PipelineConfig  # noqa: E402
from mechcell.config import Settings  # noqa: E402
from mechcell.datasets.synthetic import load_truth  # noqa: E402
from mechcell.web import STATIC_DIR  # noqa: E402

SMALL = {"n_drugs": 4, "n_cell_lines": 2, "doses": [0.5, 5.0], "n_genes": 400, "cells_per_condition": 120}


@contextmanager
def serve(store: Path) -> Iterator[str]:
    """`mechcell serve --store STORE` on a free port; yields its URL once /api/health answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = Path(sys.executable).with_name("mechcell")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-c", "from mechcell.cli import main; main()"]
    proc = subprocess.Popen(
        [*cmd, "serve", "--port", str(port), "--store", str(store), "--log-level", "warning"]
        + ["--questions-per-minute", "1000", "--requests-per-minute", "10000"],  # a benchmark is not a client
        cwd=store.parent,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/api/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mechcell serve did not start")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def question(truth, key: str) -> str:
    c = truth.condition(key)
    return f"why does {c.drug} change expression in {c.cell_line} at {c.dose:g} uM?"


def over_http(url: str, q: str) -> dict[str, float]:
    """Seconds to the first event, the first pipeline event, the answer and the end of the stream; bytes read."""
    with httpx.Client(base_url=url, timeout=600) as c:
        tid = c.post("/api/threads").json()["id"]
        t0 = time.perf_counter()
        out: dict[str, float] = {"bytes": 0.0}
        with c.stream("POST", f"/api/threads/{tid}/messages", json={"content": q}) as r:
            assert r.status_code == 200, r.read()
            for line in r.iter_lines():
                out["bytes"] += len(line) + 1
                if not line.startswith("event:"):
                    continue
                ev = line[6:].strip()
                now = time.perf_counter() - t0
                out.setdefault("start", now)
                if ev != "start":  # `start` is sent before any work: the first event with content is next
                    out.setdefault("first", now)
                if ev in ("run_started", "reused"):
                    out.setdefault("work", now)
                if ev == "verdict":
                    out.setdefault("verdict", now)
                if ev == "answer":
                    out["answer"] = now
                assert ev != "error", f"the question failed: {q}"
            out["done"] = time.perf_counter() - t0
        trace = c.get(f"/api/threads/{tid}").json()["trace_id"]
        out["view_bytes"] = float(len(c.get(f"/api/traces/{trace}/view").content)) if trace else 0.0
    return out


async def direct(session: ChatSession, q: str, thread: str) -> dict[str, float]:
    t0 = time.perf_counter()
    out: dict[str, float] = {}
    async for ev in session.astream(q, thread):
        now = time.perf_counter() - t0
        out.setdefault("first", now)
        if ev.type == "pipeline" and ev.pipeline is not None and ev.pipeline.type == "verdict":
            out.setdefault("verdict", now)
        if ev.type == "answer":
            out["answer"] = now
    out["done"] = time.perf_counter() - t0
    return out


def med(rows: list[dict[str, float]], k: str) -> float:
    vals = [r[k] for r in rows if k in r]
    return statistics.median(vals) if vals else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=6, help="live questions per arm (web, direct)")
    ap.add_argument("--small", action="store_true", help="the small test world instead of the default demo world")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_web_"))
    store = tmp / "mechcell.duckdb"
    t = time.perf_counter()
    cfg = DemoConfig(out_dir=tmp / "demo_out", store_path=store, world=SMALL if args.small else {})
    res = run_demo(cfg, settings=Settings(store_path=store))
    truth = load_truth(res.world_dir)
    took = time.perf_counter() - t
    print(f"demo world: {len(truth.conditions)} conditions, {len(res.rows)} traced by `run_demo` ({took:.1f} s)")
    traced = [r.key for r in res.rows]
    with_graph = {r.key for r in res.rows if r.status in ("accepted", "unverified")}
    # live questions: active conditions without a trace (the agents propose and verify a real mechanism)
    fresh = [k for k in sorted(truth.conditions) if k not in traced and truth.condition(k).active]
    # the same questions in both arms, each arm on its own copy of the store (neither finds the other's traces)
    web_keys = direct_keys = fresh[: args.questions]
    # what `mechcell serve` runs by default (PipelineConfig.from_settings, cell-level tests off) = the demo's
    pcfg = PipelineConfig.from_settings(Settings(), use_cells=False)
    assert (pcfg.n_candidates, pcfg.max_rounds, pcfg.panel.n_permutations) == (
        cfg.n_candidates,
        cfg.max_rounds,
        cfg.n_permutations,
    )

    web_store, direct_store = tmp / "web" / "mechcell.duckdb", tmp / "direct" / "mechcell.duckdb"
    for p in (web_store, direct_store):
        p.parent.mkdir()
        shutil.copy(store, p)

    with serve(web_store) as url:
        over_http(url, question(truth, traced[0]))  # warm-up (imports, first compile)
        web_live = [over_http(url, question(truth, k)) for k in web_keys]
        web_reused = [over_http(url, question(truth, k)) for k in traced]
        page = {name: (STATIC_DIR / name).read_bytes() for name in ("index.html", "app.js", "app.css", "favicon.svg")}
        served = sum(len(httpx.get(f"{url}/{'' if n == 'index.html' else 'static/' + n}").content) for n in page)

    async def run_direct() -> tuple[list[dict[str, float]], list[dict[str, float]]]:
        with ChatSession(store=direct_store, settings=Settings(store_path=direct_store), config=pcfg) as s:
            await direct(s, question(truth, traced[0]), "warm")
            live = [await direct(s, question(truth, k), f"d{i}") for i, k in enumerate(direct_keys)]
            reused = [await direct(s, question(truth, k), f"r{i}") for i, k in enumerate(traced)]
        return live, reused

    d_live, d_reused = asyncio.run(run_direct())
    # compare like with like: questions whose run produced a graph (abstentions end before any verdict)
    web_live = [r for r in web_live if "verdict" in r]
    d_live = [r for r in d_live if "verdict" in r]
    web_reused = [r for r, k in zip(web_reused, traced, strict=True) if k in with_graph]
    d_reused = [r for r, k in zip(d_reused, traced, strict=True) if k in with_graph]

    print(
        f"\n1. latency, median seconds over questions answered with a graph (live: {len(web_live)} web, "
        f"{len(d_live)} direct; stored: {len(web_reused)} each)"
    )
    print(f"{'':34}{'web (HTTP+SSE)':>16}{'direct (astream)':>18}{'ratio':>8}")
    for label, w, d in (("live run", web_live, d_live), ("stored trace", web_reused, d_reused)):
        for k, name in (("first", "first event"), ("verdict", "first verdict"), ("answer", "full answer")):
            wv, dv = med(w, k), med(d, k)
            ratio = f"{wv / dv:8.2f}" if dv == dv and dv > 0 else f"{'—':>8}"
            dcol = f"{dv:18.3f}" if dv == dv else f"{'— (no replay)':>18}"
            print(f"  {label + ': ' + name:32}{wv:16.3f}{dcol}{ratio}")
    print(f"  web: first byte (`start`, before any work) {med(web_live, 'start'):.4f} s")
    raw = sum(len(b) for b in page.values())
    gz = sum(len(gzip.compress(b, 9)) for b in page.values())
    stream = med(web_live, "bytes")
    view = med(web_live, "view_bytes")
    print("\n2. page weight (first visit: index.html + app.js + app.css + favicon.svg, 4 requests, no CDN)")
    print(f"  raw {raw} bytes (served {served}), gzip {gz} bytes")
    print(f"  one live answer: event stream {stream:.0f} bytes + graph view {view:.0f} bytes")
    print(f"  page / one answer's payload: {raw / (stream + view):.2f}")


if __name__ == "__main__":
    main()
