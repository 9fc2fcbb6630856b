"""Property-based tests: random valid graphs round-trip through text and JSON; no text makes parse_text raise."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mechcell.graphs import PRIMITIVES, ActionGraph, Edge, parse_text

_alphabet = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x85\u2028\u2029")
names = st.text(_alphabet, min_size=1, max_size=12).map(str.strip).filter(bool)
tricky = st.sampled_from(
    [
        "a,b",
        'say "hi"',
        "it's",
        "x)(y",
        "</explain>",
        "<dag>",
        "back\\slash",
        "a=b",
        "[1]",
        "{k}",
        'edge("n1","n2")',
        'binds_to(id="z")',
        "ünïcödé",
        "12",
        "true",
        "none",
    ]
)
text_value = st.one_of(names, tricky)
gene = st.from_regex(r"[A-Z][A-Z0-9]{1,7}", fullmatch=True)
measurable = ["regulates_expression", "regulates_translation", "induces_phenotype", "alleviates_phenotype"]
inner = [p for p in PRIMITIVES if p not in ("set_context", *measurable) and not PRIMITIVES[p].non_causal]


@st.composite
def node_args(draw: Any, prim: str) -> dict[str, Any]:
    cls = PRIMITIVES[prim]
    out: dict[str, Any] = {}
    for fname in cls.model_fields:
        if fname in ("id", "primitive"):
            continue
        required = fname in cls.required
        if not required and not draw(st.booleans()):
            continue
        if fname == "direction":
            out[fname] = draw(st.sampled_from(["up", "down"]))
        elif fname in ("gene_list", "members"):
            out[fname] = draw(st.lists(gene, min_size=1, max_size=5, unique=True))
        elif fname in ("confidence", "affinity"):
            out[fname] = draw(st.one_of(st.floats(0, 1e6, allow_nan=False), names.filter(lambda s: not _num(s))))
        elif fname == "extras":
            out[fname] = draw(st.one_of(text_value, st.dictionaries(gene, st.integers(0, 9), max_size=2)))
        else:
            out[fname] = draw(text_value)
    return out


def _num(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


@st.composite
def valid_graphs(draw: Any) -> ActionGraph:
    n_inner = draw(st.integers(0, 6))
    prims = [draw(st.sampled_from(inner)) for _ in range(n_inner)] + [draw(st.sampled_from(measurable))]
    nodes = [PRIMITIVES["set_context"](id="n0", **draw(node_args("set_context")))]
    for k, prim in enumerate(prims, start=1):
        nodes.append(PRIMITIVES[prim](id=f"n{k}", **draw(node_args(prim))))
    edges = []
    for k in range(2, len(nodes)):  # every step follows from an earlier one: a connected DAG ending measurable
        src = draw(st.integers(1, k - 1))
        edges.append(Edge(src=f"n{src}", tgt=f"n{k}", relation=draw(st.sampled_from(["causal", "correlative"]))))
    # Inner steps nobody follows would be non-measurable sinks: hang them on the last (measurable) node.
    has_out = {e.src for e in edges}
    last = f"n{len(nodes) - 1}"
    for k in range(1, len(nodes) - 1):
        if f"n{k}" not in has_out:
            edges.append(Edge(src=f"n{k}", tgt=last))
    return ActionGraph(nodes=nodes, edges=edges)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_graphs())
def test_random_valid_graphs_round_trip(g: ActionGraph) -> None:
    assert g.is_valid(), g.problems()
    p = parse_text(g.to_text())
    assert p.ok, p.issues
    assert p.graph == g
    assert ActionGraph.model_validate_json(g.model_dump_json()) == g
    assert p.graph.content_hash() == g.content_hash()


fragments = st.sampled_from(
    [
        "<think>",
        "</think>",
        "<explain>",
        "</explain>",
        "<dag>",
        "</dag>",
        "<answer>",
        "set_context(",
        "binds_to(",
        "regulates_expression(",
        "edge(",
        "id=",
        '"n1"',
        "'n2'",
        ", ",
        ")",
        "(",
        "[",
        "]",
        "{",
        "}",
        "=",
        "\n",
        "direction=up",
        'gene_list=["A"',
        'relation="causal"',
        "```",
        "\\",
        '"',
        "'",
        "->",
        "modulates_activity(",
        "n1",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(st.one_of(fragments, st.text(max_size=5)), max_size=60).map("".join)))
def test_parse_text_never_raises(text: str) -> None:
    p = parse_text(text)
    assert p.graph is not None or p.issues
