"""The page's view of a trace, on real traces of the demo world: the graph's nodes and edges with verdict
statuses, every verdict with its evidence, the top genes of the stored signature."""

from __future__ import annotations

import math

import pytest
from web_support import DemoWorld

from mechcell.datasets.store import Store
from mechcell.datasets.traces import Trace, TraceStore
from mechcell.web.views import combine_status, top_genes, trace_view


@pytest.fixture(scope="module")
def traces(demo_world: DemoWorld) -> list[tuple[Trace, object]]:
    out = []
    with Store(demo_world.store, read_only=True) as st:
        ts = TraceStore(st)
        for r in demo_world.result.rows:
            t = ts.get(r.trace_id)  # type: ignore[arg-type]
            sig = st.signature(t.condition.key, t.signature_method) if t.signature_method else None
            out.append((t, sig))
    return out


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["supported", "supported"], "supported"),
        (["supported", "uncheckable"], "supported"),  # uncheckable claims neither help nor hurt
        (["supported", "inconclusive"], "inconclusive"),
        (["inconclusive", "contradicted", "supported"], "contradicted"),  # one contradiction colours the step
        (["uncheckable"], "uncheckable"),
        ([], "uncheckable"),
    ],
)
def test_combined_status_of_a_step(statuses: list[str], expected: str) -> None:
    assert combine_status(statuses) == expected


def test_view_has_every_node_edge_and_verdict(traces: list[tuple[Trace, object]]) -> None:
    with_graph = [(t, s) for t, s in traces if t.final_graph is not None]
    assert with_graph, "the demo explained no condition with a graph"
    for t, sig in with_graph:
        v = trace_view(t, sig)  # type: ignore[arg-type]
        g = t.final_graph
        assert g is not None
        assert [n.id for n in v.nodes] == [n.id for n in g.nodes]
        assert [(e.src, e.tgt, e.relation) for e in v.edges] == [(e.src, e.tgt, e.relation) for e in g.edges]
        report = t.final_report or {}
        claim_status = {c["claim_id"]: c["status"] for c in report["claims"]}
        # every verdict of the report is in the view, under its claim, with its statistics and evidence
        assert sum(len(c.verdicts) for c in v.claims) == len(report["verdicts"])
        for c in v.claims:
            assert c.status == claim_status[c.claim_id]
            src = [x for x in report["verdicts"] if x["claim"]["id"] == c.claim_id]
            assert [x.verifier for x in c.verdicts] == [x["verifier"] for x in src]
            for mine, theirs in zip(c.verdicts, src, strict=True):
                assert mine.p_value == theirs.get("p_value") and mine.null == theirs.get("null")
                assert [e.source for e in mine.evidence] == [e["source"] for e in theirs["evidence"]]
        # an edge carries the status of the step it asserts; a contradicted claim there always shows
        nodes = {n.id: n for n in v.nodes}
        for e in v.edges:
            assert e.status == nodes[e.tgt].status
            tgt_claims = [s for cid, s in claim_status.items() if cid == e.tgt or cid.startswith(e.tgt + ":")]
            assert sorted(e.claim_ids) == sorted(
                cid for cid in claim_status if cid == e.tgt or cid.startswith(e.tgt + ":")
            )
            assert ("contradicted" in tgt_claims) == (e.status == "contradicted")
        assert nodes[g.nodes[0].id].status == "context"


def test_links_are_only_http(traces: list[tuple[Trace, object]]) -> None:
    t = next(t for t, _ in traces if t.final_graph is not None)
    final = t.final
    assert final is not None and final.report is not None
    report = dict(final.report)
    v0 = dict(report["verdicts"][0])
    v0["evidence"] = [
        {"source": "evil", "detail": "x", "url": "javascript:alert(1)"},
        {"source": "data", "detail": "x", "url": "data:text/html,<script>alert(1)</script>"},
        {"source": "ok", "detail": "x", "url": "https://example.org/record/1"},
    ]
    report["verdicts"] = [v0, *report["verdicts"][1:]]
    attempts = list(t.attempts)
    attempts[t.final_attempt] = final.model_copy(update={"report": report})  # type: ignore[index]
    view = trace_view(t.model_copy(update={"attempts": attempts}))
    urls = [e.url for c in view.claims for vd in c.verdicts for e in vd.evidence if e.source in ("evil", "data", "ok")]
    assert urls == [None, None, "https://example.org/record/1"]


def test_top_genes_are_the_strongest_significant_changes(traces: list[tuple[Trace, object]]) -> None:
    for _t, sig in traces:
        if sig is None:
            continue
        f = sig.to_frame()  # type: ignore[attr-defined]
        gv = top_genes(sig, n=7, alpha=0.05)  # type: ignore[arg-type]
        passing = f[f["padj"] <= 0.05]
        pool = passing if len(passing) else f
        want_up = pool[pool["log2fc"] > 0].sort_values("log2fc", ascending=False).head(7)
        want_down = pool[pool["log2fc"] < 0].sort_values("log2fc").head(7)
        assert [r.gene for r in gv.up] == list(want_up.index)
        assert [r.gene for r in gv.down] == list(want_down.index)
        assert all(r.padj is not None and r.padj <= 0.05 for r in gv.up + gv.down) or not len(passing)
        assert all(math.isfinite(r.log2fc) for r in gv.up + gv.down)
