"""The fast path for the canonical format: same result as the lenient tokenizer, or it steps aside.

Also pins `content_hash` values, so that a faster implementation cannot silently change stored hashes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mechcell.graphs import ActionGraph, Edge, parse_text
from mechcell.graphs import parse as P
from mechcell.graphs.primitives import (
    ARG_ALIASES,
    ARGUMENTS,
    PRIMITIVES,
    V1_PRIMITIVES,
    BindsTo,
    InducesPhenotype,
    ModulatesMoleculeActivity,
    RegulatesExpression,
    SetContext,
)


def sections(text: str) -> dict[str, tuple[str, int]]:
    return P._sections(text)[0]


def same_nodes(a: tuple[list[Any], dict[str, int]], b: tuple[list[Any], dict[str, int]]) -> bool:
    """Same node classes, field values, fields set, and lines."""
    return [(type(n), n.__dict__, n.model_fields_set) for n in a[0]] == [
        (type(n), n.__dict__, n.model_fields_set) for n in b[0]
    ] and a[1] == b[1]


def both_paths(text: str) -> tuple[Any, Any, list[Any]]:
    body, line0 = sections(text).get("explain", ("", 1))
    problems: list[Any] = []
    return P._fast_explain(body, line0), P._parse_explain(body, line0, problems), problems


TRICKY = [
    'x, key="y"',
    ", via=",
    "a=b",
    ")",
    "x)(y",
    "</explain>",
    "<dag>",
    'say "hi"',
    '\\"',
    "back\\slash",
    "[1]",
    "{k}",
    'edge("n1", "n2")',
    'binds_to(id="z")',
    "ünïcödé 😀",
    "tab\there",
    "two\nlines",
    "12",
    "true",
    "%s",
]


@pytest.mark.parametrize("value", TRICKY)
def test_tricky_values_round_trip_exactly_on_the_fast_path(value: str) -> None:
    g = ActionGraph(
        nodes=[
            SetContext(id="n0", cell_type=value, genotype=value),
            BindsTo(id="n1", actor=value, target="T", via=value),
            RegulatesExpression(id="n2", regulator=value, gene_list=[value, "G"], direction="up", mechanism=value),
        ],
        edges=[Edge(src="n1", tgt="n2")],
    )
    text = g.to_text()
    fast, slow, problems = both_paths(text)
    assert fast is not None, "canonical output should take the fast path"
    assert not problems and same_nodes(fast, slow)
    p = parse_text(text)
    assert p.ok and p.graph == g and p.graph.content_hash() == g.content_hash()


def test_worked_example_takes_both_fast_paths(worked_example: str) -> None:
    secs = sections(worked_example)
    (body, line0), (dbody, dline0) = secs["explain"], secs["dag"]
    nodes, lines = P._fast_explain(body, line0)
    assert [n.id for n in nodes] == ["n0", "n1", "n2", "n3", "n4"] and lines == {f"n{k}": 4 + k for k in range(5)}
    assert nodes[1].affinity == 0.9  # the string "0.9" goes through the same validator
    edge_lines: dict[str, int] = {}
    edges = P._fast_dag(dbody, dline0, set(lines), edge_lines)
    assert [(e.src, e.tgt) for e in edges] == [("n1", "n2"), ("n2", "n3"), ("n3", "n4")]
    assert edge_lines == {"edge0": 11, "edge1": 12, "edge2": 13}


@pytest.mark.parametrize(
    "line",
    [
        'binds_to(id="n1", actor="", target="T")',  # empty required argument: missing_argument
        'modulates_complex(id="n1", members=[], complex="C", direction="up")',  # empty list: missing_argument
        'binds_to(id="n1", actor="A", target="T", primitive="x")',  # unknown_argument warning
        'binds_to(id="n1", protein="T", actor="A")',  # v1 alias
        'modulates_activity(id="n1", target="T", direction="up")',  # v1 name
        'binds_to(id="n0", actor="A", target="T")',  # duplicate id
        'binds_to(id="\\u001fn1", actor="A", target="T")',  # str.strip() and pydantic strip differently
        "binds_to(id=1, actor='A', target='T')",
        'binds_to(id="n1", actor="A", target="T", affinity=1e)',
        'binds_to(id="n1", actor="A", target="T", affinity=' + "1" * 5000 + ")",
    ],
)
def test_anything_that_is_not_clean_goes_to_the_tokenizer(line: str) -> None:
    text = f'<explain>\nset_context(id="n0")\n{line}\n</explain>'
    fast, _, _ = both_paths(text)
    assert fast is None
    parse_text(text)  # and never raises


def test_fast_path_relies_on_aliases_and_v1_names_not_being_fields() -> None:
    # pydantic rejects an alias key or a v1 name, sending the section to the tokenizer, which renames them.
    for name, aliases in ARG_ALIASES.items():
        assert not set(aliases) & set(ARGUMENTS[name]), name
    assert not set(V1_PRIMITIVES) & set(PRIMITIVES)


def test_huge_integer_is_read_as_text_not_raised() -> None:
    p = parse_text(
        '<explain>\nset_context(id="n0")\nbinds_to(id="n1", actor="A", target="T", affinity=' + "9" * 5000 + ")\n"
        'regulates_expression(id="n2", regulator="T", gene_list=["G"], direction="down")\n</explain>\n'
        '<dag>\nedge("n1", "n2")\n</dag>'
    )
    assert p.ok and p.graph.node("n1").affinity == "9" * 5000


# ----- property: for canonical-looking text, fast path == tokenizer (or None) ----------------------------------
_alphabet = st.characters(blacklist_categories=("Cs", "Cc"))
_text = st.one_of(st.text(_alphabet, min_size=1, max_size=8), st.sampled_from(TRICKY))
_odd_text = st.sampled_from(["", " ", " pad ", "\x00", "\x1f", "\x85", "a\tb"])
_json_str = st.one_of(
    _text.map(lambda s: json.dumps(s, ensure_ascii=False).replace("<", "\\u003c")), _text.map(json.dumps)
)
_value = st.one_of(
    _json_str,
    _odd_text.map(json.dumps),
    st.floats(allow_nan=False).map(repr),
    st.integers(-(10**25), 10**25).map(str),
    st.sampled_from(['"up"', '"Down"', '"increase"', '"sideways"', "1", "-0", "-0.0", "1e400", "[]", '"\\u001c"']),
    st.lists(_json_str, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
)
_odd_ids = st.sampled_from(['"n0"', '" n2 "', '""', "7", '"n\\u0085"', '"n\\u001e"'])
_extra_keys = st.sampled_from(["via", "confidence", "protein", "genes", "primitive", "zzz", "direction", "id"])
_json_list = st.lists(_json_str, min_size=1, max_size=3).map(lambda items: "[" + ", ".join(items) + "]")


@st.composite
def canonical_lines(draw: Any) -> str:
    """Nodes in the canonical format, all valid or with one changed line (which may or may not stay valid)."""
    n = draw(st.integers(1, 6))
    changed = draw(st.integers(-n, n - 1))  # which line gets a change; none half of the time
    lines = []
    for k in range(n):
        name = draw(st.sampled_from(list(PRIMITIVES)))
        args = [("id", f'"n{k}"')]
        for a in PRIMITIVES[name].required:
            if a == "direction":
                args.append((a, draw(st.sampled_from(['"up"', '"down"', '"Down"', '"increase"', "-1"]))))
            elif a in ("gene_list", "members"):
                args.append((a, draw(_json_list)))
            else:
                args.append((a, draw(_json_str)))
        if draw(st.booleans()):
            args.append(("via", draw(_json_str)))
        change = draw(st.integers(0, 4)) if k == changed else -1
        if change == 0:
            name = draw(st.sampled_from(["frobnicate", "modulates_activity", "Binds_To"]))
        elif change == 1:
            args[0] = ("id", draw(_odd_ids))
        elif change == 2:
            args.append((draw(_extra_keys), draw(_value)))
        elif change >= 3 and len(args) > 1:
            i = draw(st.integers(1, len(args) - 1))
            args[i] = (args[i][0], draw(_value))
        lines.append(f"{name}({', '.join(f'{key}={val}' for key, val in args)})")
    return "<explain>\n" + "\n".join(lines) + "\n</explain>\n"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(canonical_lines())
def test_fast_explain_equals_the_tokenizer_or_steps_aside(text: str) -> None:
    fast, slow, problems = both_paths(text)
    if fast is not None:
        assert not problems and same_nodes(fast, slow)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["n0", "n1", "n2", "n9", "a b", "x'y"]),
            st.sampled_from(["n0", "n1", "n2", "n9"]),
            st.sampled_from(["causal", "correlative", "Causal", "causes", "odd"]),
        ),
        max_size=6,
    ),
    st.sampled_from(["\n", "", "\n\n"]),
)
def test_fast_dag_equals_the_tokenizer_or_steps_aside(triples: list[tuple[str, str, str]], sep: str) -> None:
    body = "\n" + sep.join(f'edge("{s}", "{t}", relation="{r}")\n' for s, t, r in triples)
    declared = {"n0", "n1", "n2"}
    fast_lines: dict[str, int] = {}
    slow_lines: dict[str, int] = {}
    problems: list[Any] = []
    fast = P._fast_dag(body, 7, declared, fast_lines)
    slow = P._parse_dag(body, 7, declared, problems, slow_lines)
    if fast is not None:
        assert not problems and fast == slow and fast_lines == slow_lines
        assert [e.model_fields_set for e in fast] == [e.model_fields_set for e in slow]


# ----- pinned hashes (values of the first implementation) ----------------------------------------------------------
def test_content_hash_values_are_stable(worked_example: str) -> None:
    assert (
        parse_text(worked_example).graph.content_hash()
        == "3ddf9c5dac663a0f29882b19831189f6aeb950f66256e536f111f80eb1e91c34"
    )
    nodes = [
        SetContext(id="c", cell_type="HeLa", extras={"b": 2, "a": 1}),
        BindsTo(id="d", actor="D", target="T", affinity=0.5),
        ModulatesMoleculeActivity(id="k1", target="K", direction="down"),
        ModulatesMoleculeActivity(id="k2", target="K", direction="down"),  # ties k1 on ancestry
        RegulatesExpression(id="g", regulator="K", gene_list=["B", "A"], direction="up"),
        InducesPhenotype(id="p", source="K", phenotype="arrest"),
    ]
    edges = [
        Edge(src="d", tgt="k1"),
        Edge(src="d", tgt="k2"),
        Edge(src="k1", tgt="g"),
        Edge(src="k2", tgt="g", relation="correlative"),
        Edge(src="k2", tgt="p"),
    ]
    acyclic = "55606db7242aee4f5fdaa2ba05d952a7f6a76f132353f8b74fb35a6a3bf5607c"
    assert ActionGraph(nodes=nodes, edges=edges).content_hash() == acyclic
    assert ActionGraph(nodes=nodes[::-1], edges=edges[::-1]).content_hash() == acyclic
    cyclic = ActionGraph(nodes=nodes, edges=[*edges, Edge(src="g", tgt="d")])
    assert cyclic.content_hash() == "6ed105d46a8fc293e323595ce5dc1101072b0fd3814fa6413f4bba6ab5deef21"
