"""Retrieval: what the knowledge base says about one perturbation condition, ranked, and rendered for a prompt.

A perturbation is a drug (its targets and the action on each), a protein acting from outside the cell (a ligand
such as IFNB1: its first targets are its receptors in the signed network) or a gene knocked out / down (CRISPR):
retrieval says which it assumed and why. From each target it follows signed paths (≤ max_len steps, k shortest
per end) to TFs that have a regulon and to pathways (through their activity anchors), predicts the sign of each
end's activity change (action sign × path sign), and — when a signature is given — ranks the ends by how well the
TF's regulon / pathway's footprint enrichment agrees with that prediction (`mechcell.knowledge.enrich`).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mechcell.datasets.schemas import Condition, Signature
from mechcell.knowledge.enrich import SetScorer, rank_normal
from mechcell.knowledge.graph import path_sign, paths_from_dag, shortest_path_dag
from mechcell.knowledge.models import (
    ActivityScore,
    Driver,
    PathHit,
    Relation,
    Resolution,
    RetrievedContext,
    SignedPath,
    TargetHit,
)
from mechcell.knowledge.resolve import genetic_gene_part
from mechcell.knowledge.store import KnowledgeBase

_LIGAND_NAME = re.compile(
    r"interferon|interleukin|chemokine|growth factor|tumor necrosis factor|tnf superfamily member|\bligand\b|"
    r"colony stimulating factor|cytokine|wnt family member|bone morphogenetic protein|transforming growth factor|"
    r"erythropoietin|leukemia inhibitory|oncostatin|\binsulin\b|hedgehog",
    re.IGNORECASE,
)
_NOT_LIGAND = re.compile(
    r"receptor|regulatory factor|induced|inducible|stimulated|binding|kinase|associated|"
    r"interacting|enhancer|signal transducer|activated|responsive",
    re.IGNORECASE,
)
_WORD = {1: "up", -1: "down", 0: "unclear"}


def approx_tokens(text: str) -> int:
    """A conservative token estimate (≈3 characters per token: gene symbols tokenise worse than prose)."""
    return math.ceil(len(text) / 3)


@dataclass
class _Hit:
    """A path found by the BFS before it is materialised (cheap tuples; only the top ones become models)."""

    start: str
    end: str
    end_type: str
    nodes: list[str]
    signs: list[int]
    action: int
    tail: Relation | None

    @property
    def predicted(self) -> int:
        return self.action * path_sign(self.signs)

    @property
    def length(self) -> int:
        return len(self.signs)


class Retriever:
    """Builds a `RetrievedContext` per condition. Keeps per-KB caches (scorers, BFS results): reuse one Retriever
    for a batch of conditions."""

    def __init__(
        self,
        kb: KnowledgeBase,
        *,
        max_len: int = 3,
        k_paths: int = 3,
        max_paths: int = 20,
        max_tfs: int = 15,
        max_pathways: int = 10,
    ) -> None:
        self.kb = kb
        self.max_len = max_len
        self.k_paths = k_paths
        self.max_paths = max_paths
        self.max_tfs = max_tfs
        self.max_pathways = max_pathways
        self._adj = kb.adjacency()
        self._tf_nodes = kb._tf_nodes(self._adj)
        self._anchor_nodes: dict[str, list[Relation]] = defaultdict(list)
        for pw in kb.footprint_names() + sorted(kb._anchors):
            for rel in kb.pathway_anchors(pw):
                if rel not in self._anchor_nodes[rel.subject]:
                    self._anchor_nodes[rel.subject].append(rel)
        self._bfs: dict[str, tuple[dict, dict]] = {}
        self._tf_scorer: SetScorer | None = None
        self._pw_scorer: SetScorer | None = None
        self._gene_cols: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._gene_canon: dict[str, str] = {}
        self._member_rel: dict[tuple[str, str], Relation | None] = {}

    # ---------------------------------------------------------------- classification
    def _is_ligand(self, gene: str) -> tuple[bool, str]:
        if "ligand" in self.kb.roles(gene):
            return True, f"{gene} has the role 'ligand'"
        if not self._adj.succ.get(gene):
            return False, ""
        name = ""
        rows = self.kb._q("SELECT name FROM entities WHERE id = ? AND type = 'gene' AND name IS NOT NULL", [gene])
        if rows:
            name = rows[0][0] or ""
        if name and _LIGAND_NAME.search(name) and not _NOT_LIGAND.search(name):
            return True, f"{gene} ({name}) is a secreted ligand with signed edges to its receptors"
        return False, ""

    def classify(self, perturbation: str, kind: str | None = None) -> tuple[str, str, Resolution]:
        """(kind, reason, resolution) for a perturbation name; `kind` forces drug / ligand / genetic."""
        if kind not in (None, "drug", "ligand", "genetic"):
            raise ValueError(f"kind must be drug, ligand or genetic, got {kind!r}")
        if kind in (None, "drug"):
            r = self.kb.resolve_drug(perturbation)
            if r.status == "resolved":
                how = "" if r.matched_by == "name" else f" ({r.matched_by})"
                return "drug", f"{perturbation!r} is the drug {r.id}{how}", r
            if kind == "drug":
                return "unknown", f"{perturbation!r} is not a known drug", r
        part = genetic_gene_part(perturbation)
        if part and kind in (None, "genetic"):
            rg = self.kb.resolve_gene(part)
            if rg.status == "resolved" and rg.entity_type == "gene":
                return "genetic", f"{perturbation!r} names a genetic perturbation of {rg.id}", rg
        rg = self.kb.resolve_gene(perturbation)
        if rg.status == "resolved" and rg.entity_type == "gene" and rg.id:
            if kind == "ligand":
                return "ligand", f"{rg.id} treated as a ligand (asked for)", rg
            if kind == "genetic":
                return "genetic", f"{rg.id} treated as knocked out / down (asked for)", rg
            lig, why = self._is_ligand(rg.id)
            if lig:
                return "ligand", why, rg
            return (
                "genetic",
                (f"{perturbation!r} is the gene {rg.id}, not a drug or a ligand: assumed knocked out or down"),
                rg,
            )
        if rg.status == "resolved":  # a family: a genetic perturbation of its members
            return "genetic", f"{perturbation!r} is the {rg.entity_type} {rg.id}: its members assumed knocked down", rg
        rd = self.kb.resolve_drug(perturbation)
        sugg = list(dict.fromkeys(rd.suggestions + rg.suggestions))[:6]
        res = rg if rg.status == "ambiguous" else rd.model_copy(update={"suggestions": sugg})
        return (
            "unknown",
            f"{perturbation!r} resolves to no drug or gene"
            + (f" (ambiguous: {', '.join(rg.symbols)})" if rg.status == "ambiguous" else ""),
            res,
        )

    # ---------------------------------------------------------------- targets
    def _targets(self, kind: str, res: Resolution) -> tuple[list[TargetHit], list[tuple[str, int]]]:
        """(targets shown to the user, path start nodes with the sign of what is done to them)."""
        if kind == "drug":
            by: dict[str, list[Relation]] = defaultdict(list)
            for rel in self.kb.drug_targets(res.id or res.query):
                by[rel.object].append(rel)
            hits = []
            for gene, rels in by.items():
                curated = [r for r in rels if not r.model_generated]
                use = curated or rels
                signs = Counter(r.sign for r in use if r.sign != 0)
                sign = (
                    signs.most_common(1)[0][0]
                    if signs and len(set(signs)) == 1
                    else (0 if not signs else max(signs, key=lambda s: (signs[s], s)))
                )
                hits.append(
                    TargetHit(
                        gene=gene,
                        action=use[0].action or use[0].predicate,
                        sign=sign,
                        sources=list(dict.fromkeys(r.source for r in rels)),
                        model_generated_only=not curated,
                        relations=rels,
                    )
                )
            hits.sort(key=lambda h: (h.model_generated_only, h.gene))
            return hits, [(h.gene, h.sign) for h in hits]
        if kind == "ligand":
            lig = res.id or res.query
            hits = [
                TargetHit(
                    gene=v,
                    action="ligand binding",
                    sign=s,
                    sources=[r.source for r in self.kb.edge_relations(lig, v)][:3],
                    relations=self.kb.edge_relations(lig, v),
                )
                for v, s in sorted(self._adj.succ.get(lig, []))
            ]
            return hits, [(lig, 1)]
        genes = res.symbols if res.entity_type in ("family", "complex") else [res.id or res.query]
        hits = [
            TargetHit(gene=g, action="knockout/knockdown (assumed)", sign=-1, sources=["perturbation"]) for g in genes
        ]
        return hits, [(g, -1) for g in genes]

    # ---------------------------------------------------------------- paths
    def _dag(self, node: str) -> tuple[dict, dict]:
        if node not in self._bfs:
            self._bfs[node] = shortest_path_dag(self._adj, node, self.max_len) if node in self._adj else ({}, {})
        return self._bfs[node]

    def _member_relation(self, member: str, group: str) -> Relation | None:
        key = (member, group)
        if key not in self._member_rel:
            rels = self.kb.relations(
                subject=member, predicate=["part_of", "is_a"], object=group, resolve=False, limit=1
            )
            self._member_rel[key] = rels[0] if rels else None
        return self._member_rel[key]

    def _counts(self, node: str) -> dict[str, tuple[int, int, int]]:
        """Number of shortest paths from `node` to every reached node, split by path sign (+, −, 0), by dynamic
        programming over the BFS DAG — no enumeration, so hubs cost no more than their reach."""
        key = ("counts", node)
        if key not in self._bfs:
            dist, preds = self._dag(node)
            counts: dict[str, tuple[int, int, int]] = {}
            for v in sorted(dist, key=dist.__getitem__):
                if v == node:
                    counts[v] = (1, 0, 0)
                    continue
                pos = neg = zero = 0
                for u, e in preds[v]:
                    p, n, z = counts[u]
                    if e > 0:
                        pos, neg = pos + p, neg + n
                    elif e < 0:
                        pos, neg = pos + n, neg + p
                    else:
                        zero += p + n
                    zero += z
                counts[v] = (pos, neg, zero)
            self._bfs[key] = counts  # type: ignore[assignment]
        return self._bfs[key]  # type: ignore[return-value]

    def _ends(self, starts: list[tuple[str, int]]) -> dict[tuple[str, str], dict]:
        """Every TF / pathway reached from a start: shortest length, the starts and graph nodes reaching it at that
        length, and predicted-sign votes (action sign × path sign, weighted by the number of shortest paths)."""
        out: dict[tuple[str, str], dict] = {}
        for start, action in starts:
            dist, _ = self._dag(start)
            counts = self._counts(start)
            for node, d in dist.items():
                ends: list[tuple[str, str, Relation | None]] = []
                for tf in self._tf_nodes.get(node, ()):
                    ends.append((tf, "tf", None if tf == node else self._member_relation(node, tf)))
                for rel in self._anchor_nodes.get(node, ()):
                    ends.append((rel.object, "pathway", rel))
                if not ends:
                    continue
                pos, neg, zero = counts[node]
                for name, etype, tail in ends:
                    tail_sign = 1 if tail is None else (tail.sign or 1)
                    length = d + (0 if tail is None else 1)
                    e = out.setdefault((etype, name), {"length": length, "via": [], "votes": Counter()})
                    if length < e["length"]:
                        e.update(length=length, via=[], votes=Counter())
                    if length == e["length"]:
                        e["via"].append((start, action, node, tail))
                        e["votes"][action * tail_sign] += pos
                        e["votes"][-action * tail_sign] += neg
                        e["votes"][0] += zero
        return out

    def _paths_to(self, end: str, etype: str, info: dict, k: int) -> list[_Hit]:
        """Up to k shortest paths to one end (enumerated only for the ends that are shown)."""
        hits: list[_Hit] = []
        for start, action, node, tail in info["via"]:
            _, preds = self._dag(start)
            for nodes, signs in paths_from_dag(preds, start, node, k - len(hits)):
                if tail is not None:
                    hits.append(_Hit(start, end, etype, nodes + [end], signs + [tail.sign or 1], action, tail))
                else:
                    hits.append(_Hit(start, end, etype, nodes, signs, action, None))
            if len(hits) >= k:
                break
        return hits

    # ---------------------------------------------------------------- scores
    def _scorers(self) -> tuple[SetScorer, SetScorer]:
        if self._tf_scorer is None:
            self._tf_scorer = SetScorer(
                {tf: {g: float(s) for g, s in reg.items()} for tf, reg in self.kb.regulons().items()}
            )
            self._pw_scorer = SetScorer(self.kb.footprints())
        assert self._pw_scorer is not None
        return self._tf_scorer, self._pw_scorer

    def _columns(self, genes: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Scorer columns of a signature's genes (mapped to the KB's symbols: previous symbols, Ensembl ids),
        cached per gene list — a dataset's signatures share theirs."""
        key = hash(tuple(genes))
        hit = self._gene_cols.get(key)
        if hit is None:
            tf, pw = self._scorers()
            known = set(tf.genes) | set(pw.genes)
            canon = []
            memo = self._gene_canon  # per gene, across gene lists: signatures of one dataset keep different genes
            for g in genes:
                if g not in known:
                    c = memo.get(g)
                    if c is None:
                        r = self.kb.resolve_gene(g)  # an unknown name also pays for fuzzy suggestions: do it once
                        c = r.id if r.status == "resolved" and r.entity_type == "gene" and r.id in known else g
                        memo[g] = c
                    g = c
                canon.append(g)
            hit = (tf.columns(canon), pw.columns(canon))
            self._gene_cols[key] = hit
        return hit

    def score_signature(self, signature: Signature) -> tuple[pd.DataFrame, pd.DataFrame]:
        """TF and pathway enrichment scores (score, pvalue, n_genes) of a signature (`stat` when it has one, else
        log2 fold change; see `mechcell.knowledge.enrich`)."""
        tf, pw = self._scorers()
        values = signature.stat if signature.stat is not None else signature.log2fc
        z = rank_normal(np.asarray(values, dtype=np.float64))
        tf_cols, pw_cols = self._columns(list(signature.genes))
        return tf.score_array(z, tf_cols), pw.score_array(z, pw_cols)

    # ---------------------------------------------------------------- the context
    def context(
        self, condition: Condition, signature: Signature | None = None, budget: int = 2000, *, kind: str | None = None
    ) -> RetrievedContext:
        """Targets, ranked signed paths to TFs / pathways, TF and pathway scores, drivers and a prompt rendering
        that fits `budget` tokens (≈3 characters per token)."""
        pk, reason, res = self.classify(condition.perturbation, kind)
        targets, starts = self._targets(pk, res) if pk != "unknown" else ([], [])
        ends = self._ends(starts)
        tf_scores = pw_scores = None
        if signature is not None:
            tf_scores, pw_scores = self.score_signature(signature)

        def agg(kind_: str, scores: pd.DataFrame | None) -> list[ActivityScore]:
            lookup = None
            if scores is not None:
                sc_arr = scores["score"].to_numpy()
                lookup = dict(
                    zip(
                        scores.index.tolist(),
                        zip(sc_arr.tolist(), scores["pvalue"].tolist(), scores["n_genes"].tolist(), strict=True),
                        strict=True,
                    )
                )
            out = []
            for (etype, end), info in ends.items():
                if etype != kind_:
                    continue
                votes: Counter[int] = info["votes"]
                ranked = votes.most_common()
                pred = ranked[0][0] if ranked and (len(ranked) == 1 or ranked[0][1] > ranked[1][1]) else 0
                sc = pv = None
                n = 0
                if lookup is not None and end in lookup:
                    s_, p_, n = lookup[end]
                    if not math.isnan(s_):
                        sc, pv = s_, p_
                out.append(
                    ActivityScore(
                        name=end,
                        kind=kind_,
                        reached=True,
                        path_length=info["length"],
                        n_paths=sum(votes.values()),
                        predicted_sign=pred,
                        score=sc,
                        pvalue=pv,
                        n_genes=n,
                        agreement=None if sc is None else pred * sc,
                    )
                )
            if lookup is not None:
                reached = {a.name for a in out}
                finite = [(abs(v[0]), k) for k, v in lookup.items() if k not in reached and not math.isnan(v[0])]
                finite.sort(reverse=True)
                for _, name in finite[: 5 if kind_ == "tf" else len(finite)]:
                    s_, p_, n_ = lookup[name]
                    out.append(ActivityScore(name=name, kind=kind_, reached=False, score=s_, pvalue=p_, n_genes=n_))
            n_reg = (lambda x: len(self.kb.regulons().get(x, {}))) if kind_ == "tf" else (lambda x: 0)
            out.sort(
                key=lambda a: (
                    not a.reached,
                    -(a.agreement if a.agreement is not None else -1e9) if signature else 0,
                    a.path_length if a.path_length is not None else 99,
                    -a.n_paths,
                    -n_reg(a.name),
                    -(abs(a.score) if a.score is not None else 0),
                    a.name,
                )
            )
            return out

        tfs = agg("tf", tf_scores)
        pathways = agg("pathway", pw_scores)
        # paths of the best-ranked ends, alternating TFs and pathways so both stay visible under a tight budget
        order: list[tuple[str, ActivityScore]] = []
        tf_reached = [a for a in tfs if a.reached]
        pw_reached = [a for a in pathways if a.reached]
        for i in range(max(len(tf_reached), len(pw_reached))):
            order += [("tf", a) for a in tf_reached[i : i + 1]] + [("pathway", a) for a in pw_reached[i : i + 1]]
        chosen: list[PathHit] = []
        for etype, a in order:
            if len(chosen) >= self.max_paths:
                break
            for h in self._paths_to(
                a.name, etype, ends[(etype, a.name)], min(self.k_paths, self.max_paths - len(chosen))
            ):
                chosen.append(
                    PathHit(
                        start=h.start,
                        end=h.end,
                        end_type=h.end_type,
                        path=self._materialise(h),
                        predicted_sign=h.predicted,
                        score=a.agreement,
                    )
                )
        cell = condition.context or condition.context_name
        drivers: list[Driver] = []
        cell_name = None
        for c in (condition.context, condition.context_name):
            if c:
                drivers = self.kb.cell_line_drivers(c)
                if drivers:
                    cell_name = drivers[0].cell_line
                    break
        ctx = RetrievedContext(
            condition_key=condition.key,
            perturbation=condition.perturbation,
            kind=pk,
            kind_reason=reason,
            resolution=res,
            targets=targets,
            paths=chosen,
            tfs=[a for a in tfs if a.reached][: self.max_tfs] + [a for a in tfs if not a.reached][:5],
            pathways=[a for a in pathways if a.reached][: self.max_pathways] + [a for a in pathways if not a.reached],
            drivers=drivers,
            cell_line=cell_name or cell,
            kb_version=self.kb.version,
            signature_used=signature is not None,
            budget=budget,
        )
        text = render(ctx, budget)
        return ctx.model_copy(update={"text": text, "n_tokens": approx_tokens(text)})

    def _materialise(self, h: _Hit) -> SignedPath:
        rels: list[Relation] = []
        core = h.nodes[:-1] if h.tail is not None else h.nodes
        for u, v in zip(core, core[1:], strict=False):
            er = self.kb.edge_relations(u, v)
            rels.append(er[0])
        if h.tail is not None:
            rels.append(h.tail)
        return SignedPath(nodes=list(h.nodes), signs=list(h.signs), sign=path_sign(h.signs), relations=rels)


# -------------------------------------------------------------------------------------------------- rendering


def _fmt_score(a: ActivityScore) -> str:
    if a.score is None:
        return ""
    agree = ""
    if a.reached and a.predicted_sign != 0:
        agree = ", agrees" if a.predicted_sign * a.score > 0 else ", disagrees"
    return f"; observed z={a.score:+.1f} (p={a.pvalue:.1g}, {a.n_genes} genes{agree})"


def _lines(ctx: RetrievedContext, n_targets: int, n_paths: int, n_tfs: int, n_pw: int, n_drv: int) -> list[str]:
    head = [
        f"Perturbation: {ctx.perturbation} — assumed {ctx.kind} ({ctx.kind_reason}).",
        f"Condition: {ctx.condition_key}; KB {ctx.kb_version}.",
    ]
    if ctx.kind == "unknown" and ctx.resolution.suggestions:
        head.append(f"Did you mean: {', '.join(ctx.resolution.suggestions)}?")
    out = list(head)
    if ctx.targets and n_targets:
        out.append("Targets (action; sources):")
        for t in ctx.targets[:n_targets]:
            flag = " [model-generated source only]" if t.model_generated_only else ""
            out.append(f"- {t.gene}: {t.action} ({_WORD[t.sign] if t.sign else 'binds'}); {', '.join(t.sources)}{flag}")
        if len(ctx.targets) > n_targets:
            out.append(f"- … {len(ctx.targets) - n_targets} more targets")
    if ctx.drivers and n_drv:
        drv = ", ".join(
            f"{d.gene} {d.variant or ''}{' (' + d.effect + ')' if d.effect else ''}".strip()
            for d in ctx.drivers[:n_drv]
        )
        out.append(f"Drivers of {ctx.cell_line}: {drv}" + (" …" if len(ctx.drivers) > n_drv else ""))
    if ctx.paths and n_paths:
        out.append("Signed paths (→ activates, ⊣ inhibits; predicted change of the end's activity):")
        for p in ctx.paths[:n_paths]:
            out.append(f"- {p.path.render()} ⇒ {p.end} {_WORD[p.predicted_sign]}")
    tfs = [a for a in ctx.tfs if a.reached or a.score is not None][:n_tfs]
    if tfs:
        out.append("Transcription factors (predicted from paths; observed from the signature):")
        for a in tfs:
            pred = f"predicted {_WORD[a.predicted_sign]} ({a.path_length} steps)" if a.reached else "no path"
            out.append(f"- {a.name}: {pred}{_fmt_score(a)}")
    pws = [a for a in ctx.pathways if a.reached or a.score is not None][:n_pw]
    if pws:
        out.append("Pathways:")
        for a in pws:
            pred = f"predicted {_WORD[a.predicted_sign]} ({a.path_length} steps)" if a.reached else "no path"
            out.append(f"- {a.name}: {pred}{_fmt_score(a)}")
    if not ctx.targets and ctx.kind != "unknown":
        out.append("No targets known in this KB.")
    return out


def render(ctx: RetrievedContext, budget: int) -> str:
    """The compact prompt text: every section, shrunk item by item (paths first) until it fits the budget."""
    n = {
        "paths": len(ctx.paths),
        "tfs": len(ctx.tfs),
        "pw": len(ctx.pathways),
        "targets": len(ctx.targets),
        "drv": len(ctx.drivers),
    }
    order = ["paths", "tfs", "pw", "drv", "targets"]
    while True:
        text = "\n".join(_lines(ctx, n["targets"], n["paths"], n["tfs"], n["pw"], n["drv"]))
        if approx_tokens(text) <= budget:
            return text
        shrinkable = [k for k in order if n[k] > (1 if k == "targets" else 0)]
        if not shrinkable:
            return text[: max(0, budget * 3 - 1)] + "…"
        k = max(shrinkable, key=lambda x: (n[x], -order.index(x)))
        n[k] -= 1
