"""`ActionGraph`: typed nodes + causal/correlative edges, with validation, canonical hashing and text output.

An ActionGraph is a container: it can hold a structurally invalid graph (a cycle, a missing set_context) so that
a parsed model output is never silently repaired; `problems()` says what is wrong and where.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import operator
import zlib
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mechcell.graphs.primitives import ARGUMENTS, PRIMITIVES, Node, Primitive

if TYPE_CHECKING:
    import networkx as nx

    from mechcell.graphs.claims import Claim, PredictedGene

SCHEMA_VERSION = 2

Relation = Literal["causal", "correlative"]

ProblemKind = Literal[
    "syntax_error",
    "missing_section",
    "unknown_primitive",
    "missing_argument",
    "invalid_argument",
    "missing_id",
    "duplicate_id",
    "undeclared_id",
    "self_loop",
    "duplicate_edge",
    "cycle",
    "missing_set_context",
    "non_measurable_last_step",
    "empty_graph",
    "isolated_node",
    "unknown_argument",
]

#: Problems that make a graph structurally invalid; the rest are warnings.
WARNING_KINDS: frozenset[str] = frozenset({"isolated_node", "duplicate_edge", "unknown_argument"})


class GraphProblem(BaseModel):
    """One located problem: what kind, a readable message, the 1-based line in the input text, the node id."""

    model_config = ConfigDict(frozen=True)

    kind: ProblemKind
    message: str
    line: int | None = None
    node_id: str | None = None

    @property
    def severity(self) -> Literal["error", "warning"]:
        return "warning" if self.kind in WARNING_KINDS else "error"


class Edge(BaseModel):
    """A directed step: `src` leads to `tgt`, mechanistically (causal) or only by association (correlative)."""

    model_config = ConfigDict(frozen=True)

    src: str
    tgt: str
    relation: Relation = "causal"


def _quote(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_quote(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, ensure_ascii=False).replace("<", "\\u003c")
    # "<" is escaped so that a value can never be read as a section tag such as </explain>.
    return json.dumps(str(value), ensure_ascii=False).replace("<", "\\u003c")


def node_to_text(node: Primitive) -> str:
    """One `<explain>` line: `primitive(id="n1", arg="...", gene_list=["A", "B"])`."""
    parts = [f"id={_quote(node.id)}"]
    parts += [f"{k}={_quote(v)}" for k, v in node.args().items()]
    return f"{node.primitive}({', '.join(parts)})"  # type: ignore[attr-defined]


_NOT_CONTENT = frozenset({"id", "primitive"})
_ORDER_FREE = frozenset({"gene_list", "members"})


def _content(node: Primitive) -> str:
    """Id-free content of a node, with order-free lists sorted, as a stable string (for hashing)."""
    parts = [node.primitive]  # type: ignore[attr-defined]
    for k, v in node.__dict__.items():
        if v is None or k in _NOT_CONTENT:
            continue
        if type(v) is not str:  # (the common case needs no isinstance checks)
            if isinstance(v, list):
                v = sorted(v) if k in _ORDER_FREE else v
            elif isinstance(v, dict):
                v = sorted(v.items())
        parts.append(f"{k}={v!r}")
    return "\x1f".join(parts)


class ActionGraph(BaseModel):
    """A mechanistic action graph (VCR-Agent schema v2): typed nodes and directed causal/correlative edges."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = SCHEMA_VERSION
    nodes: list[Node] = Field(default_factory=list)
    edges: list[Edge] = Field(default_factory=list)

    # ----- access -------------------------------------------------------------------------------------
    def node(self, node_id: str) -> Primitive:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(f"no node {node_id!r} in graph (have: {[n.id for n in self.nodes]})")

    @property
    def node_map(self) -> dict[str, Primitive]:
        return {n.id: n for n in self.nodes}

    def parents(self, node_id: str, relation: Relation | None = None) -> list[str]:
        return [e.src for e in self.edges if e.tgt == node_id and (relation is None or e.relation == relation)]

    def children(self, node_id: str, relation: Relation | None = None) -> list[str]:
        return [e.tgt for e in self.edges if e.src == node_id and (relation is None or e.relation == relation)]

    # ----- validation ---------------------------------------------------------------------------------
    def problems(self, lines: dict[str, int] | None = None) -> list[GraphProblem]:
        """Structural problems (the rules of methods/action_graph.md), located by node id and line when known."""
        lines = lines or {}
        out: list[GraphProblem] = []
        nodes, edges = self.nodes, self.edges
        if not nodes:
            return [GraphProblem(kind="empty_graph", message="the graph has no nodes")]
        if nodes[0].primitive != "set_context":  # type: ignore[attr-defined]
            out.append(
                GraphProblem(
                    kind="missing_set_context",
                    node_id=nodes[0].id,
                    line=lines.get(nodes[0].id),
                    message="<explain> must start with set_context(...)",
                )
            )
        ids = [n.id for n in nodes]
        seen = set(ids)
        if len(seen) < len(ids):
            seen = set()
            for n in nodes:
                if n.id in seen:
                    out.append(
                        GraphProblem(
                            kind="duplicate_id",
                            node_id=n.id,
                            line=lines.get(f"{n.id}#dup", lines.get(n.id)),
                            message=f"node id {n.id!r} is declared more than once",
                        )
                    )
                seen.add(n.id)
        srcs = [e.src for e in edges]
        tgts = [e.tgt for e in edges]
        if (  # the loop over edges only when one of its problems is there
            not seen.issuperset(srcs)
            or not seen.issuperset(tgts)
            or any(map(operator.eq, srcs, tgts))
            or len(set(zip(srcs, tgts, strict=True))) < len(srcs)
        ):
            out += self._edge_problems(seen, lines)
        cycle = None if _forward(ids, srcs, tgts) else self._find_cycle()
        if cycle:
            out.append(
                GraphProblem(
                    kind="cycle",
                    node_id=cycle[0],
                    line=lines.get(cycle[0]),
                    message="the dag has a cycle: " + " -> ".join([*cycle, cycle[0]]),
                )
            )
        if edges:
            has_out = set(srcs)
            linked = has_out.union(tgts)
            if not linked.issuperset(ids):
                for n in nodes:
                    if n.primitive != "set_context" and n.id not in linked and not n.non_causal:  # type: ignore[attr-defined]
                        out.append(
                            GraphProblem(
                                kind="isolated_node",
                                node_id=n.id,
                                line=lines.get(n.id),
                                message=f"node {n.id} ({n.primitive}) is connected to no edge",  # type: ignore[attr-defined]
                            )
                        )
            nm = dict(zip(ids, nodes, strict=True))  # = self.node_map
            sinks = [nm[i] for i in dict.fromkeys(tgts) if i in nm and i not in has_out]
        else:
            sinks = [n for n in nodes if n.primitive != "set_context"][-1:]  # type: ignore[attr-defined]
        for s in sinks:
            if not s.measurable and not s.non_causal and s.primitive != "set_context":  # type: ignore[attr-defined]
                out.append(
                    GraphProblem(
                        kind="non_measurable_last_step",
                        node_id=s.id,
                        line=lines.get(s.id),
                        message=f"last step {s.id} is {s.primitive}; a mechanism must end in regulates_expression, "  # type: ignore[attr-defined]
                        "regulates_translation, induces_phenotype or alleviates_phenotype",
                    )
                )
        if all(n.primitive == "set_context" for n in nodes):  # type: ignore[attr-defined]
            out.append(GraphProblem(kind="empty_graph", message="the graph has no step besides set_context"))
        return out

    def is_valid(self) -> bool:
        return not any(p.severity == "error" for p in self.problems())

    def _edge_problems(self, seen: set[str], lines: dict[str, int]) -> list[GraphProblem]:
        """Undeclared ends, self-loops and repeated edges, in edge order."""
        out: list[GraphProblem] = []
        edge_seen: set[tuple[str, str]] = set()
        for i, e in enumerate(self.edges):
            loc = lines.get(f"edge{i}")
            for end in (e.src, e.tgt):
                if end not in seen:
                    out.append(
                        GraphProblem(
                            kind="undeclared_id",
                            node_id=end,
                            line=loc,
                            message=f"edge {e.src}->{e.tgt} uses undeclared id {end!r}",
                        )
                    )
            if e.src == e.tgt:
                out.append(
                    GraphProblem(
                        kind="self_loop",
                        node_id=e.src,
                        line=loc,
                        message=f"edge {e.src}->{e.tgt} is a self-loop",
                    )
                )
            if (e.src, e.tgt) in edge_seen:
                out.append(
                    GraphProblem(
                        kind="duplicate_edge",
                        node_id=e.src,
                        line=loc,
                        message=f"edge {e.src}->{e.tgt} appears more than once",
                    )
                )
            edge_seen.add((e.src, e.tgt))
        return out

    def _find_cycle(self) -> list[str] | None:
        """The first cycle a depth-first search meets (starts in edge order, children in edge order), or None."""
        adj: dict[str, list[str]] = {}
        for e in self.edges:
            adj.setdefault(e.src, []).append(e.tgt)
        done: set[str] = set()
        for start in adj:
            if start in done:
                continue
            path = [start]  # the grey nodes, root first
            on_path = {start}
            todo = [iter(adj[start])]
            while todo:
                for w in todo[-1]:
                    if w in on_path:
                        return path[path.index(w) :]
                    if w not in done:
                        path.append(w)
                        on_path.add(w)
                        todo.append(iter(adj.get(w, ())))
                        break
                else:
                    todo.pop()
                    v = path.pop()
                    on_path.discard(v)
                    done.add(v)
        return None

    # ----- canonical form and hash --------------------------------------------------------------------
    def _canonical_order(self) -> tuple[list[str], dict[str, str], list[tuple[str, str, str]]]:
        """Node ids in canonical order, each node's id-free content (see `canonical`) and the edges between nodes."""
        nm = self.node_map
        ids = list(nm)
        links = [(e.src, e.tgt, e.relation) for e in self.edges if e.src in nm and e.tgt in nm]
        preds: dict[str, list[tuple[str, str]]] = {i: [] for i in ids}
        succs: dict[str, list[tuple[str, str]]] = {i: [] for i in ids}
        for src, tgt, rel in links:
            preds[tgt].append((src, rel))
            succs[src].append((tgt, rel))
        # Labels are computed parents first. Any topological order gives the same labels, so declaration order
        # does when every edge points forward (the usual case); with a cycle, declaration order, where a parent
        # not labelled yet counts as "?".
        order = ids
        if not _forward(ids, [src for src, _, _ in links], [tgt for _, tgt, _ in links]):
            order = _topo_any(ids, preds, succs) or ids
        content: dict[str, str] = {}
        up: dict[str, str] = {}
        label: dict[str, str] = {}
        for i in order:
            node = nm[i]
            c = content[i] = _content(node)
            ps = preds[i]
            if len(ps) == 1:  # (what the general case below gives for one parent)
                c += "^" + up.get(ps[0][0], "?") + ps[0][1]
            elif ps:
                c += "^" + ",".join(sorted([up.get(p, "?") + r for p, r in ps]))
            up[i] = _h(c)
            label[i] = ("0" if node.primitive == "set_context" else "1") + up[i]  # type: ignore[attr-defined]
        if len(set(label.values())) < len(label):  # ties on ancestry: tell them apart by their descendants
            down: dict[str, str] = {}
            for i in reversed(order):
                down[i] = _h(content[i] + "v" + ",".join(sorted(down.get(s, "?") + r for s, r in succs[i])))
            label = {i: label[i] + down[i] for i in ids}
        return _topo(ids, preds, succs, label) or sorted(ids, key=lambda i: label[i]), content, links

    def canonical(self) -> ActionGraph:
        """The same graph with ids renamed n0, n1, ... in a canonical topological order.

        Ties are broken by a label that combines each node's content with the labels of its ancestors and of
        its descendants, so two graphs that differ only in id numbering (or declaration order) come out equal.
        set_context nodes come first. Cyclic graphs fall back to declaration order for the cyclic part.
        """
        nm = self.node_map
        canon_order, _, _ = self._canonical_order()
        rename = {old: f"n{k}" for k, old in enumerate(canon_order)}
        nodes = [nm[old].model_copy(update={"id": rename[old]}) for old in canon_order]
        pos = {new: k for k, new in enumerate(rename.values())}
        edges = sorted(
            (
                Edge(src=rename[e.src], tgt=rename[e.tgt], relation=e.relation)
                for e in self.edges
                if e.src in rename and e.tgt in rename
            ),
            key=lambda e: (pos[e.src], pos[e.tgt], e.relation),
        )
        return ActionGraph(nodes=nodes, edges=list(dict.fromkeys(edges)))

    def content_hash(self) -> str:
        """sha256 (hex) of the canonical form: equal for graphs that differ only in id numbering/order."""
        order, content, links = self._canonical_order()
        pos = dict(zip(order, range(len(order)), strict=True))
        edges = sorted({(pos[src], pos[tgt], rel) for src, tgt, rel in links})
        doc = "\x1e".join([content[i] for i in order]) + "\x1d" + repr(edges)
        return hashlib.sha256(doc.encode()).hexdigest()

    # ----- conversions --------------------------------------------------------------------------------
    def to_text(self, think: str | None = None, answer: str | None = None) -> str:
        """The four-tag text format (think, answer, explain, dag) that `parse_text` reads back."""
        explain = "\n".join(node_to_text(n) for n in self.nodes)
        dag = "\n".join(f'edge("{e.src}", "{e.tgt}", relation="{e.relation}")' for e in self.edges)
        return (
            f"<think>{think or ''}</think>\n<answer>{answer or ''}</answer>\n"
            f"<explain>\n{explain}\n</explain>\n<dag>\n{dag}\n</dag>\n"
        )

    def to_networkx(self) -> nx.DiGraph:
        """A networkx DiGraph: node attrs = primitive + arguments, edge attr `relation`."""
        import networkx as nx

        g = nx.DiGraph()
        for n in self.nodes:
            g.add_node(n.id, primitive=n.primitive, **n.args())  # type: ignore[attr-defined]
        for e in self.edges:
            g.add_edge(e.src, e.tgt, relation=e.relation)
        return g

    # ----- claims -------------------------------------------------------------------------------------
    def claims(self) -> list[Claim]:
        """Decompose into checkable claims (see `mechcell.graphs.claims`)."""
        from mechcell.graphs.claims import claims_of

        return claims_of(self)

    def predicted_signature(self) -> list[PredictedGene]:
        """(gene, direction) pairs the graph implies, each with the causal path that implies it."""
        from mechcell.graphs.claims import predicted_signature

        return predicted_signature(self)


def _h(s: str) -> str:
    """A short stable label (only orders ties; the graph hash itself is sha256)."""
    return "%08x%x" % (zlib.crc32(s.encode()), len(s))  # noqa: UP031 (faster than an f-string here)


def _forward(ids: list[str], srcs: list[str], tgts: list[str]) -> bool:
    """True when every edge leads from a node declared earlier to one declared later: the graph has no cycle.

    (The usual case: a model writes its steps in causal order.) C-level checks only; False when an end is unknown.
    """
    pos = dict(zip(ids, range(len(ids)), strict=True))
    try:
        return not any(map(operator.ge, map(pos.__getitem__, srcs), map(pos.__getitem__, tgts)))
    except KeyError:
        return False


def _topo_any(
    ids: list[str], preds: dict[str, list[tuple[str, str]]], succs: dict[str, list[tuple[str, str]]]
) -> list[str] | None:
    """Some topological order (Kahn's algorithm, first in first out), or None when there is a cycle."""
    indeg = {i: len(preds[i]) for i in ids}
    out = [i for i in ids if not indeg[i]]
    for v in out:  # `out` grows while it is walked: it is the queue
        for w, _r in succs[v]:
            indeg[w] -= 1
            if not indeg[w]:
                out.append(w)
    return out if len(out) == len(ids) else None


def _topo(
    ids: list[str],
    preds: dict[str, list[tuple[str, str]]],
    succs: dict[str, list[tuple[str, str]]],
    key: dict[str, str],
) -> list[str] | None:
    """Kahn's algorithm, popping the smallest (key, declaration position) first. None when there is a cycle."""
    entry = {i: (key[i], k, i) for k, i in enumerate(ids)}  # never a tie: ids are never compared
    indeg = {i: len(preds[i]) for i in ids}
    heap = [entry[i] for i in ids if not indeg[i]]
    heapq.heapify(heap)
    out: list[str] = []
    while heap:
        v = heapq.heappop(heap)[2]
        out.append(v)
        for w, _r in succs[v]:
            indeg[w] -= 1
            if not indeg[w]:
                heapq.heappush(heap, entry[w])
    return out if len(out) == len(ids) else None


def primitive_names() -> list[str]:
    """The 20 primitive names of schema v2."""
    return list(PRIMITIVES)


__all__ = ["ARGUMENTS", "ActionGraph", "Edge", "GraphProblem", "Relation", "node_to_text", "primitive_names"]
