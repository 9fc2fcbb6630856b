"""How good we are: mechanism recovery against synthetic worlds' ground truth, with markdown + PNG reports.

    from mechcell.eval import evaluate_recovery, write_recovery_report
    result = evaluate_recovery(load_truth("demo_out/world"), traces, kb=kb)

Names load on first use so that `import mechcell.eval` stays light (matplotlib only when a report is written).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mechcell.eval.recovery import (
        ConditionRecovery,
        NameResolver,
        RecoveryResult,
        RecoverySummary,
        evaluate_recovery,
        graph_edges,
        latest_traces,
    )
    from mechcell.eval.report import write_recovery_report

_LAZY: dict[str, str] = {
    "ConditionRecovery": "mechcell.eval.recovery",
    "NameResolver": "mechcell.eval.recovery",
    "RecoveryResult": "mechcell.eval.recovery",
    "RecoverySummary": "mechcell.eval.recovery",
    "evaluate_recovery": "mechcell.eval.recovery",
    "graph_edges": "mechcell.eval.recovery",
    "latest_traces": "mechcell.eval.recovery",
    "write_recovery_report": "mechcell.eval.report",
}
__all__ = [
    "ConditionRecovery",
    "NameResolver",
    "RecoveryResult",
    "RecoverySummary",
    "evaluate_recovery",
    "graph_edges",
    "latest_traces",
    "write_recovery_report",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mechcell.eval' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
