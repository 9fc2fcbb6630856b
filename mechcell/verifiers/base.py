"""The verifier contract and its registry (one registry, many methods — decoupler style).

A verifier is a small object with a name and `verify(claims, ctx) -> list[Verdict]`; adding one is one module plus one
`register` call, and the panel, the CLI and the docs find it through `VERIFIERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from mechcell.graphs import ActionGraph, Claim

if TYPE_CHECKING:
    from mechcell.datasets.cells import CellData
    from mechcell.datasets.schemas import Condition, Signature
    from mechcell.knowledge import KnowledgeBase
    from mechcell.verifiers.doses import DoseSeries
    from mechcell.verifiers.types import Verdict


class PanelSettings(BaseModel):
    """The knobs of the panel. Documented in docs/verifiers.md; recorded in every report (and so in traces)."""

    model_config = ConfigDict(frozen=True)

    alpha: float = Field(0.05, gt=0, lt=1, description="level of every test and of the FDR control across claims")
    multiplicity: str = Field("bh", pattern="^(bh|ebh|none)$", description="BH on p-values or e-BH on e-values")
    n_permutations: int = Field(1000, ge=50)
    distributional_test: bool = Field(True, description="run the DR kernel test when cells are available")
    max_cells_per_arm: int = Field(400, ge=20, description="cells subsampled per arm for the kernel test")
    max_path_len: int = Field(4, ge=1, le=6, description="longest signed KB path accepted as support")
    fragile_below: float = Field(0.05, ge=0, le=1, description="breaking point D* below which a claim is fragile")
    inconclusive_credit: float = Field(0.25, ge=0, le=1, description="reward credit of an inconclusive claim")
    model_generated_credit: float = Field(
        0.6, ge=0, le=1, description="score of support resting only on LLM-made records"
    )
    min_reward: float = Field(0.5, ge=0, le=1, description="accept only graphs with at least this reward")
    max_contradicted: int = Field(0, ge=0, description="accept only graphs with at most this many contradicted claims")
    dose_pooling: bool = Field(
        True,
        description="judge a claim on a dose-response test over the drug's doses in this line plus this dose's own "
        "test the claimed way at dose_own_level (verifiers/doses.py), when sibling doses are given",
    )
    dose_own_level: float = Field(
        0.2,
        gt=0,
        le=1,
        description="with dose pooling, this dose's own one-sided test (the list's, the footprint's, or a lone "
        "gene's) must go the claimed way at this lenient level: the dose must carry some of the effect",
    )
    require_drug_effect: bool = Field(
        True,
        description="a binding or activity claim RNA cannot read out (no regulon or footprint downstream) rests on "
        "the KB only if the drug moves some gene (BH q < alpha) at some measured dose in this line; otherwise it is "
        "inconclusive — a KB record does not show the drug acting in this context",
    )
    seed: int = 0


@dataclass
class VerificationContext:
    """What verifiers may consult. Anything may be None: a verifier then says `uncheckable`, never `supported`."""

    graph: ActionGraph
    settings: PanelSettings
    condition: Condition | None = None
    kb: KnowledgeBase | None = None
    signature: Signature | None = None
    cells: Callable[[Sequence[str]], CellData | None] | None = None
    doses: DoseSeries | None = None
    cache: dict[str, Any] = field(default_factory=dict)


class Verifier(Protocol):
    name: str
    description: str

    def verify(self, claims: Sequence[Claim], ctx: VerificationContext) -> list[Verdict]: ...


VERIFIERS: dict[str, Verifier] = {}


def register(v: Verifier) -> Verifier:
    """Add a verifier to the registry the panel runs (in registration order)."""
    VERIFIERS[v.name] = v
    return v
