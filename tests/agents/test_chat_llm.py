"""The chat's LLM question parser on real components: the real `openai` SDK against the real OpenAI-protocol test
server (FastAPI/uvicorn on 127.0.0.1) scripted with tool calls in the real wire format, a synthetic world in a real
DuckDB store, the starter KB, the local pipeline and threads in a real SQLite checkpointer. No monkeypatching.

What these tests can and cannot show: the server replies with the tool calls each test scripts, so they check the
whole path *around* the model — the request (tools, forced tool_choice, the vocabulary and conversation in the
versioned prompt), reading the wire format, validation, linking the model's names through the KB and the store,
the repair round, the dictionary fallback and what the turn records — not how well any real model reads questions.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer, Reply, closed_port
from pydantic import ValidationError
from test_proposers import SmallWorld, small_world

from mechcell.agents.chat import (
    TOOL_NAME,
    ChatEvent,
    ChatSession,
    LLMQuestionParser,
    ParsedQuestion,
    QuestionParser,
    SelectCondition,
    select_condition_tool,
)
from mechcell.agents.pipeline import PipelineConfig
from mechcell.config import Settings
from mechcell.datasets.store import Store
from mechcell.errors import InputError
from mechcell.knowledge import KnowledgeBase, load_kb

FAST = PipelineConfig(n_candidates=2, max_rounds=1, use_cells=False)
#: brand / code names the starter KB knows for the drugs a synthetic world may use
SYNONYMS = {"Bortezomib": "velcade", "Gemcitabine": "gemzar", "Topotecan": "hycamtin", "Rucaparib": "rubraca"}
DOSE_WORDS = {0.5: "half a micromolar", 5.0: "five micromolar"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> SmallWorld:
    return small_world(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_kb(None)


@pytest.fixture(scope="module")
def dictionary(world: SmallWorld, kb: KnowledgeBase) -> QuestionParser:
    with Store(world.store, read_only=True) as st:
        return QuestionParser(kb, st.conditions())


def _session(world: SmallWorld, tmp_path: Path, base_url: str | None) -> ChatSession:
    settings = Settings(llm_base_url=base_url, llm_model="test-model" if base_url else None, llm_max_retries=0)
    return ChatSession(
        store=world.copy_store(tmp_path),
        kb=load_kb(None),
        settings=settings,
        checkpoint_path=tmp_path / "threads.sqlite",
        proposer="local",  # only the parse talks to the LLM server: the pipeline stays local and deterministic
        config=FAST,
    )


def _call(**args: Any) -> Reply:
    return Reply.tool_call(TOOL_NAME, args)


def _top(world: SmallWorld) -> tuple[str, Any, str]:
    """The strongest active condition's drug at its highest dose in its cell line: (key, truth, a planted gene)."""
    ct0 = world.truth.condition(world.strongest_active())
    same = {k: c for k, c in world.truth.conditions.items() if c.drug == ct0.drug and c.context == ct0.context}
    key = max(same, key=lambda k: same[k].dose)
    ct = same[key]
    return key, ct, sorted(g.gene for g in ct.up + ct.down)[0]


def _user_text(body: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content") or "") for m in body["messages"] if m["role"] == "user")


# ------------------------------------------------------------------------------------------ the tool contract


def test_the_tool_schema_is_the_validation_model_and_covers_the_parsed_question() -> None:
    tool = select_condition_tool()
    assert tool["type"] == "function" and tool["function"]["name"] == TOOL_NAME
    params = tool["function"]["parameters"]
    assert params["type"] == "object" and params["required"] == ["intent"] and params["additionalProperties"] is False
    # everything ParsedQuestion carries except what linking adds (the store ids of a cell line)
    assert set(params["properties"]) == set(ParsedQuestion.model_fields) - {"contexts"}
    json.dumps(tool)  # serialisable as sent on the wire
    assert SelectCondition.model_validate({"intent": "dose", "dose": 500, "dose_unit": "µM"}).dose_unit == "uM"
    assert SelectCondition.model_validate({"intent": "why", "node": "", "drug": "null"}).node is None
    with pytest.raises(ValidationError, match="without dose_unit"):
        SelectCondition.model_validate({"intent": "dose", "dose": 5})
    with pytest.raises(ValidationError):
        SelectCondition.model_validate({"intent": "explain", "colour": "blue"})  # extra fields are refused


def test_parser_llm_without_an_endpoint_is_a_clear_error(world: SmallWorld, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="MECHCELL_LLM_BASE_URL"):
        ChatSession(
            store=world.copy_store(tmp_path),
            kb=load_kb(None),
            settings=Settings(llm_base_url=None, llm_model=None),
            checkpoint_path=tmp_path / "t.sqlite",
            config=FAST,
            parser="llm",
        )


# ------------------------------------------------------------------------------------------ parsed by tool call


def test_a_synonym_in_another_case_with_a_dose_in_words_is_read_by_the_tool_call(
    world: SmallWorld, tmp_path: Path, openai_server: OpenAIServer, dictionary: QuestionParser, kb: KnowledgeBase
) -> None:
    key, ct, gene = _top(world)
    syn = SYNONYMS[ct.drug]
    assert kb.resolve_drug(syn).id == ct.drug  # the KB knows the synonym (else this test tests nothing)
    q = f"What does {syn.upper()} do to {gene.lower()} in {ct.cell_line.lower()} cells at {DOSE_WORDS[ct.dose]}?"
    # the dictionary misses the dose in words and the lower-case gene: it would pick a condition by default
    d = dictionary.parse(q)
    assert d.drug == ct.drug and d.dose is None and gene not in d.genes
    openai_server.script(
        _call(intent="explain", drug=syn, dose=ct.dose, dose_unit="µM", cell_line=ct.cell_line.lower(), genes=[gene])
    )
    events: list[ChatEvent] = []
    with _session(world, tmp_path, openai_server.base_url) as s:
        assert s.parser_mode == "llm"
        t = s.ask(q, "t1", on_event=events.append)
    assert t.parser == "llm" and t.intent == "explain" and t.condition_key == key
    assert f"**{gene}**" in t.answer and t.trace_id and t.citations
    rec = t.parse
    assert rec is not None and rec.failure is None and len(rec.rounds) == 1
    assert rec.prompt and rec.prompt.startswith("parse_question/v1@") and "parse_question_repair/v1@" in rec.prompt
    assert rec.rounds[0].call is not None and rec.rounds[0].call.finish_reason == "tool_calls"
    assert rec.rounds[0].call.prompt_tokens and rec.rounds[0].call.prompt_tokens > 50
    parsed = [e for e in events if e.type == "parsed" and e.data.get("kind") == "parsed"]
    assert parsed and parsed[0].data["parser"] == "llm" and parsed[0].data["prompt"] == rec.prompt
    # the request: one forced function call, the store's vocabulary in the system prompt, the question
    assert openai_server.n_requests == 1
    body = openai_server.requests[0].body
    assert body["tools"] == [select_condition_tool()]
    assert body["tool_choice"] == {"type": "function", "function": {"name": TOOL_NAME}}
    system = body["messages"][0]["content"]
    for c in world.truth.conditions.values():
        assert c.drug in system and c.context in system
    assert f"- {ct.drug}: 0.5 uM, 5 uM" in system and ct.cell_line in system
    assert q in _user_text(body) and "No condition has been discussed yet" in _user_text(body)


def test_a_question_the_dictionary_cannot_link_is_resolved_by_the_tool_call(
    world: SmallWorld, tmp_path: Path, openai_server: OpenAIServer, dictionary: QuestionParser
) -> None:
    key, ct, _ = _top(world)
    q = f"What does the {ct.targets[0]} inhibitor do to these cells at {DOSE_WORDS[ct.dose]}?"
    assert dictionary.parse(q).intent == "unknown"  # no drug name, no dose the regex reads
    openai_server.script(_call(intent="explain", drug=ct.drug, dose=ct.dose, dose_unit="uM"))
    with _session(world, tmp_path, openai_server.base_url) as s:
        t = s.ask(q, "t")
    assert t.parser == "llm" and t.condition_key == key and "Verified graph" in t.answer


def test_follow_ups_in_the_same_thread_see_the_current_condition_and_its_graph(
    world: SmallWorld, tmp_path: Path, openai_server: OpenAIServer, dictionary: QuestionParser
) -> None:
    key, ct, _ = _top(world)
    lower = max(
        (
            k
            for k, c in world.truth.conditions.items()
            if c.drug == ct.drug and c.context == ct.context and c.dose < ct.dose
        ),
        key=lambda k: world.truth.condition(k).dose,
    )
    with _session(world, tmp_path, openai_server.base_url) as s:
        openai_server.script(_call(intent="explain", drug=ct.drug.lower(), dose=ct.dose, dose_unit="uM"))
        t1 = s.ask(f"why does {ct.drug} act at {ct.dose:g} uM?", "th")
        assert t1.condition_key == key and t1.parser == "llm"

        openai_server.script(_call(intent="dose", direction="lower"))
        t2 = s.ask("and at the lower dose?", "th")
        assert t2.parser == "llm" and t2.intent == "dose" and t2.condition_key == lower
        seen = _user_text(openai_server.requests[1].body)
        assert f"Current condition: {key}" in seen and "Steps of its verified graph" in seen
        assert f"why does {ct.drug} act" in seen  # the earlier question

        trace = s.trace(t2.trace_id or "")
        assert trace is not None and trace.final_graph is not None
        binds = next(n.id for n in trace.final_graph.nodes if n.primitive == "binds_to")
        q3 = "why is the binding step supported?"
        assert dictionary.parse(q3).intent == "unknown"  # no node id to read
        openai_server.script(_call(intent="why", node=binds))
        t3 = s.ask(q3, "th")
        assert f"- {binds} binds_to(" in _user_text(openai_server.requests[2].body)
        assert t3.parser == "llm" and t3.intent == "why" and t3.trace_id == t2.trace_id
        assert t3.citations and all(c.claim_id.startswith(binds) for c in t3.citations)


# ------------------------------------------------------------------------------------------ repair and fallback

BAD = {
    "invalid JSON": (Reply.tool_call(TOOL_NAME, '{"intent": "explain", "drug": "X",'), "line 1 column"),
    "unknown drug": (_call(intent="explain", drug="Aspirinol"), "'Aspirinol' is neither a stored drug"),
    "schema": (_call(intent="explain", drug="x", dose=5, dose_unit="kg"), "argument 'dose_unit'"),
    "dose without unit": (_call(intent="explain", drug="x", dose=5), "arguments: dose given without dose_unit"),
    "prose": (Reply(text="The drug is probably the one in the question."), "no select_condition call"),
    "wrong function": (Reply.tool_call("get_weather", {"city": "Paris"}), "called 'get_weather'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_call_gets_one_repair_round_with_the_located_problem(
    case: str, world: SmallWorld, tmp_path: Path, openai_server: OpenAIServer
) -> None:
    key, ct, _ = _top(world)
    bad, problem = BAD[case]
    openai_server.script(bad, _call(intent="explain", drug=ct.drug, dose=ct.dose, dose_unit="uM"))
    with _session(world, tmp_path, openai_server.base_url) as s:
        t = s.ask(f"tell me about {ct.drug} at {ct.dose:g} uM", "r")
    assert t.parser == "llm" and t.condition_key == key
    assert t.parse is not None and len(t.parse.rounds) == 2 and not t.parse.rounds[1].problems
    assert any(problem in p for p in t.parse.rounds[0].problems), t.parse.rounds[0].problems
    assert openai_server.n_requests == 2
    first, second = (r.body for r in openai_server.requests)
    assert (
        second["tool_choice"] == first["tool_choice"]
        and second["messages"][: len(first["messages"])] == first["messages"]
    )
    echo, answer = second["messages"][-2:]
    assert echo["role"] == "assistant" and problem in answer["content"]
    if bad.tool_calls:  # the function-calling protocol: the call echoed, the problems as its tool result
        assert answer["role"] == "tool" and answer["tool_call_id"] == echo["tool_calls"][0]["id"]
    else:
        assert answer["role"] == "user" and echo["content"] == bad.text


def test_a_misspelled_drug_is_repaired_with_the_kbs_suggestion(
    world: SmallWorld, openai_server: OpenAIServer, dictionary: QuestionParser, kb: KnowledgeBase
) -> None:
    _, ct, _ = _top(world)
    typo = next(
        t
        for t in (ct.drug[:i] + ct.drug[i + 1] + ct.drug[i] + ct.drug[i + 2 :] for i in range(2, len(ct.drug) - 2))
        if kb.resolve_drug(t).status != "resolved" and ct.drug in kb.resolve_drug(t).suggestions
    )
    q = f"why does {typo.lower()} do this?"
    assert dictionary.parse(q).drug is None  # the dictionary does not link a misspelling
    openai_server.script(_call(intent="explain", drug=typo.lower()), _call(intent="explain", drug=ct.drug))
    parser = LLMQuestionParser(dictionary, base_url=openai_server.base_url, model="test-model", max_retries=0)
    p, rec = asyncio.run(parser.aparse(q))
    assert rec.parser == "llm" and p.drug == ct.drug and len(rec.rounds) == 2
    assert f"did you mean {ct.drug}?" in rec.rounds[0].problems[0]
    assert f"did you mean {ct.drug}?" in openai_server.requests[1].body["messages"][-1]["content"]


def test_garbage_twice_falls_back_to_the_dictionary_and_the_answer_says_so(
    world: SmallWorld, tmp_path: Path, openai_server: OpenAIServer
) -> None:
    key, ct, gene = _top(world)
    openai_server.script(Reply(text="no idea"), Reply.tool_call(TOOL_NAME, "{{{"))
    q = f"why does {ct.drug} change {gene} in {ct.cell_line} at {ct.dose:g} uM?"
    with _session(world, tmp_path, openai_server.base_url) as s:
        t = s.ask(q, "g")
        assert openai_server.n_requests == 2  # one request and one repair, no more
        assert t.parser == "llm→dictionary" and t.condition_key == key and t.intent == "explain"
        assert t.parse is not None and t.parse.failure and "invalid JSON" in t.parse.failure
        assert "dictionary parser" in t.answer and any("dictionary parser" in n for n in t.notes)
        # the next question goes to the LLM again (a fallback is per question, not a switch)
        openai_server.script(_call(intent="falsify"))
        t2 = s.ask("what would falsify this?", "g")
        assert t2.parser == "llm" and t2.intent == "falsify" and t2.condition_key == key


@pytest.mark.parametrize("failure", ["endpoint down", "HTTP 500"])
def test_an_endpoint_that_fails_falls_back_to_the_dictionary(
    failure: str, world: SmallWorld, tmp_path: Path, openai_server: OpenAIServer
) -> None:
    key, ct, gene = _top(world)
    if failure == "endpoint down":
        base_url, expect = f"http://127.0.0.1:{closed_port()}/v1", "APIConnectionError"
    else:
        openai_server.script(Reply.error(500, "model crashed"))
        base_url, expect = openai_server.base_url, "model crashed"
    q = f"why does {ct.drug} change {gene} in {ct.cell_line} at {ct.dose:g} uM?"
    with _session(world, tmp_path, base_url) as s:
        t = s.ask(q, "d")
    assert t.parser == "llm→dictionary" and t.condition_key == key and "Verified graph" in t.answer
    assert t.parse is not None and expect in (t.parse.failure or "") and not t.parse.rounds
    assert "dictionary parser" in t.answer


def test_offline_nothing_changes(world: SmallWorld, tmp_path: Path, openai_server: OpenAIServer) -> None:
    key, ct, gene = _top(world)
    with _session(world, tmp_path, None) as s:
        assert s.parser_mode == "dictionary" and s.llm_parser is None
        t = s.ask(f"why does {ct.drug} change {gene} in {ct.cell_line} at {ct.dose:g} uM?", "o")
    assert t.parser == "dictionary" and t.parse is not None and t.parse.prompt is None and not t.parse.rounds
    assert t.condition_key == key and "dictionary parser" not in t.answer
    assert openai_server.n_requests == 0


def test_the_terminal_door_reads_with_the_llm_when_the_environment_names_an_endpoint(
    world: SmallWorld, tmp_path: Path, openai_server: OpenAIServer
) -> None:
    from typer.testing import CliRunner

    from mechcell.cli import app

    key, ct, _ = _top(world)
    openai_server.script(_call(intent="explain", drug=ct.drug, dose=ct.dose, dose_unit="uM"))
    env = {"MECHCELL_LLM_BASE_URL": openai_server.base_url, "MECHCELL_LLM_MODEL": "test-model"}
    args = ["chat", "--store", str(world.copy_store(tmp_path)), "--threads", str(tmp_path / "th.sqlite")]
    q = f"what happens with the {ct.targets[0]} inhibitor at {DOSE_WORDS[ct.dose]}?"
    r = CliRunner(env=env).invoke(app, [*args, "--no-cells", "--proposer", "local", "-q", q, "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert (
        doc["parser"] == "llm" and doc["condition_key"] == key and doc["parse"]["prompt"].startswith("parse_question/")
    )
    assert openai_server.n_requests == 1
