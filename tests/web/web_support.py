"""Fixtures for the web door: a small demo world made by `run_demo` (real store, real traces), a live uvicorn
server in a thread, and helpers to read server-sent events."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mechcell.agents.demo import DemoConfig, DemoResult, run_demo
from mechcell.agents.pipeline import PipelineConfig
from mechcell.config import Settings
from mechcell.datasets.synthetic import Truth, load_truth

#: A small demo world: 4 drugs × 2 cell lines × 2 doses, 4 of the 16 conditions explained by `run_demo`.
SMALL_WORLD = {"n_drugs": 4, "n_cell_lines": 2, "doses": [0.5, 5.0], "n_genes": 400, "cells_per_condition": 120}
#: New runs in the tests: the local proposer, few candidates, no cell-level tests (seconds per condition).
FAST = PipelineConfig(n_candidates=2, max_rounds=1, use_cells=False)


@dataclass
class DemoWorld:
    store: Path  # the demo store (copy it before serving: the server writes traces and signatures)
    result: DemoResult
    truth: Truth

    def copy_store(self, dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        out = dest / "mechcell.duckdb"
        shutil.copy(self.store, out)
        return out

    def traced(self) -> list[str]:
        """Condition keys the demo explained (a trace is stored)."""
        return [r.key for r in self.result.rows]

    def untraced_active(self) -> str:
        """An active condition the demo did not explain: asking about it runs the pipeline live."""
        done = set(self.traced())
        keys = [k for k, c in sorted(self.truth.conditions.items()) if c.active and k not in done]
        assert keys, "the demo world has no untraced active condition"
        return max(keys, key=lambda k: (self.truth.condition(k).effect_scale, k))

    def question(self, key: str) -> str:
        """A biologist's question about `key`: drug, cell line by name, dose."""
        c = self.truth.condition(key)
        return f"why does {c.drug} change expression in {c.cell_line} at {c.dose:g} uM?"


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory: pytest.TempPathFactory) -> DemoWorld:
    root = tmp_path_factory.mktemp("web-demo")
    store = root / "mechcell.duckdb"
    cfg = DemoConfig(out_dir=root / "demo_out", store_path=store, n_conditions=4, world=SMALL_WORLD, n_permutations=200)
    res = run_demo(cfg, settings=Settings(store_path=store))
    return DemoWorld(store=store, result=res, truth=load_truth(res.world_dir))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """A real uvicorn server on 127.0.0.1 in a background thread (the browser tests talk HTTP to it)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def read_sse(lines: Iterator[str]) -> list[tuple[str, dict[str, Any]]]:
    """Parse a server-sent-event stream into (event, data) pairs."""
    out: list[tuple[str, dict[str, Any]]] = []
    event, data = "message", ""
    for line in lines:
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif line == "" and data:
            out.append((event, json.loads(data)))
            event, data = "message", ""
    if data:
        out.append((event, json.loads(data)))
    return out


@pytest.fixture
def served_store(demo_world: DemoWorld, tmp_path: Path) -> Path:
    return demo_world.copy_store(tmp_path / "store")
