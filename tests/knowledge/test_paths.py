"""Signed path queries: a small hand-made graph with known answers, agreement with networkx on random graphs, and
the KnowledgeBase's path API (drug hops, pathway anchors, complexes, metabolites, conflicting signs)."""

from __future__ import annotations

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mechcell.knowledge import KnowledgeBase
from mechcell.knowledge.graph import SignedAdjacency, path_sign, paths_from_dag, shortest_path_dag, simple_paths

#  A →+ B ⊣ C →+ D,  A →+ C,  B →+ D,  D ⊣ A (a cycle back),  C →+ E →+ D,  F isolated
EDGES = [
    ("A", "B", 1),
    ("B", "C", -1),
    ("A", "C", 1),
    ("C", "D", 1),
    ("B", "D", 1),
    ("D", "A", -1),
    ("C", "E", 1),
    ("E", "D", 1),
    ("F", "F2", 1),
]


@pytest.fixture()
def adj() -> SignedAdjacency:
    return SignedAdjacency.from_edges(EDGES)


def test_known_paths(adj: SignedAdjacency) -> None:
    got = [("".join(n), path_sign(s)) for n, s in simple_paths(adj, ["A"], ["D"], 3)]
    assert got == [("ABD", 1), ("ACD", 1), ("ABCD", -1), ("ACED", 1)]
    assert [("".join(n)) for n, _ in simple_paths(adj, ["A"], ["D"], 2)] == ["ABD", "ACD"]
    assert simple_paths(adj, ["A"], ["D"], 1) == []
    assert simple_paths(adj, ["A"], ["F"], 5) == []
    assert simple_paths(adj, ["D"], ["D"], 3) == [(["D"], [])]


def test_multi_source_multi_target(adj: SignedAdjacency) -> None:
    got = {"".join(n) for n, _ in simple_paths(adj, ["A", "B"], ["C", "E"], 2)}
    # a path stops at the first target it reaches (A→C→E is not returned: C is already a target)
    assert got == {"AC", "ABC", "BC"}


def test_shortest_path_dag(adj: SignedAdjacency) -> None:
    dist, preds = shortest_path_dag(adj, "A", 3)
    assert dist == {"A": 0, "B": 1, "C": 1, "D": 2, "E": 2}
    assert sorted("".join(n) for n, _ in paths_from_dag(preds, "A", "D", 10)) == ["ABD", "ACD"]
    assert len(paths_from_dag(preds, "A", "D", 1)) == 1
    blocked_dist, _ = shortest_path_dag(adj, "A", 3, blocked=frozenset({"B", "C"}))
    assert blocked_dist == {"A": 0, "B": 1, "C": 1}


@st.composite
def digraphs(draw: st.DrawFn) -> list[tuple[int, int, int]]:
    n = draw(st.integers(3, 9))
    pairs = draw(
        st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), min_size=1, max_size=30, unique=True)
    )
    edges = [(u, v, draw(st.sampled_from([1, -1]))) for u, v in pairs if u != v]
    return edges or [(0, 1, 1)]


@given(digraphs(), st.integers(1, 4))
@settings(max_examples=150, deadline=None)
def test_agrees_with_networkx_all_simple_paths(edges: list[tuple[int, int, int]], max_len: int) -> None:
    """Null: the pruned search returns exactly networkx's simple paths of ≤ max_len edges, with the same signs."""
    adj = SignedAdjacency.from_edges([(str(u), str(v), s) for u, v, s in edges])
    g = nx.DiGraph()
    g.add_weighted_edges_from([(str(u), str(v), s) for u, v, s in edges], weight="sign")
    src, tgt = str(edges[0][0]), str(edges[-1][1])
    if src == tgt:
        return
    ours = {(tuple(n), path_sign(s)) for n, s in simple_paths(adj, [src], [tgt], max_len)}
    ref = {
        (tuple(p), path_sign([g.edges[u, v]["sign"] for u, v in zip(p, p[1:], strict=False)]))
        for p in nx.all_simple_paths(g, src, tgt, cutoff=max_len)
    }
    assert ours == ref


@given(digraphs())
@settings(max_examples=100, deadline=None)
def test_dag_paths_are_the_shortest_paths(edges: list[tuple[int, int, int]]) -> None:
    adj = SignedAdjacency.from_edges([(str(u), str(v), s) for u, v, s in edges])
    g = nx.DiGraph([(str(u), str(v)) for u, v, _ in edges])
    src = str(edges[0][0])
    dist, preds = shortest_path_dag(adj, src, 4)
    ref = {k: v for k, v in nx.single_source_shortest_path_length(g, src, cutoff=4).items()}
    assert dist == ref
    for t in dist:
        ours = {tuple(n) for n, _ in paths_from_dag(preds, src, t, 1000)}
        assert ours == {tuple(p) for p in nx.all_shortest_paths(g, src, t)}


# -------------------------------------------------------------------------------------------- KnowledgeBase


def test_kb_paths_between_genes(mini_kb: KnowledgeBase) -> None:
    ps = mini_kb.paths("MAP2K1", "ETS1")
    assert [p.nodes for p in ps] == [["MAP2K1", "MAPK1", "ETS1"], ["MAP2K1", "MAPK3", "ETS1"]]
    assert all(p.sign == 1 and len(p.relations) == 2 for p in ps)
    assert all(r.source == "omnipath" for p in ps for r in p.relations)
    assert mini_kb.paths("MAP2K1", "ETS1", max_len=1) == []


def test_kb_path_from_a_drug_prepends_its_target_hop(mini_kb: KnowledgeBase) -> None:
    ps = mini_kb.paths("trametinib", "ETS1", max_len=2)
    assert {tuple(p.nodes) for p in ps} == {
        ("Trametinib", "MAP2K1", "MAPK1", "ETS1"),
        ("Trametinib", "MAP2K1", "MAPK3", "ETS1"),
        ("Trametinib", "MAP2K2", "MAPK1", "ETS1"),
    }
    assert all(p.sign == -1 and p.relations[0].predicate == "inhibits" for p in ps)
    assert all(not p.relations[0].model_generated for p in ps)  # a curated source is preferred for the hop


def test_kb_family_endpoints(mini_kb: KnowledgeBase) -> None:
    ps = mini_kb.paths("MEK", "ETS1", max_len=2)
    assert {p.nodes[0] for p in ps} == {"MAP2K1", "MAP2K2"}


def test_conflicting_sources_give_sign_zero(mini_kb: KnowledgeBase) -> None:
    (p, *_) = mini_kb.paths("KRAS", "MAPK1", max_len=2)
    assert p.nodes == ["KRAS", "MAP2K1", "MAPK1"] and p.signs == [0, 1] and p.sign == 0
    assert mini_kb.signed_graph().edges["KRAS", "MAP2K1"]["sign"] == 0


def test_complex_nodes_and_metabolites(mini_kb: KnowledgeBase) -> None:
    ps = mini_kb.paths("IFNB1", "STAT1")
    assert ["IFNB1", "IFNAR1_IFNAR2", "JAK1", "STAT1"] in [p.nodes for p in ps]
    assert ["IFNB1", "IFNAR1", "IFNAR1_IFNAR2", "JAK1", "STAT1"] not in [p.nodes for p in ps]  # too long
    assert not any("Metab__HMDB0000001_c" in p.nodes for p in mini_kb.paths("MAPK1", "STAT1"))
    via = mini_kb.paths("MAPK1", "STAT1", via_metabolites=True)
    assert [p.nodes for p in via] == [["MAPK1", "Metab__HMDB0000001_c", "STAT1"]]


def test_signed_graph_view(mini_kb: KnowledgeBase) -> None:
    g = mini_kb.signed_graph()
    assert g.edges["DUSP6", "MAPK1"]["sign"] == -1 and g.edges["DUSP6", "MAPK1"]["source"] == "omnipath"
    assert g.edges["IFNAR1", "IFNAR1_IFNAR2"]["predicate"] == "part_of_complex"
    assert g.nodes["Metab__HMDB0000001_c"]["type"] == "metabolite"


def test_path_to_a_pathway_through_its_anchor(starter: KnowledgeBase) -> None:
    ps = starter.paths("MAP2K1", "MAPK", max_len=1)
    assert [p.nodes for p in ps] == [["MAP2K1", "MAPK1", "MAPK"], ["MAP2K1", "MAPK3", "MAPK"]]
    assert ps[0].relations[-1].predicate == "activity_anchor"


def test_ambiguous_endpoint_is_an_error(mini_kb: KnowledgeBase) -> None:
    from mechcell.errors import InputError

    with pytest.raises(InputError, match="ambiguous"):
        mini_kb.paths("p21", "ETS1")
