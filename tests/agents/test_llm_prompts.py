"""Prompt templates: packaged, versioned, consistent with the graph language they teach, and safe to render."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from mechcell.agents.llm import format_problem, graph_parse_fn
from mechcell.agents.prompts import Prompt, list_prompts, load_prompt
from mechcell.errors import InputError, NotFoundError
from mechcell.graphs import PRIMITIVES, parse_text

GRAPH_PROMPTS = ("formalise", "one_step", "revise")
ALL_VARS = {
    "condition": "Trametinib 0.1 uM | A549 | plate 3",
    "context": "- binds_to Trametinib MAP2K1 [drugcentral:123]",
    "signature": "DUSP6 -2.1, SPRY4 -1.7",
    "report": "MEK1 is inhibited.",
    "previous": '<explain>\nset_context(id="n0")\n</explain>',
    "feedback": "n3 contradicted [collectri:MAPK1-DUSP6]",
    "problems": "- line 3 [syntax_error]: ...",
    "round": 1,
    "max_rounds": 2,
}


def test_the_packaged_prompts_are_installed_as_package_data() -> None:
    files = {f.name for f in resources.files("mechcell.agents.prompts").iterdir()}
    for name in ("report_v1.md", "formalise_v1.md", "one_step_v1.md", "repair_v1.md", "revise_v1.md"):
        assert name in files
    assert set(list_prompts()) >= {"report", "formalise", "one_step", "repair", "revise"}


@pytest.mark.parametrize("name", ["report", "formalise", "one_step", "repair", "revise"])
def test_each_prompt_loads_with_a_consistent_header_and_renders_completely(name: str) -> None:
    p = load_prompt(name)
    assert p.name == name and re.fullmatch(r"v\d+", p.version)
    assert p.ref == f"{name}/{p.version}@{p.sha[:12]}" and len(p.sha) == 64
    assert load_prompt(f"{name}_{p.version}") == p  # the file-name form loads the same prompt
    assert p.variables and p.description
    text = p.render(**ALL_VARS)
    assert "$" not in text  # every placeholder filled
    for v in p.variables:
        assert str(ALL_VARS[v]) in text
    roles = [m["role"] for m in p.messages(**ALL_VARS)]
    assert roles == (["user"] if name == "repair" else ["system", "user"])


@pytest.mark.parametrize("name", GRAPH_PROMPTS)
def test_graph_prompts_teach_all_twenty_primitives_with_their_required_arguments(name: str) -> None:
    system = load_prompt(name).messages(**ALL_VARS)[0]["content"]
    assert len(PRIMITIVES) == 20
    for prim, cls in PRIMITIVES.items():
        line = next((ln for ln in system.splitlines() if ln.startswith(f"- {prim}(")), None)
        assert line is not None, f"{name}: primitive {prim} is not described"
        signature = line[line.index("(") + 1 : line.index(")")]
        required = [a.strip() for a in signature.split("{")[0].split(",") if a.strip()]
        assert required == ["id", *cls.required], f"{name}: {prim} lists {required}"
    for tag in ("<think>", "<answer>", "<explain>", "<dag>"):
        assert tag in system


@pytest.mark.parametrize("name", GRAPH_PROMPTS)
def test_the_example_in_each_graph_prompt_parses_without_any_problem(name: str) -> None:
    system = load_prompt(name).messages(**ALL_VARS)[0]["content"]
    example = system[system.index("## Example") :]
    parsed = parse_text(example)
    assert parsed.ok and parsed.issues == []
    assert parsed.graph is not None and parsed.graph.nodes[0].primitive == "set_context"
    assert parsed.graph.nodes[-1].primitive == "regulates_expression"


def test_rendering_keeps_braces_dollars_and_graph_text_verbatim() -> None:
    p = load_prompt("formalise")
    tricky = 'gene_list=["A","B"] {"json": {"nested": 1}} $HOME ${report} {condition}'
    text = p.render(condition="c", report=tricky)
    assert tricky in text  # substituted values are never re-scanned


def test_a_missing_variable_is_an_input_error_naming_it() -> None:
    with pytest.raises(InputError, match=r"report/v1 needs variable\(s\) 'signature'"):
        load_prompt("report", "v1").render(condition="c", context="k")
    # Extra values are ignored, so one dict can feed several templates.
    assert load_prompt("repair").render(**ALL_VARS, unused="x")


def test_unknown_prompts_and_versions_are_not_found() -> None:
    with pytest.raises(NotFoundError, match="no prompt named 'poem'.*have: .*formalise"):
        load_prompt("poem")
    with pytest.raises(NotFoundError, match="has no version 'v99'.*have: v1"):
        load_prompt("report", "v99")


def _write(d: Path, name: str, text: str) -> None:
    (d / name).write_text(text, encoding="utf-8")


def test_a_prompt_directory_overrides_and_versions_are_ordered(tmp_path: Path) -> None:
    body = "---\nname: report\nversion: v{n}\ndescription: d\nvariables: condition\n---\nExplain $condition.\n"
    for n in (2, 10):
        _write(tmp_path, f"report_v{n}.md", body.format(n=n))
    assert list_prompts(tmp_path) == {"report": ["v2", "v10"]}
    p = load_prompt("report", directory=tmp_path)
    assert p.version == "v10"  # numeric, not lexical, order
    assert p.render(condition="X") == "Explain X.\n"
    assert p.messages(condition="X") == [{"role": "user", "content": "Explain X."}]
    assert isinstance(p, Prompt) and str(tmp_path) in p.source


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no header\n", "must start with a '---' header"),
        ("---\nname: bad\nversion: v1\n", "header is not closed"),
        ("---\nname: bad\nversion: v1\ncolour: red\n---\nx\n", "line 4: expected 'key: value'"),
        ("---\nname: bad\n---\nx\n", "header lacks 'version'"),
        ("---\nname: bad\nversion: v1\nvariables: a\n---\n$a costs 5$\n", "write \\$\\$ for a literal dollar"),
        ("---\nname: bad\nversion: v1\nvariables: a\n---\n$a and $b\n", r"header variables \['a'\] differ"),
        ("---\nname: other\nversion: v1\n---\nx\n", "header says other/v1, file name says bad/v1"),
    ],
)
def test_malformed_prompt_files_are_input_errors_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    _write(tmp_path, "bad_v1.md", text)
    with pytest.raises(InputError, match=message) as err:
        load_prompt("bad", directory=tmp_path)
    assert "bad_v1.md" in str(err.value)


def test_graph_parse_fn_reports_located_errors_but_not_warnings() -> None:
    good = load_prompt("one_step").messages(**ALL_VARS)[0]["content"]
    good = good[good.index("## Example") :]
    parsed, problems = graph_parse_fn(good)
    assert problems == [] and parsed.ok
    # An extra, unconnected step is a warning: no repair round for it, but it stays in .issues.
    isolated = good.replace(
        "</explain>", 'modulates_pathway_activity(id="n5", pathway="MAPK", direction="down")\n</explain>'
    )
    parsed, problems = graph_parse_fn(isolated)
    assert problems == [] and [i.kind for i in parsed.issues] == ["isolated_node"]
    # An unknown primitive (and the edges that lead to it) are errors, each located by line.
    bad = good.replace("binds_to(", "glues_to(")
    parsed, problems = graph_parse_fn(bad)
    kinds = {re.search(r"\[(\w+)\]", p).group(1) for p in problems}  # type: ignore[union-attr]
    assert {"unknown_primitive", "undeclared_id"} <= kinds
    assert all(p.startswith(("line ", "whole answer")) for p in problems)
    assert [format_problem(i) for i in parsed.issues if i.severity == "error"] == problems
    # Nothing readable at all still yields a problem, never an empty list.
    assert graph_parse_fn("")[1] and graph_parse_fn("<explain></explain>")[1]
