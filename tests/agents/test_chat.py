"""Chat on real components: a synthetic world in a real store, the starter KB, the pipeline, and threads in a real
SQLite checkpointer (resumed by a second session, as another process would)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from test_proposers import SmallWorld, small_world
from typer.testing import CliRunner

from mechcell.agents.chat import ChatEvent, ChatSession, QuestionParser
from mechcell.agents.pipeline import PipelineConfig
from mechcell.cli import app
from mechcell.datasets.store import Store
from mechcell.knowledge import KnowledgeBase, load_kb

FAST = PipelineConfig(n_candidates=2, max_rounds=1, use_cells=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> SmallWorld:
    return small_world(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_kb(None)


def _question(world: SmallWorld) -> tuple[str, str, str]:
    """(question, the condition key it is about, the gene asked about), from the truth."""
    key = world.strongest_active()
    ct = world.truth.condition(key)
    gene = sorted(g.gene for g in ct.up + ct.down)[0]
    # the cell line by its name: the store knows it by its Cellosaurus id only
    return f"why does {ct.drug.lower()} change {gene} in {ct.cell_line}?", key, gene


def _session(world: SmallWorld, tmp_path: Path, store: Path | None = None) -> ChatSession:
    return ChatSession(
        store=store or world.copy_store(tmp_path),
        kb=load_kb(None),
        checkpoint_path=tmp_path / "threads.sqlite",
        config=FAST,
    )


def test_parser_links_names_to_the_store(world: SmallWorld, kb: KnowledgeBase) -> None:
    with Store(world.store, read_only=True) as st:
        parser = QuestionParser(kb, st.conditions())
    q, key, gene = _question(world)
    ct = world.truth.condition(key)
    p = parser.parse(q)
    assert p.intent == "explain" and p.drug == ct.drug and gene in p.genes
    assert ct.context in p.contexts
    assert parser.parse("and at the lower dose?").direction == "lower"
    assert parser.parse("at 500 nM?").dose == 500 and parser.parse("at 500 nM?").dose_unit == "nM"
    assert parser.parse("why is n3 supported?").intent == "why" and parser.parse("why is n3 supported?").node == "n3"
    assert parser.parse("what would falsify this?").intent == "falsify"
    assert parser.parse("which conditions do you have?").intent == "list"
    assert parser.parse("tell me a joke").intent == "unknown"


def test_a_conversation_with_follow_ups(world: SmallWorld, tmp_path: Path) -> None:
    q, key, gene = _question(world)
    ct = world.truth.condition(key)
    events: list[ChatEvent] = []
    with _session(world, tmp_path) as s:
        t1 = s.ask(q, "t1", on_event=events.append)
        assert t1.intent == "explain" and t1.condition_key == key and t1.trace_id and not t1.reused
        assert t1.parser == "dictionary" and t1.parse is not None and not t1.parse.rounds  # offline: no LLM
        assert key in t1.answer and gene in t1.answer and "Verified graph" in t1.answer
        assert t1.citations and {c.verifier for c in t1.citations} >= {"knowledge", "expression"}
        assert any(e.type == "pipeline" for e in events) and events[-1].type == "answer"
        # the trace is in the store (read through the session's own connection: one per DuckDB file)
        assert s.pipeline.traces is not None and s.pipeline.traces.find(t1.trace_id) is not None

        t2 = s.ask("why is n2 supported?", "t1")
        assert t2.intent == "why" and t2.trace_id == t1.trace_id and t2.condition_key == key
        assert "n2" in t2.answer and t2.citations and all(c.claim_id.startswith("n2") for c in t2.citations)

        t3 = s.ask("what would falsify this?", "t1")
        assert t3.intent == "falsify" and any(t in t3.answer for t in ct.targets)

        t4 = s.ask("and at the lower dose?", "t1")
        lower_keys = [
            k
            for k, c in world.truth.conditions.items()
            if c.drug == ct.drug and c.context == ct.context and c.dose < ct.dose
        ]
        assert lower_keys and t4.condition_key == max(lower_keys, key=lambda k: world.truth.condition(k).dose)
        assert t4.trace_id != t1.trace_id

        t5 = s.ask(f"at {ct.dose:g} uM?", "t1")
        assert t5.condition_key == key and t5.reused and t5.trace_id == t1.trace_id

        t6 = s.ask("which conditions?", "t1")
        assert t6.intent == "list" and key in t6.answer
        t7 = s.ask("tell me a joke", "t1")
        assert t7.intent == "unknown" and "why does" in t7.answer


def test_threads_persist_across_sessions(world: SmallWorld, tmp_path: Path) -> None:
    q, key, _ = _question(world)
    store = world.copy_store(tmp_path)
    with _session(world, tmp_path, store) as s:
        first = s.ask(q, "persist")
    with _session(world, tmp_path, store) as s:  # a new session: as another process resuming the thread
        hist = s.history("persist")
        assert [m["role"] for m in hist] == ["user", "assistant"] and hist[0]["content"] == q
        follow = s.ask("why is n1 supported?", "persist")
        assert follow.condition_key == key and follow.trace_id == first.trace_id
        assert len(s.history("persist")) == 4
        assert s.history("another-thread") == []
        # a different thread starts fresh but reuses the stored trace
        again = s.ask(q, "other")
        assert again.reused and again.trace_id == first.trace_id


def test_without_a_store_the_kb_answers(world: SmallWorld, tmp_path: Path) -> None:
    with ChatSession(
        store=tmp_path / "absent.duckdb", kb=load_kb(None), checkpoint_path=tmp_path / "t.sqlite", config=FAST
    ) as s:
        t = s.ask("why does Trametinib act in A549?", "x")
        assert t.intent == "explain" and any("not in the store" in n for n in t.notes)
        assert t.trace_id and "Trametinib" in t.answer
        why = s.ask("why is n1 supported?", "x")  # the in-memory trace serves the follow-up
        assert why.trace_id == t.trace_id and "n1" in why.answer


def test_astream_is_an_async_generator_of_events(world: SmallWorld, tmp_path: Path) -> None:
    q, _, _ = _question(world)

    async def run() -> list[ChatEvent]:
        with _session(world, tmp_path) as s:
            return [e async for e in s.astream(q, "web")]

    evs = asyncio.run(run())
    kinds = [e.type for e in evs]
    assert kinds[0] == "parsed" and kinds[-1] == "answer" and "pipeline" in kinds
    steps = [e.pipeline.type for e in evs if e.pipeline is not None]
    assert "node_started" in steps and "verdict" in steps and steps[-1] == "trace"


def test_cli_chat_one_shot_json(world: SmallWorld, tmp_path: Path) -> None:
    q, key, _ = _question(world)
    store = world.copy_store(tmp_path)
    args = ["chat", "--store", str(store), "--threads", str(tmp_path / "th.sqlite"), "--no-cells", "--thread", "c"]
    r = CliRunner().invoke(app, [*args, "-q", q, "-q", "why is n1 supported?", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [t["intent"] for t in doc["turns"]] == ["explain", "why"] and doc["turns"][0]["condition_key"] == key
    assert doc["turns"][0]["parser"] == "dictionary"
    r = CliRunner().invoke(app, [*args, "--parser", "llm", "-q", q])  # no endpoint configured: a clear error
    assert r.exit_code != 0 and "MECHCELL_LLM_BASE_URL" in r.output
    r = CliRunner().invoke(app, [*args, "--history", "--json"])
    assert r.exit_code == 0 and len(json.loads(r.stdout)["messages"]) == 4
    r = CliRunner().invoke(app, [*args, "-q", "what would falsify this?"])
    assert r.exit_code == 0 and "falsify" in r.stdout
