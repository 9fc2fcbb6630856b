"""Chat: a conversation over the pipeline — "why does trametinib change DUSP6 in A549?" and its follow-ups.

    session = ChatSession(store="mechcell.duckdb")
    turn = session.ask("why does Trametinib change DUSP6 in A549?", thread_id="t1")
    turn = session.ask("why is n3 supported?", thread_id="t1")          # follow-ups in the same thread
    async for event in session.astream("and at the lower dose?", "t1"): ...   # progress, for the web door

A LangGraph graph (parse → run → respond) whose threads persist in a SQLite checkpointer
(langgraph-checkpoint-sqlite), so a thread can be resumed from another process. The question is read in one of
two ways. With an LLM endpoint configured, by one forced OpenAI tool call (`select_condition`, see
`LLMQuestionParser`): the model is shown the store's drugs, doses and cell lines and the conversation's current
condition and graph; the names it returns are linked through the KB and the store like the dictionary's, bad
arguments get one repair round, and anything still wrong (or an endpoint that is down) falls back to the
dictionary parser — the turn records which parser answered. Offline, by the dictionary of the KB (drug names and
synonyms, gene symbols and aliases, cell-line names and Cellosaurus ids) and of the store's conditions —
deterministic. A stored trace of the condition is reused when there is one; otherwise the pipeline runs and its
events stream to the caller. Answers cite the verified graph: every claim's verdict and the records or tests
behind it.

Follow-ups understood: "why is n3 supported?" (the evidence of one step), "and at the lower/higher dose?",
"at 0.5 uM?", "in HT-29?" (the same drug in another condition), "what would falsify this?", "which conditions?",
"help".
"""

from __future__ import annotations

import asyncio
import json
import logging
import operator
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypedDict

from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mechcell.agents.llm import LLMCall, LLMClient, LLMError, LLMResponse
from mechcell.agents.pipeline import Pipeline, PipelineConfig, PipelineEvent
from mechcell.agents.prompts import Prompt, load_prompt
from mechcell.agents.proposers import graph_summary
from mechcell.datasets.schemas import Condition
from mechcell.datasets.traces import Trace
from mechcell.errors import InputError, NotFoundError

if TYPE_CHECKING:
    from mechcell.config import Settings
    from mechcell.knowledge import KnowledgeBase

__all__ = [
    "TOOL_NAME",
    "ChatEvent",
    "ChatSession",
    "ChatTurn",
    "Citation",
    "LLMQuestionParser",
    "ParseRecord",
    "ParseRound",
    "ParsedQuestion",
    "QuestionParser",
    "SelectCondition",
    "select_condition_tool",
]

log = logging.getLogger(__name__)

Intent = Literal["explain", "why", "dose", "context", "falsify", "list", "help", "unknown"]
#: Which parser read a question: the tool call, the dictionary (offline), or the dictionary after the LLM failed.
ParserName = Literal["llm", "dictionary", "llm→dictionary"]
ParserMode = Literal["auto", "llm", "dictionary"]
TOOL_NAME = "select_condition"
_UNITS = {"nm": 1e-3, "um": 1.0, "µm": 1.0, "μm": 1.0, "mm": 1e3}
_DOSE = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*(nM|uM|µM|μM|mM)\b", re.IGNORECASE)
_NODE = re.compile(r"\b(n\d+)\b")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/+]*")
HELP = (
    "Ask about a condition — e.g. *why does Trametinib change DUSP6 in A549?* — then follow up in the same "
    "thread: *why is n3 supported?*, *what would falsify this?*, *and at the lower dose?*, *in HT-29?*, "
    "*which conditions?*"
)


# ------------------------------------------------------------------------------------------------ models


class Citation(BaseModel):
    """One piece of evidence behind a claim of the answer."""

    model_config = ConfigDict(frozen=True)

    claim_id: str
    verifier: str
    status: str
    source: str
    record_id: str | None = None
    detail: str = ""
    p_value: float | None = None
    e_value: float | None = None


class ParsedQuestion(BaseModel):
    """What the parser read from a question."""

    model_config = ConfigDict(frozen=True)

    intent: Intent
    drug: str | None = None
    cell_line: str | None = None
    contexts: list[str] = Field(default_factory=list, description="ids a cell line may appear under in the store")
    dose: float | None = Field(None, description="in the unit below")
    dose_unit: str | None = None
    direction: Literal["lower", "higher"] | None = None
    node: str | None = None
    genes: list[str] = Field(default_factory=list)


class SelectCondition(BaseModel):
    """The arguments of the `select_condition` tool — what the model read, before its names are linked.

    Its JSON schema is the tool's `parameters`, so what the model is told and what is checked cannot drift apart.
    """

    model_config = ConfigDict(extra="forbid")

    intent: Intent = Field(
        description="explain: a drug's effect (a new condition); why: evidence for one step (node) of the current "
        "graph; dose: the same drug at another dose; context: the same drug in another cell line; falsify: what "
        "would falsify the current mechanism; list: the stored conditions; help; unknown"
    )
    drug: str | None = Field(None, description="the drug, as stored when it is one of the stored drugs")
    dose: float | None = Field(None, gt=0, description="the dose the question states, in dose_unit")
    dose_unit: Literal["nM", "uM", "mM"] | None = None
    direction: Literal["lower", "higher"] | None = Field(None, description="'the lower/higher dose'")
    cell_line: str | None = Field(None, description="the cell line (name or id) when the question names one")
    genes: list[str] = Field(default_factory=list, max_length=25, description="HGNC symbols asked about")
    node: str | None = Field(None, pattern=r"^n\d+$", description="the graph step asked about, e.g. n3")

    @field_validator("drug", "cell_line", "node", "dose_unit", "direction", mode="before")
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        # models often send "" or "null" for "nothing"; both mean None here
        return None if isinstance(v, str) and v.strip().casefold() in ("", "null", "none") else v

    @field_validator("dose_unit", mode="before")
    @classmethod
    def _unit(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"nm": "nM", "um": "uM", "µm": "uM", "μm": "uM", "mm": "mM"}.get(v.strip().casefold(), v)
        return v

    @model_validator(mode="after")
    def _dose_has_unit(self) -> SelectCondition:
        if self.dose is not None and self.dose_unit is None:
            raise ValueError("dose given without dose_unit (one of nM, uM, mM)")
        return self


def select_condition_tool() -> dict[str, Any]:
    """The `tools=[...]` entry of the chat's parse request (OpenAI function-calling format)."""
    schema = SelectCondition.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return {
        "type": "function",
        "function": {
            "name": TOOL_NAME,
            "description": "Record what a question about drug perturbations asks: its intent and the condition "
            "(drug, dose, cell line), genes and graph step it names.",
            "parameters": schema,
        },
    }


class ParseRound(BaseModel):
    """One request of the LLM parse: the raw arguments (or text) the model sent, the problems found, the call."""

    model_config = ConfigDict(frozen=True)

    round: int = Field(description="0 = the first request, 1 = the repair")
    arguments: str = ""
    problems: list[str] = Field(default_factory=list)
    call: LLMCall | None = None


class ParseRecord(BaseModel):
    """How a question was read: which parser answered, with which prompt, each LLM round, and why it failed."""

    model_config = ConfigDict(frozen=True)

    parser: ParserName
    prompt: str | None = Field(None, description="refs of the prompt templates used (name/version@sha12)")
    model: str | None = None
    endpoint: str | None = None
    rounds: list[ParseRound] = Field(default_factory=list)
    failure: str | None = Field(None, description="why the LLM's reading was not used (fallback only)")
    notes: list[str] = Field(default_factory=list)
    seconds: float = 0.0


class ChatTurn(BaseModel):
    """One answer."""

    model_config = ConfigDict(frozen=True)

    thread_id: str
    question: str
    intent: Intent
    condition_key: str | None = None
    trace_id: str | None = None
    reused: bool = False
    answer: str
    citations: list[Citation] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    seconds: float = 0.0
    parser: ParserName = "dictionary"
    parse: ParseRecord | None = Field(None, description="how the question was read (rounds, prompt, failure)")


class ChatEvent(BaseModel):
    """A streamed chat event: `parsed`, `pipeline` (a pipeline event, forwarded), `answer` (the turn) or `error`."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    type: Literal["parsed", "pipeline", "answer", "error"]
    thread_id: str
    data: dict[str, Any] = Field(default_factory=dict)
    pipeline: PipelineEvent | None = None
    turn: ChatTurn | None = None


class _ChatState(TypedDict, total=False):
    messages: Annotated[list[dict[str, str]], operator.add]
    question: str
    parsed: dict[str, Any]
    condition_key: str | None
    trace_id: str | None
    reused: bool
    notes: list[str]
    answer: str
    citations: list[dict[str, Any]]
    parse: dict[str, Any]


# ------------------------------------------------------------------------------------------------ parsing


class QuestionParser:
    """Dictionary entity linking against the KB and the store's conditions (offline, deterministic)."""

    def __init__(self, kb: KnowledgeBase, conditions: list[Condition]) -> None:
        self.kb = kb
        self.conditions = conditions
        self._store_drugs = {c.perturbation.casefold(): c.perturbation for c in conditions}
        self._store_contexts: dict[str, str] = {}
        for c in conditions:
            for name in (c.context, c.context_name):
                if name:
                    self._store_contexts[_norm(name)] = c.context or name

    def link_drug(self, name: str) -> str | None:
        """A drug name (any case, a synonym or code name the KB knows) as the store spells it, or the KB's id."""
        return self._drug([name])

    def link_cell_line(self, name: str) -> tuple[str | None, list[str]]:
        """A cell-line name or id → (its name, the ids it may appear under in the store); (None, []) if unknown."""
        return self._cell_line([name])

    def _drug(self, grams: list[str]) -> str | None:
        for g in grams:
            if g.casefold() in self._store_drugs:
                return self._store_drugs[g.casefold()]
            r = self.kb.resolve_drug(g)
            if r.status == "resolved" and r.id:
                return self._store_drugs.get(r.id.casefold(), r.id)
        return None

    def _cell_line(self, grams: list[str]) -> tuple[str | None, list[str]]:
        for g in grams:
            n = _norm(g)
            if n in self._store_contexts:
                ctx = self._store_contexts[n]
                return g, [ctx]
            r = self.kb.resolve_cell_line(g)
            if r.status == "resolved" and r.id:
                ids = [r.id]
                try:
                    attrs = self.kb.entity(r.id).get("attrs") or {}
                    ids += [str(attrs[k]) for k in ("cellosaurus", "depmap") if attrs.get(k)]
                except Exception:  # noqa: BLE001 — an entity without attributes still links by name
                    pass
                return r.id, ids
        return None, []

    def parse(self, question: str) -> ParsedQuestion:
        q = question.strip()
        low = q.casefold()
        words = _WORD.findall(q)
        grams = [" ".join(words[i : i + n]) for n in (4, 3, 2, 1) for i in range(len(words) - n + 1)]
        grams = [g.strip(".,;:?!") for g in grams]
        drug = self._drug(grams)
        cell, contexts = self._cell_line(grams)
        dose = unit = None
        m = _DOSE.search(q)
        if m:
            dose, unit = float(m.group(1)), m.group(2).replace("µ", "u").replace("μ", "u")
        direction: Literal["lower", "higher"] | None = None
        if re.search(r"\b(lower|lowest|smaller|less)\b", low) and "dose" in low or re.search(r"\blower dose", low):
            direction = "lower"
        elif re.search(r"\b(higher|highest|larger|more)\b", low) and ("dose" in low or "concentration" in low):
            direction = "higher"
        node = m2.group(1) if (m2 := _NODE.search(q)) else None
        genes = []
        for w in words:
            w = w.strip(".,;:?!")
            if len(w) >= 2 and w.upper() == w and any(ch.isalpha() for ch in w) and w != (cell or ""):
                r = self.kb.resolve_gene(w)
                if r.status == "resolved" and r.entity_type == "gene" and r.id and r.id not in genes:
                    genes.append(r.id)
        intent: Intent
        if re.search(r"\b(falsif\w*|disprove\w*|refut\w*|prove .* wrong)\b", low):
            intent = "falsify"
        elif node and re.search(r"\b(why|evidence|support\w*|how do you know|based on)\b", low):
            intent = "why"
        elif re.search(r"\b(which|what|list)\b.*\bconditions?\b", low):
            intent = "list"
        elif re.fullmatch(r"\W*(help|\?)\W*", low):
            intent = "help"
        elif drug is not None:
            intent = "explain"
        elif direction is not None or dose is not None:
            intent = "dose"
        elif cell is not None:
            intent = "context"
        elif node:
            intent = "why"
        else:
            intent = "unknown"
        return ParsedQuestion(
            intent=intent,
            drug=drug,
            cell_line=cell,
            contexts=contexts,
            dose=dose,
            dose_unit=unit,
            direction=direction,
            node=node,
            genes=genes,
        )


class LLMQuestionParser:
    """Reads a question with one forced OpenAI tool call (`select_condition`), the dictionary parser as fallback.

    Why a tool call: a model reads "the proteasome inhibitor at half a micromolar" or "why is the binding step
    supported?", which n-gram linking cannot; why forced and schema-checked: its output must be a condition we can
    look up, not prose. The model sees the store's drugs with their doses and its cell lines (bounded lists, in the
    versioned `parse_question` prompt) and the conversation's current condition and graph steps. Its names go
    through the same KB/store linking as the dictionary's (so "velcade" or "BORTEZOMIB" → `Bortezomib`).
    Invalid JSON, a schema violation or an unknown drug / cell line gets one repair round (the located problems
    sent back as the tool's result); after that, or when the endpoint fails, the dictionary parser reads the
    question and the record says why. Never raises for model output or transport errors.

    The request goes through the project's `LLMClient` (`complete(..., tools=, tool_choice=)`): its retries with
    backoff (capped: a user is waiting), its accounting — each round's `LLMCall` is kept in the record.
    """

    def __init__(
        self,
        dictionary: QuestionParser,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 20.0,
        max_retries: int = 1,
        max_repairs: int = 1,
        seed: int | None = None,
        max_drugs: int = 200,
        max_cell_lines: int = 100,
    ) -> None:
        if timeout <= 0 or max_retries < 0 or max_repairs < 0 or max_drugs < 1 or max_cell_lines < 1:
            raise InputError(
                f"LLM question parser: timeout > 0, max_retries ≥ 0, max_repairs ≥ 0, max_drugs and max_cell_lines "
                f"≥ 1 (got {timeout}, {max_retries}, {max_repairs}, {max_drugs}, {max_cell_lines})"
            )
        self.dictionary = dictionary
        self.base_url = base_url
        self.model = model
        self.client = LLMClient(
            base_url=base_url, model=model, api_key=api_key, timeout=timeout, max_retries=max_retries, seed=seed
        )
        self.max_repairs = max_repairs
        self.seed = seed
        self.max_drugs = max_drugs
        self.max_cell_lines = max_cell_lines
        self.prompt: Prompt = load_prompt("parse_question")
        self.repair_prompt: Prompt = load_prompt("parse_question_repair")
        self._vocabulary: dict[str, str] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, dictionary: QuestionParser, **kw: Any) -> LLMQuestionParser:
        """From the LLM endpoint of `settings`; the timeout and retries are capped for an interactive parse."""
        if not settings.llm_configured:
            raise InputError(
                "the LLM question parser needs an endpoint: set MECHCELL_LLM_BASE_URL and MECHCELL_LLM_MODEL"
            )
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key is not None else None
        kw.setdefault("timeout", min(settings.llm_timeout, 20.0))
        kw.setdefault("max_retries", min(settings.llm_max_retries, 1))
        kw.setdefault("seed", settings.seed)
        return cls(dictionary, base_url=str(settings.llm_base_url), model=str(settings.llm_model), api_key=key, **kw)

    @property
    def prompt_ref(self) -> str:
        return f"{self.prompt.ref},{self.repair_prompt.ref}"

    # ------------------------------------------------------------------ what the model is shown
    def vocabulary(self) -> dict[str, str]:
        """The candidate names as prompt text: `drugs` (each with its stored doses) and `cell_lines` (bounded)."""
        if self._vocabulary is None:
            doses: dict[str, set[tuple[float, str]]] = {}
            contexts: dict[str, str | None] = {}
            for c in self.dictionary.conditions:
                d = doses.setdefault(c.perturbation, set())
                if c.dose is not None:
                    d.add((c.dose, c.dose_unit or "uM"))
                if c.context:
                    contexts.setdefault(c.context, c.context_name)
            lines = []
            for drug in sorted(doses, key=str.casefold)[: self.max_drugs]:
                ds = sorted(doses[drug], key=lambda x: _in_unit(x[0], x[1], "uM"))
                lines.append(f"- {drug}: " + (", ".join(f"{v:g} {u}" for v, u in ds) or "no dose recorded"))
            if len(doses) > self.max_drugs:
                lines.append(f"- … and {len(doses) - self.max_drugs} more drugs (name them as the user does)")
            cells = []
            for ctx in sorted(contexts)[: self.max_cell_lines]:
                name = contexts[ctx]
                if not name:
                    r = self.dictionary.kb.resolve_cell_line(ctx)
                    name = r.id if r.status == "resolved" and r.id != ctx else None
                cells.append(f"- {ctx}" + (f" — {name}" if name else ""))
            if len(contexts) > self.max_cell_lines:
                cells.append(f"- … and {len(contexts) - self.max_cell_lines} more cell lines")
            self._vocabulary = {
                "drugs": "\n".join(lines) or "(no condition is stored: any drug of the knowledge base may be named)",
                "cell_lines": "\n".join(cells) or "(none stored)",
            }
        return self._vocabulary

    def messages(self, question: str, conversation: str = "") -> list[dict[str, Any]]:
        return self.prompt.messages(
            **self.vocabulary(),
            conversation=conversation or "No condition has been discussed yet in this conversation.",
            question=question,
        )

    # ------------------------------------------------------------------ reading the model's answer
    def link(self, args: SelectCondition) -> tuple[ParsedQuestion, list[str], list[str]]:
        """The validated arguments with names linked through the store and the KB → (parsed, problems, notes).

        An unknown drug or cell line is a problem (worth a repair: it decides the condition); an unknown gene is
        only a note (the KB may simply not hold it, and the rest of the question still stands).
        """
        d = self.dictionary
        problems: list[str] = []
        notes: list[str] = []
        drug = None
        if args.drug:
            drug = d.link_drug(args.drug)
            if drug is None:
                sugg = d.kb.resolve_drug(args.drug).suggestions
                stored = sorted({c.perturbation for c in d.conditions}, key=str.casefold)
                problems.append(
                    f"argument 'drug': {args.drug!r} is neither a stored drug nor a drug of the knowledge base"
                    + (f" (did you mean {', '.join(map(str, sugg[:3]))}?)" if sugg else "")
                    + (f"; stored drugs: {', '.join(stored[:20])}" if stored else "")
                )
        cell, contexts = None, []
        if args.cell_line:
            cell, contexts = d.link_cell_line(args.cell_line)
            if cell is None:
                problems.append(f"argument 'cell_line': {args.cell_line!r} is not a known cell line name or id")
        genes: list[str] = []
        for g in args.genes:
            r = d.kb.resolve_gene(g)
            if r.status == "resolved" and r.entity_type == "gene" and r.id:
                if r.id not in genes:
                    genes.append(r.id)
            else:
                notes.append(f"gene {g!r} is not in the knowledge base; not looked up")
        if args.intent == "dose" and args.dose is None and args.direction is None:
            problems.append("argument 'intent': 'dose' needs dose + dose_unit or direction ('lower'/'higher')")
        parsed = ParsedQuestion(
            intent=args.intent,
            drug=drug,
            cell_line=cell,
            contexts=contexts,
            dose=args.dose,
            dose_unit=args.dose_unit,
            direction=args.direction,
            node=args.node,
            genes=genes,
        )
        return parsed, problems, notes

    def read(self, response: LLMResponse) -> tuple[ParsedQuestion | None, list[str], list[str], str]:
        """The model's answer → (parsed or None, located problems, notes, the raw arguments/text)."""
        if response.tool_calls:
            call = next((c for c in response.tool_calls if c.name == TOOL_NAME), None)
            if call is None:
                names = ", ".join(repr(c.name) for c in response.tool_calls)
                return None, [f"whole answer: called {names}; call {TOOL_NAME!r}"], [], ""
            raw = call.arguments
        else:
            # no tool call: a server without function calling may still have written the JSON object as text
            raw = response.text.strip()
            if not raw.startswith("{"):
                return None, [f"whole answer: no {TOOL_NAME} call, got text {raw[:80]!r}"], [], raw
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            near = raw[max(0, exc.pos - 20) : exc.pos + 20]
            return (
                None,
                [f"arguments line {exc.lineno} column {exc.colno}: invalid JSON, {exc.msg} (near {near!r})"],
                [],
                raw,
            )
        if not isinstance(obj, dict):
            return None, [f"arguments: expected a JSON object, got {type(obj).__name__}"], [], raw
        try:
            args = SelectCondition.model_validate(obj)
        except ValidationError as exc:
            problems = []
            for e in exc.errors()[:8]:
                loc = ".".join(str(x) for x in e["loc"])
                msg = str(e["msg"]).removeprefix("Value error, ")
                got = f" (got {e['input']!r:.60})" if e["type"] != "missing" and loc else ""
                problems.append(f"argument {loc!r}: {msg}{got}" if loc else f"arguments: {msg}")
            return None, problems, [], raw
        parsed, problems, notes = self.link(args)
        return parsed, problems, notes, raw

    # ------------------------------------------------------------------ the request
    async def _call(self, messages: list[dict[str, Any]]) -> LLMResponse:
        return await self.client.complete(
            messages,
            temperature=0,
            seed=self.seed,
            tools=[select_condition_tool()],
            tool_choice={"type": "function", "function": {"name": TOOL_NAME}},
        )

    def _repair(self, response: LLMResponse, problems: list[str]) -> list[dict[str, Any]]:
        """The follow-up messages of a repair: the model's call echoed, the problems as that call's tool result."""
        text = self.repair_prompt.render(problems="\n".join(f"- {p}" for p in problems))
        if response.tool_calls:
            c = response.tool_calls[0]
            echo = {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            return [
                {"role": "assistant", "content": response.text or None, "tool_calls": [echo]},
                {"role": "tool", "tool_call_id": c.id, "content": text},
            ]
        return [{"role": "assistant", "content": response.text}, {"role": "user", "content": text}]

    async def aparse(self, question: str, conversation: str = "") -> tuple[ParsedQuestion, ParseRecord]:
        """Read `question` (with the conversation's state as text) → (parsed question, how it was read)."""
        t0 = time.perf_counter()
        rounds: list[ParseRound] = []
        failure: str | None = None

        def record(parser: ParserName, notes: list[str]) -> ParseRecord:
            return ParseRecord(
                parser=parser,
                prompt=self.prompt_ref,
                model=self.model,
                endpoint=self.base_url,
                rounds=rounds,
                failure=failure,
                notes=notes,
                seconds=time.perf_counter() - t0,
            )

        try:
            # building the prompt reads the store's vocabulary (KB lookups, DuckDB): off the event loop, and a
            # failure there falls back to the dictionary like any other
            base = await asyncio.to_thread(self.messages, question, conversation)
            convo = list(base)
            for rnd in range(self.max_repairs + 1):
                response = await self._call(convo)
                parsed, problems, notes, raw = self.read(response)
                rounds.append(ParseRound(round=rnd, arguments=raw[:2000], problems=problems, call=response.call))
                if parsed is not None and not problems:
                    return parsed, record("llm", notes)
                convo = [*base, *self._repair(response, problems)]
            failure = f"{len(problems)} problem(s) left after {self.max_repairs} repair round(s): {problems[0]}"
        except LLMError as exc:
            cause = exc.__cause__ or exc  # the SDK's exception, when there was one: its type names the failure
            failure = f"the LLM endpoint {self.base_url} failed: {type(cause).__name__}: {exc}"[:400]
        except Exception as exc:  # noqa: BLE001 — a question must always be answered; the record keeps the cause
            log.warning("LLM question parse failed; falling back to the dictionary", exc_info=True)
            failure = f"the LLM parse failed: {type(exc).__name__}: {exc}"[:400]
        finally:
            await self.client.aclose()  # this loop's HTTP client: the sync `ask` runs each question in a new loop
        parsed = await asyncio.to_thread(self.dictionary.parse, question)
        return parsed, record("llm→dictionary", [])


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.casefold())


def _in_unit(dose: float, unit: str | None, target: str | None) -> float:
    a, b = _UNITS.get((unit or "uM").casefold()), _UNITS.get((target or "uM").casefold())
    return dose * a / b if a and b else dose


# ------------------------------------------------------------------------------------------------ session


class ChatSession:
    """Conversations over one store and KB. Threads persist in `checkpoint_path` (SQLite).

    The session owns a `Pipeline` (and so the store's DuckDB connection): use one session per process. Its async
    API (`astream`, `aask`) is what a web door calls; `ask` is the same for scripts and the terminal.
    """

    def __init__(
        self,
        *,
        store: str | Path | None = None,
        kb: KnowledgeBase | str | Path | None = None,
        settings: Settings | None = None,
        checkpoint_path: str | Path | None = None,
        proposer: str | None = None,
        config: PipelineConfig | None = None,
        parser: ParserMode = "auto",
    ) -> None:
        from mechcell.config import Settings

        self.settings = settings or Settings()
        if parser not in ("auto", "llm", "dictionary"):
            raise InputError(f"chat parser {parser!r}: expected auto, llm or dictionary")
        if parser == "llm" and not self.settings.llm_configured:
            raise InputError(
                "chat parser 'llm' needs an LLM endpoint: set MECHCELL_LLM_BASE_URL and MECHCELL_LLM_MODEL "
                "(or use parser 'auto' / 'dictionary')"
            )
        #: how questions are read: "llm" (tool call, dictionary fallback) or "dictionary"; auto = llm when configured
        self.parser_mode: Literal["llm", "dictionary"] = (
            "llm" if parser == "llm" or (parser == "auto" and self.settings.llm_configured) else "dictionary"
        )
        store_path = Path(store) if store is not None else Path(self.settings.store_path)
        have = store_path.is_file()
        cfg = config or PipelineConfig.from_settings(self.settings)
        self.pipeline = Pipeline(
            kb=kb,
            store=store_path if have else None,
            proposer=proposer,
            settings=self.settings,
            config=cfg,
            save=have,
        )
        self.kb = self.pipeline.kb
        self.store_path = store_path
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else store_path.with_suffix(".chat.sqlite")
        self._parser: QuestionParser | None = None
        self._llm_parser: LLMQuestionParser | None = None
        self._lock = threading.Lock()
        self._memory: dict[str, Trace] = {}  # traces made without a store, for this session's follow-ups

    def close(self) -> None:
        self.pipeline.close()

    def __enter__(self) -> ChatSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ store access (one connection)
    def with_store(self, fn: Callable[[Any], Any], default: Any = None) -> Any:
        """`fn(store)` under the pipeline's connection lock; `default` when there is no store."""
        return self._with_store(fn, default)

    def graph_builder(self) -> Any:
        """The chat's uncompiled `StateGraph` (compile it with a checkpointer of your choice)."""
        return self._build()

    def _with_store(self, fn: Callable[[Any], Any], default: Any = None) -> Any:
        st = self.pipeline.store
        if st is None:
            return default
        with self.pipeline._lock:
            return fn(st)

    def conditions(self) -> list[Condition]:
        return self._with_store(lambda st: st.conditions(), [])

    @property
    def parser(self) -> QuestionParser:
        """The dictionary parser (also the LLM parser's fallback)."""
        if self._parser is None:
            self._parser = QuestionParser(self.kb, self.conditions())
        return self._parser

    @property
    def llm_parser(self) -> LLMQuestionParser | None:
        """The tool-call parser when `parser_mode` is "llm", else None."""
        if self.parser_mode != "llm":
            return None
        if self._llm_parser is None:
            self._llm_parser = LLMQuestionParser.from_settings(self.settings, self.parser)
        return self._llm_parser

    def remembered(self, trace_id: str) -> Trace | None:
        """A trace this session made without a (writable) store, by id; None otherwise (no store read)."""
        with self._lock:
            return self._memory.get(trace_id)

    def trace(self, trace_id: str) -> Trace | None:
        """A trace by id: one this session remembers, else the store's (None when neither has it)."""
        return self._trace(trace_id)

    def conversation(self, condition_key: str | None, trace_id: str | None, questions: list[str]) -> str:
        """The state of a thread as the LLM parser is shown it: the current condition, its graph's steps (so
        "the binding step" can become a node id) and the last questions."""
        lines: list[str] = []
        if condition_key:
            c = Condition.from_key(condition_key)
            dose = f"{c.dose:g} {c.dose_unit or ''}".strip() if c.dose is not None else "no dose"
            lines.append(
                f"Current condition: {condition_key} (drug {c.perturbation}, dose {dose}, cell line "
                f"{c.context_name or c.context or 'unknown'})."
            )
            trace = self._trace(trace_id)
            if trace is not None and trace.final_graph is not None:
                steps = [n.id for n in trace.final_graph.nodes if n.primitive != "set_context"]
                lines.append("Steps of its verified graph:")
                lines += [f"- {_node_line(trace, nid)}" for nid in steps[:25]]
        else:
            lines.append("No condition has been discussed yet in this conversation.")
        if questions:
            lines.append("Earlier questions: " + " | ".join(q[:200] for q in questions[-3:]))
        return "\n".join(lines)

    def _stored_trace(self, key: str) -> Trace | None:
        tr = self.pipeline.traces
        if tr is None:
            return None
        with self.pipeline._lock:
            found = tr.for_condition(key)
        if not found:
            return None
        # a trace made with the data, by this session's proposer, newest first
        mine = self.pipeline.proposer.name
        return max(found, key=lambda t: (t.signature_method is not None, t.config.proposer == mine, t.created_at))

    def _gene_row(self, key: str, gene: str) -> dict[str, float] | None:
        def look(st: Any) -> dict[str, float] | None:
            try:
                f = st.signature(key).to_frame()
            except (NotFoundError, InputError):
                return None
            if gene not in f.index:
                return None
            row = f.loc[gene]
            return {"log2fc": float(row["log2fc"]), "pvalue": float(row["pvalue"]), "padj": float(row["padj"])}

        return self._with_store(look)

    # ------------------------------------------------------------------ condition choice
    def _choose(self, p: ParsedQuestion, current: str | None) -> tuple[Condition | None, list[str]]:
        """The condition a question is about: linked names filtered against the store; follow-ups keep the
        current condition's drug / context. Returns (condition, notes)."""
        notes: list[str] = []
        cur = Condition.from_key(current) if current else None
        drug = p.drug or (cur.perturbation if cur else None)
        if drug is None:
            return None, ["name a drug (e.g. 'why does Trametinib change DUSP6 in A549?')"]
        contexts = p.contexts or ([cur.context] if (cur and cur.context and p.drug in (None, cur.perturbation)) else [])
        conds = [c for c in self.conditions() if c.perturbation.casefold() == drug.casefold()]
        if contexts:
            ctx_set = {_norm(x) for x in contexts}
            conds = [c for c in conds if _norm(c.context or "") in ctx_set or _norm(c.context_name or "") in ctx_set]
        if not conds:
            if p.drug is None and cur is not None and p.intent in ("dose",):
                return None, [f"no other dose of {drug} is stored"]
            # Not in the store: explain from the KB alone.
            notes.append(
                f"{drug}{' in ' + p.cell_line if p.cell_line else ''} is not in the store: explaining "
                "from the knowledge base alone"
            )
            dose = p.dose
            return Condition(
                perturbation=drug,
                dose=dose,
                dose_unit=p.dose_unit if dose is not None else None,
                context=(contexts[0] if contexts else None),
            ), notes
        doses = sorted({c.dose for c in conds if c.dose is not None})
        if p.dose is not None:
            unit = next((c.dose_unit for c in conds if c.dose_unit), p.dose_unit)
            want = _in_unit(p.dose, p.dose_unit, unit)
            best = min(conds, key=lambda c: abs((c.dose or 0.0) - want))
            if best.dose is not None and abs(best.dose - want) > 1e-9 * max(1.0, want):
                notes.append(
                    f"no {p.dose:g} {p.dose_unit} condition; the nearest stored dose is {best.dose:g} "
                    f"{best.dose_unit or ''}"
                )
            conds = [c for c in conds if c.dose == best.dose]
        elif p.direction is not None and cur is not None and cur.dose is not None:
            pick = [d for d in doses if (d < cur.dose if p.direction == "lower" else d > cur.dose)]
            if not pick:
                return None, [
                    f"{cur.dose:g} {cur.dose_unit or ''} is already the {p.direction}st stored dose of {drug}"
                ]
            target = max(pick) if p.direction == "lower" else min(pick)
            conds = [c for c in conds if c.dose == target]
        elif cur is not None and p.drug in (None, cur.perturbation) and cur.dose is not None and p.intent == "context":
            same = [c for c in conds if c.dose == cur.dose]
            conds = same or conds
        if len(conds) > 1:
            with_trace = [c for c in conds if self._stored_trace(c.key) is not None]
            pool = with_trace or conds
            chosen = max(pool, key=lambda c: (c.dose or 0.0, c.key))
            others = [c.key for c in conds if c.key != chosen.key][:4]
            notes.append("also stored: " + ", ".join(others) + (" …" if len(conds) > 5 else ""))
            return chosen, notes
        return conds[0], notes

    # ------------------------------------------------------------------ the graph
    def _build(self) -> Any:
        from langgraph.graph import END, START, StateGraph

        g = StateGraph(_ChatState)
        g.add_node("parse", self._parse)
        g.add_node("run", self._run)
        g.add_node("respond", self._respond)
        g.add_edge(START, "parse")
        g.add_conditional_edges("parse", self._route, {"run": "run", "respond": "respond"})
        g.add_edge("run", "respond")
        g.add_edge("respond", END)
        return g

    async def _parse(self, state: _ChatState, config: RunnableConfig) -> dict:
        from langgraph.config import get_stream_writer

        q = state.get("question", "")
        notes: list[str] = []
        llm = await asyncio.to_thread(lambda: self.llm_parser)
        if llm is None:
            t0 = time.perf_counter()
            p = await asyncio.to_thread(self.parser.parse, q)
            record = ParseRecord(parser="dictionary", seconds=time.perf_counter() - t0)
        else:
            asked = [m["content"] for m in state.get("messages", []) if m.get("role") == "user"]
            convo = await asyncio.to_thread(self.conversation, state.get("condition_key"), state.get("trace_id"), asked)
            p, record = await llm.aparse(q, convo)
            notes += record.notes
            if record.failure is not None:
                notes.append(
                    f"Read by the dictionary parser: the LLM's reading could not be used ({record.failure[:240]})"
                )
        get_stream_writer()(
            {"kind": "parsed", **p.model_dump(mode="json"), "parser": record.parser, "prompt": record.prompt}
        )
        return {
            "parsed": p.model_dump(mode="json"),
            "parse": record.model_dump(mode="json"),
            "notes": notes,
            "messages": [{"role": "user", "content": q}],
        }

    def _route(self, state: _ChatState, config: RunnableConfig) -> str:
        intent = state.get("parsed", {}).get("intent")
        return "run" if intent in ("explain", "dose", "context") else "respond"

    async def _run(self, state: _ChatState, config: RunnableConfig) -> dict:
        from langgraph.config import get_stream_writer

        write = get_stream_writer()
        p = ParsedQuestion(**state["parsed"])
        cond, chosen_notes = await asyncio.to_thread(self._choose, p, state.get("condition_key"))
        notes = [*state.get("notes", []), *chosen_notes]  # keep the parse's notes (e.g. a fallback) in the answer
        if cond is None:
            return {"notes": notes}
        stored = await asyncio.to_thread(self._stored_trace, cond.key)
        if stored is not None and stored.signature_method is not None:  # made with the data: reuse it
            write({"kind": "reused", "trace_id": stored.id, "condition_key": cond.key})
            return {"condition_key": cond.key, "trace_id": stored.id, "reused": True, "notes": notes}
        trace: Trace | None = None
        async for ev in self.pipeline.astream(cond):
            write({"kind": "pipeline", "event": ev})
            if ev.type == "run_started":
                notes += [n for n in ev.data.get("notes", []) if n not in notes]
            elif ev.type == "note" and ev.data.get("message") and ev.data["message"] not in notes:
                notes.append(str(ev.data["message"]))
            if ev.trace is not None:
                trace = ev.trace
        assert trace is not None
        self._remember(trace)
        return {"condition_key": trace.condition.key, "trace_id": trace.id, "reused": False, "notes": notes}

    def _remember(self, trace: Trace) -> None:
        if self.pipeline.traces is None or self.pipeline.traces.read_only:
            with self._lock:
                self._memory[trace.id] = trace

    def _trace(self, trace_id: str | None) -> Trace | None:
        if trace_id is None:
            return None
        if trace_id in self._memory:
            return self._memory[trace_id]
        tr = self.pipeline.traces
        if tr is None:
            return None
        with self.pipeline._lock:
            return tr.find(trace_id)

    async def _respond(self, state: _ChatState, config: RunnableConfig) -> dict:
        p = ParsedQuestion(**state["parsed"])
        trace = await asyncio.to_thread(self._trace, state.get("trace_id"))
        notes = list(state.get("notes", []))
        answer, cites = await asyncio.to_thread(self._compose, p, trace, notes, bool(state.get("reused")))
        return {
            "answer": answer,
            "citations": [c.model_dump(mode="json") for c in cites],
            "messages": [{"role": "assistant", "content": answer}],
        }

    # ------------------------------------------------------------------ answers
    def _compose(self, p: ParsedQuestion, trace: Trace | None, notes: list[str], reused: bool) -> tuple[str, list]:
        head = "".join(f"_{n}_\n\n" for n in notes)
        if p.intent == "help":
            return HELP, []
        if p.intent == "list":
            return head + self._list_answer(), []
        if p.intent == "unknown":
            return head + "I could not link that question to a drug, a condition or a step of the graph. " + HELP, []
        if trace is None:
            return head + ("Nothing to answer about yet. " + HELP if p.intent in ("why", "falsify") else HELP), []
        if p.intent == "why":
            return head + _why_answer(trace, p.node), _citations(trace, p.node)
        if p.intent == "falsify":
            return head + _falsify_answer(trace), _citations(trace, None, only_expression=True)
        text = head + _explain_answer(trace, reused)
        for g in p.genes:
            text += "\n\n" + self._gene_answer(trace, g)
        return text, _citations(trace, None)

    def _list_answer(self) -> str:
        conds = self.conditions()
        if not conds:
            return f"The store {self.store_path} holds no conditions (run `mechcell demo` to make some)."
        lines = [f"{len(conds)} stored conditions:"]
        for c in conds[:30]:
            t = self._stored_trace(c.key)
            lines.append(f"- `{c.key}`" + (f" — {t.status}: {t.answer}" if t else ""))
        if len(conds) > 30:
            lines.append(f"- … {len(conds) - 30} more")
        return "\n".join(lines)

    def _gene_answer(self, trace: Trace, gene: str) -> str:
        final = trace.final
        report = final.report if final else None
        claims = [c for c in (report or {}).get("claims", []) if c["claim_id"].endswith(f":{gene}")]
        row = self._gene_row(trace.condition.key, gene)
        obs = (
            f" Observed: log2FC {row['log2fc']:+.2f} (p {row['pvalue']:.2g}, padj {row['padj']:.2g})."
            if row is not None
            else ""
        )
        if not claims:
            return f"**{gene}**: the verified graph makes no claim about {gene}.{obs}"
        out = [f"**{gene}**:{obs}"]
        for c in claims:
            node = trace.final_graph.node(c["node_id"]) if trace.final_graph else None
            reg = getattr(node, "regulator", "?")
            d = getattr(node, "direction", "?")
            out.append(f"- {c['node_id']}: {reg} → {gene} {d} — **{c['status']}**")
            for v in (report or {}).get("verdicts", []):
                if v["claim"]["id"] == c["claim_id"]:
                    out.append(f"  - {v['verifier']}: {v['status']} — {v['reason']}")
        return "\n".join(out)

    # ------------------------------------------------------------------ running a turn
    async def astream(self, question: str, thread_id: str = "default") -> AsyncIterator[ChatEvent]:
        """Answer one question in a thread, yielding events; the last is `answer` (or `error`)."""
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        t0 = time.perf_counter()
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        async with AsyncSqliteSaver.from_conn_string(str(self.checkpoint_path)) as saver:
            graph = self._build().compile(checkpointer=saver)
            cfg: RunnableConfig = {"configurable": {"thread_id": thread_id}, "recursion_limit": 20}
            final: dict[str, Any] = {}
            try:
                async for mode, chunk in graph.astream(
                    {"question": question, "reused": False}, config=cfg, stream_mode=["custom", "values"]
                ):
                    if mode == "values":
                        final = chunk
                    elif chunk.get("kind") == "pipeline":
                        yield ChatEvent(type="pipeline", thread_id=thread_id, pipeline=chunk["event"])
                    else:
                        yield ChatEvent(type="parsed", thread_id=thread_id, data=dict(chunk))
            except (InputError, NotFoundError) as exc:
                yield ChatEvent(type="error", thread_id=thread_id, data={"message": f"{type(exc).__name__}: {exc}"})
                return
        parsed = final.get("parsed", {})
        turn = ChatTurn(
            thread_id=thread_id,
            question=question,
            intent=parsed.get("intent", "unknown"),
            condition_key=final.get("condition_key"),
            trace_id=final.get("trace_id"),
            reused=bool(final.get("reused")),
            answer=final.get("answer", ""),
            citations=[Citation(**c) for c in final.get("citations", [])],
            notes=list(final.get("notes", [])),
            seconds=time.perf_counter() - t0,
            parser=(final.get("parse") or {}).get("parser", "dictionary"),
            parse=ParseRecord(**final["parse"]) if final.get("parse") else None,
        )
        yield ChatEvent(type="answer", thread_id=thread_id, turn=turn)

    async def aask(
        self, question: str, thread_id: str = "default", on_event: Callable[[ChatEvent], None] | None = None
    ) -> ChatTurn:
        turn: ChatTurn | None = None
        async for ev in self.astream(question, thread_id):
            if on_event is not None:
                on_event(ev)
            if ev.type == "error":
                raise InputError(ev.data.get("message", "chat failed"))
            if ev.turn is not None:
                turn = ev.turn
        assert turn is not None
        return turn

    def ask(
        self, question: str, thread_id: str = "default", on_event: Callable[[ChatEvent], None] | None = None
    ) -> ChatTurn:
        """`aask` for scripts and the terminal (not inside a running event loop)."""
        return asyncio.run(self.aask(question, thread_id, on_event))

    async def ahistory(self, thread_id: str) -> list[dict[str, str]]:
        """The thread's messages so far (role, content), from the checkpointer."""
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        if not self.checkpoint_path.is_file():
            return []
        async with AsyncSqliteSaver.from_conn_string(str(self.checkpoint_path)) as saver:
            graph = self._build().compile(checkpointer=saver)
            snap = await graph.aget_state({"configurable": {"thread_id": thread_id}})
            return list(snap.values.get("messages", [])) if snap and snap.values else []

    def history(self, thread_id: str) -> list[dict[str, str]]:
        return asyncio.run(self.ahistory(thread_id))


# ------------------------------------------------------------------------------------------------ rendering


def _report(trace: Trace) -> dict[str, Any]:
    f = trace.final
    return (f.report if f is not None else None) or {}


def _citations(trace: Trace, node: str | None, *, only_expression: bool = False) -> list[Citation]:
    out: list[Citation] = []
    for v in _report(trace).get("verdicts", []):
        c = v["claim"]
        if node is not None and c["node_id"] != node:
            continue
        if only_expression and c["kind"] not in ("expression", "expression_set"):
            continue
        for e in v.get("evidence", [])[:3]:
            out.append(
                Citation(
                    claim_id=c["id"],
                    verifier=v["verifier"],
                    status=v["status"],
                    source=e.get("source", ""),
                    record_id=e.get("record_id"),
                    detail=e.get("detail", ""),
                    p_value=v.get("p_value"),
                    e_value=v.get("e_value"),
                )
            )
    return out


def _node_line(trace: Trace, nid: str) -> str:
    g = trace.final_graph
    if g is None:
        return nid
    n = g.node(nid)
    args = ", ".join(
        f"{k}={v!r}" if not isinstance(v, list) else f"{k}=[{', '.join(v[:6])}{', …' if len(v) > 6 else ''}]"
        for k, v in n.args().items()
        if k not in ("via", "confidence", "extras")
    )
    return f"{nid} {n.primitive}({args})"


def _explain_answer(trace: Trace, reused: bool) -> str:
    m = trace.metrics
    where = "a stored trace" if reused else "a new run"
    lines = [
        f"**{trace.condition.key}** — {trace.status} ({where}, trace `{trace.id}`)",
        "",
        trace.answer,
    ]
    if trace.final_graph is None:
        return "\n".join(lines)
    status: dict[str, str] = {}
    for c in _report(trace).get("claims", []):
        prev = status.get(c["node_id"])
        if prev is None or c["status"] == "contradicted" or (prev == "supported" and c["status"] != "supported"):
            status[c["node_id"]] = c["status"] if prev in (None, "supported") else prev
    lines += ["", "Verified graph:"]
    for n in trace.final_graph.nodes:
        if n.primitive == "set_context":
            continue
        lines.append(f"- `{_node_line(trace, n.id)}` — **{status.get(n.id, 'unchecked')}**")
    fp = "—" if m.factual_precision is None else f"{m.factual_precision:.2f}"
    ep = "—" if m.expression_precision is None else f"{m.expression_precision:.2f}"
    rw = "—" if m.reward is None else f"{m.reward:.2f}"
    lines += [
        "",
        f"Reward {rw}, factual precision {fp}, expression precision {ep}; claims {m.counts}.",
        "Ask *why is n2 supported?*, *what would falsify this?* or *and at the lower dose?*",
    ]
    return "\n".join(lines)


def _why_answer(trace: Trace, node: str | None) -> str:
    if trace.final_graph is None:
        return f"The trace `{trace.id}` has no verified graph ({trace.status}): {trace.answer}"
    ids = [n.id for n in trace.final_graph.nodes if n.primitive != "set_context"]
    if node is None or node not in trace.final_graph.node_map:
        return f"Which step? The graph of {trace.condition.key} has {', '.join(ids)}."
    if trace.final_graph.node(node).primitive == "set_context":
        return f"{node} only sets the context (cell line and genotype); it claims nothing."
    lines = [f"**{_node_line(trace, node)}** in {trace.condition.key}:"]
    for v in _report(trace).get("verdicts", []):
        c = v["claim"]
        if c["node_id"] != node:
            continue
        stats = []
        if v.get("p_value") is not None:
            stats.append(f"p {v['p_value']:.2g}")
        if v.get("e_value") is not None:
            stats.append(f"e {v['e_value']:.3g}")
        lines.append(
            f"- {c['id']} ({v['verifier']}): **{v['status']}** — {v['reason']}"
            + (f" [{', '.join(stats)}]" if stats else "")
        )
        for e in v.get("evidence", [])[:3]:
            rid = f" `{e['record_id']}`" if e.get("record_id") else ""
            lines.append(f"  - {e.get('source')}{rid}: {e.get('detail', '')}")
        if v.get("null"):
            lines.append(f"  - null tested: {v['null']}")
    if len(lines) == 1:
        lines.append("- no verdict recorded for this step")
    return "\n".join(lines)


def _falsify_answer(trace: Trace) -> str:
    g = trace.final_graph
    if g is None:
        return f"There is no claim to falsify for {trace.condition.key} ({trace.status})."
    rep = _report(trace)
    lines = [f"What would falsify the mechanism for **{trace.condition.key}**:"]
    binds = [n for n in g.nodes if n.primitive == "binds_to"]
    for n in binds:
        lines.append(
            f"- {n.id}: no engagement of {n.target} by {n.actor} at this dose (e.g. a target-engagement or "
            f"thermal-shift assay), or the same expression change in {n.target}-knockout cells."
        )
    acts = [n for n in g.nodes if n.primitive in ("modulates_molecule_activity", "modulates_pathway_activity")]
    for n in acts[:6]:
        ent = getattr(n, "target", None) or getattr(n, "pathway", None)
        opp = "rises" if n.direction == "down" else "falls"
        lines.append(
            f"- {n.id}: {ent} activity that {opp} or stays put after treatment (phospho-proteomics or a "
            "reporter), which the signed path predicts goes " + n.direction + "."
        )
    gene_v = [
        v for v in rep.get("verdicts", []) if v["claim"]["kind"] == "expression" and v["verifier"] == "expression"
    ]
    if gene_v:
        weakest = sorted(gene_v, key=lambda v: (v["status"] != "supported", -(v.get("p_value") or 1.0)))[:5]
        lines.append("- the weakest expression predictions (a replicate where these do not move would hurt most):")
        for v in weakest:
            c = v["claim"]
            rb = v.get("robustness") or {}
            bp = rb.get("selection_breaking_point")
            extra = f"; breaking point D* {bp:.2g}" if isinstance(bp, (int, float)) else ""
            lines.append(
                f"  - {c['object']} {c['direction']} ({c['node_id']}): {v['status']}, "
                f"p {v.get('p_value') or float('nan'):.2g}{extra}"
            )
    dropped = [a for a in trace.attempts if a.index != trace.final_attempt and a.counts.get("contradicted")]
    if dropped:
        lines.append(
            f"- already falsified during the run: {sum(a.counts['contradicted'] for a in dropped)} "
            "contradicted claim(s) in earlier attempts were revised away."
        )
    return "\n".join(lines)


def summarize(trace: Trace) -> str:
    """One line for listings."""
    return f"{trace.condition.key}: {trace.status} — {graph_summary(trace.final_graph)}"
