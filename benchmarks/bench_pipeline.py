"""Pipeline throughput and mechanism recovery on the default synthetic world.

1. Local proposer, full pipeline (retrieve → propose 3 → verify → revise ≤ 2 → finalize), cell-level tests off:
   traces per minute over every condition of the default demo world (12 drugs × 3 lines × 3 doses = 108), with a
   single-pass run (1 candidate, no revision) as the baseline in the same process; then a few conditions with
   cell-level tests on (the thorough setting), same baseline.
2. Mechanism recovery of those traces against the world's truth.json (mechcell.eval): edge precision / recall,
   factual precision, planted target → TF → gene paths, recall by effect size.
3. LLM proposer (two-step: 2 calls per condition) against the test OpenAI-compatible server at 200 ms latency:
   the speed-up from concurrency 1 → 16, for the proposing stage alone and for the whole pipeline
   (`Pipeline.arun_many`; verification is CPU-bound Python and caps the end-to-end gain). Goal (issue 7): ≥ 10×.

Run: .venv/bin/python benchmarks/bench_pipeline.py [--conditions N] [--llm-conditions 64] [--latency 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from _machine import machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "agents"))
from openai_server import OpenAIServer, Reply  # noqa: E402

from mechcell.agents.llm import LLMClient  # noqa: E402
from mechcell.agents.pipeline import Pipeline, PipelineConfig  # noqa: E402
from mechcell.agents.proposers import LLMProposer, ProposalContext  # noqa: E402
from mechcell.datasets.readers import open_dataset  # noqa: E402
from mechcell.datasets.signatures import compute_signatures  # noqa: E402
from mechcell.datasets.store import Store  # noqa: E402
from mechcell.datasets.synthetic import SyntheticWorldConfig, generate_world, load_truth  # noqa: E402
from mechcell.eval.recovery import evaluate_recovery  # noqa: E402
from mechcell.eval.report import summary_lines  # noqa: E402
from mechcell.knowledge import Retriever, load_kb  # noqa: E402
from mechcell.verifiers.base import PanelSettings  # noqa: E402


def per_minute(n: int, seconds: float) -> float:
    return 60.0 * n / seconds if seconds > 0 else float("inf")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conditions", type=int, default=0, help="0 = every condition of the world")
    ap.add_argument("--cells-conditions", type=int, default=4)
    ap.add_argument("--llm-conditions", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    kb = load_kb(None)

    t = time.perf_counter()
    generate_world(SyntheticWorldConfig(seed=args.seed), tmp / "world", layout="h5ad", kb=kb)
    truth = load_truth(tmp / "world")
    print(
        f"world: {len(truth.conditions)} conditions, {truth.n_cells} cells, "
        f"generated in {time.perf_counter() - t:.1f} s"
    )
    keys = sorted(truth.conditions)
    if args.conditions:
        keys = keys[: args.conditions]
    store = Store(tmp / "mechcell.duckdb")
    ds = open_dataset(str(tmp / "world" / "world.h5ad"))
    did = store.register(ds)
    t = time.perf_counter()
    compute_signatures(ds, keys, store=store, dataset_id=did)
    print(f"signatures (wilcoxon): {len(keys)} in {time.perf_counter() - t:.1f} s")

    # ---------------------------------------------------------------- 1. local throughput
    panel = PanelSettings(seed=args.seed)
    single = PipelineConfig(n_candidates=1, max_rounds=0, use_cells=False, panel=panel)
    full = PipelineConfig(n_candidates=3, max_rounds=2, use_cells=False, panel=panel)
    times: dict[str, float] = {}
    traces = []
    for name, cfg in (("single-pass (baseline)", single), ("full pipeline", full)):
        with Pipeline(kb=kb, store=store, proposer="local", config=cfg, save=False) as pipe:
            t = time.perf_counter()
            out = pipe.run_many(keys, reuse=False)
            times[name] = time.perf_counter() - t
        if name == "full pipeline":
            traces = out
        print(
            f"local, {name}: {len(keys)} traces in {times[name]:.1f} s = "
            f"{per_minute(len(keys), times[name]):.0f} traces/min"
        )
    print(f"ratio full / single-pass time: {times['full pipeline'] / times['single-pass (baseline)']:.2f}×")

    active = [k for k in keys if truth.condition(k).active][: args.cells_conditions]
    if active:
        cell_times = {}
        for name, cells in (("cells off", False), ("cells on", True)):
            cfg = full.model_copy(update={"use_cells": cells})
            with Pipeline(kb=kb, store=store, proposer="local", config=cfg, save=False) as pipe:
                t = time.perf_counter()
                pipe.run_many(active, reuse=False)
                cell_times[name] = time.perf_counter() - t
            print(
                f"local, full pipeline, {name}, {len(active)} active conditions: {cell_times[name]:.1f} s = "
                f"{per_minute(len(active), cell_times[name]):.1f} traces/min"
            )
        print(f"ratio cells on / off time: {cell_times['cells on'] / cell_times['cells off']:.1f}×")

    # ---------------------------------------------------------------- 2. recovery
    result = evaluate_recovery(truth, traces, kb=kb, keys=keys)
    print("recovery (local proposer, full pipeline, cells off):")
    for line in summary_lines(result):
        print("  " + line.replace("**", ""))

    # ---------------------------------------------------------------- 3. LLM concurrency
    if args.llm_conditions <= 0:
        store.close()
        return
    llm_keys = [k for k in sorted(truth.conditions) if truth.condition(k).active and k in set(keys)]
    llm_keys = llm_keys[: args.llm_conditions]
    graphs = {k: truth.condition(k).graph or "" for k in llm_keys}

    def answer(body: dict) -> Reply:
        """Step 1 (the report prompt) gets a report; step 2 (formalise) gets the condition's planted graph."""
        text = "\n".join(str(m.get("content")) for m in body["messages"])
        key = next((k for k in llm_keys if f"Condition key: {k}" in text), llm_keys[0])
        if "Write a mechanistic report" in text:
            return Reply(text=f"A mechanistic report for {key}.")
        return Reply(text=graphs[key])

    with OpenAIServer(latency=args.latency) as server:
        server.default = answer
        retriever = Retriever(kb)
        contexts = []
        for k in llm_keys:
            cond = store.find_condition(k).condition
            sig = store.signature(k)
            contexts.append(
                ProposalContext(condition=cond, retrieved=retriever.context(cond, sig), kb=kb, signature=sig)
            )
        stage: dict[int, float] = {}
        e2e: dict[int, float] = {}
        for conc in (1, 16):
            server.latency = args.latency
            client = LLMClient(base_url=server.base_url, model="bench", max_concurrency=conc, timeout=30, seed=0)
            proposer = LLMProposer(client)

            async def propose_all(p: LLMProposer = proposer, c: int = conc) -> list:
                sem = asyncio.Semaphore(c)

                async def one(ctx: ProposalContext) -> list:
                    async with sem:
                        return await p.propose(ctx, k=1)

                try:
                    return await asyncio.gather(*(one(x) for x in contexts))
                finally:
                    await p.client.aclose()

            t = time.perf_counter()
            props = asyncio.run(propose_all())
            stage[conc] = time.perf_counter() - t
            ok = sum(p[0].ok for p in props)
            cfg = PipelineConfig(n_candidates=1, max_rounds=0, use_cells=False, panel=panel)
            with Pipeline(kb=kb, store=store, proposer=proposer, config=cfg, save=False) as pipe:
                t = time.perf_counter()
                trs = asyncio.run(pipe.arun_many(llm_keys, concurrency=conc, reuse=False))
                e2e[conc] = time.perf_counter() - t
            print(
                f"LLM two-step, concurrency {conc:2d}: propose {len(contexts)} conditions in {stage[conc]:.2f} s "
                f"({ok} parsed); full pipeline {e2e[conc]:.2f} s = {per_minute(len(trs), e2e[conc]):.0f} traces/min "
                f"(max in flight at the server {server.max_in_flight})"
            )
            server.reset()
            server.default = answer
        print(f"speed-up 1 → 16, proposing stage: {stage[1] / stage[16]:.1f}× (goal ≥ 10×)")
        print(f"speed-up 1 → 16, whole pipeline:  {e2e[1] / e2e[16]:.1f}×")
    store.close()


if __name__ == "__main__":
    main()
