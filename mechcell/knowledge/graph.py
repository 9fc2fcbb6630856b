"""Signed-network path search, bounded in length.

Why not `networkx.all_simple_paths`: on a 30k-edge prior-knowledge network a depth-3 search from a hub visits
hundreds of thousands of dead-end paths. Here a reverse breadth-first search from the targets first marks how far
every node is from them, and the forward search only steps onto nodes that can still reach a target within the
remaining budget — every path it extends is a path it returns (benchmarks/bench_knowledge.py measures the ratio).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

#: sign of one aggregated edge: +1, −1, or 0 when its sources disagree
Adjacency = dict[str, list[tuple[str, int]]]


@dataclass
class SignedAdjacency:
    """Forward and reverse adjacency lists of a signed digraph (node → [(neighbour, sign)])."""

    succ: Adjacency = field(default_factory=dict)
    pred: Adjacency = field(default_factory=dict)

    @classmethod
    def from_edges(cls, edges: Iterable[tuple[str, str, int]]) -> SignedAdjacency:
        succ: Adjacency = {}
        pred: Adjacency = {}
        for u, v, s in edges:
            succ.setdefault(u, []).append((v, s))
            pred.setdefault(v, []).append((u, s))
        return cls(succ, pred)

    def __contains__(self, node: str) -> bool:
        return node in self.succ or node in self.pred


def distances_to(adj: SignedAdjacency, targets: Iterable[str], max_len: int) -> dict[str, int]:
    """Reverse BFS: shortest number of edges from each node to the nearest target (only those ≤ max_len)."""
    dist: dict[str, int] = {}
    queue: deque[str] = deque()
    for t in targets:
        if t not in dist:
            dist[t] = 0
            queue.append(t)
    while queue:
        v = queue.popleft()
        d = dist[v]
        if d >= max_len:
            continue
        for u, _ in adj.pred.get(v, ()):
            if u not in dist:
                dist[u] = d + 1
                queue.append(u)
    return dist


def simple_paths(
    adj: SignedAdjacency, sources: Iterable[str], targets: Iterable[str], max_len: int, limit: int = 10_000
) -> list[tuple[list[str], list[int]]]:
    """Every simple path of ≤ max_len edges from any source to any target (node lists and edge signs), shortest
    first, at most `limit`. A path stops at the first target it reaches."""
    tset = set(targets)
    dist = distances_to(adj, tset, max_len)
    out: list[tuple[list[str], list[int]]] = []
    nodes: list[str] = []
    signs: list[int] = []
    on_path: set[str] = set()

    def dfs(u: str, budget: int) -> None:
        if len(out) >= limit:
            return
        if u in tset:
            out.append((list(nodes), list(signs)))
            return
        for v, sg in adj.succ.get(u, ()):
            dv = dist.get(v)
            if dv is None or dv > budget - 1 or v in on_path:
                continue
            nodes.append(v)
            signs.append(sg)
            on_path.add(v)
            dfs(v, budget - 1)
            on_path.discard(v)
            nodes.pop()
            signs.pop()

    for s in dict.fromkeys(sources):
        if s in dist:
            nodes[:], signs[:] = [s], []
            on_path.clear()
            on_path.add(s)
            dfs(s, max_len)
    out.sort(key=lambda p: (len(p[1]), p[0]))
    return out


def shortest_path_dag(
    adj: SignedAdjacency, source: str, max_len: int, blocked: frozenset[str] = frozenset()
) -> tuple[dict[str, int], dict[str, list[tuple[str, int]]]]:
    """Forward BFS from one source up to max_len: distance of every reached node and, for each, its predecessors
    on shortest paths (with the edge sign). Nodes in `blocked` are reached but never expanded."""
    dist = {source: 0}
    preds: dict[str, list[tuple[str, int]]] = {source: []}
    frontier = [source]
    for d in range(1, max_len + 1):
        nxt: list[str] = []
        for u in frontier:
            if u in blocked and u != source:
                continue
            for v, s in adj.succ.get(u, ()):
                dv = dist.get(v)
                if dv is None:
                    dist[v] = d
                    preds[v] = [(u, s)]
                    nxt.append(v)
                elif dv == d:
                    preds[v].append((u, s))
        frontier = nxt
        if not frontier:
            break
    return dist, preds


def paths_from_dag(
    preds: dict[str, list[tuple[str, int]]], source: str, end: str, k: int
) -> list[tuple[list[str], list[int]]]:
    """Up to k shortest paths source → end by backtracking the predecessor DAG (deterministic order)."""
    out: list[tuple[list[str], list[int]]] = []
    rev_nodes, rev_signs = [end], []

    def back(v: str) -> None:
        if len(out) >= k:
            return
        if v == source:
            out.append((rev_nodes[::-1], rev_signs[::-1]))
            return
        for u, s in sorted(preds.get(v, ()), key=lambda x: (x[0], -x[1])):
            rev_nodes.append(u)
            rev_signs.append(s)
            back(u)
            rev_nodes.pop()
            rev_signs.pop()
            if len(out) >= k:
                return

    back(end)
    return out


def path_sign(signs: list[int]) -> int:
    s = 1
    for x in signs:
        s *= x
    return s
