"""Lenient parser for the four-tag text format (<think>, <answer>, <explain>, <dag>).

Lenient in what it reads (tag case, markdown fences, single or double quotes, bare words, `key: value`, v1 names,
multi-line calls), strict in what it reports: every problem comes back typed and located by line, nothing raises
on bad text and nothing is dropped silently. Regex-based (no per-character Python loops) so re-validating a
10⁵-trace corpus takes seconds.

Sections in the canonical format that `ActionGraph.to_text` writes (and that a well-behaved model copies) take a
fast path: a strict grammar check, then C-level string operations turn the whole section into JSON that pydantic
reads and validates in one call. Whatever does not fit that grammar, or would give any problem, is read by the
lenient tokenizer instead, so both paths always give the same result (tests/graphs/test_fast_path.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from mechcell.graphs.model import ActionGraph, Edge, GraphProblem
from mechcell.graphs.primitives import ARG_ALIASES, ARGUMENTS, PRIMITIVES, V1_PRIMITIVES, Node


class ParsedExplanation(BaseModel):
    """What `parse_text` read: the free-text sections, the graph (None when no node parsed) and every problem."""

    model_config = ConfigDict(frozen=True)

    think: str | None = None
    answer: str | None = None
    graph: ActionGraph | None = None
    issues: list[GraphProblem] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when a graph was read and it has no error-level problem."""
        return self.graph is not None and not any(p.severity == "error" for p in self.issues)


_TAG = re.compile(r"<\s*(/?)\s*(think|answer|explain|dag)\s*>", re.IGNORECASE)
_FENCE = re.compile(r"^[ \t]*```[\w-]*[ \t]*$", re.MULTILINE)
_DQ = r'"(?:[^"\\\n]|\\.)*"'
_SQ = r"'(?:[^'\\\n]|\\.)*'"
_BARE = r"[^\s,()\[\]{}'\"=][^,()\[\]{}'\"\n]*?(?=\s*(?:[,)]|$))"
_TOKEN = re.compile(
    r"(?P<call>^[ \t]*(?:[-*•][ \t]+|\d+[.)][ \t]+)?(?P<name>[A-Za-z_]\w*)[ \t]*\()"
    rf"|(?:(?P<key>[A-Za-z_]\w*)\s*[=:](?!=)\s*)?(?P<val>{_DQ}|{_SQ}|\[(?:{_DQ}|{_SQ}|[^\]'\"])*\]"
    rf"|\{{(?:{_DQ}|{_SQ}|[^}}'\"])*\}}|{_BARE})\s*,?"
    r"|(?P<close>\))|(?P<ws>[ \t]*\n|[ \t]+)|(?P<bad>.)",
    re.MULTILINE,
)
_ITEM = re.compile(rf"\s*({_DQ}|{_SQ}|[^,'\"]+?)\s*(?:,|$)", re.DOTALL)
_NUM = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_EDGE = re.compile(
    r"edge\s*\(\s*(?:src\s*[=:]\s*)?[\"']?([^\"',()\s]+)[\"']?\s*,\s*(?:tgt\s*[=:]\s*)?[\"']?([^\"',()\s]+)[\"']?"
    r"\s*(?:,\s*(?:relation\s*[=:]\s*)?[\"']?([\w-]*)[\"']?\s*)?\)",
    re.IGNORECASE,
)
_ARROW = re.compile(
    r"^[ \t]*[\"']?(\w+)[\"']?[ \t]*-+>[ \t]*[\"']?(\w+)[\"']?(?:[ \t]*[\[(]?[ \t]*(\w+)[ \t]*[\])]?)?[ \t]*$"
)
_RELATIONS = {
    "causal": "causal",
    "cause": "causal",
    "causes": "causal",
    "mechanistic": "causal",
    "correlative": "correlative",
    "correlation": "correlative",
    "correlational": "correlative",
    "associative": "correlative",
    "association": "correlative",
    "correlates": "correlative",
}
_NODES: TypeAdapter[list[Node]] = TypeAdapter(list[Node])
# The fast path's reader: like json.loads, no string cache kept from one text to the next.
_NODES_JSON: TypeAdapter[list[Node]] = TypeAdapter(list[Node], config=ConfigDict(cache_strings=False))
_EDGES: TypeAdapter[list[Edge]] = TypeAdapter(list[Edge])
_CONST = {"true": True, "false": False, "none": None, "null": None}


def _unquote(tok: str) -> Any:
    tok = tok.strip()
    if not tok:
        return ""
    c = tok[0]
    if c == '"':
        if "\\" not in tok:
            return tok[1:-1]
        try:
            return json.loads(tok)
        except ValueError:
            return tok[1:-1]
    if c == "'":
        return tok[1:-1].replace("\\'", "'").replace('\\"', '"').replace("\\\\", "\\")
    if c == "[":
        inner = tok[1:-1]
        return [_unquote(m.group(1)) for m in _ITEM.finditer(inner) if m.group(1).strip()]
    if c == "{":
        try:
            return json.loads(tok.replace("'", '"'))
        except ValueError:
            return tok
    low = tok.lower()
    if low in _CONST:
        return _CONST[low]
    if _NUM.fullmatch(tok):
        if any(ch in tok for ch in ".eE"):
            return float(tok)
        try:
            return int(tok)
        except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits): keep the text
            return tok
    return tok


# ----- fast path: the canonical format ----------------------------------------------------------------------
# <explain> as `to_text` writes it: after the tag's newline, one call per line, `name(key=VALUE, key=VALUE)`,
# where VALUE is a JSON string, a JSON number or a non-empty list of JSON strings. The grammar is checked on
# the skeleton (the section with every string replaced by \x00), where `(`, `)`, `=`, `, ` and line breaks can
# only be syntax, so plain str.replace turns the skeleton into JSON; the strings are put back untouched.
# <dag> as `to_text` writes it: one `edge("a", "b", relation="causal")` per line.
# (Possessive quantifiers: these grammars never need to backtrack, so the regex engine need not keep the option.)
_STRING = re.compile(r'"([^"\\\n]*+(?:\\.[^"\\\n]*+)*+)"')  # the strings of _DQ, content captured for re.split
_JSON_NUM = r"-?+(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?+(?:[eE][-+]?+[0-9]++)?+"
_FAST_ARG = rf"(?!primitive=)[a-z_][a-z0-9_]*+=(?:\x00|{_JSON_NUM}|\[\x00(?:, ?\x00)*+\])"
_FAST_EXPLAIN = re.compile(rf"\n(?:[a-z_][a-z0-9_]*+\({_FAST_ARG}(?:, {_FAST_ARG})*+\)\n)++")
_FAST_EDGE = re.compile(r'edge\("([^"\',()\s]++)", "([^"\',()\s]++)", relation="(causal|correlative)"\)\n')


def _fast_explain(body: str, line0: int) -> tuple[list[Any], dict[str, int]] | None:
    """Nodes and their lines when the section is canonical and every node is valid; None sends it to the tokenizer.

    Equal to what the tokenizer gives on the same text: there every value is read as JSON too (the same strings,
    numbers and lists: pydantic's JSON reader agrees with json.loads on them), `_normalise` and `_node_dict`
    change nothing (lower-case names and keys; aliases and v1 names are not fields, so pydantic rejects them, as
    it rejects unknown names, unknown arguments, missing or non-string ids), and the cases where the tokenizer
    would report a problem that pydantic accepts are excluded here: empty strings or lists (`_present`),
    duplicate ids and the separators U+001C-U+001F, which str.strip() strips from an id but pydantic does not
    (written \u001c...\u001f; raw control characters, a newline in a string included, are not JSON).
    """
    if "\x00" in body or "\\u001" in body:
        return None
    pieces = _STRING.split(body) if "\\" in body else body.split('"')  # skeleton, string, skeleton, ...
    if not len(pieces) % 2 or "" in pieces[1::2]:
        return None
    skeleton = "\x00".join(pieces[::2])
    if _FAST_EXPLAIN.fullmatch(skeleton) is None:
        return None
    objects = (
        skeleton[1:-2]  # without the first "\n" and the last ")\n"
        .replace(")\n", '},{"primitive":"')
        .replace("(", '","')
        .replace(", \x00", ",\x00")  # inside a list: what is left of ", " separates arguments
        .replace(", ", ',"')
        .replace("=", '":')
    )
    pieces[::2] = ('[{"primitive":"' + objects + "}]").split("\x00")
    try:
        nodes = _NODES_JSON.validate_json('"'.join(pieces))
    except ValueError:  # (pydantic's ValidationError is one) a string that is not JSON, or any invalid node
        return None
    lines = dict(zip([n.id for n in nodes], range(line0 + 1, line0 + 1 + len(nodes)), strict=True))
    return (nodes, lines) if len(lines) == len(nodes) else None  # else a duplicate id


def _fast_dag(body: str, line0: int, declared: set[str], lines: dict[str, int]) -> list[Edge] | None:
    """Edges of a canonical <dag> between declared ids (their lines added to `lines`); None sends it to `_parse_dag`."""
    parts = _FAST_EDGE.split(body)  # "\n", then per edge: src, tgt, relation, the text up to the next edge
    if parts[0] != "\n" or any(parts[4::4]):
        return None
    srcs, tgts = parts[1::4], parts[2::4]
    if not (declared.issuperset(srcs) and declared.issuperset(tgts)):
        return None
    try:
        edges = _EDGES.validate_python(
            [{"src": s, "tgt": t, "relation": r} for s, t, r in zip(srcs, tgts, parts[3::4], strict=True)]
        )
    except ValidationError:
        return None
    lines.update(zip([f"edge{k}" for k in range(len(edges))], range(line0 + 1, line0 + 1 + len(edges)), strict=True))
    return edges


def _sections(text: str) -> tuple[dict[str, tuple[str, int]], list[GraphProblem]]:
    """Section name → (content, 1-based line of its first character). Unclosed tags run to the next tag."""
    tags = list(_TAG.finditer(text))
    out: dict[str, tuple[str, int]] = {}
    problems: list[GraphProblem] = []
    counted = line = 0  # newlines before `counted` (tags come in order: count each stretch of text once)
    for k, m in enumerate(tags):
        if m.group(1):  # a closing tag
            continue
        name = m.group(2).lower()
        start = m.end()
        end = len(text)
        closed = False
        if k + 1 < len(tags):
            m2 = tags[k + 1]
            end = m2.start()
            closed = bool(m2.group(1)) and m2.group(2).lower() == name
        if name in out:
            problems.append(
                GraphProblem(
                    kind="syntax_error",
                    line=text.count("\n", 0, m.start()) + 1,
                    message=f"<{name}> appears more than once; the first is used",
                )
            )
            continue
        if not closed and end != len(text) and name in ("explain", "dag"):
            problems.append(
                GraphProblem(
                    kind="syntax_error",
                    line=text.count("\n", 0, m.start()) + 1,
                    message=f"<{name}> is not closed before the next tag",
                )
            )
        line += text.count("\n", counted, start)
        counted = start
        out[name] = (text[start:end], line + 1)
    return out, problems


def _normalise(name: str, kw: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if not name.islower():
        name = name.lower()
    name = V1_PRIMITIVES.get(name, name)
    aliases = ARG_ALIASES.get(name) or {}
    if not (aliases.keys() & kw.keys()) and all(k.islower() for k in kw):
        return name, kw
    out: dict[str, Any] = {}
    for k, v in kw.items():
        low = k.lower()
        k2 = aliases.get(low, low)
        if k2 not in out or out[k2] in (None, ""):
            out[k2] = v
    return name, out


def _parse_explain(body: str, line0: int, problems: list[GraphProblem]) -> tuple[list[Any], dict[str, int]]:
    """One C-level tokenizer pass over the section; Python only dispatches tokens (the corpus hot path)."""
    calls: list[tuple[str, int, list[Any], dict[str, Any], bool, bool]] = []
    name: str | None = None
    line = line0
    counted = 0
    pos: list[Any] = []
    kw: dict[str, Any] = {}
    bad = closed = False
    head: list[str] = []
    for m in _TOKEN.finditer(body):
        kind = m.lastgroup
        if kind == "call":
            if name is not None:
                calls.append((name, line, pos, kw, bad, closed))
            line += body.count("\n", counted, m.start("name"))
            counted = m.start("name")
            name, pos, kw, bad, closed = m.group("name"), [], {}, False, False
        elif kind == "val":
            if name is None:
                head.append(m.group())
            elif not closed:
                key, raw = m.group("key", "val")
                # Inline fast path for the common case: a double-quoted string without escapes.
                v = raw[1:-1] if raw[0] == '"' and "\\" not in raw else _unquote(raw)
                if key:
                    kw[key] = v
                else:
                    pos.append(v)
        elif kind == "close":
            closed = True
        elif kind == "bad":
            if name is None:
                head.append(m.group())
            elif not closed:
                bad = True
    if name is not None:
        calls.append((name, line, pos, kw, bad, closed))
    if "".join(head).strip():
        first = len(body) - len(body.lstrip())
        problems.append(
            GraphProblem(
                kind="syntax_error",
                line=line0 + body.count("\n", 0, first),
                message=f"text that is not a primitive call: {''.join(head).strip()[:60]!r}",
            )
        )
    nodes: list[dict[str, Any]] = []
    lines: dict[str, int] = {}
    for raw_name, line, pos, kw, bad, closed in calls:
        if not closed:
            problems.append(
                GraphProblem(kind="syntax_error", line=line, message=f"{raw_name}( is missing its closing parenthesis")
            )
        if bad:
            problems.append(
                GraphProblem(kind="syntax_error", line=line, message=f"could not read all arguments of {raw_name}(...)")
            )
        node = _node_dict(raw_name, line, pos, kw, lines, problems)
        if node is not None:
            lines[node["id"]] = line
            nodes.append(node)
    try:
        return _NODES.validate_python(nodes), lines
    except ValidationError:
        pass
    # Some node is invalid: validate one by one to locate every problem.
    valid: list[Any] = []
    for d in nodes:
        try:
            valid.append(PRIMITIVES[d["primitive"]].model_validate(d))
        except ValidationError as exc:
            line = lines.pop(d["id"])
            for err in exc.errors():
                loc = ".".join(str(x) for x in err["loc"])
                problems.append(
                    GraphProblem(
                        kind="invalid_argument",
                        line=line,
                        node_id=d["id"],
                        message=f"{d['primitive']}(id={d['id']!r}) argument {loc}: "
                        f"{err['msg']} (got {err.get('input')!r})",
                    )
                )
    return valid, lines


def _node_dict(
    raw_name: str,
    line: int,
    pos: list[Any],
    kw: dict[str, Any],
    lines: dict[str, int],
    problems: list[GraphProblem],
) -> dict[str, Any] | None:
    """Normalise one call's arguments into a node dict, or report why it cannot be one (never silently)."""
    name, kw = _normalise(raw_name, kw)
    cls = PRIMITIVES.get(name)
    if cls is None:
        problems.append(
            GraphProblem(
                kind="unknown_primitive",
                line=line,
                node_id=_id_of(kw, pos),
                message=f"unknown primitive {raw_name!r} (schema v2 has: {', '.join(PRIMITIVES)})",
            )
        )
        return None
    argnames = ARGUMENTS[name]
    if pos:
        for a, v in zip((a for a in argnames if a not in kw), pos, strict=False):
            kw[a] = v  # positional arguments fill the declared order (id first)
    node_id = kw.get("id")
    if node_id is None or node_id == "":
        problems.append(GraphProblem(kind="missing_id", line=line, message=f"{name}(...) has no id"))
        return None
    node_id = kw["id"] = str(node_id).strip()
    for a in [a for a in kw if a not in argnames]:
        problems.append(
            GraphProblem(
                kind="unknown_argument",
                line=line,
                node_id=node_id,
                message=f"{name} has no argument {a!r}; it was ignored",
            )
        )
        del kw[a]
    missing = [a for a in cls.required if not _present(kw.get(a))]
    if missing:
        for a in missing:
            problems.append(
                GraphProblem(
                    kind="missing_argument",
                    line=line,
                    node_id=node_id,
                    message=f"{name}(id={node_id!r}) lacks required argument {a!r}",
                )
            )
        return None
    if node_id in lines:
        problems.append(
            GraphProblem(
                kind="duplicate_id",
                line=line,
                node_id=node_id,
                message=f"node id {node_id!r} is declared more than once",
            )
        )
        return None
    kw["primitive"] = name
    return {k: v for k, v in kw.items() if v is not None}


def _present(v: Any) -> bool:
    return v is not None and v != "" and v != []


def _id_of(kw: dict[str, Any], pos: list[Any]) -> str | None:
    v = kw.get("id", pos[0] if pos else None)
    return str(v) if v not in (None, "") else None


def _parse_dag(
    body: str, line0: int, declared: set[str], problems: list[GraphProblem], lines: dict[str, int]
) -> list[Edge]:
    edges: list[Edge] = []
    if not _EDGE.sub("", body).strip():  # fast path: nothing but edge(...) calls (one C pass each way)
        line, counted = line0, 0
        for m in _EDGE.finditer(body):
            line += body.count("\n", counted, m.start())
            counted = m.start()
            _add_edge(m.group(1), m.group(2), m.group(3), line, declared, problems, lines, edges)
        return edges
    for k, raw in enumerate(body.split("\n")):
        s = raw.strip()
        if not s or s.startswith(("#", "//")):
            continue
        line = line0 + k
        found = list(_EDGE.finditer(s))
        triples = [(m.group(1), m.group(2), m.group(3)) for m in found]
        if not triples:
            am = _ARROW.match(raw)
            if am:
                triples = [(am.group(1), am.group(2), am.group(3))]
        if not triples:
            problems.append(GraphProblem(kind="syntax_error", line=line, message=f"not an edge(...) line: {s[:60]!r}"))
            continue
        for src, tgt, rel in triples:
            _add_edge(src, tgt, rel, line, declared, problems, lines, edges)
    return edges


def _add_edge(
    src: str,
    tgt: str,
    rel: str | None,
    line: int,
    declared: set[str],
    problems: list[GraphProblem],
    lines: dict[str, int],
    edges: list[Edge],
) -> None:
    relation = "causal"
    if rel:
        r = _RELATIONS.get(rel.lower())
        if r is None:
            problems.append(
                GraphProblem(
                    kind="invalid_argument",
                    line=line,
                    node_id=src,
                    message=f"edge {src}->{tgt}: relation {rel!r} is not causal or correlative; read as causal",
                )
            )
        else:
            relation = r
    if src not in declared or tgt not in declared:
        for x in (src, tgt):
            if x not in declared:
                problems.append(
                    GraphProblem(
                        kind="undeclared_id",
                        line=line,
                        node_id=x,
                        message=f"edge {src}->{tgt} uses undeclared id {x!r}",
                    )
                )
        return
    lines[f"edge{len(edges)}"] = line
    edges.append(Edge.model_construct(src=src, tgt=tgt, relation=relation))  # fields checked above


def parse_text(text: str) -> ParsedExplanation:
    """Read a model's four-tag output into sections, a graph and located problems. Never raises on bad text."""
    if not isinstance(text, str):
        return ParsedExplanation(
            issues=[GraphProblem(kind="syntax_error", message=f"expected text, got {type(text).__name__}")]
        )
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "```" in text:
        text = _FENCE.sub("", text)
    sections, problems = _sections(text)
    think = sections["think"][0].strip() if "think" in sections else None
    answer = sections["answer"][0].strip() if "answer" in sections else None
    if "explain" in sections:
        body, line0 = sections["explain"]
    else:
        problems.append(GraphProblem(kind="missing_section", message="no <explain> section"))
        body, line0 = "", 1
    nodes, lines = _fast_explain(body, line0) or _parse_explain(body, line0, problems)
    if "dag" in sections:
        dbody, dline0 = sections["dag"]
        declared = set(lines)
        edges = _fast_dag(dbody, dline0, declared, lines)
        if edges is None:
            edges = _parse_dag(dbody, dline0, declared, problems, lines)
    else:
        edges = []
        if len(nodes) > 1:
            problems.append(GraphProblem(kind="missing_section", message="no <dag> section: the steps are not linked"))
    if not nodes:
        return ParsedExplanation(
            think=think,
            answer=answer,
            graph=None,
            issues=problems or [GraphProblem(kind="empty_graph", message="no node was read")],
        )
    graph = ActionGraph.model_construct(nodes=nodes, edges=edges)  # every node and edge was validated above
    problems.extend(graph.problems(lines))
    problems.sort(key=lambda p: (p.line is None, p.line or 0))
    return ParsedExplanation(think=think, answer=answer, graph=graph, issues=problems)
