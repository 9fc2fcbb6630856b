"""ActionGraph behaviour: canonical hashing, networkx view, claims and the predicted signature."""

from __future__ import annotations

from mechcell.graphs import ActionGraph, Edge, parse_text
from mechcell.graphs.primitives import (
    BindsTo,
    InducesPhenotype,
    ModulatesMoleculeActivity,
    RegulatesExpression,
    SetContext,
)


def chain(ids: list[str], order: list[int] | None = None) -> ActionGraph:
    nodes = [
        SetContext(id=ids[0], cell_type="A549"),
        BindsTo(id=ids[1], actor="Trametinib", target="MAP2K1"),
        ModulatesMoleculeActivity(id=ids[2], target="MAP2K1", direction="down"),
        ModulatesMoleculeActivity(id=ids[3], target="MAPK1", direction="down"),
        RegulatesExpression(id=ids[4], regulator="MAPK1", gene_list=["DUSP6", "SPRY4"], direction="down"),
    ]
    if order:
        nodes = [nodes[i] for i in order]
    edges = [Edge(src=ids[1], tgt=ids[2]), Edge(src=ids[2], tgt=ids[3]), Edge(src=ids[3], tgt=ids[4])]
    return ActionGraph(nodes=nodes, edges=edges)


def test_hash_ignores_id_numbering_and_declaration_order() -> None:
    a = chain(["n0", "n1", "n2", "n3", "n4"])
    b = chain(["c", "x9", "q", "n17", "z"], order=[0, 3, 1, 4, 2])
    assert a.content_hash() == b.content_hash()
    assert a.canonical() == b.canonical()


def test_hash_sees_content_and_edges() -> None:
    a = chain(["n0", "n1", "n2", "n3", "n4"])
    up = a.model_copy(update={"nodes": [*a.nodes[:4], a.nodes[4].model_copy(update={"direction": "up"})]})
    assert a.content_hash() != up.content_hash()
    rewired = a.model_copy(
        update={"edges": [Edge(src="n1", tgt="n2"), Edge(src="n2", tgt="n4"), Edge(src="n3", tgt="n4")]}
    )
    assert a.content_hash() != rewired.content_hash()
    correl = a.model_copy(update={"edges": [*a.edges[:2], Edge(src="n3", tgt="n4", relation="correlative")]})
    assert a.content_hash() != correl.content_hash()


def test_hash_handles_symmetric_branches() -> None:
    # Two identical branches with different leaves: renaming must not swap which leaf hangs off which branch.
    def g(swap: bool) -> ActionGraph:
        a, b = ("n2", "n3") if not swap else ("n3", "n2")
        nodes = [
            SetContext(id="n0"),
            BindsTo(id="n1", actor="D", target="T"),
            ModulatesMoleculeActivity(id=a, target="K", direction="down"),
            ModulatesMoleculeActivity(id=b, target="K", direction="down"),
            RegulatesExpression(id="n4", regulator="K", gene_list=["G1"], direction="up"),
            InducesPhenotype(id="n5", source="K", phenotype="arrest"),
        ]
        return ActionGraph(
            nodes=nodes,
            edges=[
                Edge(src="n1", tgt="n2"),
                Edge(src="n1", tgt="n3"),
                Edge(src=a, tgt="n4"),
                Edge(src=b, tgt="n5"),
            ],
        )

    assert g(False).content_hash() == g(True).content_hash()


def test_networkx_view(worked_example: str) -> None:
    g = parse_text(worked_example).graph
    nxg = g.to_networkx()
    assert nxg.number_of_nodes() == 5 and nxg.number_of_edges() == 3
    assert nxg.nodes["n4"]["primitive"] == "regulates_expression"
    assert nxg.edges["n1", "n2"]["relation"] == "causal"


def test_claims_of_the_worked_example(worked_example: str) -> None:
    claims = {c.id: c for c in parse_text(worked_example).graph.claims()}
    assert set(claims) == {"n1", "n2", "n3", "n4:DUSP6", "n4:SPRY4", "n4:ETV5", "n4:FOSL1", "n4:*"}
    assert (claims["n1"].kind, claims["n1"].subject, claims["n1"].object) == (
        "binding",
        "Trametinib",
        "MAP2K1",
    )
    assert (claims["n2"].subject, claims["n2"].object, claims["n2"].direction) == (
        "Trametinib",
        "MAP2K1",
        "down",
    )
    assert (claims["n3"].subject, claims["n3"].object, claims["n3"].direction) == ("MAP2K1", "MAPK1", "down")
    d = claims["n4:DUSP6"]
    assert (d.kind, d.subject, d.object, d.direction, d.genes) == (
        "expression",
        "MAPK1",
        "DUSP6",
        "down",
        ["DUSP6"],
    )
    assert d.edge.src == "n3" and d.upstream == ["n3"] and d.causal
    assert claims["n4:*"].kind == "expression_set" and claims["n4:*"].genes == [
        "DUSP6",
        "SPRY4",
        "ETV5",
        "FOSL1",
    ]


def test_correlative_link_makes_claim_non_causal() -> None:
    g = chain(["n0", "n1", "n2", "n3", "n4"])
    g = g.model_copy(update={"edges": [*g.edges[:2], Edge(src="n3", tgt="n4", relation="correlative")]})
    cl = {c.id: c for c in g.claims()}
    assert not cl["n4:DUSP6"].causal and cl["n3"].causal


def test_predicted_signature_paths(worked_example: str) -> None:
    sig = parse_text(worked_example).graph.predicted_signature()
    assert [(s.gene, s.direction) for s in sig] == [
        ("DUSP6", "down"),
        ("SPRY4", "down"),
        ("ETV5", "down"),
        ("FOSL1", "down"),
    ]
    assert all(s.path == ["n1", "n2", "n3", "n4"] and s.causal for s in sig)
