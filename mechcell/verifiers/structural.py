"""Structural verifier: the graph language's validation problems, turned into verdicts and feedback.

Why a verifier and not just a parse error: the proposer's revise step needs the same kind of located, per-node
feedback for "your dag has a cycle at n3" as for "DUSP6 went up, not down".
"""

from __future__ import annotations

from collections.abc import Sequence

from mechcell.graphs import Claim, GraphProblem
from mechcell.verifiers.base import VerificationContext, register
from mechcell.verifiers.types import Evidence, Verdict


def problem_feedback(p: GraphProblem) -> str:
    where = f" (line {p.line})" if p.line else ""
    return f"structure: {p.kind}{where}: {p.message}"


class StructuralVerifier:
    name = "structural"
    description = "the rules of the action-graph language: set_context first, declared ids, acyclic, measurable end"

    def verify(self, claims: Sequence[Claim], ctx: VerificationContext) -> list[Verdict]:
        problems = [p for p in ctx.graph.problems() if p.severity == "error"]
        by_node: dict[str, list[GraphProblem]] = {}
        for p in problems:
            if p.node_id:
                by_node.setdefault(p.node_id, []).append(p)
        out: list[Verdict] = []
        for c in claims:
            ps = by_node.get(c.node_id)
            if not ps:
                continue
            out.append(
                Verdict(
                    claim=c,
                    verifier=self.name,
                    status="contradicted",
                    score=0.0,
                    evidence=[Evidence(source="graph-rules", detail=problem_feedback(p)) for p in ps],
                    reason="; ".join(p.message for p in ps),
                )
            )
        return out


STRUCTURAL = register(StructuralVerifier())
