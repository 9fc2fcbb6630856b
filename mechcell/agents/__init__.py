"""Who does the work: the LLM client, prompt templates, proposers, the LangGraph pipeline, chat and the demo.

    from mechcell.agents import explain
    trace = explain("Trametinib|0.5uM|CVCL_0023|plate2", store="mechcell.duckdb")

Kept light on purpose: importing `mechcell.agents` pulls in neither the `openai` SDK nor LangGraph. Names are
resolved on first use (PEP 562), so `from mechcell.agents import LLMClient` works and costs nothing until then.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mechcell.agents.chat import ChatEvent, ChatSession, ChatTurn
    from mechcell.agents.demo import DemoConfig, DemoResult, run_demo
    from mechcell.agents.llm import (
        LLMCall,
        LLMClient,
        LLMError,
        LLMResponse,
        LLMStream,
        LLMUsage,
        RepairAttempt,
        RepairOutcome,
        graph_parse_fn,
    )
    from mechcell.agents.pipeline import Pipeline, PipelineConfig, PipelineEvent, astream_explain, explain
    from mechcell.agents.prompts import Prompt, list_prompts, load_prompt
    from mechcell.agents.proposers import (
        Feedback,
        LLMProposer,
        LocalProposer,
        Proposal,
        ProposalContext,
        Proposer,
        make_proposer,
        register_proposer,
    )

#: public name → module that defines it (resolved lazily).
_LAZY: dict[str, str] = {
    "LLMCall": "mechcell.agents.llm",
    "LLMClient": "mechcell.agents.llm",
    "LLMError": "mechcell.agents.llm",
    "LLMResponse": "mechcell.agents.llm",
    "LLMStream": "mechcell.agents.llm",
    "LLMUsage": "mechcell.agents.llm",
    "RepairAttempt": "mechcell.agents.llm",
    "RepairOutcome": "mechcell.agents.llm",
    "graph_parse_fn": "mechcell.agents.llm",
    "Prompt": "mechcell.agents.prompts",
    "list_prompts": "mechcell.agents.prompts",
    "load_prompt": "mechcell.agents.prompts",
    "Feedback": "mechcell.agents.proposers",
    "LLMProposer": "mechcell.agents.proposers",
    "LocalProposer": "mechcell.agents.proposers",
    "Proposal": "mechcell.agents.proposers",
    "ProposalContext": "mechcell.agents.proposers",
    "Proposer": "mechcell.agents.proposers",
    "make_proposer": "mechcell.agents.proposers",
    "register_proposer": "mechcell.agents.proposers",
    "Pipeline": "mechcell.agents.pipeline",
    "PipelineConfig": "mechcell.agents.pipeline",
    "PipelineEvent": "mechcell.agents.pipeline",
    "astream_explain": "mechcell.agents.pipeline",
    "explain": "mechcell.agents.pipeline",
    "ChatEvent": "mechcell.agents.chat",
    "ChatSession": "mechcell.agents.chat",
    "ChatTurn": "mechcell.agents.chat",
    "DemoConfig": "mechcell.agents.demo",
    "DemoResult": "mechcell.agents.demo",
    "run_demo": "mechcell.agents.demo",
}

__all__ = [
    "ChatEvent",
    "ChatSession",
    "ChatTurn",
    "DemoConfig",
    "DemoResult",
    "Feedback",
    "LLMProposer",
    "LocalProposer",
    "Pipeline",
    "PipelineConfig",
    "PipelineEvent",
    "Proposal",
    "ProposalContext",
    "Proposer",
    "astream_explain",
    "explain",
    "make_proposer",
    "register_proposer",
    "run_demo",
    "LLMCall",
    "LLMClient",
    "LLMError",
    "LLMResponse",
    "LLMStream",
    "LLMUsage",
    "Prompt",
    "RepairAttempt",
    "RepairOutcome",
    "graph_parse_fn",
    "list_prompts",
    "load_prompt",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mechcell.agents' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # cache: the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
