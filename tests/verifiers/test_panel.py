"""The panel's combination rule and the monotonicity of its reward."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mechcell.graphs import Claim
from mechcell.verifiers import PanelSettings, Verdict
from mechcell.verifiers.panel import combine, combine_claim, reward_of
from mechcell.verifiers.types import ClaimResult

STATUSES = ["supported", "contradicted", "inconclusive", "uncheckable"]


def test_combine_rule() -> None:
    assert combine(["supported", "contradicted"]) == "contradicted"
    assert combine(["supported", "inconclusive", "uncheckable"]) == "supported"
    assert combine(["inconclusive", "uncheckable"]) == "inconclusive"
    assert combine(["uncheckable"]) == combine([]) == "uncheckable"
    # Data first: a KB record alone does not make a mechanism active in this condition.
    assert combine_claim({"knowledge": "supported", "expression": "inconclusive"}) == "inconclusive"
    assert combine_claim({"knowledge": "supported", "expression": "uncheckable"}) == "supported"
    assert combine_claim({"knowledge": "contradicted", "expression": "supported"}) == "contradicted"
    assert combine_claim({"knowledge": "inconclusive", "expression": "supported"}) == "supported"


def _case(statuses: list[str], scores: list[float]):
    results, verdicts = [], []
    for i, (s, sc) in enumerate(zip(statuses, scores, strict=True)):
        c = Claim(id=f"c{i}", kind="expression", node_id=f"n{i}", primitive="regulates_expression", causal=True)
        results.append(ClaimResult(claim_id=c.id, node_id=c.node_id, kind=c.kind, status=s))  # type: ignore[arg-type]
        verdicts.append(Verdict(claim=c, verifier="x", status=s, score=sc if s == "supported" else 0.0))  # type: ignore[arg-type]
    return results, verdicts


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(STATUSES), st.floats(0, 1)), min_size=1, max_size=12), st.data())
def test_more_contradicted_claims_never_score_higher(claims, data) -> None:
    statuses = [s for s, _ in claims]
    scores = [x for _, x in claims]
    ps = PanelSettings()
    base = reward_of(*_case(statuses, scores), ps)
    assert 0.0 <= base <= 1.0
    flippable = [i for i, s in enumerate(statuses) if s != "contradicted"]
    if not flippable:
        return
    i = data.draw(st.sampled_from(flippable))
    worse = list(statuses)
    worse[i] = "contradicted"
    assert reward_of(*_case(worse, scores), ps) <= base + 1e-12
