"""The batch runner on real components (the small synthetic world in a real DuckDB store, the starter KB, the
pipeline): resume by content id, the run ledger, failures recorded without stopping the run and retried on
request, a dead LLM endpoint, and — when `ray` is installed — the Ray executor against a local Ray instance."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
from test_proposers import SmallWorld, small_world

from mechcell.agents.batch import BatchConfig, classify_error, run_batch
from mechcell.agents.proposers import Feedback, LocalProposer, ProposalContext
from mechcell.config import Settings
from mechcell.datasets.traces import TraceStore
from mechcell.errors import InputError, NotFoundError

FAST = {"n_candidates": 2, "max_rounds": 1, "seed": 0}
#: the drug the flaky proposer fails on while this environment variable is set (test plug-in switch)
FLAKY_ENV = "MECHCELL_TEST_FLAKY_DRUG"


class FlakyProposer(LocalProposer):
    """The real local proposer that raises for one drug (a malformed item: the run must go on)."""

    async def propose(self, context: ProposalContext, feedback: Feedback | None = None, *, k: int = 1) -> list:
        if context.condition.perturbation == os.environ.get(FLAKY_ENV):
            raise ValueError(f"cannot handle {context.condition.perturbation}")
        return await super().propose(context, feedback, k=k)


def flaky(settings: Settings | None = None, **kw: Any) -> FlakyProposer:
    p = FlakyProposer(**kw)
    p.name = "local"  # same ids as the local proposer: a retry after the fix completes the same corpus
    return p


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> SmallWorld:
    return small_world(tmp_path_factory.getbasetemp())


def test_build_resume_ledger_and_changed_config(world: SmallWorld, tmp_path: Path) -> None:
    store = world.copy_store(tmp_path)
    n = len(world.truth.conditions)
    r1 = run_batch(BatchConfig(**FAST, concurrency=2), store=store)
    assert r1.status == "finished" and r1.n_todo == n and r1.n_done + r1.n_failed == n and r1.n_skipped == 0
    r2 = run_batch(BatchConfig(**FAST), store=store)
    assert r2.n_todo == 0 and r2.n_skipped == n and r2.n_done == 0
    with TraceStore(store, read_only=True) as ts:
        ids = ts.ids()
        runs = ts.runs()
    assert len(ids) == n
    assert [(r.run_id, r.status, r.n_done, r.n_todo) for r in runs] == [
        (r1.run_id, "finished", r1.n_done, n),
        (r2.run_id, "finished", 0, 0),
    ]
    assert runs[0].config_hash == runs[1].config_hash and runs[0].finished_at is not None
    # a changed configuration never reuses stale traces
    r3 = run_batch(BatchConfig(**{**FAST, "seed": 1}, limit=2), store=store)
    assert r3.n_todo == 2 and r3.n_skipped == 0 and r3.config_hash != r1.config_hash
    with TraceStore(store, read_only=True) as ts:
        assert len(ts.ids()) == n + 2


def test_failing_item_is_recorded_and_retried_on_request(
    world: SmallWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = world.copy_store(tmp_path)
    drugs = sorted({c.drug for c in world.truth.conditions.values()})
    bad = drugs[0]
    n_bad = sum(c.drug == bad for c in world.truth.conditions.values())
    n = len(world.truth.conditions)
    monkeypatch.setenv(FLAKY_ENV, bad)
    r = run_batch(BatchConfig(**FAST, proposer="test_batch:flaky"), store=store)
    assert r.status == "finished" and r.n_failed == n_bad and r.n_done == n - n_bad
    assert r.failures_by_kind == {"error": n_bad}
    with TraceStore(store, read_only=True) as ts:
        fails = ts.failures()
        assert len(fails) == n_bad and all(bad in f.error and f.run_id == r.run_id for f in fails)
        assert all(f.condition_key.startswith(bad + "|") and f.n_tries == 1 for f in fails)
        assert not {f.trace_id for f in fails} & ts.ids()
    # without --retry-failed a resume skips the failures; with it (after the fix) they complete
    again = run_batch(BatchConfig(**FAST, proposer="test_batch:flaky"), store=store)
    assert again.n_todo == 0 and again.n_skipped == n
    monkeypatch.delenv(FLAKY_ENV)
    fixed = run_batch(BatchConfig(**FAST, proposer="test_batch:flaky", retry_failed=True), store=store)
    assert fixed.n_todo == n_bad and fixed.n_done == n_bad and fixed.n_failed == 0
    with TraceStore(store, read_only=True) as ts:
        assert ts.failures() == [] and len(ts.ids()) == n
        assert {f.trace_id for f in fails} <= ts.ids()  # the planned ids are the ones now stored


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_dead_endpoint_does_not_stop_the_run(world: SmallWorld, tmp_path: Path) -> None:
    """Every call to a closed port fails: each item ends as a failed trace recorded as a `no_graph` failure."""
    store = world.copy_store(tmp_path)
    settings = Settings(
        llm_base_url=f"http://127.0.0.1:{_closed_port()}/v1",
        llm_model="nobody",
        llm_max_retries=0,
        llm_timeout=2.0,
    )
    r = run_batch(
        BatchConfig(proposer="llm", n_candidates=1, max_rounds=0, limit=3, concurrency=3),
        store=store,
        settings=settings,
    )
    assert r.status == "finished" and r.n_todo == 3 and r.n_failed == 3 and r.failures_by_kind == {"no_graph": 3}
    with TraceStore(store, read_only=True) as ts:
        assert [t.status for t in ts.iter_docs()] == ["failed"] * 3  # the attempts are kept (negative samples)
        assert all("every attempt failed" in f.error for f in ts.failures())


def test_bad_inputs_are_clean_errors(world: SmallWorld, tmp_path: Path) -> None:
    store = world.copy_store(tmp_path)
    with pytest.raises(InputError, match="no condition"):
        run_batch(BatchConfig(drugs=["no-such-drug"]), store=store)
    with pytest.raises(NotFoundError):
        run_batch(BatchConfig(), store=tmp_path / "missing" / "x.duckdb")
    assert classify_error(TimeoutError()) == "timeout" and classify_error(InputError("x")) == "data"
    assert classify_error(ConnectionError()) == "endpoint" and classify_error(ValueError()) == "error"


def test_ray_executor_matches_local(world: SmallWorld, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.mkdir()
    b.mkdir()
    sa, sb = world.copy_store(a), world.copy_store(b)
    ra = run_batch(BatchConfig(**FAST, limit=4), store=sa)
    rb = run_batch(BatchConfig(**FAST, limit=4, executor="ray", workers=2), store=sb)
    assert rb.status == "finished" and rb.n_done + rb.n_failed == 4
    with TraceStore(sa, read_only=True) as x, TraceStore(sb, read_only=True) as y:
        assert x.ids() == y.ids()
        for t in x.iter_docs():
            u = y.get(t.id)
            assert u.final_text == t.final_text and u.metrics == t.metrics
    rc = run_batch(BatchConfig(**FAST, limit=4, executor="ray", workers=2), store=sb)
    assert rc.n_todo == 0 and rc.n_skipped == 4 and ra.config_hash == rb.config_hash
