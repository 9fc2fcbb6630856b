"""Verdicts and reports: what a verifier says about a claim, and what the panel says about a graph.

Every verdict names what decided it — a KB record (source, version, record id) or a statistical test (statistic,
p, e, the null it tested) — so that a reader can audit any edge of a graph. Never default to supported.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mechcell.graphs import Claim, GraphProblem

SCHEMA_VERSION = 1

Status = Literal["supported", "contradicted", "inconclusive", "uncheckable"]
CHECKABLE: frozenset[str] = frozenset({"supported", "contradicted", "inconclusive"})


class Evidence(BaseModel):
    """One piece of evidence: a KB record or a test result, with where it came from."""

    model_config = ConfigDict(frozen=True)

    source: str = Field(description="KB source (CollecTRI, DrugCentral, tahoe, starter, ...) or test name")
    version: str | None = None
    record_id: str | None = None
    detail: str = ""
    url: str | None = None
    model_generated: bool = Field(False, description="the source was itself written by a language model")


class Robustness(BaseModel):
    """How much bias it would take to overturn a supported expression claim (causal_stats.breaking_point)."""

    model_config = ConfigDict(frozen=True)

    selection_breaking_point: float | None = Field(None, description="smallest selected-out mass D* that flips it")
    label_noise_breaking_point: float | None = Field(None, description="smallest mislabelled mass D* that flips it")
    fragile: bool = False
    threshold: float = 0.05
    detail: str = ""


class Verdict(BaseModel):
    """One verifier's judgement of one claim."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = SCHEMA_VERSION
    claim: Claim
    verifier: str = Field(description="structural, knowledge, expression, ...")
    status: Status
    score: float = Field(0.0, ge=0.0, le=1.0, description="strength of support in [0, 1] (0 unless supported)")
    statistic: float | None = None
    p_value: float | None = None
    e_value: float | None = None
    q_value: float | None = Field(None, description="multiplicity-adjusted p (BH) across the graph's claims")
    null: str | None = Field(None, description="the null hypothesis the statistic tested, and its unit of exchange")
    evidence: list[Evidence] = Field(default_factory=list)
    model_generated_source: bool = Field(False, description="rests only on model-generated records")
    robustness: Robustness | None = None
    reason: str = Field("", description="one line a proposer can act on")
    diagnostics: dict[str, Any] = Field(default_factory=dict)

    @property
    def checkable(self) -> bool:
        return self.status in CHECKABLE


class ClaimResult(BaseModel):
    """The panel's combined status of one claim across verifiers."""

    model_config = ConfigDict(frozen=True)

    claim_id: str
    node_id: str
    kind: str
    status: Status
    verifiers: dict[str, Status] = Field(default_factory=dict)


class VerificationReport(BaseModel):
    """Everything the panel concluded about one graph for one condition."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = SCHEMA_VERSION
    condition_key: str | None = None
    graph_hash: str | None = None
    kb_version: str | None = None
    verdicts: list[Verdict] = Field(default_factory=list)
    claims: list[ClaimResult] = Field(default_factory=list)
    structural: list[GraphProblem] = Field(default_factory=list)
    factual_precision: float | None = Field(None, description="supported / checkable, knowledge verdicts")
    expression_precision: float | None = Field(None, description="supported / checkable, expression verdicts")
    robustness: float | None = Field(None, description="share of supported expression claims that are not fragile")
    counts: dict[str, int] = Field(default_factory=dict)
    reward: float = Field(0.0, ge=0.0, le=1.0)
    accepted: bool = False
    feedback: list[str] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    seconds: float | None = None

    def verdicts_for(self, claim_id: str) -> list[Verdict]:
        return [v for v in self.verdicts if v.claim.id == claim_id]
