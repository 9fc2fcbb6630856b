"""Proposers: who writes the candidate action graphs. One protocol, several implementations.

    proposal = await proposer.propose(context, feedback=None, k=3)   # -> list[Proposal]

A `Proposal` is one candidate: the raw four-tag text, the parsed `ActionGraph` (None when nothing usable came
out), the parser's problems and, for a failure, why. Feedback from the verifiers (`Feedback`) turns the next call
into a revision.

- `LocalProposer` (the offline default, no LLM): builds graphs from the retriever's signed paths
  (drug → target → signalling steps → TF / pathway → the genes the data moved in the predicted direction), ranked
  by agreement with the signature, and turns feedback into edits. Deterministic.
- `LLMProposer`: any OpenAI-compatible model, in the two-step scheme of VCR-Agent (a mechanistic report from the
  retrieved context, then the report formalised into the graph format) or in one step; malformed output goes
  through the client's repair loop and a graph that still cannot be read is a recorded failure, never a crash.

Plug-in point: `register_proposer(name)(factory)` adds a proposer the pipeline, CLI and chat can name
(`make_proposer("local")`); `make_proposer("package.module:Factory")` loads one that registered nowhere. The
trained policy of the models issue plugs in here.
"""

from __future__ import annotations

import asyncio
import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

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
    from mechcell.agents.llm import LLMClient
    from mechcell.config import Settings
    from mechcell.datasets.schemas import Condition, Signature
    from mechcell.knowledge import KnowledgeBase, RetrievedContext
    from mechcell.verifiers.doses import DoseSeries
    from mechcell.verifiers.types import VerificationReport

__all__ = [
    "PROPOSERS",
    "Feedback",
    "LLMProposer",
    "LocalProposer",
    "Proposal",
    "ProposalContext",
    "Proposer",
    "make_proposer",
    "propose_sync",
    "register_proposer",
]

_DIR = {1: "up", -1: "down"}


# ------------------------------------------------------------------------------------------------ contracts


class Proposal(BaseModel):
    """One candidate graph: the raw text and what was read from it, or a recorded failure."""

    model_config = ConfigDict(frozen=True)

    proposer: str
    text: str = ""
    graph: ActionGraph | None = None
    problems: list[str] = Field(default_factory=list, description="the parser's error-level problems")
    failure: str | None = None
    note: str = Field("", description="what was done: the path used, the edits made after feedback")
    prompts: list[str] = Field(default_factory=list, description="refs of the prompt templates used")
    llm_calls: list[dict[str, Any]] = Field(default_factory=list)
    repairs: list[dict[str, Any]] = Field(default_factory=list, description="repair rounds: text and problems")
    intermediate: str | None = Field(None, description="two-step scheme: the mechanistic report")
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.graph is not None and self.failure is None


@dataclass
class ProposalContext:
    """What a proposer may look at for one condition: the condition, the retrieved knowledge, the signature."""

    condition: Condition
    retrieved: RetrievedContext
    kb: KnowledgeBase
    signature: Signature | None = None
    seed: int = 0
    alpha: float = 0.05
    doses: DoseSeries | None = None  # the drug's other doses in this line (verifiers.doses.dose_series), optional
    _memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def cell_line(self) -> str | None:
        return self.retrieved.cell_line or self.condition.context_name or self.condition.context

    def condition_text(self) -> str:
        c = self.condition
        dose = f" at {c.dose:g} {c.dose_unit or ''}".rstrip() if c.dose is not None else ""
        cell = self.cell_line or "an unnamed context"
        extra = f" ({c.context})" if c.context and c.context != cell else ""
        batch = f", batch {c.batch}" if c.batch else ""
        drivers = ", ".join(f"{d.gene} {d.variant or ''}".strip() for d in self.retrieved.drivers[:6])
        geno = f"; genotype: {drivers}" if drivers else ""
        return (
            f"{c.perturbation}{dose} in {cell}{extra}{batch}; compared with {c.control} controls{geno}. "
            f"Condition key: {c.key}"
        )

    def signature_text(self, n: int = 20) -> str:
        """The top `n` genes up and down (by significance then effect) as prompt lines (computed once per n)."""
        key = f"signature_text:{n}"
        if key not in self._memo:
            self._memo[key] = self._signature_text(n)
        return self._memo[key]

    def _signature_text(self, n: int) -> str:
        if self.signature is None:
            return "No expression data for this condition."
        frame = self.signature.to_frame()
        frame = frame[np.isfinite(frame["log2fc"]) & np.isfinite(frame["pvalue"])]
        lines: list[str] = []
        for label, sub in (("up", frame[frame["log2fc"] > 0]), ("down", frame[frame["log2fc"] < 0])):
            top = sub.assign(_a=-sub["log2fc"].abs()).sort_values(["pvalue", "_a"]).head(n)
            items = [f"{g} {r.log2fc:+.2f} (padj {r.padj:.1g})" for g, r in top.iterrows()]
            lines.append(f"{label} ({len(sub)} genes; top {len(items)}): " + ", ".join(items))
        s = self.signature
        lines.append(f"Method: {s.method}; {s.n_treated} treated vs {s.n_control} control cells.")
        return "\n".join(lines)


@dataclass
class Feedback:
    """The verifiers' verdict on the previous attempt(s), for a revision round."""

    round: int
    previous: Proposal
    report: VerificationReport
    history: list[tuple[Proposal, VerificationReport]] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        return list(self.report.feedback)


@runtime_checkable
class Proposer(Protocol):
    """The contract every proposer meets (local, LLM, the trained policy)."""

    name: str

    def provenance(self) -> dict[str, Any]:
        """What a trace records about this proposer: model, endpoint, prompt_version, extra knobs."""
        ...

    async def propose(
        self, context: ProposalContext, feedback: Feedback | None = None, *, k: int = 1
    ) -> list[Proposal]:
        """Up to `k` candidates (fewer, even none, when there is nothing worth proposing); never raises on bad
        model output — a failure is a `Proposal` with `failure` set."""
        ...


def propose_sync(
    proposer: Proposer, context: ProposalContext, feedback: Feedback | None = None, *, k: int = 1
) -> list[Proposal]:
    """`propose` for scripts and tests (not inside a running event loop)."""
    return asyncio.run(proposer.propose(context, feedback, k=k))


# --------------------------------------------------------------------------------------------- registry

ProposerFactory = Callable[..., Proposer]
#: name → factory(settings=..., **options). `register_proposer` adds to it.
PROPOSERS: dict[str, ProposerFactory] = {}


def register_proposer(name: str) -> Callable[[ProposerFactory], ProposerFactory]:
    """Decorator: make a proposer available by name to the pipeline, the CLI (`--proposer NAME`) and chat."""

    def deco(factory: ProposerFactory) -> ProposerFactory:
        PROPOSERS[name] = factory
        return factory

    return deco


def make_proposer(name: str, *, settings: Settings | None = None, **options: Any) -> Proposer:
    """A proposer by registered name, or by import path `package.module:factory` (a plug-in that registered
    nowhere). `settings` carries the LLM endpoint; `options` go to the factory."""
    factory = PROPOSERS.get(name)
    if factory is None and ":" in name:
        module, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise InputError(f"proposer {name!r}: cannot import {attr!r} from {module!r} ({exc})") from None
    if factory is None:
        raise InputError(f"unknown proposer {name!r} (have: {', '.join(sorted(PROPOSERS))}, or module:factory)")
    proposer = factory(settings=settings, **options)
    if not isinstance(proposer, Proposer):
        raise InputError(f"proposer {name!r} does not implement propose(context, feedback, k=) / provenance()")
    return proposer


# ------------------------------------------------------------------------------------------ local proposer


@dataclass(frozen=True)
class _Chain:
    """One candidate mechanism: target → … → end (a TF or a pathway), with the genes it moves."""

    target: str
    action: int  # sign of what the drug does to the target
    nodes: tuple[str, ...]  # target first, end last (for a pathway end: … anchor gene, pathway)
    signs: tuple[int, ...]  # running activity sign of each node
    end: str
    end_type: str  # tf | pathway
    up: tuple[str, ...]
    down: tuple[str, ...]
    agreement: float  # predicted sign × observed enrichment z of the end (0 without a signature)
    support: float  # how much of the end's gene set the data supports, in [0, 1]

    @property
    def n_genes(self) -> int:
        return len(self.up) + len(self.down)

    @property
    def label(self) -> str:
        return " → ".join(self.nodes)

    @property
    def score(self) -> float:
        """Ranking key: agreement of the end with the signature, then supported genes, shorter paths first."""
        return self.agreement + 2.0 * self.support + 0.1 * math.log1p(self.n_genes) - 0.15 * len(self.nodes)


class _SignatureView:
    """The signature as the local proposer reads it: for a set of predicted gene directions, which genes moved
    that way — the test the expression verifier will apply to the graph's gene claims.

    With sibling doses (`doses`) it reads them the way the verifier's dose pooling does: a gene counts when the
    weighted Stouffer combination of its one-sided scores over the drug's doses in this line (weights = dose rank)
    passes BH, its log2FC at this dose has the predicted sign, and at some dose it reaches that dose's floor."""

    def __init__(
        self, signature: Signature, alpha: float, doses: DoseSeries | None = None, own_level: float = 0.1
    ) -> None:
        self.alpha = alpha
        self.own_level = own_level
        self.floor, self.lfc, self.p = self._read(signature)
        own_z = np.sign(np.fromiter(self.lfc.values(), np.float64)) * stats.norm.isf(
            np.fromiter(self.p.values(), np.float64) / 2
        )
        med = float(np.median(own_z)) if own_z.size else 0.0
        # the spread of this dose's signed z over all genes: the scale of a competitive list test
        self.z_sd = max(1.0, float(1.4826 * np.median(np.abs(own_z - med)))) if own_z.size else 1.0
        self.pooled: dict[str, float] | None = None  # gene → dose-pooled Stouffer z (signed by log2FC)
        self.best: dict[str, tuple[float, float]] = {}  # gene → (max, min) of log2FC / floor over the doses
        self.ranked: pd.Series | None = None  # gene → dose-pooled rank-normal score (the retriever's scale)
        if doses is not None and doses.siblings:
            from mechcell.knowledge.enrich import signature_z

            w_own, ws = doses.weights()
            rz = [(w_own, signature)] + list(zip(ws, (s.signature for s in doses.siblings), strict=True))
            frame = pd.concat(
                {
                    i: signature_z(list(sg.genes), sg.stat if sg.stat is not None else sg.log2fc)
                    for i, (_, sg) in enumerate(rz)
                },
                axis=1,
            )
            wv = np.array([w for w, _ in rz], dtype=np.float64)
            present = frame.notna().to_numpy()
            num = frame.fillna(0.0).to_numpy() @ wv
            den = np.sqrt(present.astype(np.float64) @ (wv * wv))
            self.ranked = pd.Series(num / np.where(den > 0, den, 1.0), index=frame.index)
            reads = [(w_own, self.floor, self.lfc, self.p)]
            reads += [(w, *self._read(s.signature)) for w, s in zip(ws, doses.siblings, strict=True)]
            genes = list(self.lfc)
            zs = np.full((len(reads), len(genes)), np.nan)
            rs = np.full((len(reads), len(genes)), np.nan)
            for k, (_, fl, lfc, pv) in enumerate(reads):
                p_row = np.array([pv.get(g, np.nan) for g in genes], dtype=np.float64)
                l_row = np.array([lfc.get(g, np.nan) for g in genes], dtype=np.float64)
                zs[k] = np.sign(l_row) * stats.norm.isf(p_row / 2)
                rs[k] = l_row / fl if fl > 0 else np.where(np.isfinite(l_row), 0.0, np.nan)
            wv = np.array([w for w, *_ in reads], dtype=np.float64)
            present = np.isfinite(zs)
            pooled = (np.where(present, zs, 0.0).T @ wv) / np.sqrt(present.T.astype(np.float64) @ (wv * wv))
            hi = np.nanmax(rs, axis=0)
            lo = np.nanmin(rs, axis=0)
            self.pooled = dict(zip(genes, pooled.tolist(), strict=True))
            self.best = {g: (float(a), float(b)) for g, a, b in zip(genes, hi, lo, strict=True)}

    @staticmethod
    def _read(signature: Signature) -> tuple[float, dict[str, float], dict[str, float]]:
        frame = signature.to_frame()
        frame = frame[~frame.index.duplicated(keep="first")]
        lfc = frame["log2fc"].to_numpy(np.float64)
        p = frame["pvalue"].to_numpy(np.float64)
        ok = np.isfinite(lfc) & np.isfinite(p)
        med = float(np.median(lfc[ok])) if ok.any() else 0.0
        # The effect floor: one robust SD of all log2 fold changes (twice the verifier's, to leave a margin).
        floor = float(1.4826 * np.median(np.abs(lfc[ok] - med))) if ok.any() else 0.0
        lfcs = {str(g): float(x) for g, x, good in zip(frame.index, lfc, ok, strict=True) if good}
        ps = {str(g): float(min(max(x, 1e-300), 1.0)) for g, x, good in zip(frame.index, p, ok, strict=True) if good}
        return floor, lfcs, ps

    def _one_sided(self, g: str, d: int) -> float:
        if self.pooled is not None:
            return float(_sf(d * self.pooled[g]))
        return self.p[g] / 2 if np.sign(self.lfc[g]) == d else 1 - self.p[g] / 2

    def _material(self, g: str, d: int) -> bool:
        if self.pooled is not None:
            hi, lo = self.best[g]
            return (hi if d > 0 else -lo) >= 1.0
        return abs(self.lfc[g]) >= self.floor

    def supported(self, predicted: dict[str, int]) -> tuple[list[str], list[str], float]:
        """(up genes, down genes) that moved as predicted, and the share of measured predicted genes that did.

        A gene counts when its one-sided p for the predicted direction (dose-pooled when sibling doses are
        known) passes Benjamini–Hochberg at `alpha` across this set of predictions (the hypotheses a graph built
        on them would state), its log2FC here has the predicted sign, and it is at least the floor (at some dose).
        """
        from mechcell.causal_stats.evalues import bh_adjust

        measured = sorted(g for g in predicted if g in self.lfc)
        if not measured:
            return [], [], 0.0
        one_sided = np.array([self._one_sided(g, predicted[g]) for g in measured])
        q = bh_adjust(one_sided)
        passed = [g for g, qi in zip(measured, q, strict=True) if qi < self.alpha and self._material(g, predicted[g])]
        if self.pooled is not None and passed and not self._own_dose_moves(passed, predicted):
            # the line responds along the dose series but this dose barely moves these genes; the gate reads
            # every gene the series supports, before any is chosen by its sign here (no cherry-picking)
            passed = []
        hits = [g for g in passed if np.sign(self.lfc[g]) == predicted[g]]
        rank = self.pooled
        hits.sort(key=lambda g: (-abs(rank[g]) if rank is not None else self.p[g], -abs(self.lfc[g]), g))
        up = [g for g in hits if predicted[g] > 0]
        down = [g for g in hits if predicted[g] < 0]
        return up, down, len(hits) / len(measured)

    def _own_dose_moves(self, hits: list[str], predicted: dict[str, int]) -> bool:
        """This dose's own evidence for the hits: per direction, the mean signed z of the genes against the spread
        of this dose's z (a normal approximation of the verifier's competitive list test; a lone gene's own
        one-sided p) at level `own_level` — the verifier's `dose_own_level` gate, a little stricter."""
        for d in (1, -1):
            genes = [g for g in hits if predicted[g] == d]
            if not genes:
                continue
            if len(genes) == 1:
                ok = self.p[genes[0]] / 2 < self.own_level
            else:
                z = np.array([d * math.copysign(float(stats.norm.isf(self.p[g] / 2)), self.lfc[g]) for g in genes])
                ok = float(stats.norm.sf(z.mean() * math.sqrt(len(z)) / self.z_sd)) < self.own_level
            if not ok:
                return False
        return True

    def agreement(self, predicted: dict[str, float]) -> float | None:
        """Dose-pooled enrichment of a weighted prediction: Σ w z / sqrt(Σ w²) over the measured genes, z the
        weighted Stouffer combination of each dose's rank-normal scores (the retriever's `score_signature` scale,
        ≈ N(0, 1) when nothing moves at any dose); None without sibling doses."""
        if self.ranked is None:
            return None
        rk = self.ranked
        pairs = [(w, float(rk[g])) for g, w in predicted.items() if w and g in rk.index]
        if len(pairs) < 3:
            return None
        w = np.array([a for a, _ in pairs])
        z = np.array([b for _, b in pairs])
        return float(w @ z / np.sqrt(w @ w))


def _sf(x: float) -> float:
    return float(stats.norm.sf(x))


class _Builder:
    """Builds a tree-shaped ActionGraph from chains, sharing nodes that say the same thing."""

    def __init__(self, drug: str, cell: str | None, genotype: str | None) -> None:
        self.drug = drug
        self.nodes: list[Any] = [SetContext(id="n0", cell_type=cell, genotype=genotype)]
        self.edges: list[Edge] = []
        self._key: dict[tuple, str] = {}

    def _add(self, key: tuple, make: Callable[[str], Any], parent: str | None) -> str:
        nid = self._key.get(key)
        if nid is None:
            nid = f"n{len(self.nodes)}"
            self.nodes.append(make(nid))
            self._key[key] = nid
        if parent is not None and not any(e.src == parent and e.tgt == nid for e in self.edges):
            self.edges.append(Edge(src=parent, tgt=nid, relation="causal"))
        return nid

    def add_chain(self, ch: _Chain, max_genes: int) -> None:
        tgt = ch.target
        b = self._add(("bind", tgt), lambda i: BindsTo(id=i, actor=self.drug, target=tgt), None)
        parent = b
        last = len(ch.nodes) - 1
        for j, (node, sign) in enumerate(zip(ch.nodes, ch.signs, strict=True)):
            d = _DIR[sign]
            if j == last and ch.end_type == "pathway":
                parent = self._add(
                    ("pathway", node, d),
                    lambda i, n=node, d=d: ModulatesPathwayActivity(id=i, pathway=n, direction=d),
                    parent,
                )
            else:
                parent = self._add(
                    ("activity", node, d),
                    lambda i, n=node, d=d: ModulatesMoleculeActivity(id=i, target=n, direction=d),
                    parent,
                )
        for genes, d in ((ch.up, "up"), (ch.down, "down")):
            if genes:
                gl = list(genes[:max_genes])
                self._add(
                    ("expr", ch.end, d, parent),
                    lambda i, gl=gl, d=d: RegulatesExpression(id=i, regulator=ch.end, gene_list=gl, direction=d),
                    parent,
                )

    def graph(self) -> ActionGraph:
        return ActionGraph(nodes=self.nodes, edges=self.edges)


@register_proposer("local")
class LocalProposer:
    """Candidate graphs from the retriever's signed paths, checked against the signature before they are proposed.

    For every retrieved path target → … → end (a TF with a regulon, or a pathway through its activity anchor) it
    predicts each gene's direction (drug action × path sign × regulon sign or footprint weight sign) and keeps the
    genes the signature moved that way: one-sided p for the predicted direction passing Benjamini–Hochberg at
    `alpha` across the end's predictions, and |log2FC| at least one robust SD of all log2FCs (the expression
    verifier's floor). An end enters a graph when it agrees with the signature (the retriever's enrichment z in
    the predicted direction ≥ `min_agreement`), at least `min_genes` of its genes moved as predicted, and they are
    at least `min_support` of its measured genes.

    Candidates, in order: every agreeing end merged (one best route per end; each gene explained once, TF regulons
    before pathway footprints), then the best ends alone. Each carries the routes of the drug's other targets
    into its ends when those targets look engaged (their nearest TF readout moved: see `co_targets`). With no
    agreeing end the proposer abstains (returns nothing): an inactive drug gets no mechanism. Without a signature
    the ends are ranked by path length and carry the KB's predicted genes.

    Feedback becomes edits: contradicted genes leave their lists (and unverified ones, when enough verified genes
    remain), a contradicted binding or activity step removes its branch and excludes that entity from later
    candidates (the next route or the drug's other target takes its place). Deterministic: the same inputs give
    the same graphs.
    """

    name = "local"

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        min_agreement: float = 3.0,
        min_genes: int = 2,
        min_support: float = 0.2,
        max_genes: int = 25,
        max_chains: int = 4,
        **_: Any,
    ) -> None:
        self.min_agreement = float(min_agreement)
        self.min_genes = int(min_genes)
        self.min_support = float(min_support)
        self.max_genes = int(max_genes)
        self.max_chains = int(max_chains)
        self._near: dict[tuple[str, str, int], dict[str, set[int]]] = {}

    def provenance(self) -> dict[str, Any]:
        return {
            "model": None,
            "endpoint": None,
            "prompt_version": None,
            "extra": {
                "min_agreement": self.min_agreement,
                "min_genes": self.min_genes,
                "min_support": self.min_support,
                "max_genes": self.max_genes,
                "max_chains": self.max_chains,
            },
        }

    # ------------------------------------------------------------------ chains
    @staticmethod
    def _view(ctx: ProposalContext) -> _SignatureView | None:
        """The signature view of a context (dose-pooled when it carries sibling doses), built once per context."""
        if ctx.signature is None:
            return None
        if "local_view" not in ctx._memo:
            ctx._memo["local_view"] = _SignatureView(ctx.signature, ctx.alpha, ctx.doses)
        return ctx._memo["local_view"]

    def chains(self, ctx: ProposalContext, exclude: frozenset[str] = frozenset()) -> list[_Chain]:
        """Every retrieved path as a chain with its data-supported genes, best first (one per end and route)."""
        r = ctx.retrieved
        kb = ctx.kb
        sv = self._view(ctx)
        action = {t.gene: t.sign for t in r.targets}
        agreement = {(a.kind, a.name): a.agreement for a in [*r.tfs, *r.pathways]}
        out: dict[tuple[str, ...], _Chain] = {}
        for hit in r.paths:
            a = action.get(hit.start, 0) or 0
            if a == 0 or hit.predicted_sign == 0:
                continue  # an unsigned action or path predicts nothing checkable
            nodes = tuple(hit.path.nodes)
            if exclude & set(nodes):
                continue
            signs: list[int] = [a]
            for s in hit.path.signs:
                signs.append(signs[-1] * (s or 1))
            end_sign = hit.predicted_sign
            if hit.end_type == "tf":
                predicted = {g: end_sign * s for g, s in kb.regulon(hit.end).items() if s}
            else:
                predicted = {g: end_sign * (1 if w > 0 else -1) for g, w in kb.footprint(hit.end).items() if w}
            # A pathway's path ends in the anchor gene then the pathway: both carry the same running sign.
            if sv is not None:
                up, down, support = sv.supported(predicted)
                agree = agreement.get((hit.end_type, hit.end)) or 0.0
            else:
                up = sorted(g for g, d in predicted.items() if d > 0)
                down = sorted(g for g, d in predicted.items() if d < 0)
                support, agree = 0.0, 0.0
            ch = _Chain(
                target=hit.start,
                action=a,
                nodes=nodes,
                signs=tuple(signs[: len(nodes)]),
                end=hit.end,
                end_type=hit.end_type,
                up=tuple(up),
                down=tuple(down),
                agreement=float(agree),
                support=float(support),
            )
            if nodes not in out:
                out[nodes] = ch
        chains = sorted(out.values(), key=lambda c: (-c.score, len(c.nodes), c.nodes))
        return chains

    def _agreeing(self, chains: list[_Chain], with_data: bool) -> list[_Chain]:
        """One chain per end (its best route), keeping those the data supports."""
        seen: set[tuple[str, str]] = set()
        out = []
        for c in chains:
            if (c.end_type, c.end) in seen:
                continue
            if with_data and not (
                c.agreement >= self.min_agreement and c.n_genes >= self.min_genes and c.support >= self.min_support
            ):
                continue
            if not with_data and c.n_genes == 0:
                continue
            seen.add((c.end_type, c.end))
            out.append(c)
        return out

    def _graph(self, ctx: ProposalContext, chains: Sequence[_Chain]) -> ActionGraph:
        drivers = "; ".join(f"{d.gene} {d.variant or ''}".strip() for d in ctx.retrieved.drivers[:6]) or None
        b = _Builder(ctx.condition.perturbation, ctx.cell_line, drivers)
        for ch in chains:
            b.add_chain(ch, self.max_genes)
        return b.graph()

    def _proposal(
        self, ctx: ProposalContext, chains: Sequence[_Chain], note: str, extra: Sequence[_Chain] = ()
    ) -> Proposal:
        g = self._graph(ctx, [*chains, *extra])
        ends = ", ".join(f"{c.label} (z {c.agreement:+.1f}, {c.n_genes} genes)" for c in chains)
        if extra:
            ends += "; also via " + ", ".join(c.label for c in extra)
        return Proposal(
            proposer=self.name,
            text=g.to_text(think=f"{note}: {ends}", answer=_one_line(g)),
            graph=g,
            note=f"{note}: {ends}",
            meta={
                "ends": [[c.end_type, c.end] for c in chains],
                "targets": sorted({c.target for c in [*chains, *extra]}),
            },
        )

    def explain_away(self, chains: Sequence[_Chain]) -> list[_Chain]:
        """Merge chains so that each gene is explained once: TF ends first (a regulon is the more specific
        explanation), then pathways, each in ranking order; an end left with fewer than `min_genes` genes of its
        own is dropped (its signal is already explained)."""
        claimed: set[str] = set()
        out: list[_Chain] = []
        for ch in sorted(chains, key=lambda c: (c.end_type != "tf", -c.score)):
            up = tuple(g for g in ch.up if g not in claimed)
            down = tuple(g for g in ch.down if g not in claimed)
            if len(up) + len(down) < self.min_genes:
                continue
            claimed.update(up + down)
            out.append(replace(ch, up=up, down=down))
        return out

    def nearest_tfs(self, kb: KnowledgeBase, target: str, max_len: int = 3) -> dict[str, set[int]]:
        """The TFs with a regulon nearest to `target` in the signed network (fewest steps, ≤ max_len), each with
        the signs of its shortest paths (the target itself at distance 0 when it is a TF)."""
        key = (kb.version, target, max_len)
        if key in self._near:
            return self._near[key]
        tfs = set(kb.regulon_tfs())
        adj = kb.adjacency()
        frontier: dict[str, set[int]] = {target: {1}}
        seen = {target}
        out: dict[str, set[int]] = {}
        for _ in range(max_len + 1):
            hits = {n: sg for n, sg in frontier.items() if n in tfs}
            if hits:
                out = hits
                break
            nxt: dict[str, set[int]] = {}
            for u, signs in frontier.items():
                for v, s in adj.succ.get(u, ()):
                    if v in seen or s == 0:
                        continue
                    nxt.setdefault(v, set()).update(x * s for x in signs)
            seen.update(nxt)
            frontier = nxt
            if not frontier:
                break
        self._near[key] = out
        return out

    def engaged(self, ctx: ProposalContext, sv: _SignatureView, target: str, action: int) -> bool | None:
        """Does the data show the target engaged? Yes when one of its nearest TF readouts moved as the drug's
        action predicts (≥ `min_genes` genes, ≥ `min_support` of those measured); None when the KB gives the
        target no TF readout. Why: a wrong target annotation (a decoy) leaves exactly these readouts unmoved."""
        near = self.nearest_tfs(ctx.kb, target)
        if not near or action == 0:
            return None
        for tf, signs in sorted(near.items()):
            reg = ctx.kb.regulon(tf)
            for s in sorted(signs):
                up, down, support = sv.supported({g: action * s * r for g, r in reg.items() if r})
                if len(up) + len(down) >= self.min_genes and support >= self.min_support:
                    return True
        return False

    def co_targets(self, chosen: Sequence[_Chain], chains: Sequence[_Chain], engaged: set[str]) -> list[_Chain]:
        """Routes from the drug's other engaged targets into the ends already chosen (no genes of their own), each
        no longer than the chosen route."""
        if not chosen:
            return []
        used = {c.target for c in chosen}
        length = {c.end: len(c.nodes) for c in chosen}
        by_target: dict[str, list[_Chain]] = {}
        for c in chains:
            if c.target not in used and c.target in engaged:
                by_target.setdefault(c.target, []).append(c)
        out: list[_Chain] = []
        for _target, cs in sorted(by_target.items()):
            for end, n in length.items():
                route = next((c for c in cs if c.end == end and len(c.nodes) <= n), None)
                if route is not None:
                    out.append(replace(route, up=(), down=()))
        return out

    def candidates(self, ctx: ProposalContext, exclude: frozenset[str] = frozenset()) -> list[Proposal]:
        """First proposals: every supported end merged (genes explained once), then the best ends alone; each
        with the routes of the drug's other engaged targets. With data, a target whose nearest TF readouts did
        not move (`engaged` is False) contributes nothing."""
        with_data = ctx.signature is not None
        chains = self.chains(ctx, exclude)
        engaged: set[str] = set()
        if with_data:
            sv = self._view(ctx)
            assert sv is not None
            verdict = {t.gene: self.engaged(ctx, sv, t.gene, t.sign) for t in ctx.retrieved.targets}
            engaged = {t for t, v in verdict.items() if v}
            chains = [c for c in chains if verdict.get(c.target) is not False]
        good = self._agreeing(chains, with_data)[: self.max_chains if with_data else 2]
        if not good:
            return []
        out: list[Proposal] = []
        if with_data and len(good) > 1:
            merged = self.explain_away(good)
            if len(merged) > 1:
                extra = self.co_targets(merged, chains, engaged)
                out.append(self._proposal(ctx, merged, "every path the data supports", extra))
        for i, ch in enumerate(good):
            extra = self.co_targets([ch], chains, engaged) if with_data else []
            out.append(self._proposal(ctx, [ch], "best supported path" if i == 0 else f"alternative path {i}", extra))
        return _dedupe(out)

    # ------------------------------------------------------------------ the protocol
    async def propose(
        self, context: ProposalContext, feedback: Feedback | None = None, *, k: int = 1
    ) -> list[Proposal]:
        if feedback is None:
            return self.candidates(context)[:k]
        return self.revise(context, feedback)[:k]

    def revise(self, ctx: ProposalContext, fb: Feedback) -> list[Proposal]:
        """Edits from the verdicts: drop contradicted genes and branches; replace what was lost by the next path."""
        from mechcell.graphs import main_entity as _main

        prev = fb.previous.graph
        if prev is None:
            return self.candidates(ctx)
        report = fb.report
        # Entities whose claims were contradicted (bindings and activity steps) are excluded from now on.
        excluded: set[str] = set()
        for _p, rep in [*fb.history, (fb.previous, report)]:
            for r in rep.claims:
                if r.status == "contradicted" and r.kind in ("binding", "molecule_activity", "pathway_activity"):
                    g = _p.graph
                    if g is not None and r.node_id in g.node_map:
                        ent = _main(g.node(r.node_id))
                        if ent:
                            excluded.add(ent)
        status = {r.claim_id: r.status for r in report.claims}
        dead: set[str] = set()
        for r in report.claims:
            if r.status == "contradicted" and r.kind not in ("expression", "expression_set"):
                dead.add(r.node_id)
        for s in report.structural:
            if s.node_id:
                dead.add(s.node_id)
        # A dead step takes its descendants with it.
        changed = True
        while changed:
            changed = False
            for e in prev.edges:
                if e.src in dead and e.tgt not in dead:
                    parents = prev.parents(e.tgt)
                    if all(p in dead for p in parents):
                        dead.add(e.tgt)
                        changed = True
        nodes = []
        edits: list[str] = []
        for n in prev.nodes:
            if n.id in dead:
                edits.append(f"dropped {n.id} ({n.primitive} {main_entity(n)})")
                continue
            if n.primitive == "regulates_expression":
                keep = [g for g in n.gene_list if status.get(f"{n.id}:{g}") != "contradicted"]
                supported = [g for g in keep if status.get(f"{n.id}:{g}") == "supported"]
                if len(supported) >= self.min_genes:
                    keep = supported  # enough verified genes: the unverified ones go too
                gone = [g for g in n.gene_list if g not in keep]
                if gone:
                    edits.append(f"{n.id}: removed {', '.join(gone)}")
                if not keep:
                    dead.add(n.id)
                    edits.append(f"dropped {n.id} (no gene left)")
                    continue
                n = n.model_copy(update={"gene_list": keep})
            nodes.append(n)
        edges = [e for e in prev.edges if e.src not in dead and e.tgt not in dead]
        out: list[Proposal] = []
        if edits:
            g = _prune(ActionGraph(nodes=nodes, edges=edges))
            if g is not None:
                out.append(
                    Proposal(
                        proposer=self.name,
                        text=g.to_text(think="revision: " + "; ".join(edits), answer=_one_line(g)),
                        graph=g,
                        note="revision: " + "; ".join(edits),
                    )
                )
        # The next candidates that avoid every excluded entity, and that were not proposed before.
        tried = {p.graph.content_hash() for p, _ in fb.history if p.graph is not None}
        tried.add(prev.content_hash())
        for p in self.candidates(ctx, frozenset(excluded)):
            if p.graph is not None and p.graph.content_hash() not in tried:
                note = f"after feedback (excluded: {', '.join(sorted(excluded)) or 'none'}): {p.note}"
                out.append(p.model_copy(update={"note": note}))
        return _dedupe(out)


def _prune(g: ActionGraph) -> ActionGraph | None:
    """Drop steps that lead to no measurable step any more; None when nothing measurable is left."""
    keep = {n.id for n in g.nodes if n.primitive == "regulates_expression"}
    if not keep:
        return None
    changed = True
    while changed:
        changed = False
        for e in g.edges:
            if e.tgt in keep and e.src not in keep:
                keep.add(e.src)
                changed = True
    nodes = [n for n in g.nodes if n.id in keep or n.primitive == "set_context"]
    edges = [e for e in g.edges if e.src in keep and e.tgt in keep]
    return ActionGraph(nodes=nodes, edges=edges)


def _dedupe(ps: list[Proposal]) -> list[Proposal]:
    seen: set[str] = set()
    out = []
    for p in ps:
        h = p.graph.content_hash() if p.graph is not None else f"failed:{len(out)}"
        if h not in seen:
            seen.add(h)
            out.append(p)
    return out


def _one_line(g: ActionGraph) -> str:
    """The mechanism in words, e.g. `Trametinib ⊣ MAP2K1 → MAPK1 → ELK1 ⇒ DUSP6↓ SPRY4↓ (+3)`."""
    return graph_summary(g)


def graph_summary(g: ActionGraph | None, max_genes: int = 4) -> str:
    """One line for tables and chat: `Trametinib → MAP2K1↓ → MAPK1↓ → ELK1↓ ⇒ DUSP6↓ SPRY4↓ (+3)  [+1 branch]`."""
    if g is None or not g.nodes:
        return "—"
    nm = g.node_map
    roots = [n for n in g.nodes if n.primitive != "set_context" and not g.parents(n.id)]
    chains: list[str] = []

    def walk(nid: str, seq: list[str], seen: frozenset[str]) -> None:
        n = nm[nid]
        seq = list(seq)
        d = getattr(n, "direction", None)
        arrow = "↑" if d == "up" else "↓" if d == "down" else ""
        if n.primitive == "binds_to":
            seq += [n.actor, "→", n.target]
        elif n.primitive == "regulates_expression":
            genes = " ".join(f"{x}{arrow}" for x in n.gene_list[:max_genes])
            more = f" (+{len(n.gene_list) - max_genes})" if len(n.gene_list) > max_genes else ""
            seq += ["⇒", genes + more]
        else:
            ent = main_entity(n) or n.primitive
            if seq and seq[-1] == ent:  # the bound target's own activity change
                seq[-1] = ent + arrow
            else:
                seq += (["→"] if seq else []) + [ent + arrow]
        kids = [k for k in g.children(nid) if k not in seen]
        if not kids:
            chains.append(" ".join(seq))
        for k in kids:
            walk(k, seq, seen | {k})

    for r in roots:
        walk(r.id, [], frozenset({r.id}))
    if not chains:
        return "—"
    text = chains[0]
    if len(chains) > 1:
        text += f"  [+{len(chains) - 1} branch{'es' if len(chains) > 2 else ''}]"
    return text


# ------------------------------------------------------------------------------------------- LLM proposer


class LLMProposer:
    """An OpenAI-compatible model proposes the graph: two-step (report → formalise, VCR-Agent) or one step.

    Every call goes through `LLMClient` (bounded concurrency, retries, accounting); the graph-writing call goes
    through its repair loop (`max_repairs` rounds of located parser problems). Bad output and transport
    failures become failed `Proposal`s with every round recorded — the pipeline goes on.
    """

    def __init__(
        self,
        client: LLMClient,
        *,
        two_step: bool = True,
        max_repairs: int = 2,
        temperature: float = 0.2,
        max_tokens: int | None = 2048,
        context_budget: int = 1500,
        n_signature_genes: int = 20,
        name: str | None = None,
    ) -> None:
        from mechcell.agents.prompts import load_prompt

        self.client = client
        self.two_step = two_step
        self.max_repairs = int(max_repairs)
        self.temperature = float(temperature)
        self.max_tokens = max_tokens
        self.context_budget = int(context_budget)
        self.n_signature_genes = int(n_signature_genes)
        self.name = name or ("llm" if two_step else "llm-one-step")
        self.prompts = {
            "report": load_prompt("report"),
            "formalise": load_prompt("formalise"),
            "one_step": load_prompt("one_step"),
            "revise": load_prompt("revise"),
            "repair": load_prompt("repair"),
        }

    @property
    def prompt_version(self) -> str:
        used = ["report", "formalise"] if self.two_step else ["one_step"]
        return ",".join(self.prompts[n].ref for n in [*used, "revise", "repair"])

    def provenance(self) -> dict[str, Any]:
        return {
            "model": self.client.model,
            "endpoint": self.client.base_url,
            "prompt_version": self.prompt_version,
            "extra": {
                "two_step": self.two_step,
                "max_repairs": self.max_repairs,
                "temperature": self.temperature,
                "max_tokens": self.max_tokens,
            },
        }

    def _values(self, ctx: ProposalContext) -> dict[str, str]:
        from mechcell.knowledge.retrieve import render

        text = ctx.retrieved.text or render(ctx.retrieved, self.context_budget)
        return {
            "condition": ctx.condition_text(),
            "context": text,
            "signature": ctx.signature_text(self.n_signature_genes),
        }

    async def propose(
        self, context: ProposalContext, feedback: Feedback | None = None, *, k: int = 1
    ) -> list[Proposal]:
        k = max(1, int(k))
        temperature = self.temperature if k == 1 else max(self.temperature, 0.7)
        jobs = [self._one(context, feedback, seed=context.seed + i, temperature=temperature) for i in range(k)]
        return list(await asyncio.gather(*jobs))

    async def _one(self, ctx: ProposalContext, fb: Feedback | None, *, seed: int, temperature: float) -> Proposal:
        from mechcell.agents.llm import LLMError, graph_parse_fn

        values = self._values(ctx)
        params: dict[str, Any] = {"seed": seed, "temperature": temperature}
        if self.max_tokens:
            params["max_tokens"] = self.max_tokens
        calls: list[dict[str, Any]] = []
        prompts: list[str] = []
        report_text: str | None = None
        try:
            if fb is not None:
                prev = fb.previous.text or (fb.previous.graph.to_text() if fb.previous.graph else "")
                lines = fb.lines or ["(no claim was contradicted; strengthen inconclusive links)"]
                prompt = self.prompts["revise"]
                messages = prompt.messages(**values, previous=prev, feedback="\n".join(f"- {x}" for x in lines))
            elif self.two_step:
                report_prompt = self.prompts["report"]
                prompts.append(report_prompt.ref)
                resp = await self.client.complete(report_prompt.messages(**values), **params)
                calls.append(resp.call.model_dump(mode="json"))
                report_text = resp.text
                prompt = self.prompts["formalise"]
                messages = prompt.messages(**values, report=report_text)
            else:
                prompt = self.prompts["one_step"]
                messages = prompt.messages(**values)
            prompts.append(prompt.ref)
            outcome = await self.client.complete_parsed(
                messages,
                graph_parse_fn,
                max_repairs=self.max_repairs,
                repair_prompt=self.prompts["repair"],
                **params,
            )
        except LLMError as exc:
            partial = exc.partial
            if exc.call is not None:
                calls.append(exc.call.model_dump(mode="json"))
            repairs = [
                {"round": a.round, "text": a.text, "problems": a.problems}
                for a in (partial.attempts if partial else [])
            ]
            calls += [a.call.model_dump(mode="json") for a in (partial.attempts if partial else [])]
            return Proposal(
                proposer=self.name,
                text=partial.text if partial else "",
                failure=f"LLM call failed: {exc}",
                prompts=prompts,
                llm_calls=calls,
                repairs=repairs,
                intermediate=report_text,
                note="transport failure",
            )
        calls += [a.call.model_dump(mode="json") for a in outcome.attempts]
        prompts.append(outcome.prompt or self.prompts["repair"].ref)
        repairs = [{"round": a.round, "text": a.text, "problems": a.problems} for a in outcome.attempts]
        n_rep = len(outcome.attempts) - 1
        if not outcome.ok:
            return Proposal(
                proposer=self.name,
                text=outcome.text,
                problems=list(outcome.problems),
                failure=outcome.failure or "the answer could not be read as a graph",
                prompts=prompts,
                llm_calls=calls,
                repairs=repairs,
                intermediate=report_text,
                note=f"unreadable after {n_rep} repair round(s)",
            )
        parsed = outcome.result
        graph = parsed.graph if parsed is not None else None
        kind = "revision" if fb is not None else ("two-step" if self.two_step else "one-step")
        return Proposal(
            proposer=self.name,
            text=outcome.text,
            graph=graph,
            prompts=prompts,
            llm_calls=calls,
            repairs=repairs,
            intermediate=report_text,
            note=f"{kind}; {n_rep} repair round(s)"
            + (f"; answer: {parsed.answer.strip()[:200]}" if parsed and parsed.answer else ""),
        )


@register_proposer("llm")
def _llm_two_step(*, settings: Settings | None = None, client: LLMClient | None = None, **kw: Any) -> LLMProposer:
    from mechcell.agents.llm import LLMClient

    return LLMProposer(client or LLMClient(settings), two_step=True, **kw)


@register_proposer("llm-one-step")
def _llm_one_step(*, settings: Settings | None = None, client: LLMClient | None = None, **kw: Any) -> LLMProposer:
    from mechcell.agents.llm import LLMClient

    return LLMProposer(client or LLMClient(settings), two_step=False, **kw)


@register_proposer("policy")
def _policy(*, settings: Settings | None = None, **kw: Any) -> Proposer:
    """The trained graph-building policy (`mechcell train policy`; options: checkpoint=DIR, temperature=, seed=).
    The checkpoint comes from the option or `Settings.policy_checkpoint` (MECHCELL_POLICY_CHECKPOINT); an untrained
    policy is never served under this name. Imported lazily: torch loads only when this proposer is asked for."""
    from mechcell.config import Settings

    checkpoint = kw.pop("checkpoint", None) or (settings or Settings()).policy_checkpoint
    if checkpoint is None:
        raise InputError(
            "proposer 'policy' needs a checkpoint: train one with `mechcell train policy --out DIR` and set "
            "MECHCELL_POLICY_CHECKPOINT=DIR (or pass checkpoint=DIR)"
        )
    from mechcell.models.policy import policy_proposer

    return policy_proposer(settings=settings, checkpoint=checkpoint, **kw)
