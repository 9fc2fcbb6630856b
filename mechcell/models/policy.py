"""The graph-building proposer policy: a small torch model that writes an action graph step by step over a
condition's retrieved knowledge subgraph, and `PolicyProposer`, which plugs it into the agents' proposer protocol.

    proposer = make_proposer("mechcell.models.policy:policy_proposer", checkpoint="policy_out/")

Environment (`PolicyEnv`, one per condition). The action space is the retriever's signed paths, as the local
proposer reads them (`LocalProposer.chains`: drug target → signalling steps → TF or pathway, with the genes the
signature moved as predicted). An action is one *chain with a gene-list choice*:

- phase 1 — `(chain, gene option)`: add the chain's primitives (binds_to, modulates_molecule_activity …,
  modulates_pathway_activity) and edges, plus regulates_expression steps from the end's regulon / footprint with
  one of the gene options: `supported` (the genes the data moved as predicted, ≤ max_genes), `top` (the strongest
  `top_genes` of them per direction), `kb` (the KB's predicted genes regardless of the data, ≤ max_genes);
- phase 2 — `(chain, route)`: add only the chain's path into an end that already has its genes (a co-target's
  route, i.e. new edges into existing steps);
- `stop`. Stopping before any action is *abstaining* (no mechanism), as the local proposer does for an inactive drug.

The pointer mechanism: each candidate action is scored by an MLP over its KB and signature features (retriever
enrichment z of the end, share of the end's genes the data support, mean signed observed score of the option's
genes, path length, end type, whether the target looks engaged, hashed embeddings of the target and the end
entity) and state features (how much of it is already in the graph); a second head scores stop. The policy is a
softmax over the valid actions and stop.

Canonical order (why P_B = 1). Every action adds a set of *items* (node keys and edges; a gene node's item names
its gene list). Actions are indexed phase 1 then phase 2, chains in lexicographic order of their node sequence, and
a trajectory must take strictly increasing indices, each adding at least one new item; a gene option is valid only
while its end has no gene steps, a route only once it has. Finally an action is masked if it would make an
already *skipped* action's items a subset of the graph (its missing items ⊆ the new action's items). Under these
rules a graph's trajectory is the greedy pass "take each valid action, in index order, whose items are all in the
graph" (`PolicyEnv.trajectory_of`), so every graph has exactly one trajectory and log P_B = 0: f-TB's Δ is
log P_F(τ) − log R(x) with nothing else. Actions that would close a cycle are masked too, so every graph is valid.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from mechcell.errors import InputError
from mechcell.graphs import ActionGraph, Edge, main_entity
from mechcell.graphs.primitives import (
    BindsTo,
    ModulatesMoleculeActivity,
    ModulatesPathwayActivity,
    RegulatesExpression,
    SetContext,
)

if TYPE_CHECKING:
    from mechcell.agents.proposers import Feedback, Proposal, ProposalContext
    from mechcell.config import Settings

__all__ = [
    "DECODINGS",
    "GENE_OPTIONS",
    "Decoded",
    "PolicyAction",
    "PolicyConfig",
    "PolicyEnv",
    "PolicyModel",
    "PolicyProposer",
    "Trajectory",
    "consensus",
    "load_policy",
    "policy_proposer",
    "save_policy",
]

GENE_OPTIONS: tuple[str, ...] = ("supported", "top", "kb")
DECODINGS: tuple[str, ...] = ("exact", "beam", "mbr")
OPTION_NAMES: tuple[str, ...] = (*GENE_OPTIONS, "route")
N_STATIC = 17
N_DYNAMIC = 4
N_GLOBAL = 9
CHECKPOINT_FILE = "policy.json"
WEIGHTS_FILE = "weights.pt"

NodeKey = tuple  # ("bind", T) | ("act", name, sign) | ("path", name, sign) | ("expr", end_key, dir, genes)


class PolicyConfig(BaseModel):
    """The policy's architecture and action space; saved with every checkpoint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = 2  # 2: the global state feature "share of the explainable genes claimed"
    hidden: int = Field(64, ge=4)
    emb_buckets: int = Field(512, ge=8, description="hash buckets of the entity embeddings (target, end)")
    emb_dim: int = Field(8, ge=1)
    max_genes: int = Field(25, ge=1, description="genes per regulates_expression step")
    top_genes: int = Field(5, ge=1, description="genes per direction of the `top` option")
    max_chains: int = Field(48, ge=1, description="chains kept per condition (best local-proposer score first)")
    max_steps: int = Field(6, ge=1, description="actions before stop is forced")
    allow_abstain: bool = Field(True, description="stop before any action = propose no mechanism")
    seed: int = 0


# ---------------------------------------------------------------------------------------------- environment


@dataclass(frozen=True)
class PolicyAction:
    """One candidate action: a chain with a gene option (phase 1) or its route only (phase 2)."""

    chain: int
    option: str
    label: str
    nodes: tuple[NodeKey, ...]  # in path order, gene nodes last
    edges: tuple[tuple[NodeKey, NodeKey], ...]
    end_key: NodeKey
    genes: tuple[tuple[str, ...], tuple[str, ...]]  # (up, down) of the option (empty for a route)
    entities: frozenset[str]


@dataclass
class _State:
    chosen: list[int] = field(default_factory=list)
    items: int = 0  # bitmask of items present
    skipped_missing: list[int] = field(default_factory=list)  # missing-item masks of skipped actions (≠ 0)
    ends_with_genes: set[NodeKey] = field(default_factory=set)
    succ: dict[NodeKey, set[NodeKey]] = field(default_factory=dict)
    genes: set[str] = field(default_factory=set)
    last: int = -1
    stopped: bool = False


@dataclass(frozen=True)
class Trajectory:
    """A complete trajectory in one condition's environment: action indices, stop excluded (empty = abstain)."""

    key: str
    actions: tuple[int, ...]

    @property
    def abstain(self) -> bool:
        return not self.actions


@dataclass
class StepRecord:
    """What the network sees at one step: the valid actions' features and which choice was made (0 = stop)."""

    valid: np.ndarray  # (V,) action indices
    dynamic: np.ndarray  # (V, N_DYNAMIC)
    glob: np.ndarray  # (N_GLOBAL,)
    stop_ok: bool
    choice: int  # 0 = stop, j + 1 = valid[j]


def _bucket(name: str, buckets: int) -> int:
    return zlib.crc32(name.upper().encode()) % buckets


class PolicyEnv:
    """One condition's action space, its canonical-order masks and the graph a trajectory builds."""

    def __init__(self, ctx: ProposalContext, config: PolicyConfig, *, exclude: frozenset[str] = frozenset()) -> None:
        from mechcell.agents.proposers import LocalProposer, _SignatureView

        self.config = config
        self.key = ctx.condition.key
        self.drug = ctx.condition.perturbation
        drivers = "; ".join(f"{d.gene} {d.variant or ''}".strip() for d in ctx.retrieved.drivers[:6]) or None
        self.cell, self.genotype = ctx.cell_line, drivers
        lp = LocalProposer(max_genes=config.max_genes)
        chains = lp.chains(ctx, exclude)[: config.max_chains]  # best local score first, then ...
        chains = sorted(chains, key=lambda c: (c.nodes, c.end_type))  # ... the canonical (lexicographic) order
        self.chains = chains
        # the genes some chain's end predicts and the data moved that way: what a graph here could explain
        self.explainable: frozenset[str] = frozenset(g for c in chains for g in (*c.up, *c.down))
        sv = _SignatureView(ctx.signature, ctx.alpha) if ctx.signature is not None else None
        engaged: dict[str, bool | None] = {}
        if sv is not None:
            for t in ctx.retrieved.targets:
                engaged[t.gene] = lp.engaged(ctx, sv, t.gene, t.sign)
        self.item_bit: dict[Any, int] = {}
        phase1: list[PolicyAction] = []
        phase2: list[PolicyAction] = []
        static1: list[list[float]] = []
        static2: list[list[float]] = []
        for ci, ch in enumerate(chains):
            end_sign = ch.signs[-1]
            if ch.end_type == "tf":
                predicted = {g: end_sign * s for g, s in ctx.kb.regulon(ch.end).items() if s}
            else:
                predicted = {g: end_sign * (1 if w > 0 else -1) for g, w in ctx.kb.footprint(ch.end).items() if w}
            path_nodes, path_edges, end_key = self._path(ch)
            ents = frozenset([*ch.nodes, ch.target])
            options: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
            mg, tg = config.max_genes, config.top_genes
            options["supported"] = (tuple(ch.up[:mg]), tuple(ch.down[:mg]))
            options["top"] = (tuple(ch.up[:tg]), tuple(ch.down[:tg]))
            kb_order = sorted(predicted, key=lambda g: (-_signed_score(sv, g, predicted[g]), g))
            kb_up = tuple(g for g in kb_order if predicted[g] > 0)[:mg]
            kb_down = tuple(g for g in kb_order if predicted[g] < 0)[:mg]
            options["kb"] = (kb_up, kb_down)
            seen: set[tuple] = set()
            for opt in GENE_OPTIONS:
                up, down = options[opt]
                if not up and not down or (up, down) in seen:
                    continue
                seen.add((up, down))
                nodes = list(path_nodes)
                edges = list(path_edges)
                for genes, d in ((up, "up"), (down, "down")):
                    if genes:
                        ek = ("expr", end_key, d, genes)
                        nodes.append(ek)
                        edges.append((end_key, ek))
                phase1.append(
                    PolicyAction(ci, opt, f"{ch.label} [{opt}]", tuple(nodes), tuple(edges), end_key, (up, down), ents)
                )
                static1.append(self._static(ch, opt, up, down, predicted, sv, engaged))
            phase2.append(
                PolicyAction(ci, "route", f"{ch.label} [route]", path_nodes, path_edges, end_key, ((), ()), ents)
            )
            sup_up, sup_down = options["supported"]
            static2.append(self._static(ch, "route", sup_up, sup_down, predicted, sv, engaged))
        self.actions: list[PolicyAction] = phase1 + phase2
        self.masks: list[int] = []
        for a in self.actions:
            m = 0
            for item in (*a.nodes, *a.edges):
                m |= 1 << self.item_bit.setdefault(item, len(self.item_bit))
            self.masks.append(m)
        self.static = np.asarray(static1 + static2, dtype=np.float32).reshape(len(self.actions), N_STATIC)
        self.entity_ids = np.asarray(
            [
                [_bucket(chains[a.chain].target, config.emb_buckets), _bucket(chains[a.chain].end, config.emb_buckets)]
                for a in self.actions
            ],
            dtype=np.int64,
        ).reshape(len(self.actions), 2)
        best = max((c.agreement for c in chains), default=0.0)
        self.cond_features = np.asarray(
            [
                np.clip(best / 5.0, -3, 3),
                max((c.support for c in chains), default=0.0),
                math.log1p(len(chains)) / 3.0,
                float(sv is not None),
            ],
            dtype=np.float32,
        )
        self._records: dict[tuple[int, ...], list[StepRecord]] = {}

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _path(ch: Any) -> tuple[tuple[NodeKey, ...], tuple[tuple[NodeKey, NodeKey], ...], NodeKey]:
        nodes: list[NodeKey] = [("bind", ch.target)]
        last = len(ch.nodes) - 1
        for j, (name, sign) in enumerate(zip(ch.nodes, ch.signs, strict=True)):
            kind = "path" if j == last and ch.end_type == "pathway" else "act"
            nodes.append((kind, name, int(sign)))
        edges = tuple(zip(nodes[:-1], nodes[1:], strict=True))
        return tuple(nodes), edges, nodes[-1]

    def _static(
        self,
        ch: Any,
        option: str,
        up: Sequence[str],
        down: Sequence[str],
        predicted: dict[str, int],
        sv: Any,
        engaged: dict[str, bool | None],
    ) -> list[float]:
        genes = [*up, *down]
        scores = [_signed_score(sv, g, predicted.get(g, 1 if g in up else -1)) for g in genes]
        hits = set(ch.up) | set(ch.down)
        eng = engaged.get(ch.target)
        onehot = [float(option == o) for o in OPTION_NAMES]
        return [
            float(np.clip(ch.agreement / 5.0, -3, 3)),
            float(ch.support),
            math.log1p(ch.n_genes) / 3.0,
            math.log1p(len(genes)) / 3.0,
            len(ch.nodes) / 4.0,
            float(ch.end_type == "tf"),
            float(eng is True),
            float(eng is False),
            float(ch.action),
            *onehot,
            float(np.mean(scores)) / 3.0 if scores else 0.0,
            (sum(g in hits for g in genes) / len(genes)) if genes else 0.0,
            float(np.clip(ch.score / 10.0, -3, 3)),
            float(len(predicted) > 0),
        ]

    @property
    def n_actions(self) -> int:
        return len(self.actions)

    # ------------------------------------------------------------------ the masks
    def initial(self) -> _State:
        return _State()

    def _creates_cycle(self, st: _State, a: PolicyAction) -> bool:
        succ = {k: set(v) for k, v in st.succ.items()}
        for s, t in a.edges:
            succ.setdefault(s, set()).add(t)
        # a cycle must pass through a new edge's source: DFS from each new target looking for its source
        for s, t in a.edges:
            todo, seen = [t], {t}
            while todo:
                u = todo.pop()
                if u == s:
                    return True
                for w in succ.get(u, ()):
                    if w not in seen:
                        seen.add(w)
                        todo.append(w)
        return False

    def valid_actions(self, st: _State, banned: frozenset[int] = frozenset()) -> list[int]:
        """Action indices valid in state `st` (canonical order, novelty, phase rules, skipped-subset, acyclic)."""
        if st.stopped or len(st.chosen) >= self.config.max_steps:
            return []
        out: list[int] = []
        skipped = list(st.skipped_missing)
        for b in range(st.last + 1, self.n_actions):
            a = self.actions[b]
            mb = self.masks[b]
            ok = (
                b not in banned
                and mb & ~st.items != 0
                and ((a.option == "route") == (a.end_key in st.ends_with_genes))
                and all(m & ~mb for m in skipped)
                and not self._creates_cycle(st, a)
            )
            if ok:
                out.append(b)
            missing = mb & ~st.items
            if missing:
                skipped.append(missing)  # b is skipped by every later choice
        return out

    def stop_ok(self, st: _State) -> bool:
        return bool(st.chosen) or self.config.allow_abstain

    def step(self, st: _State, b: int | None) -> _State:
        """The state after action b (None = stop)."""
        if b is None:
            return _State(st.chosen, st.items, st.skipped_missing, st.ends_with_genes, st.succ, st.genes, st.last, True)
        a = self.actions[b]
        skipped = list(st.skipped_missing)
        for j in range(st.last + 1, b):
            missing = self.masks[j] & ~st.items
            if missing:
                skipped.append(missing)
        items = st.items | self.masks[b]
        skipped = [m & ~items for m in skipped]
        succ = {k: set(v) for k, v in st.succ.items()}
        for s, t in a.edges:
            succ.setdefault(s, set()).add(t)
        ends = set(st.ends_with_genes)
        if a.option != "route":
            ends.add(a.end_key)
        return _State(
            [*st.chosen, b], items, skipped, ends, succ, st.genes | set(a.genes[0]) | set(a.genes[1]), b, False
        )

    # ------------------------------------------------------------------ features
    def dynamic_features(self, st: _State, valid: Sequence[int]) -> np.ndarray:
        out = np.zeros((len(valid), N_DYNAMIC), dtype=np.float32)
        bound = {k[1] for k in self._present_nodes(st) if k[0] == "bind"}
        for r, b in enumerate(valid):
            a = self.actions[b]
            n_items = bin(self.masks[b]).count("1")
            out[r, 0] = bin(self.masks[b] & st.items).count("1") / max(n_items, 1)
            out[r, 1] = float(self.chains[a.chain].target in bound)
            genes = [*a.genes[0], *a.genes[1]]
            out[r, 2] = (sum(g in st.genes for g in genes) / len(genes)) if genes else 1.0
            out[r, 3] = len(st.chosen) / self.config.max_steps
        return out

    def global_features(self, st: _State, valid: Sequence[int]) -> np.ndarray:
        rest = self.static[list(valid)] if valid else np.zeros((0, N_STATIC), np.float32)
        chosen = self.static[st.chosen] if st.chosen else np.zeros((0, N_STATIC), np.float32)
        return np.asarray(
            [
                float(not st.chosen),
                len(st.chosen) / self.config.max_steps,
                math.log1p(len(st.genes)) / 4.0,
                float(rest[:, 0].max()) if len(rest) else -1.0,
                float(rest[:, 1].max()) if len(rest) else 0.0,
                float(chosen[:, 0].mean()) if len(chosen) else 0.0,
                float(self.cond_features[0]),
                float(self.cond_features[1]),
                self.explained_share(st.genes),
            ],
            dtype=np.float32,
        )

    def explained_share(self, genes: set[str] | frozenset[str]) -> float:
        """Share of the explainable genes (moved as some chain predicts) among `genes`: lets the stop head see how
        much of the signature the graph so far leaves unexplained."""
        return len(self.explainable & set(genes)) / len(self.explainable) if self.explainable else 0.0

    def _present_nodes(self, st: _State) -> set[NodeKey]:
        out: set[NodeKey] = set()
        for b in st.chosen:
            out.update(self.actions[b].nodes)
        return out

    def records(self, traj: Trajectory) -> list[StepRecord]:
        """The step records of a trajectory (cached: they depend only on the environment and the actions)."""
        rec = self._records.get(traj.actions)
        if rec is not None:
            return rec
        st = self.initial()
        rec = []
        for b in [*traj.actions, None]:
            valid = self.valid_actions(st)
            stop_ok = self.stop_ok(st)
            if b is None:
                if not stop_ok:
                    raise InputError(f"{self.key}: stop is not allowed at step {len(st.chosen)} of {traj.actions}")
                choice = 0
            else:
                if b not in valid:
                    raise InputError(f"{self.key}: action {b} is not valid after {tuple(st.chosen)}")
                choice = valid.index(b) + 1
            rec.append(
                StepRecord(
                    valid=np.asarray(valid, dtype=np.int64),
                    dynamic=self.dynamic_features(st, valid),
                    glob=self.global_features(st, valid),
                    stop_ok=stop_ok,
                    choice=choice,
                )
            )
            if b is not None:
                st = self.step(st, b)
        self._records[traj.actions] = rec
        return rec

    # ------------------------------------------------------------------ graphs
    def graph(self, actions: Sequence[int]) -> ActionGraph | None:
        """The ActionGraph a trajectory builds (None for an abstention)."""
        if not actions:
            return None
        ids: dict[NodeKey, str] = {}
        nodes: list[Any] = [SetContext(id="n0", cell_type=self.cell, genotype=self.genotype)]
        edges: list[Edge] = []
        seen_edges: set[tuple[str, str]] = set()
        for b in actions:
            a = self.actions[b]
            for k in a.nodes:
                if k not in ids:
                    nid = ids[k] = f"n{len(nodes)}"
                    nodes.append(self._node(k, nid))
            for s, t in a.edges:
                e = (ids[s], ids[t])
                if e not in seen_edges:
                    seen_edges.add(e)
                    edges.append(Edge(src=e[0], tgt=e[1], relation="causal"))
        return ActionGraph(nodes=nodes, edges=edges)

    def _node(self, k: NodeKey, nid: str) -> Any:
        kind = k[0]
        if kind == "bind":
            return BindsTo(id=nid, actor=self.drug, target=k[1])
        if kind == "act":
            return ModulatesMoleculeActivity(id=nid, target=k[1], direction="up" if k[2] > 0 else "down")
        if kind == "path":
            return ModulatesPathwayActivity(id=nid, pathway=k[1], direction="up" if k[2] > 0 else "down")
        end = k[1]
        return RegulatesExpression(id=nid, regulator=end[1], gene_list=list(k[3]), direction=k[2])

    def items_of_graph(self, g: ActionGraph) -> tuple[set[Any], bool]:
        """The graph's items in this environment's item space, and whether every node and edge had one."""
        nm = g.node_map
        key: dict[str, NodeKey] = {}
        exact = True
        for n in g.nodes:
            p = n.primitive
            if p == "set_context":
                continue
            if p == "binds_to" and n.actor == self.drug:
                key[n.id] = ("bind", n.target)
            elif p == "modulates_molecule_activity":
                key[n.id] = ("act", n.target, 1 if n.direction == "up" else -1)
            elif p == "modulates_pathway_activity":
                key[n.id] = ("path", n.pathway, 1 if n.direction == "up" else -1)
        for n in g.nodes:
            if n.primitive == "regulates_expression":
                parents = [key.get(q) for q in g.parents(n.id)]
                if len(parents) == 1 and parents[0] is not None:
                    key[n.id] = ("expr", parents[0], n.direction, tuple(n.gene_list))
        items: set[Any] = set(key.values())
        for n in g.nodes:
            if n.primitive != "set_context" and n.id not in key:
                exact = False
        for e in g.edges:
            if e.src in key and e.tgt in key:
                items.add((key[e.src], key[e.tgt]))
            elif nm.get(e.src) is not None and nm[e.src].primitive != "set_context":
                exact = False
        return items, exact

    def trajectory_of(self, g: ActionGraph | None, *, project: bool = False) -> tuple[Trajectory, bool]:
        """The canonical trajectory of a graph (and whether it rebuilds the graph exactly).

        Exact graphs (those this environment can build) get their unique trajectory: the greedy pass over actions
        in index order taking every valid one whose items are all in the graph. With `project=True`, a graph
        outside the action space (e.g. a local-proposer graph whose gene lists were explained away or revised) is
        first projected: each of its gene steps is replaced by the gene option of a chain into the same end with
        the largest Jaccard overlap; then the greedy pass runs.
        """
        if g is None:
            return Trajectory(self.key, ()), True
        items, exact = self.items_of_graph(g)
        target = items
        if project:
            target = self._project(items)
        tmask = 0
        for it in target:
            bit = self.item_bit.get(it)
            if bit is not None:
                tmask |= 1 << bit
        st = self.initial()
        while True:
            nxt = next((b for b in self.valid_actions(st) if self.masks[b] & ~tmask == 0), None)
            if nxt is None:
                break
            st = self.step(st, nxt)
        traj = Trajectory(self.key, tuple(st.chosen))
        built = self.graph(traj.actions)
        same = built is not None and built.content_hash() == g.content_hash()
        return traj, same and exact

    def _project(self, items: set[Any]) -> set[Any]:
        structural = {it for it in items if not (isinstance(it, tuple) and it and it[0] == "expr")}
        structural = {it for it in structural if not (len(it) == 2 and isinstance(it[1], tuple) and it[1][0] == "expr")}
        demo_genes: dict[NodeKey, dict[str, set[str]]] = {}
        for it in items:
            if isinstance(it, tuple) and it and it[0] == "expr":
                demo_genes.setdefault(it[1], {}).setdefault(it[2], set()).update(it[3])
        out = set(structural)
        for end_key, by_dir in demo_genes.items():
            best, best_score = None, 0.0
            for a in self.actions:
                if a.option == "route" or a.end_key != end_key:
                    continue
                score = 0.0
                for d, genes in (("up", a.genes[0]), ("down", a.genes[1])):
                    demo = by_dir.get(d, set())
                    union = demo | set(genes)
                    score += len(demo & set(genes)) / len(union) if union else 0.0
                if score > best_score:
                    best, best_score = a, score
            if best is not None:
                out.update(it for it in best.nodes if it[0] == "expr")
                out.update(e for e in best.edges if e[1][0] == "expr")
        return out


def _signed_score(sv: Any, gene: str, sign: int) -> float:
    """Predicted sign × observed log2FC in units of the expression verifier's effect floor, clipped to ±3."""
    if sv is None or gene not in sv.lfc:
        return 0.0
    floor = sv.floor if sv.floor > 0 else 1.0
    return float(np.clip(sign * sv.lfc[gene] / floor, -3.0, 3.0))


# ---------------------------------------------------------------------------------------------- the network


class PolicyModel(nn.Module):
    """Scores every valid action (the pointer) and stop; log P_F of whole trajectories in one batched pass."""

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.config = config
        torch.manual_seed(config.seed)
        h = config.hidden
        self.emb = nn.Embedding(config.emb_buckets, config.emb_dim)
        nn.init.normal_(self.emb.weight, std=0.1)
        n_in = N_STATIC + N_DYNAMIC + N_GLOBAL + 2 * config.emb_dim
        self.action_net = nn.Sequential(nn.Linear(n_in, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, 1))
        self.stop_net = nn.Sequential(nn.Linear(N_GLOBAL, h), nn.SiLU(), nn.Linear(h, 1))

    def _logits(self, env: PolicyEnv, valid: np.ndarray, dynamic: np.ndarray, glob: np.ndarray) -> Tensor:
        """(V,) action logits for one step."""
        if not len(valid):
            return torch.zeros(0)
        x = torch.from_numpy(np.concatenate([env.static[valid], dynamic, np.repeat(glob[None], len(valid), 0)], 1))
        e = self.emb(torch.from_numpy(env.entity_ids[valid])).flatten(1)
        return self.action_net(torch.cat([x, e], 1)).squeeze(-1)

    def step_log_probs(
        self, env: PolicyEnv, st: _State, banned: frozenset[int] = frozenset()
    ) -> tuple[list[int], Tensor]:
        """(valid actions, log-probs over [stop, *valid]) in state `st`; stop gets −inf when not allowed."""
        valid = env.valid_actions(st, banned)
        logits = self._logits(
            env, np.asarray(valid, np.int64), env.dynamic_features(st, valid), env.global_features(st, valid)
        )
        stop = self.stop_net(torch.from_numpy(env.global_features(st, valid))[None]).reshape(1)
        if not env.stop_ok(st) and valid:
            stop = torch.full((1,), -math.inf)
        return valid, torch.log_softmax(torch.cat([stop, logits]), 0)

    def log_pf(self, items: Sequence[tuple[PolicyEnv, Trajectory]]) -> Tensor:
        """Σ_t log P_F(a_t | s_t) per trajectory (float64, with gradient), all steps in one forward pass."""
        rows_x, rows_e, row_step, row_pos = [], [], [], []
        globs, stop_ok, choice, traj_of_step = [], [], [], []
        step = 0
        width = 1
        for ti, (env, traj) in enumerate(items):
            for r in env.records(traj):
                v = len(r.valid)
                if v:
                    rows_x.append(np.concatenate([env.static[r.valid], r.dynamic, np.repeat(r.glob[None], v, 0)], 1))
                    rows_e.append(env.entity_ids[r.valid])
                    row_step.append(np.full(v, step))
                    row_pos.append(np.arange(1, v + 1))
                width = max(width, v + 1)
                globs.append(r.glob)
                stop_ok.append(r.stop_ok or v == 0)
                choice.append(r.choice)
                traj_of_step.append(ti)
                step += 1
        logits = torch.full((step, width), -math.inf)
        stop = self.stop_net(torch.from_numpy(np.stack(globs))).squeeze(-1)
        stop = torch.where(torch.tensor(stop_ok), stop, torch.full_like(stop, -math.inf))
        logits = logits.index_put((torch.arange(step), torch.zeros(step, dtype=torch.long)), stop)
        if rows_x:
            x = torch.from_numpy(np.concatenate(rows_x))
            e = self.emb(torch.from_numpy(np.concatenate(rows_e))).flatten(1)
            a = self.action_net(torch.cat([x, e], 1)).squeeze(-1)
            idx = (torch.from_numpy(np.concatenate(row_step)), torch.from_numpy(np.concatenate(row_pos)))
            logits = logits.index_put(idx, a)
        logp = torch.log_softmax(logits, 1)
        picked = logp[torch.arange(step), torch.tensor(choice)].to(torch.float64)
        out = torch.zeros(len(items), dtype=torch.float64)
        return out.index_add(0, torch.tensor(traj_of_step), picked)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        env: PolicyEnv,
        *,
        temperature: float = 1.0,
        epsilon: float = 0.0,
        generator: torch.Generator | None = None,
        banned: frozenset[int] = frozenset(),
    ) -> Trajectory:
        """One trajectory from P_F (tempered, ε-uniform over valid choices for exploration)."""
        st = env.initial()
        while True:
            valid, logp = self.step_log_probs(env, st, banned)
            if not valid:
                break
            if temperature <= 0:
                j = int(torch.argmax(logp))
            else:
                p = torch.softmax(logp / temperature, 0) if temperature != 1.0 else logp.exp()
                if epsilon > 0:
                    ok = torch.isfinite(logp).to(p.dtype)
                    p = (1 - epsilon) * p + epsilon * ok / ok.sum()
                j = int(torch.multinomial(p, 1, generator=generator))
            if j == 0:
                break
            st = env.step(st, valid[j - 1])
        return Trajectory(env.key, tuple(st.chosen))

    @torch.no_grad()
    def beam(
        self, env: PolicyEnv, k: int, *, width: int | None = None, banned: frozenset[int] = frozenset()
    ) -> list[tuple[float, Trajectory]]:
        """The k most probable complete trajectories found by beam search (log-prob, trajectory), best first."""
        width = width or max(4, 2 * k)
        beams: list[tuple[float, _State]] = [(0.0, env.initial())]
        done: list[tuple[float, tuple[int, ...]]] = []
        while beams:
            cand: list[tuple[float, int, _State, int | None]] = []
            for lp, st in beams:
                valid, logp = self.step_log_probs(env, st, banned)
                if not valid:
                    done.append((lp, tuple(st.chosen)))
                    continue
                for j, v in enumerate(logp.tolist()):
                    if math.isfinite(v):
                        cand.append((lp + v, len(cand), st, None if j == 0 else valid[j - 1]))
            beams = []
            for lp, _, st, b in heapq.nlargest(width, cand, key=lambda c: (c[0], -c[1])):
                if b is None:
                    done.append((lp, tuple(st.chosen)))
                else:
                    beams.append((lp, env.step(st, b)))
        done.sort(key=lambda d: (-d[0], d[1]))
        return [(lp, Trajectory(env.key, acts)) for lp, acts in done[:k]]

    @torch.no_grad()
    def top_terminal(
        self,
        env: PolicyEnv,
        k: int,
        *,
        max_expansions: int = 400,
        banned: frozenset[int] = frozenset(),
    ) -> Decoded:
        """The k graphs of highest terminal probability P_T(x), by best-first (uniform-cost) search.

        Why: what a GFlowNet learns is P_T(x) ∝ R(x), and with P_B = 1 a graph's P_T is its one trajectory's P_F.
        A prefix's probability bounds every completion's, so popping prefixes in order of probability yields
        complete trajectories in exact order of P_T: the first k popped are the k most probable graphs, whatever
        their length. Beam search ranks by the same score but prunes by width, so a long graph whose first step is
        not among the `width` best prefixes is lost (docs/policy.md measures how often). When the search needs
        more than `max_expansions` expansions it stops, adds the beam's completions to what it found and ranks the
        pool by P_F (`certified` False)."""
        tick = 0
        # (−log p, tick, parent state, action or None = stop / nothing valid, actions so far)
        heap: list[tuple[float, int, _State | None, int | None, tuple[int, ...]]] = [(-0.0, 0, None, -1, ())]
        done: list[tuple[float, tuple[int, ...]]] = []
        expansions = 0
        while heap and len(done) < k:
            neg, _, parent, b, acts = heapq.heappop(heap)
            if b is None:  # a complete trajectory: nothing left in the heap is more probable
                done.append((-neg, acts))
                continue
            if expansions >= max_expansions:
                break
            st = env.initial() if parent is None else env.step(parent, b)
            expansions += 1
            valid, logp = self.step_log_probs(env, st, banned)
            if not valid:
                tick += 1
                heapq.heappush(heap, (neg, tick, None, None, acts))
                continue
            for j, v in enumerate(logp.tolist()):
                if math.isfinite(v):
                    tick += 1
                    nxt = None if j == 0 else valid[j - 1]
                    heapq.heappush(heap, (neg - v, tick, st, nxt, acts if nxt is None else (*acts, nxt)))
        certified = len(done) >= k or not heap
        if not certified:
            width = max(8, 2 * k)
            pool = dict((a, lp) for lp, a in done)
            for lp, t in self.beam(env, width, width=width, banned=banned):
                pool.setdefault(t.actions, lp)
            done = sorted(((lp, a) for a, lp in pool.items()), key=lambda d: (-d[0], d[1]))
        return Decoded([(lp, Trajectory(env.key, a)) for lp, a in done[:k]], certified, expansions)

    def decode(
        self,
        env: PolicyEnv,
        k: int,
        *,
        method: str = "exact",
        max_expansions: int = 400,
        banned: frozenset[int] = frozenset(),
    ) -> Decoded:
        """The k graphs to propose at temperature 0: `exact` = `top_terminal` (default), `beam` = `beam` (the
        round-2 decoder, kept for comparison), `mbr` = `consensus` over the 16 most probable graphs."""
        if method == "exact":
            return self.top_terminal(env, k, max_expansions=max_expansions, banned=banned)
        if method == "mbr":
            pool = self.top_terminal(env, max(16, k), max_expansions=max_expansions, banned=banned)
            return Decoded(consensus(env, pool.ranked)[:k], pool.certified, pool.expansions)
        if method == "beam":
            width = max(8, 2 * k)
            return Decoded(self.beam(env, k, width=width, banned=banned), False, 0)
        raise InputError(f"policy decoding {method!r}: choose one of {', '.join(DECODINGS)}")


def consensus(env: PolicyEnv, ranked: Sequence[tuple[float, Trajectory]]) -> list[tuple[float, Trajectory]]:
    """Minimum-Bayes-risk order of candidate graphs: by expected item-F1 against a graph drawn from P_T restricted
    to the candidates (weights ∝ P_T; the mass outside them is ignored), best first; (log P_T, trajectory) kept.

    Why: the mode answers "which single graph is most probable". When the policy spreads its mass over several
    one-chain graphs with different ends, each is improbable on its own while a graph with their common ends
    agrees most with what the policy believes; MBR picks that consensus (an abstention agrees only with an
    abstention)."""
    if not ranked:
        return []
    masks = [0] * len(ranked)
    for i, (_, t) in enumerate(ranked):
        for b in t.actions:
            masks[i] |= env.masks[b]
    top = max(lp for lp, _ in ranked)
    w = [math.exp(lp - top) for lp, _ in ranked]
    sizes = [m.bit_count() for m in masks]

    def f1(i: int, j: int) -> float:
        if sizes[i] + sizes[j] == 0:
            return 1.0
        return 2 * (masks[i] & masks[j]).bit_count() / (sizes[i] + sizes[j])

    gain = [sum(w[j] * f1(i, j) for j in range(len(ranked))) / sum(w) for i in range(len(ranked))]
    order = sorted(range(len(ranked)), key=lambda i: (-gain[i], -ranked[i][0], ranked[i][1].actions))
    return [ranked[i] for i in order]


@dataclass(frozen=True)
class Decoded:
    """Decoded graphs (log P_T, trajectory), most probable first; `certified`: provably the exact top k."""

    ranked: list[tuple[float, Trajectory]]
    certified: bool
    expansions: int


# ---------------------------------------------------------------------------------------------- checkpoints


class PolicyCheckpoint(BaseModel):
    """What is saved beside the weights: the policy's config, the training config and provenance."""

    model_config = ConfigDict(extra="allow")

    schema_version: int = 1
    policy: PolicyConfig
    training: dict[str, Any] = Field(default_factory=dict)
    kb_version: str | None = None
    weights_sha256: str | None = None
    notes: list[str] = Field(default_factory=list)


def save_policy(out: str | Path, model: PolicyModel, *, training: dict[str, Any] | None = None, **meta: Any) -> Path:
    """Write `policy.json` (config, training config, weights hash) and `weights.pt` (state dict) to `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    wpath = out / WEIGHTS_FILE
    torch.save(model.state_dict(), wpath)
    digest = hashlib.sha256(wpath.read_bytes()).hexdigest()
    ck = PolicyCheckpoint(policy=model.config, training=training or {}, weights_sha256=digest, **meta)
    (out / CHECKPOINT_FILE).write_text(ck.model_dump_json(indent=2))
    return out


def load_policy(path: str | Path) -> tuple[PolicyModel, PolicyCheckpoint]:
    """A saved policy (directory holding policy.json + weights.pt, or the policy.json path)."""
    p = Path(path)
    if p.is_file() and p.name == CHECKPOINT_FILE:
        p = p.parent
    meta, wpath = p / CHECKPOINT_FILE, p / WEIGHTS_FILE
    if not meta.is_file() or not wpath.is_file():
        raise InputError(f"policy checkpoint {p}: need {CHECKPOINT_FILE} and {WEIGHTS_FILE} in that directory")
    try:
        ck = PolicyCheckpoint.model_validate_json(meta.read_text())
    except ValueError as exc:
        raise InputError(f"policy checkpoint {meta}: not a valid policy config ({exc})") from None
    model = PolicyModel(ck.policy)
    try:
        state = torch.load(wpath, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign file: unpickling errors come in many types
        raise InputError(f"policy checkpoint {wpath}: cannot read the weights ({type(exc).__name__}: {exc})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"policy checkpoint {wpath}: weights do not match {meta} ({exc})") from None
    model.eval()
    return model, ck


# ---------------------------------------------------------------------------------------------- the proposer


class PolicyProposer:
    """The trained policy as a proposer: k distinct graphs per call.

    temperature 0 (the default): the k most probable distinct graphs under the policy's terminal distribution,
    found by exact best-first search (`decoding="exact"`; `"beam"` = the round-2 beam search, which loses long
    graphs to its width); deterministic. > 0: sampling with a generator seeded from (seed, condition key, round),
    so the same inputs give the same graphs. When the most probable outcome is to abstain (temperature 0) or every
    sample abstains, nothing is proposed.
    Feedback: chains through an entity whose binding / activity claim was contradicted are masked, as are gene
    options listing a contradicted gene, and graphs already tried are not proposed again.
    """

    def __init__(
        self,
        model: PolicyModel,
        *,
        temperature: float = 0.0,
        max_samples: int = 64,
        decoding: str = "exact",
        max_expansions: int = 400,
        name: str = "policy",
        checkpoint: str | None = None,
        weights_sha256: str | None = None,
    ) -> None:
        if temperature < 0:
            raise InputError(f"policy proposer: temperature must be ≥ 0, got {temperature}")
        if decoding not in DECODINGS:
            raise InputError(f"policy proposer: decoding {decoding!r}: choose one of {', '.join(DECODINGS)}")
        self.decoding = decoding
        self.max_expansions = int(max_expansions)
        self.model = model
        self.temperature = float(temperature)
        self.max_samples = int(max_samples)
        self.name = name
        self.checkpoint = checkpoint
        self.weights_sha256 = weights_sha256
        self._envs: dict[tuple[str, frozenset[str]], tuple[Any, PolicyEnv]] = {}

    def provenance(self) -> dict[str, Any]:
        return {
            "model": f"policy@{(self.weights_sha256 or 'untrained')[:12]}",
            "endpoint": None,
            "prompt_version": None,
            "extra": {
                "temperature": self.temperature,
                "max_samples": self.max_samples,
                "decoding": self.decoding,
                "policy": self.model.config.model_dump(mode="json"),
            },
        }

    def env(self, ctx: ProposalContext, exclude: frozenset[str] = frozenset()) -> PolicyEnv:
        key = (ctx.condition.key + "|" + str(id(ctx.retrieved)), exclude)
        hit = self._envs.get(key)
        # the cached value keeps its context alive and is checked by identity: an id() alone could be reused by a
        # later, different retrieval of the same condition once the first was garbage-collected
        if hit is not None and hit[0] is ctx.retrieved:
            return hit[1]
        if len(self._envs) > 256:
            self._envs.clear()
        env = PolicyEnv(ctx, self.model.config, exclude=exclude)
        self._envs[key] = (ctx.retrieved, env)
        return env

    def graphs(
        self,
        env: PolicyEnv,
        k: int,
        *,
        seed: int = 0,
        banned: frozenset[int] = frozenset(),
        skip: frozenset[str] = frozenset(),
        temperature: float | None = None,
    ) -> list[tuple[Trajectory, ActionGraph, float]]:
        """Up to k distinct graphs (trajectory, graph, log-prob), skipping hashes in `skip`."""
        t = self.temperature if temperature is None else temperature
        out: list[tuple[Trajectory, ActionGraph, float]] = []
        seen = set(skip)
        if t <= 0:
            ranked = self.model.decode(
                env, k + len(skip), method=self.decoding, max_expansions=self.max_expansions, banned=banned
            ).ranked
            if ranked and ranked[0][1].abstain:
                return []
            trajs = [(tr, lp) for lp, tr in ranked]
        else:
            g = torch.Generator().manual_seed(_seed_of(seed, env.key))
            trajs = [
                (self.model.sample(env, temperature=t, generator=g, banned=banned), 0.0)
                for _ in range(self.max_samples)
            ]
        for tr, lp in trajs:
            graph = env.graph(tr.actions)
            if graph is None:
                continue
            h = graph.content_hash()
            if h in seen:
                continue
            seen.add(h)
            if t > 0:
                with torch.no_grad():
                    lp = float(self.model.log_pf([(env, tr)])[0])
            out.append((tr, graph, lp))
            if len(out) >= k:
                break
        return out

    async def propose(
        self, context: ProposalContext, feedback: Feedback | None = None, *, k: int = 1
    ) -> list[Proposal]:
        from mechcell.agents.proposers import Proposal, graph_summary

        k = max(1, int(k))
        exclude: frozenset[str] = frozenset()
        bad_genes: set[str] = set()
        tried: set[str] = set()
        rnd = 0
        if feedback is not None:
            rnd = feedback.round
            ex, bad_genes, tried = _from_feedback(feedback)
            exclude = frozenset(ex)
        env = self.env(context, exclude)
        banned = frozenset(i for i, a in enumerate(env.actions) if bad_genes & (set(a.genes[0]) | set(a.genes[1])))
        found = self.graphs(env, k, seed=context.seed + 1000 * rnd, banned=banned, skip=frozenset(tried))
        out = []
        for tr, g, lp in found:
            labels = [env.actions[b].label for b in tr.actions]
            note = ("after feedback: " if feedback is not None else "") + "; ".join(labels) + f" (log P {lp:.2f})"
            out.append(
                Proposal(
                    proposer=self.name,
                    text=g.to_text(think=note, answer=graph_summary(g)),
                    graph=g,
                    note=note,
                    meta={"actions": list(tr.actions), "log_prob": lp, "labels": labels},
                )
            )
        return out


def _seed_of(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}|{key}".encode()).digest()[:7], "little")


def _from_feedback(fb: Feedback) -> tuple[set[str], set[str], set[str]]:
    """(entities whose binding/activity claims were contradicted, contradicted genes, graph hashes tried)."""
    excluded: set[str] = set()
    genes: set[str] = set()
    tried: set[str] = set()
    for prop, rep in [*fb.history, (fb.previous, fb.report)]:
        g = prop.graph
        if g is None:
            continue
        tried.add(g.content_hash())
        for r in rep.claims:
            if r.status != "contradicted":
                continue
            if r.kind in ("binding", "molecule_activity", "pathway_activity") and r.node_id in g.node_map:
                ent = main_entity(g.node(r.node_id))
                if ent:
                    excluded.add(ent)
            elif r.kind == "expression" and ":" in r.claim_id:
                genes.add(r.claim_id.split(":", 1)[1])
    return excluded, genes, tried


def policy_proposer(
    *,
    settings: Settings | None = None,
    checkpoint: str | Path | None = None,
    temperature: float = 0.0,
    max_samples: int = 64,
    decoding: str = "exact",
    seed: int = 0,
    **_: Any,
) -> PolicyProposer:
    """Factory for `make_proposer("mechcell.models.policy:policy_proposer", checkpoint=DIR)`.

    Without a checkpoint the policy is untrained (random weights from `seed`): useful only for tests."""
    del settings  # the policy needs no endpoint
    if checkpoint is None:
        return PolicyProposer(
            PolicyModel(PolicyConfig(seed=seed)), temperature=temperature, max_samples=max_samples, decoding=decoding
        )
    model, ck = load_policy(checkpoint)
    return PolicyProposer(
        model,
        temperature=temperature,
        max_samples=max_samples,
        decoding=decoding,
        checkpoint=str(checkpoint),
        weights_sha256=ck.weights_sha256,
    )
