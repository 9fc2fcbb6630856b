"""Parse + validate + hash a 20-node action graph: graphs per second on one core.

Baseline, in the same process: `json.loads` of the same graph's JSON (the cheapest way to read it back).
Goal (issue 2): ≥ 5,000 graphs/s, i.e. a 10⁵-trace corpus re-validated in under half a minute.
"""

from __future__ import annotations

import json
import time

from _machine import machine

from mechcell.graphs import ActionGraph, Edge, parse_text
from mechcell.graphs.primitives import (
    BindsTo,
    ModulatesMoleculeActivity,
    ModulatesPathwayActivity,
    RegulatesExpression,
    SetContext,
)


def twenty_node_graph() -> ActionGraph:
    """A realistic 20-node graph: context, two bindings, a signalling cascade, pathways, 8 expression leaves."""
    nodes = [
        SetContext(id="n0", cell_type="A549", genotype="KRAS G12S; STK11 LoF"),
        BindsTo(id="n1", actor="Trametinib", target="MAP2K1", affinity=0.9, unit="nM"),
        BindsTo(id="n2", actor="Trametinib", target="MAP2K2", affinity=1.8, unit="nM"),
    ]
    kinases = ["MAP2K1", "MAP2K2", "MAPK1", "MAPK3", "RPS6KA1", "ELK1", "ETV4", "ETV5", "MYC"]
    for k, t in enumerate(kinases, start=3):
        nodes.append(ModulatesMoleculeActivity(id=f"n{k}", target=t, direction="down", via="loss of phosphorylation"))
    nodes.append(ModulatesPathwayActivity(id="n12", pathway="MAPK", direction="down", via="MEK inhibition"))
    genes = [
        ["DUSP6", "SPRY4", "ETV5"],
        ["FOSL1", "EGR1"],
        ["CCND1", "MYC"],
        ["DUSP4", "SPRY2"],
        ["IER3", "PHLDA1"],
        ["ETV4", "EGR3"],
        ["HMGA2", "SERPINE1"],
    ]
    for k, gl in enumerate(genes, start=13):
        nodes.append(
            RegulatesExpression(
                id=f"n{k}", regulator="ELK1", gene_list=gl, direction="down", mechanism="ETS factor activity"
            )
        )
    edges = [
        Edge(src="n1", tgt="n3"),
        Edge(src="n2", tgt="n4"),
        Edge(src="n3", tgt="n5"),
        Edge(src="n4", tgt="n6"),
        Edge(src="n5", tgt="n7"),
        Edge(src="n5", tgt="n8"),
        Edge(src="n6", tgt="n9"),
        Edge(src="n5", tgt="n10"),
        Edge(src="n5", tgt="n11"),
        Edge(src="n3", tgt="n12"),
    ]
    edges += [
        Edge(src=s, tgt=f"n{k}")
        for k, s in zip(range(13, 20), ["n8", "n9", "n11", "n12", "n7", "n10", "n12"], strict=True)
    ]
    return ActionGraph(nodes=nodes, edges=edges)


def rate(fn, payload, min_seconds: float = 2.0) -> float:
    n, t0 = 0, time.perf_counter()
    while True:
        for _ in range(200):
            fn(payload)
        n += 200
        dt = time.perf_counter() - t0
        if dt >= min_seconds:
            return n / dt


def parse_validate_hash(text: str) -> str:
    p = parse_text(text)
    assert p.ok
    return p.graph.content_hash()


def main() -> None:
    g = twenty_node_graph()
    assert len(g.nodes) == 20 and g.is_valid(), g.problems()
    text, js = g.to_text(), g.model_dump_json()
    parse_validate_hash(text)
    ours = rate(parse_validate_hash, text)
    base = rate(json.loads, js)
    only_parse = rate(parse_text, text)
    print(f"machine: {machine()}")
    print(f"20-node graph, {len(text)} chars of text, {len(js)} chars of JSON")
    print(f"parse+validate+hash: {ours:,.0f} graphs/s  (parse+validate only: {only_parse:,.0f}/s)")
    print(f"baseline json.loads: {base:,.0f} graphs/s")
    print(
        f"ratio ours/baseline: {ours / base:.3f}  (goal: >= 5,000 graphs/s -> {'met' if ours >= 5000 else 'NOT met'})"
    )
    print(f"10^5-trace corpus re-validated in {1e5 / ours:.1f} s")


if __name__ == "__main__":
    main()
