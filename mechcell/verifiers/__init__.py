"""Does a claim survive: structural, knowledge, expression and robustness verifiers, and the panel."""

from mechcell.verifiers.base import VERIFIERS, PanelSettings, VerificationContext, register
from mechcell.verifiers.types import (
    ClaimResult,
    Evidence,
    Robustness,
    Status,
    Verdict,
    VerificationReport,
)

__all__ = [
    "VERIFIERS",
    "ClaimResult",
    "Evidence",
    "PanelSettings",
    "Robustness",
    "Status",
    "Verdict",
    "VerificationContext",
    "VerificationReport",
    "register",
]


def __getattr__(name: str):  # lazy: the panel pulls in causal_stats and the KB only when used
    if name in ("verify", "verify_text"):
        from mechcell.verifiers import api

        return getattr(api, name)
    if name == "run_panel":
        from mechcell.verifiers.panel import run_panel

        return run_panel
    if name in ("DoseSeries", "dose_series"):
        from mechcell.verifiers import doses

        return getattr(doses, name)
    raise AttributeError(name)
