"""Who does the work: the LLM client, prompt templates, proposers and the LangGraph pipeline.

Kept light on purpose: importing `mechcell.agents` pulls in neither the `openai` SDK nor LangGraph. Names are
resolved on first use (PEP 562), so `from mechcell.agents import LLMClient` works and costs nothing until then.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from mechcell.agents.prompts import Prompt, list_prompts, load_prompt

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
}

__all__ = [
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
