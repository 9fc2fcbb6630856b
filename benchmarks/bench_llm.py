"""LLM client throughput against a slow OpenAI-compatible server: the speed-up from bounded concurrency.

The server is the test server of tests/agents/openai_server.py (FastAPI + uvicorn on 127.0.0.1, real wire
format), answering every chat completion after a fixed latency (default 200 ms, a small model on a GPU). The
client is `LLMClient` through the real `openai` SDK. Baseline, in the same process: concurrency 1.
Goal (issue 7): ≥ 10× from concurrency 1 → 16.

Run: .venv/bin/python benchmarks/bench_llm.py [--n 64] [--latency 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from _machine import machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "agents"))
from openai_server import OpenAIServer, Reply  # noqa: E402

from mechcell.agents.llm import LLMClient  # noqa: E402

GRAPH = """<think> MEK inhibition lowers ERK activity and its ETS targets. </think>
<answer> Trametinib inhibits MEK1; DUSP6 and SPRY4 fall. </answer>
<explain>
set_context(id="n0", cell_type="A549")
binds_to(id="n1", actor="Trametinib", target="MAP2K1")
modulates_molecule_activity(id="n2", target="MAPK1", direction="down")
regulates_expression(id="n3", regulator="MAPK1", gene_list=["DUSP6", "SPRY4"], direction="down")
</explain>
<dag>
edge("n1", "n2", relation="causal")
edge("n2", "n3", relation="causal")
</dag>
"""


async def _batch(client: LLMClient, n: int, stream: bool) -> None:
    msgs = [[{"role": "user", "content": f"Explain condition {k}."}] for k in range(n)]
    async with client:
        if stream:

            async def one(m: list[dict[str, str]]) -> str:
                return "".join([d async for d in client.stream(m)])

            texts = await asyncio.gather(*(one(m) for m in msgs))
        else:
            texts = [r.text for r in await client.complete_many(msgs)]  # type: ignore[union-attr]
    assert all(t == GRAPH for t in texts)


def run(server: OpenAIServer, n: int, concurrency: int, stream: bool = False) -> tuple[float, int]:
    server.reset()
    server.latency = LATENCY
    server.default = Reply(text=GRAPH)
    client = LLMClient(base_url=server.base_url, model="bench", max_concurrency=concurrency, timeout=30.0)
    t0 = time.perf_counter()
    asyncio.run(_batch(client, n, stream))
    wall = time.perf_counter() - t0
    assert server.n_requests == n
    return wall, server.max_in_flight


LATENCY = 0.2


def main() -> None:
    global LATENCY
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=64, help="requests per run")
    ap.add_argument("--latency", type=float, default=0.2, help="server latency per request, seconds")
    args = ap.parse_args()
    LATENCY = args.latency
    print(f"machine: {machine()}")
    print(f"server latency {LATENCY * 1000:.0f} ms, {args.n} chat completions per run\n")
    with OpenAIServer() as server:
        run(server, 8, 4)  # warm-up: imports, first connections
        rows = []
        for c in (1, 2, 4, 8, 16):
            wall, peak = run(server, args.n, c)
            rows.append((f"complete, concurrency {c:>2}", c, wall, peak))
        wall, peak = run(server, args.n, 16, stream=True)
        rows.append(("stream,   concurrency 16", 16, wall, peak))
    base = rows[0][2]
    print(f"{'run':<28}{'wall s':>9}{'req/s':>9}{'peak in flight':>16}{'speed-up vs c=1':>18}")
    for name, _c, wall, peak in rows:
        print(f"{name:<28}{wall:>9.2f}{args.n / wall:>9.1f}{peak:>16d}{base / wall:>17.1f}×")
    speedup = base / rows[4][2]
    ideal = args.n * LATENCY
    print(f"\nbaseline (concurrency 1): {base:.2f} s for {args.n} requests (ideal {ideal:.2f} s)")
    print(f"speed-up 1 → 16: {speedup:.1f}× (goal ≥ 10×: {'met' if speedup >= 10 else 'NOT met'})")


if __name__ == "__main__":
    main()
