"""The panel: run every registered verifier, combine verdicts per claim, score the graph.

Combination per claim (data first): contradicted if any verifier contradicts it; else, when a data verifier
(`expression`, `expression-dr`) could check the claim, supported only if the data support it (a KB record alone does
not make a mechanism active in *this* condition — that is how a mis-annotated target is rejected); else the KB's
status; else uncheckable.

Reward (in [0, 1], documented and monotone): with S, I, C the numbers of supported, inconclusive and contradicted
claims and U the uncheckable ones,

    reward = coverage · (Σ_supported score + κ·I) / (S + I + C),   coverage = (S + I + C) / (S + I + C + U/2)

where κ = `inconclusive_credit`. Turning any claim into a contradicted one removes its credit and adds to the
denominator, so a graph with strictly more contradicted claims (the others unchanged) never scores higher. A graph
with structural errors scores 0. Accepted when reward ≥ `min_reward` and contradicted ≤ `max_contradicted`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from mechcell.graphs import ActionGraph, parse_text
from mechcell.verifiers import expression as _expression  # noqa: F401  (registers)
from mechcell.verifiers import knowledge as _knowledge  # noqa: F401  (registers)
from mechcell.verifiers import obsexp as _obsexp  # noqa: F401  (registers)
from mechcell.verifiers import structural as _structural  # noqa: F401  (registers)
from mechcell.verifiers.base import VERIFIERS, PanelSettings, VerificationContext
from mechcell.verifiers.robustness import assess_robustness
from mechcell.verifiers.structural import problem_feedback
from mechcell.verifiers.types import ClaimResult, Status, Verdict, VerificationReport

if TYPE_CHECKING:
    from mechcell.datasets.cells import CellData
    from mechcell.datasets.schemas import Condition, Signature
    from mechcell.knowledge import KnowledgeBase
    from mechcell.verifiers.doses import DoseSeries


DATA_VERIFIERS = frozenset({"expression", "expression-dr"})


def combine_claim(per_verifier: dict[str, Status]) -> Status:
    """The panel's status of one claim from its per-verifier statuses (see the module docstring)."""
    if "contradicted" in per_verifier.values():
        return "contradicted"
    data = [s for v, s in per_verifier.items() if v in DATA_VERIFIERS and s != "uncheckable"]
    if data:
        return combine(data)
    return combine([s for v, s in per_verifier.items() if v not in DATA_VERIFIERS])


def combine(statuses: Sequence[Status]) -> Status:
    """Combine statuses of one kind of evidence: contradicted > supported > inconclusive > uncheckable."""
    if "contradicted" in statuses:
        return "contradicted"
    if "supported" in statuses:
        return "supported"
    if "inconclusive" in statuses:
        return "inconclusive"
    return "uncheckable"


def _precision(verdicts: list[Verdict], verifiers: set[str]) -> float | None:
    chk = [v for v in verdicts if v.verifier in verifiers and v.checkable]
    return sum(v.status == "supported" for v in chk) / len(chk) if chk else None


def reward_of(results: list[ClaimResult], verdicts: list[Verdict], settings: PanelSettings) -> float:
    """See the module docstring: monotone in contradicted claims, 0 for an empty graph."""
    best: dict[str, float] = {}
    for v in verdicts:
        if v.status == "supported":
            best[v.claim.id] = max(best.get(v.claim.id, 0.0), v.score)
    S = [r for r in results if r.status == "supported"]
    inc = sum(r.status == "inconclusive" for r in results)
    con = sum(r.status == "contradicted" for r in results)
    unc = sum(r.status == "uncheckable" for r in results)
    checkable = len(S) + inc + con
    if checkable == 0:
        return 0.0
    credit = sum(best.get(r.claim_id, 0.0) for r in S) + settings.inconclusive_credit * inc
    coverage = checkable / (checkable + unc / 2)
    return max(0.0, min(1.0, coverage * credit / checkable))


def run_panel(
    graph: ActionGraph,
    *,
    condition: Condition | None = None,
    kb: KnowledgeBase | None = None,
    signature: Signature | None = None,
    cells: Callable[[Sequence[str]], CellData | None] | None = None,
    settings: PanelSettings | None = None,
    structural_extra: Sequence = (),
    reference: Callable | None = None,
    doses: DoseSeries | None = None,
) -> VerificationReport:
    """Verify a parsed graph with whatever context is available; deterministic for `settings.seed`.

    doses: the condition's sibling doses in the same cell line (`verifiers.doses.dose_series`); with
    `settings.dose_pooling` the data tests become dose-response tests plus sign consistency at this dose."""
    t0 = time.perf_counter()
    settings = settings or PanelSettings()
    structural = [p for p in [*structural_extra, *graph.problems()] if p.severity == "error"]
    structural = list({(p.kind, p.node_id, p.message): p for p in structural}.values())
    claims = graph.claims()
    ctx = VerificationContext(
        graph=graph, settings=settings, condition=condition, kb=kb, signature=signature, cells=cells, doses=doses
    )
    if reference is not None:
        ctx.cache["reference"] = reference  # observational effect sizes from other contexts (obs-exp verifier)
    verdicts: list[Verdict] = []
    for v in VERIFIERS.values():
        verdicts += v.verify(claims, ctx)
    verdicts = assess_robustness(verdicts, ctx)
    by_claim: dict[str, dict[str, list[Status]]] = {}
    for v in verdicts:
        by_claim.setdefault(v.claim.id, {}).setdefault(v.verifier, []).append(v.status)
    results = []
    for c in claims:
        per = {name: combine(st) for name, st in by_claim.get(c.id, {}).items()}
        results.append(
            ClaimResult(claim_id=c.id, node_id=c.node_id, kind=c.kind, status=combine_claim(per), verifiers=per)
        )
    counts = {
        s: sum(r.status == s for r in results) for s in ("supported", "contradicted", "inconclusive", "uncheckable")
    }
    reward = 0.0 if structural else reward_of(results, verdicts, settings)
    feedback = [problem_feedback(p) for p in structural]
    for v in verdicts:
        if v.status == "contradicted" and v.verifier != "structural":
            feedback.append(f"{v.claim.id} ({v.claim.kind}, {v.verifier}): contradicted — {v.reason}")
    for r in results:
        if r.status == "inconclusive":
            reasons = [v.reason for v in verdicts if v.claim.id == r.claim_id and v.status == "inconclusive"]
            feedback.append(f"{r.claim_id} ({r.kind}): inconclusive — {reasons[0] if reasons else ''}")
    exp_verdicts = [
        v for v in verdicts if v.verifier.startswith("expression") and v.claim.kind in ("expression", "expression_set")
    ]
    sup_exp = [v for v in exp_verdicts if v.status == "supported" and v.robustness is not None]
    robust = (sum(not v.robustness.fragile for v in sup_exp) / len(sup_exp)) if sup_exp else None  # type: ignore[union-attr]
    accepted = not structural and reward >= settings.min_reward and counts["contradicted"] <= settings.max_contradicted
    return VerificationReport(
        condition_key=condition.key if condition else None,
        graph_hash=graph.content_hash(),
        kb_version=kb.version if kb is not None else None,
        verdicts=verdicts,
        claims=results,
        structural=structural,
        factual_precision=_precision(verdicts, {"knowledge"}),
        expression_precision=_precision(exp_verdicts, {"expression", "expression-dr"}),
        robustness=robust,
        counts=counts,
        reward=reward,
        accepted=accepted,
        feedback=feedback,
        settings=settings.model_dump(),
        seconds=time.perf_counter() - t0,
    )


def verify_text(text: str, **kw) -> VerificationReport:
    """Verify a model's four-tag output: parse problems become structural problems (reward 0)."""
    parsed = parse_text(text)
    if parsed.graph is None:
        return VerificationReport(
            structural=[p for p in parsed.issues if p.severity == "error"],
            reward=0.0,
            accepted=False,
            feedback=[problem_feedback(p) for p in parsed.issues],
        )
    return run_panel(parsed.graph, structural_extra=parsed.issues, **kw)
