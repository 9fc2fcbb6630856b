"""Recovery metrics against a synthetic world's truth.json: the edge definition, the per-condition figures on
perfect / degraded / wrong graphs, the markdown + PNG report, and `mechcell eval recovery` on a real store."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mechcell.cli import app
from mechcell.datasets.schemas import Condition
from mechcell.datasets.synthetic import Truth
from mechcell.datasets.traces import Provenance, Trace, TraceConfig, TraceMetrics, TraceStore, trace_id
from mechcell.eval import NameResolver, evaluate_recovery, graph_edges, write_recovery_report
from mechcell.graphs import ActionGraph, parse_text
from mechcell.graphs.primitives import BindsTo
from mechcell.knowledge import KnowledgeBase

GRAPH = """<explain>
set_context(id="n0", cell_type="A549")
binds_to(id="n1", actor="{drug}", target="{target}")
modulates_molecule_activity(id="n2", target="{target}", direction="down")
modulates_molecule_activity(id="n3", target="{mid}", direction="down")
regulates_expression(id="n4", regulator="{mid}", gene_list=["DUSP6", "SPRY4"], direction="down")
</explain>
<dag>
edge("n1", "n2")
edge("n2", "n3")
edge("n3", "n4")
</dag>"""


def _graph(**names: str) -> ActionGraph:
    g = parse_text(GRAPH.format(**{"drug": "Trametinib", "target": "MAP2K1", "mid": "MAPK1", **names})).graph
    assert g is not None
    return g


def _trace(key: str, graph: ActionGraph | None) -> Trace:
    cfg = TraceConfig(proposer="test", kb_version="kb", seed=0)
    return Trace(
        id=trace_id(key, cfg),
        condition=Condition.from_key(key),
        config=cfg,
        status="accepted" if graph is not None else "abstained",
        final_attempt=None,
        final_graph=graph,
        metrics=TraceMetrics(reward=1.0 if graph else None, accepted=graph is not None, counts={"supported": 3}),
        provenance=Provenance(proposer="test", kb_version="kb", code_version="0", seed=0),
    )


def _perfect(truth: Truth) -> dict[str, Trace]:
    return {k: _trace(k, truth.graph(k) if c.active else None) for k, c in truth.conditions.items()}


def _edit(graph: ActionGraph, fn) -> ActionGraph:  # noqa: ANN001 - node → node
    return graph.model_copy(update={"nodes": [fn(n) for n in graph.nodes]})


# ------------------------------------------------------------------------------------------ the definition


def test_edges_of_a_graph_follow_the_definition(kb: KnowledgeBase) -> None:
    edges = graph_edges(_graph(), NameResolver(kb))
    assert edges == {
        ("TRAMETINIB", "MAP2K1", "binds"),
        ("TRAMETINIB", "MAP2K1", "down"),
        ("MAP2K1", "MAPK1", "down"),
        ("MAPK1", "DUSP6", "down"),
        ("MAPK1", "SPRY4", "down"),
    }


def test_names_are_resolved_before_matching(kb: KnowledgeBase) -> None:
    res = NameResolver(kb)
    # a drug in lower case, a gene by its alias: the same edges
    assert graph_edges(_graph(drug="trametinib", mid="ERK2"), res) == graph_edges(_graph(), res)
    # without a KB only case is normalised, so the alias is a different entity
    assert graph_edges(_graph(mid="ERK2")) != graph_edges(_graph())


def test_a_step_with_two_parents_is_two_edges() -> None:
    g = parse_text(
        """<explain>
set_context(id="n0")
binds_to(id="n1", actor="D", target="A")
modulates_molecule_activity(id="n2", target="A", direction="down")
modulates_molecule_activity(id="n3", target="B", direction="down")
modulates_molecule_activity(id="n4", target="C", direction="down")
regulates_expression(id="n5", regulator="C", gene_list=["G"], direction="up")
</explain>
<dag>
edge("n1","n2")
edge("n2","n3")
edge("n2","n4")
edge("n3","n4")
edge("n4","n5")
</dag>"""
    ).graph
    assert {("A", "C", "down"), ("B", "C", "down")} <= graph_edges(g)


# ------------------------------------------------------------------------------------------ figures


def test_planted_graphs_score_perfectly(truth: Truth, kb: KnowledgeBase) -> None:
    res = evaluate_recovery(truth, _perfect(truth), kb=kb)
    s = res.summary
    assert s.n_conditions == len(truth.conditions) and s.n_active == len(truth.active_keys()) > 0
    assert s.edge_precision == 1.0 and s.edge_recall == 1.0 and s.micro_precision == 1.0
    assert s.path_recovery == 1.0 and s.decoy_bound in (0.0, None)
    assert s.inactive_abstention in (1.0, None)
    for r in res.rows:
        assert r.n_tp == r.n_true == r.n_pred if r.active else r.n_pred == 0


def test_half_the_genes_halves_gene_recall_not_precision(truth: Truth, kb: KnowledgeBase) -> None:
    def halve(n):  # noqa: ANN001, ANN202
        if n.primitive == "regulates_expression" and len(n.gene_list) > 1:
            return n.model_copy(update={"gene_list": n.gene_list[: len(n.gene_list) // 2]})
        return n

    traces = {k: _trace(k, _edit(t.final_graph, halve)) if t.final_graph else t for k, t in _perfect(truth).items()}
    s = evaluate_recovery(truth, traces, kb=kb).summary
    assert s.edge_precision == 1.0 and s.mech_recall == 1.0
    assert s.gene_recall is not None and 0.3 < s.gene_recall < 0.7
    assert s.path_recovery == 1.0


def test_wrong_directions_are_misses(truth: Truth, kb: KnowledgeBase) -> None:
    flip = {"up": "down", "down": "up"}

    def wrong(n):  # noqa: ANN001, ANN202
        if n.primitive == "regulates_expression":
            return n.model_copy(update={"direction": flip[n.direction]})
        return n

    traces = {k: _trace(k, _edit(t.final_graph, wrong)) if t.final_graph else t for k, t in _perfect(truth).items()}
    s = evaluate_recovery(truth, traces, kb=kb).summary
    assert s.gene_precision == 0.0 and s.gene_recall == 0.0
    assert s.mech_precision == 1.0 and s.path_recovery == 0.0


def test_binding_a_decoy_is_flagged(truth: Truth, kb: KnowledgeBase) -> None:
    other = [d for d in truth.decoys if d.kind == "other_target"]
    assert other, "the eval world has no other-target decoy"
    d = other[0]
    key = next(k for k, c in truth.conditions.items() if c.drug == d.drug and c.active)
    g = truth.graph(key)
    assert g is not None
    bad = g.model_copy(
        update={
            "nodes": [*g.nodes, BindsTo(id="n99", actor=d.drug, target=d.target)],
            "edges": g.edges,
        }
    )
    traces = _perfect(truth) | {key: _trace(key, bad)}
    res = evaluate_recovery(truth, traces, kb=kb)
    row = next(r for r in res.rows if r.key == key)
    assert row.decoy_bound and row.precision is not None and row.precision < 1.0
    assert res.summary.decoy_bound is not None and res.summary.decoy_bound > 0


def test_a_claim_on_an_inactive_condition_counts_against_precision(truth: Truth, kb: KnowledgeBase) -> None:
    off = [k for k, c in truth.conditions.items() if not c.active]
    assert off, "the eval world has no inactive condition"
    traces = _perfect(truth) | {off[0]: _trace(off[0], _graph())}
    res = evaluate_recovery(truth, traces, kb=kb)
    row = next(r for r in res.rows if r.key == off[0])
    assert row.precision == 0.0 and row.recall is None
    assert res.summary.inactive_abstention is not None and res.summary.inactive_abstention < 1.0


def test_missing_traces_are_reported(truth: Truth, kb: KnowledgeBase) -> None:
    keys = sorted(truth.conditions)
    res = evaluate_recovery(truth, {}, kb=kb, keys=keys)
    assert all(r.status == "missing" for r in res.rows) and res.summary.n_with_trace == 0
    assert res.summary.edge_recall == 0.0


# ------------------------------------------------------------------------------------------ report + CLI


def test_report_files(truth: Truth, kb: KnowledgeBase, tmp_path: Path) -> None:
    res = evaluate_recovery(truth, _perfect(truth), kb=kb)
    md = write_recovery_report(res, tmp_path / "rep", title="t")
    text = md.read_text()
    assert text.startswith("# t") and "How edges are matched" in text
    rows = [ln for ln in text.splitlines() if ln.startswith("| `")]
    assert len(rows) == len(truth.conditions)
    assert all(ln.count("\\|") >= 3 for ln in rows)  # the key's pipes are escaped inside the table
    for png in ("recovery_pr.png", "recovery_verdicts.png"):
        data = (tmp_path / "rep" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
        assert f"]({png})" in text


def test_cli_eval_recovery(truth: Truth, eval_world: Path, tmp_path: Path) -> None:
    store = tmp_path / "mechcell.duckdb"
    with TraceStore(store) as ts:
        ts.put_many(list(_perfect(truth).values()))
    rep = tmp_path / "report"
    r = CliRunner().invoke(
        app,
        [
            "eval",
            "recovery",
            "--truth",
            str(eval_world / "truth.json"),
            "--store",
            str(store),
            "--report",
            str(rep),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["summary"]["edge_precision"] == 1.0 and Path(doc["report"]).is_file()
    r = CliRunner().invoke(
        app, ["eval", "recovery", "--truth", str(eval_world), "--store", str(store), "--report", str(rep)]
    )
    assert r.exit_code == 0 and "report:" in r.stdout and "edge precision" in r.stdout
    # no traces at all: a clean error, not a traceback
    empty = tmp_path / "empty.duckdb"
    TraceStore(empty).close()
    r = CliRunner().invoke(app, ["eval", "recovery", "--truth", str(eval_world), "--store", str(empty)])
    assert r.exit_code == 2 and "no trace" in r.output
