"""What the page shows, computed from a stored `Trace`: the graph with a verdict per node and edge, the evidence
behind every claim, and the condition's top up/down genes.

Why here and not in the browser: the rules (which verdict colours an edge, how a node's claims combine) are
Python a test can check without a browser; the page only lays the graph out and draws it.

Colouring rule: an edge `src → tgt` asserts the step `tgt` (a claim's `edge` is its incoming edge), so it takes
the combined status of `tgt`'s claims — contradicted if any claim is; supported if every checkable claim is;
inconclusive if some claim is checkable; uncheckable otherwise. Per-claim detail stays in the evidence panel.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mechcell.datasets.schemas import Signature
from mechcell.datasets.traces import Trace
from mechcell.graphs import main_entity

__all__ = [
    "ClaimView",
    "EdgeView",
    "EvidenceView",
    "GeneRow",
    "GenesView",
    "NodeStatus",
    "NodeView",
    "TraceView",
    "VerdictView",
    "combine_status",
    "top_genes",
    "trace_view",
]

NodeStatus = Literal["supported", "contradicted", "inconclusive", "uncheckable", "context"]
_CHECKABLE = ("supported", "contradicted", "inconclusive")


class EvidenceView(BaseModel):
    """One KB record or test behind a verdict; `url` only when it is an http(s) link."""

    model_config = ConfigDict(frozen=True)

    source: str
    version: str | None = None
    record_id: str | None = None
    detail: str = ""
    url: str | None = None
    model_generated: bool = False


class VerdictView(BaseModel):
    """One verifier's verdict on one claim, with the statistics and the null it tested."""

    model_config = ConfigDict(frozen=True)

    verifier: str
    status: str
    score: float | None = None
    statistic: float | None = None
    p_value: float | None = None
    e_value: float | None = None
    q_value: float | None = None
    null: str | None = None
    reason: str = ""
    model_generated_source: bool = False
    robustness: dict[str, Any] | None = None
    evidence: list[EvidenceView] = Field(default_factory=list)


class ClaimView(BaseModel):
    model_config = ConfigDict(frozen=True)

    claim_id: str
    node_id: str
    kind: str
    status: str
    text: str = ""
    verdicts: list[VerdictView] = Field(default_factory=list)


class NodeView(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    primitive: str
    entity: str | None = Field(None, description="the main entity the step changes (target, pathway, genes, ...)")
    direction: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    status: NodeStatus
    claim_ids: list[str] = Field(default_factory=list)


class EdgeView(BaseModel):
    model_config = ConfigDict(frozen=True)

    src: str
    tgt: str
    relation: str
    status: NodeStatus
    claim_ids: list[str] = Field(default_factory=list, description="the claims of the step the edge asserts")


class GeneRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    gene: str
    log2fc: float
    pvalue: float | None = None
    padj: float | None = None


class GenesView(BaseModel):
    """The condition's strongest up and down genes (by log2 fold change among genes with padj ≤ alpha)."""

    model_config = ConfigDict(frozen=True)

    condition_key: str
    method: str
    n_treated: int
    n_control: int
    alpha: float
    up: list[GeneRow] = Field(default_factory=list)
    down: list[GeneRow] = Field(default_factory=list)


class TraceView(BaseModel):
    """Everything the page draws for one trace."""

    model_config = ConfigDict(frozen=True)

    id: str
    condition_key: str
    status: str
    answer: str
    metrics: dict[str, Any] = Field(default_factory=dict)
    provenance: dict[str, Any] = Field(default_factory=dict)
    nodes: list[NodeView] = Field(default_factory=list)
    edges: list[EdgeView] = Field(default_factory=list)
    claims: list[ClaimView] = Field(default_factory=list)
    genes: GenesView | None = None


def combine_status(statuses: list[str]) -> NodeStatus:
    """A node's status from its claims' (see the module docstring)."""
    if not statuses:
        return "uncheckable"
    if "contradicted" in statuses:
        return "contradicted"
    checkable = [s for s in statuses if s in _CHECKABLE]
    if checkable and all(s == "supported" for s in checkable):
        return "supported"
    if checkable:
        return "inconclusive"
    return "uncheckable"


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _safe_url(url: Any) -> str | None:
    """Only http(s) links reach the page (never `javascript:` or `data:`)."""
    if isinstance(url, str) and url.lower().startswith(("https://", "http://")):
        return url
    return None


def _verdict(v: dict[str, Any]) -> VerdictView:
    return VerdictView(
        verifier=str(v.get("verifier", "")),
        status=str(v.get("status", "")),
        score=_finite(v.get("score")),
        statistic=_finite(v.get("statistic")),
        p_value=_finite(v.get("p_value")),
        e_value=_finite(v.get("e_value")),
        q_value=_finite(v.get("q_value")),
        null=v.get("null"),
        reason=str(v.get("reason") or ""),
        model_generated_source=bool(v.get("model_generated_source")),
        robustness=v.get("robustness"),
        evidence=[
            EvidenceView(
                source=str(e.get("source", "")),
                version=e.get("version"),
                record_id=e.get("record_id"),
                detail=str(e.get("detail") or ""),
                url=_safe_url(e.get("url")),
                model_generated=bool(e.get("model_generated")),
            )
            for e in v.get("evidence", [])
        ],
    )


def _claim_text(c: dict[str, Any]) -> str:
    d = f" {c['direction']}" if c.get("direction") else ""
    return f"{c.get('kind')}: {c.get('subject') or '?'} → {c.get('object') or '?'}{d}"


def trace_view(trace: Trace, signature: Signature | None = None, *, n_genes: int = 10) -> TraceView:
    """The page's view of a trace (and of its condition's signature, when the store has one)."""
    report = trace.final_report or {}
    by_claim: dict[str, list[dict[str, Any]]] = {}
    claim_doc: dict[str, dict[str, Any]] = {}
    for v in report.get("verdicts", []):
        c = v.get("claim", {})
        by_claim.setdefault(c.get("id", ""), []).append(v)
        claim_doc.setdefault(c.get("id", ""), c)
    claims: list[ClaimView] = []
    node_claims: dict[str, list[ClaimView]] = {}
    for r in report.get("claims", []):
        cv = ClaimView(
            claim_id=r["claim_id"],
            node_id=r["node_id"],
            kind=r.get("kind", ""),
            status=r.get("status", "uncheckable"),
            text=_claim_text(claim_doc.get(r["claim_id"], {"kind": r.get("kind")})),
            verdicts=[_verdict(v) for v in by_claim.get(r["claim_id"], [])],
        )
        claims.append(cv)
        node_claims.setdefault(cv.node_id, []).append(cv)
    nodes: list[NodeView] = []
    status: dict[str, NodeStatus] = {}
    g = trace.final_graph
    if g is not None:
        for n in g.nodes:
            prim = str(n.primitive)  # type: ignore[attr-defined]
            cs = node_claims.get(n.id, [])
            st: NodeStatus = "context" if prim == "set_context" else combine_status([c.status for c in cs])
            status[n.id] = st
            ent = main_entity(n) if prim != "set_context" else (getattr(n, "cell_type", None) or None)
            nodes.append(
                NodeView(
                    id=n.id,
                    primitive=prim,
                    entity=ent,
                    direction=getattr(n, "direction", None),
                    args={k: v for k, v in n.args().items() if v is not None},
                    status=st,
                    claim_ids=[c.claim_id for c in cs],
                )
            )
    edges = [
        EdgeView(
            src=e.src,
            tgt=e.tgt,
            relation=e.relation,
            status=status.get(e.tgt, "uncheckable"),
            claim_ids=[c.claim_id for c in node_claims.get(e.tgt, [])],
        )
        for e in (g.edges if g is not None else [])
    ]
    return TraceView(
        id=trace.id,
        condition_key=trace.condition.key,
        status=trace.status,
        answer=trace.answer,
        metrics=trace.metrics.model_dump(mode="json"),
        provenance=trace.provenance.model_dump(mode="json"),
        nodes=nodes,
        edges=edges,
        claims=claims,
        genes=top_genes(signature, n_genes) if signature is not None else None,
    )


def top_genes(signature: Signature, n: int = 10, alpha: float = 0.05) -> GenesView:
    """The `n` largest positive and negative log2 fold changes among genes with padj ≤ alpha (all genes when
    none passes, so the panel is never empty for a weak condition)."""
    rows = [
        (g, fc, p, q)
        for g, fc, p, q in zip(signature.genes, signature.log2fc, signature.pvalue, signature.padj, strict=True)
        if _finite(fc) is not None
    ]
    sig = [r for r in rows if _finite(r[3]) is not None and r[3] <= alpha] or rows

    def row(r: tuple[str, float, float, float]) -> GeneRow:
        return GeneRow(gene=r[0], log2fc=float(r[1]), pvalue=_finite(r[2]), padj=_finite(r[3]))

    up = sorted((r for r in sig if r[1] > 0), key=lambda r: (-r[1], r[0]))[:n]
    down = sorted((r for r in sig if r[1] < 0), key=lambda r: (r[1], r[0]))[:n]
    return GenesView(
        condition_key=signature.condition.key,
        method=signature.method,
        n_treated=signature.n_treated,
        n_control=signature.n_control,
        alpha=alpha,
        up=[row(r) for r in up],
        down=[row(r) for r in down],
    )
