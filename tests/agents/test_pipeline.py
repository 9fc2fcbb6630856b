"""The LangGraph pipeline end to end on real components: a synthetic world in a real DuckDB store, the starter KB,
the verifier panel, the local proposer — and the LLM proposer against the real OpenAI-compatible test server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer, Reply
from test_proposers import SmallWorld, _client, small_world
from typer.testing import CliRunner

from mechcell.agents.pipeline import (
    NODES,
    Pipeline,
    PipelineConfig,
    PipelineEvent,
    astream_explain,
    explain,
    selection_key,
)
from mechcell.agents.proposers import Feedback, LLMProposer, LocalProposer, Proposal, ProposalContext
from mechcell.cli import app
from mechcell.config import Settings
from mechcell.datasets.traces import TraceStore
from mechcell.eval.recovery import NameResolver, graph_edges
from mechcell.graphs import parse_text
from mechcell.knowledge import KnowledgeBase, load_kb

FAST = PipelineConfig(n_candidates=3, max_rounds=2, use_cells=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> SmallWorld:
    return small_world(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_kb(None)


class CountingProposer(LocalProposer):
    """The real local proposer, counting how often it is asked (to see reuse skip the work)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.calls = 0

    async def propose(self, context: ProposalContext, feedback: Feedback | None = None, *, k: int = 1) -> list:
        self.calls += 1
        return await super().propose(context, feedback, k=k)


def test_local_pipeline_recovers_the_planted_mechanism(world: SmallWorld, kb: KnowledgeBase, tmp_path: Path) -> None:
    """Edge precision against the planted graph (truth.json, never seen by the pipeline) must be high."""
    key = world.strongest_active()
    store = world.copy_store(tmp_path)
    with Pipeline(kb=kb, store=store, proposer="local", config=FAST) as pipe:
        trace = pipe.run(key)
    assert trace.status == "accepted" and trace.final_graph is not None
    assert trace.dataset_id == world.dataset_id and trace.signature_method
    planted = world.truth.graph(key)
    res = NameResolver(kb)
    pred, true = graph_edges(trace.final_graph, res), graph_edges(planted, res)
    assert len(pred & true) / len(pred) >= 0.9, sorted(pred - true)
    assert len(pred & true) / len(true) >= 0.4
    # provenance and the configuration hashed into the id
    assert trace.provenance.proposer == "local" and trace.provenance.kb_version == kb.version
    assert trace.config.verifier_settings["seed"] == 0 and trace.config.n_candidates == 3
    final = trace.final
    assert final is not None and final.report is not None and final.accepted
    assert trace.metrics.factual_precision == final.factual_precision
    assert set(trace.timings) >= {"retrieve", "propose", "verify", "finalize", "total"}
    # saved in the store, identical on reload
    with TraceStore(store, read_only=True) as ts:
        assert ts.get(trace.id) == trace


def test_inactive_condition_is_abstained(world: SmallWorld, kb: KnowledgeBase, tmp_path: Path) -> None:
    with Pipeline(kb=kb, store=world.copy_store(tmp_path), config=FAST) as pipe:
        trace = pipe.run(world.inactive())
    assert trace.status == "abstained" and trace.final_graph is None and not trace.attempts
    assert "No mechanism" in trace.answer


def test_events_stream_in_order(world: SmallWorld, kb: KnowledgeBase, tmp_path: Path) -> None:
    key = world.strongest_active()

    async def collect() -> list[PipelineEvent]:
        with Pipeline(kb=kb, store=world.copy_store(tmp_path), config=FAST) as pipe:
            return [e async for e in pipe.astream(key)]

    events = asyncio.run(collect())
    assert events[0].type == "run_started" and events[-1].type == "trace" and events[-1].trace is not None
    trace = events[-1].trace
    started = [e.node for e in events if e.type == "node_started"]
    finished = [e.node for e in events if e.type == "node_finished"]
    assert started[:3] == ["retrieve", "propose", "verify"] and started[-1] == "finalize"
    assert started == finished and set(started) <= set(NODES)
    # one verdict event per claim result of every verified attempt, one attempt event per attempt
    n_claims = sum(len(a.report["claims"]) for a in trace.attempts if a.report)
    assert sum(e.type == "verdict" for e in events) == n_claims
    assert sum(e.type == "attempt" for e in events) == len(trace.attempts)
    ts = [e.t for e in events]
    assert ts == sorted(ts)
    assert all(e.condition_key == key for e in events)


def test_same_seed_same_trace_and_reuse(world: SmallWorld, kb: KnowledgeBase, tmp_path: Path) -> None:
    key = world.strongest_active()
    store = world.copy_store(tmp_path)
    prop = CountingProposer()
    with Pipeline(kb=kb, store=store, proposer=prop, config=FAST) as pipe:
        a = pipe.run(key, reuse=False)
        b = pipe.run(key, reuse=False)
        assert a.id == b.id and a.final_graph == b.final_graph
        assert [x.graph_hash for x in a.attempts] == [x.graph_hash for x in b.attempts]
        calls = prop.calls
        events: list[PipelineEvent] = []
        c = pipe.run(key, on_event=events.append)  # reuse: the stored trace, no proposing
        assert prop.calls == calls and c == b
        assert events[-1].data["reused"] is True
    other = FAST.model_copy(update={"seed": 1, "panel": FAST.panel.model_copy(update={"seed": 1})})
    with Pipeline(kb=kb, store=store, proposer="local", config=other) as pipe:
        assert pipe.run(key).id != a.id


def test_explain_api_and_async_stream(world: SmallWorld, tmp_path: Path) -> None:
    store = world.copy_store(tmp_path)
    key = world.strongest_active()
    settings = Settings(store_path=store, n_permutations=200)
    t = explain(key, settings=settings, use_cells=False, max_rounds=1)
    assert t.status == "accepted" and t.config.max_rounds == 1 and t.config.verifier_settings["n_permutations"] == 200

    async def stream() -> list[PipelineEvent]:
        return [e async for e in astream_explain(key, settings=settings, use_cells=False, max_rounds=1)]

    evs = asyncio.run(stream())
    assert evs[-1].trace == t and evs[-1].data["reused"] is True


def test_without_a_store_the_kb_alone_serves(kb: KnowledgeBase, world: SmallWorld) -> None:
    key = world.strongest_active()
    with Pipeline(kb=kb, store=None, config=FAST, save=False) as pipe:
        events: list[PipelineEvent] = []
        t = pipe.run(key, on_event=events.append)
    assert t.final_graph is not None and t.signature_method is None and t.dataset_id is None
    assert any(e.type == "note" and "uncheckable" in e.data.get("message", "") for e in events)
    report = t.final_report
    assert report is not None
    exp = [v for v in report["verdicts"] if v["verifier"] == "expression"]
    assert exp and all(v["status"] == "uncheckable" for v in exp)


def test_cells_reach_the_panel(world: SmallWorld, kb: KnowledgeBase, tmp_path: Path) -> None:
    """With use_cells the panel runs its distributional test on the condition's cells (from the h5ad). A short
    graph (3 genes per list) keeps the panel's per-claim robustness analysis of cell data cheap."""
    panel = FAST.panel.model_copy(update={"n_permutations": 50, "max_cells_per_arm": 40})
    cfg = PipelineConfig(n_candidates=1, max_rounds=0, use_cells=True, panel=panel)
    proposer = LocalProposer(max_genes=3, max_chains=1)
    with Pipeline(kb=kb, store=world.copy_store(tmp_path), proposer=proposer, config=cfg) as pipe:
        t = pipe.run(world.strongest_active())
    assert t.final_report is not None
    assert any(v["verifier"] == "expression-dr" for v in t.final_report["verdicts"])


def test_selection_prefers_accepted_then_net_verified_content() -> None:
    from mechcell.datasets.traces import Attempt

    def att(i: int, accepted: bool, s: int, inc: int = 0, c: int = 0, reward: float = 0.9) -> Attempt:
        return Attempt(
            index=i,
            round=0,
            candidate=i,
            proposer="x",
            accepted=accepted,
            reward=reward,
            counts={"supported": s, "inconclusive": inc, "contradicted": c},
        )

    atts = [att(0, False, 50), att(1, True, 10, reward=1.0), att(2, True, 30, 2, reward=0.97), att(3, True, 30, 25)]
    assert max(atts, key=selection_key).index == 2


# ------------------------------------------------------------------------------------------ with the LLM


def test_llm_pipeline_revises_after_feedback(
    openai_server: OpenAIServer, world: SmallWorld, kb: KnowledgeBase, tmp_path: Path
) -> None:
    """Round 0 claims the planted genes in the wrong direction (the data contradicts them); the revision prompt
    carries the verifiers' feedback and the corrected answer is accepted and chosen."""
    key = world.strongest_active()
    good = world.truth.condition(key).graph
    assert good is not None
    g = parse_text(good).graph
    assert g is not None
    flip = {"up": "down", "down": "up"}
    bad = g.model_copy(
        update={
            "nodes": [
                n.model_copy(update={"direction": flip[n.direction]}) if n.primitive == "regulates_expression" else n
                for n in g.nodes
            ]
        }
    ).to_text()
    openai_server.script(Reply(text="report"), Reply(text=bad), Reply(text=good))
    proposer = LLMProposer(_client(openai_server))
    cfg = PipelineConfig(n_candidates=1, max_rounds=2, use_cells=False)
    with Pipeline(kb=kb, store=world.copy_store(tmp_path), proposer=proposer, config=cfg) as pipe:
        t = pipe.run(key)
    assert [a.round for a in t.attempts] == [0, 1]
    assert not t.attempts[0].accepted and t.attempts[0].counts["contradicted"] > 0
    assert t.status == "accepted" and t.final_attempt == 1
    revise_prompt = "\n".join(m["content"] for m in openai_server.requests[2].body["messages"])
    assert "contradicted" in revise_prompt and "Your previous graph" in revise_prompt
    assert t.config.model == "test-model" and t.config.prompt_version and "revise/v1@" in t.config.prompt_version
    assert t.metrics.prompt_tokens > 0 and t.attempts[0].intermediate == "report"


def test_llm_garbage_ends_as_a_failed_trace(
    openai_server: OpenAIServer, world: SmallWorld, kb: KnowledgeBase, tmp_path: Path
) -> None:
    openai_server.default = Reply(text="no graph here")
    proposer = LLMProposer(_client(openai_server), two_step=False, max_repairs=1)
    cfg = PipelineConfig(n_candidates=2, max_rounds=1, use_cells=False)
    store = world.copy_store(tmp_path)
    with Pipeline(kb=kb, store=store, proposer=proposer, config=cfg) as pipe:
        t = pipe.run(world.strongest_active())
    assert t.status == "failed" and t.final_graph is None
    assert len(t.attempts) == 4 and all(a.failure and a.graph is None for a in t.attempts)
    assert all(len(a.repairs) == 2 for a in t.attempts)
    with TraceStore(store, read_only=True) as ts:
        assert ts.get(t.id).status == "failed"


# ------------------------------------------------------------------------------------------ the CLI


def test_cli_explain_json(world: SmallWorld, tmp_path: Path) -> None:
    store = world.copy_store(tmp_path)
    key = world.strongest_active()
    r = CliRunner().invoke(app, ["explain", key, "--store", str(store), "--no-cells", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["condition_key"] == key and doc["status"] == "accepted" and doc["trace_id"].startswith("tr_")
    assert "<explain>" in doc["graph"] and doc["report"]["accepted"] is True
    assert parse_text(doc["graph"]).ok
    # human output names the trace id and renders the graph
    r = CliRunner().invoke(app, ["explain", key, "--store", str(store), "--no-cells"])
    assert r.exit_code == 0 and doc["trace_id"] in r.stdout and "binds_to" in r.stdout


def test_cli_explain_unknown_proposer_is_a_clean_error(world: SmallWorld, tmp_path: Path) -> None:
    r = CliRunner().invoke(
        app, ["explain", world.strongest_active(), "--store", str(tmp_path / "s.duckdb"), "--proposer", "nope"]
    )
    assert r.exit_code == 2 and "unknown proposer" in r.output


def test_proposal_objects_round_trip() -> None:
    p = Proposal(proposer="local", text="x", failure="bad")
    assert Proposal.model_validate_json(p.model_dump_json()) == p and not p.ok


def test_conditions_run_concurrently_with_a_remote_model(
    openai_server: OpenAIServer, world: SmallWorld, kb: KnowledgeBase, tmp_path: Path
) -> None:
    """arun_many keeps several conditions in flight; each answer is matched to its own condition."""
    keys = sorted(k for k, c in world.truth.conditions.items() if c.active)[:4]
    assert len(keys) >= 2
    graphs = {k: world.truth.condition(k).graph for k in keys}

    def answer(body: dict) -> Reply:
        text = "\n".join(str(m.get("content")) for m in body["messages"])
        key = next(k for k in keys if f"Condition key: {k}" in text)
        return Reply(text=graphs[key] or "", delay=0.2)

    openai_server.default = answer
    proposer = LLMProposer(_client(openai_server, max_concurrency=8), two_step=False)
    cfg = PipelineConfig(n_candidates=1, max_rounds=0, use_cells=False)
    with Pipeline(kb=kb, store=world.copy_store(tmp_path), proposer=proposer, config=cfg) as pipe:
        traces = asyncio.run(pipe.arun_many(keys, concurrency=4))
    assert [t.condition.key for t in traces] == keys
    assert openai_server.max_in_flight >= 2
    for k, t in zip(keys, traces, strict=True):
        planted = parse_text(graphs[k] or "").graph
        assert t.final_graph is not None and planted is not None
        assert t.final_graph.content_hash() == planted.content_hash()


def test_graph_is_the_documented_state_machine(kb: KnowledgeBase) -> None:
    with Pipeline(kb=kb, store=None, config=FAST, save=False) as pipe:
        drawn = pipe.graph.get_graph()
        assert set(NODES) <= set(drawn.nodes)
        edges = {(e.source, e.target) for e in drawn.edges}
        assert {("retrieve", "propose"), ("propose", "verify"), ("revise", "verify")} <= edges
        assert {("verify", "revise"), ("verify", "finalize")} <= edges  # the conditional edge's two branches
