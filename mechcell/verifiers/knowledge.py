"""Knowledge verifier: each claim checked against the KB's typed, signed, sourced records.

Rules (documented in docs/verifiers.md):
- binding: the drug's target records (families expanded: a claim on "MEK" is checked against MAP2K1/MAP2K2). Found →
  supported; the drug has other listed targets but not this one → contradicted; no targets known → inconclusive.
- activity / pathway / degradation: the upstream step's direction times the sign of the shortest signed KB path from
  the upstream entity to the claimed one must equal the claimed direction (an inhibitor does not "activate").
- expression: regulator → gene through a CollecTRI-style regulon sign, a signed path to a TF that regulates the
  gene, or a pathway footprint weight; the predicted gene direction must equal the claimed one.
- annotation: gene-set membership. Support resting only on model-generated records (Tahoe's LLM-written targets) is
  flagged and scores lower.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mechcell.graphs import Claim, main_entity
from mechcell.verifiers.base import VerificationContext, register
from mechcell.verifiers.types import Evidence, Status, Verdict

if TYPE_CHECKING:
    from mechcell.knowledge import KnowledgeBase
    from mechcell.knowledge.models import Relation, SignedPath

_DIR = {"up": 1, "down": -1}
_REGULATOR_INDEX: dict[str, dict[str, dict[str, int]]] = {}
_NAME = {1: "up", -1: "down", 0: "unsigned"}


def relation_evidence(r: Relation) -> Evidence:
    url = next((e for e in r.evidence if e.startswith("http")), None)
    if url is None:
        pmid = next((e for e in r.evidence if e.upper().startswith("PMID:")), None)
        url = f"https://pubmed.ncbi.nlm.nih.gov/{pmid.split(':', 1)[1]}/" if pmid else None
    sign = {1: "+", -1: "-", 0: "?"}[r.sign]
    detail = f"{r.subject} {r.predicate}{'' if r.predicate in ('inhibits', 'activates') else f' ({sign})'} {r.object}"
    if r.action:
        detail += f" [{r.action}]"
    return Evidence(
        source=r.source,
        version=r.version,
        record_id=r.record_id,
        detail=detail,
        url=url,
        model_generated=r.model_generated,
    )


def path_evidence(p: SignedPath) -> list[Evidence]:
    ev = [relation_evidence(r) for r in p.relations]
    return [Evidence(source="kb-path", detail=f"signed path {p.render()} (sign {_NAME[p.sign]})"), *ev]


class KnowledgeVerifier:
    name = "knowledge"
    description = "claims against KB records: drug targets, the signed network, regulons, footprints, gene sets"

    def verify(self, claims: Sequence[Claim], ctx: VerificationContext) -> list[Verdict]:
        if ctx.kb is None:
            return [self._v(c, "uncheckable", "no knowledge base given") for c in claims]
        out: list[Verdict] = []
        per_gene: dict[str, list[Verdict]] = {}
        for c in claims:
            if c.kind == "expression_set":
                continue
            v = self.check(c, ctx)
            out.append(v)
            if c.kind == "expression":
                per_gene.setdefault(c.node_id, []).append(v)
        for c in claims:
            if c.kind == "expression_set":
                out.append(self._set_verdict(c, per_gene.get(c.node_id, [])))
        return out

    # ------------------------------------------------------------------ dispatch
    def check(self, c: Claim, ctx: VerificationContext) -> Verdict:
        try:
            fn = {
                "binding": self._binding,
                "molecule_activity": self._activity,
                "pathway_activity": self._activity,
                "degradation": self._activity,
                "expression": self._expression,
                "annotation": self._annotation,
                "phenotype": self._phenotype,
            }.get(c.kind)
            if fn is None:
                return self._v(c, "uncheckable", f"no KB source speaks to {c.kind} claims")
            return fn(c, ctx)
        except Exception as exc:  # a KB lookup failure must not sink the whole report
            return self._v(c, "uncheckable", f"KB lookup failed: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ helpers
    def _v(
        self,
        c: Claim,
        status: Status,
        reason: str,
        evidence: list[Evidence] | None = None,
        score: float = 0.0,
        ctx: VerificationContext | None = None,
        **diag: Any,
    ) -> Verdict:
        evidence = evidence or []
        kb_ev = [e for e in evidence if e.source not in ("kb-path",)]
        model_only = bool(kb_ev) and all(e.model_generated for e in kb_ev)
        if status == "supported":
            credit = ctx.settings.model_generated_credit if (ctx and model_only) else 1.0
            score = max(0.0, min(1.0, score * credit))
        else:
            score = 0.0
        if model_only and status == "supported":
            reason += " (rests only on model-generated records)"
        return Verdict(
            claim=c,
            verifier=self.name,
            status=status,
            score=score,
            evidence=evidence,
            reason=reason,
            model_generated_source=model_only,
            diagnostics=diag,
        )

    @staticmethod
    def _genes(kb: KnowledgeBase, name: str | None) -> list[str]:
        """A name as gene symbols: a gene → [symbol], a family/complex → its members, else []."""
        if not name:
            return []
        r = kb.resolve_gene(name)
        if r.status != "resolved":
            return kb.expand_family(name)
        return list(r.symbols) if r.entity_type in ("family", "complex") and r.symbols else [r.id or name]

    def _upstream(self, c: Claim, ctx: VerificationContext) -> tuple[str | None, int, str | None]:
        """(entity the step follows from, its activity sign, drug name if the upstream step is a binding)."""
        if c.edge is None:
            if ctx.condition is not None:
                return ctx.condition.perturbation, 1, ctx.condition.perturbation
            return None, 1, None
        parent = ctx.graph.node(c.edge.src)
        prim = parent.primitive  # type: ignore[attr-defined]
        if prim == "binds_to":
            return parent.actor, 1, parent.actor  # type: ignore[attr-defined]
        direction = getattr(parent, "direction", None)
        sign = _DIR.get(direction, -1 if prim == "loss_of_function" else 1)
        return main_entity(parent), sign, None

    def _signed_paths(self, ctx: VerificationContext, a: str, b: str, max_len: int) -> list[SignedPath]:
        key = f"paths|{a}|{b}|{max_len}"
        if key not in ctx.cache:
            try:
                ctx.cache[key] = ctx.kb.paths(a, b, max_len=max_len, k=10)  # type: ignore[union-attr]
            except Exception:
                ctx.cache[key] = []
        return ctx.cache[key]

    def _judge_paths(
        self, c: Claim, ctx: VerificationContext, paths: list[SignedPath], up_sign: int, want: int, what: str
    ) -> Verdict:
        consistent = [p for p in paths if p.sign * up_sign == want]
        opposite = [p for p in paths if p.sign * up_sign == -want]
        if consistent and (not opposite or consistent[0].length <= opposite[0].length):
            p = consistent[0]
            return self._v(
                c,
                "supported",
                f"{what}: signed path {p.render()} predicts {_NAME[want]}",
                path_evidence(p),
                score=1.0 / (1.0 + 0.25 * max(0, p.length - 1)),
                ctx=ctx,
                path_length=p.length,
            )
        if opposite:
            p = opposite[0]
            return self._v(
                c,
                "contradicted",
                f"{what}: shortest signed path {p.render()} predicts {_NAME[-want]}, not {_NAME[want]}",
                path_evidence(p),
                path_length=p.length,
            )
        if paths:
            return self._v(
                c, "inconclusive", f"{what}: only unsigned paths ({paths[0].render()})", path_evidence(paths[0])
            )
        return self._v(c, "inconclusive", f"{what}: no signed KB path within {ctx.settings.max_path_len} steps")

    # ------------------------------------------------------------------ per kind
    def _binding(self, c: Claim, ctx: VerificationContext) -> Verdict:
        kb = ctx.kb
        assert kb is not None
        actor, target = c.subject or "", c.object or ""
        genes = set(self._genes(kb, target))
        if not genes:
            return self._v(c, "uncheckable", f"target {target!r} does not resolve to a gene or family")
        d = kb.resolve_drug(actor)
        if d.status != "resolved":
            # A protein acting from outside (ligand → receptor): a direct signed edge or a physical interaction.
            src = self._genes(kb, actor)
            if not src:
                return self._v(c, "uncheckable", f"actor {actor!r} is neither a known drug nor a gene")
            rels = [r for s in src for g in genes for r in kb.edge_relations(s, g)]
            rels += [
                r
                for s in src
                for r in kb.relations(subject=s, predicate="interacts_with", resolve=False)
                if r.object in genes
            ]
            if rels:
                return self._v(
                    c,
                    "supported",
                    f"{actor} → {target}: direct KB link",
                    [relation_evidence(r) for r in rels[:5]],
                    score=1.0,
                    ctx=ctx,
                )
            return self._v(c, "inconclusive", f"no direct KB link {actor} → {target}")
        rels = kb.drug_targets(d.id or actor)
        hits = [r for r in rels if r.object in genes]
        if hits:
            return self._v(
                c,
                "supported",
                f"{d.id} target {', '.join(sorted({r.object for r in hits}))} listed",
                [relation_evidence(r) for r in hits],
                score=1.0,
                ctx=ctx,
            )
        if rels:
            listed = sorted({r.object for r in rels})
            return self._v(
                c,
                "contradicted",
                f"{d.id}'s listed targets are {', '.join(listed[:8])}; not {target}",
                [relation_evidence(r) for r in rels[:6]],
            )
        return self._v(c, "inconclusive", f"no target is recorded for {d.id}")

    def _activity(self, c: Claim, ctx: VerificationContext) -> Verdict:
        kb = ctx.kb
        assert kb is not None
        want = _DIR.get(c.direction or "", 0)
        if want == 0:
            return self._v(c, "uncheckable", "no direction to check")
        obj = c.object or ""
        up, up_sign, drug = self._upstream(c, ctx)
        if up is None:
            return self._v(c, "uncheckable", "the step follows from nothing the KB can trace")
        if drug is not None:
            d = kb.resolve_drug(drug)
            if d.status == "resolved":
                genes = set(self._genes(kb, obj))
                hits = [r for r in kb.drug_targets(d.id or drug) if r.object in genes]
                signed = [r for r in hits if r.sign]
                if signed:
                    good = [r for r in signed if r.sign == want]
                    if good:
                        return self._v(
                            c,
                            "supported",
                            f"{d.id} {good[0].predicate} {good[0].object}",
                            [relation_evidence(r) for r in good],
                            score=1.0,
                            ctx=ctx,
                        )
                    return self._v(
                        c,
                        "contradicted",
                        f"{d.id} {signed[0].predicate} {signed[0].object}: activity goes "
                        f"{_NAME[signed[0].sign]}, not {_NAME[want]}",
                        [relation_evidence(r) for r in signed],
                    )
                if hits:
                    return self._v(
                        c,
                        "inconclusive",
                        f"{d.id} binds {obj} but the records give no sign",
                        [relation_evidence(r) for r in hits],
                    )
        paths = self._signed_paths(ctx, up, obj, ctx.settings.max_path_len)
        return self._judge_paths(c, ctx, paths, up_sign, want, f"{up} ({_NAME[up_sign]}) → {obj}")

    def _regulators_of(self, ctx: VerificationContext, gene: str) -> dict[str, int]:
        """TF → sign for the TFs whose regulon holds the gene (reverse index, built once per KB version)."""
        kb = ctx.kb
        assert kb is not None
        idx = _REGULATOR_INDEX.get(kb.version)
        if idx is None:
            idx = {}
            for tf, targets in kb.regulons().items():
                for g, s in targets.items():
                    idx.setdefault(g, {})[tf] = s
            _REGULATOR_INDEX.clear()  # one KB at a time is the common case; keeps memory bounded
            _REGULATOR_INDEX[kb.version] = idx
        return idx.get(gene, {})

    def _expression(self, c: Claim, ctx: VerificationContext) -> Verdict:
        kb = ctx.kb
        assert kb is not None
        want = _DIR.get(c.direction or "", 0)
        g = kb.resolve_gene(c.object or "")
        if g.status != "resolved" or g.entity_type != "gene":
            return self._v(c, "uncheckable", f"{c.object!r} is not a resolvable gene ({g.status})")
        gene = g.id or ""
        up, up_sign, drug = self._upstream(c, ctx)
        reg = c.subject or up or ""
        # The regulator's own activity: from the step it follows (the claim's direction is the gene's).
        reg_sign = up_sign if (up and (drug is None)) else 1
        if drug is not None and reg:
            d_hits = [r for r in kb.drug_targets(drug) if r.object in set(self._genes(kb, reg)) and r.sign]
            reg_sign = d_hits[0].sign if d_hits else 1
        regs = self._genes(kb, reg)
        # 1) direct regulon edges
        tf_of = self._regulators_of(ctx, gene)
        direct = [(r, tf_of[r]) for r in regs if r in tf_of]
        if direct:
            preds = {reg_sign * s for _, s in direct}
            rels = [
                x
                for r, _ in direct
                for x in kb.relations(subject=r, predicate="regulates_expression", object=gene, resolve=False)
            ]
            ev = [relation_evidence(x) for x in rels[:6]]
            if want in preds:
                return self._v(
                    c,
                    "supported",
                    f"{reg} ({_NAME[reg_sign]}) regulates {gene} with sign {_NAME[reg_sign * want]}",
                    ev,
                    score=1.0,
                    ctx=ctx,
                )
            return self._v(c, "contradicted", f"{reg} ({_NAME[reg_sign]}) regulates {gene} with the opposite sign", ev)
        # 2) footprints: a pathway (or a pathway's anchor gene) whose footprint holds the gene
        for pw in self._pathways_for(kb, reg, regs):
            w = kb.footprint(pw).get(gene)
            if w:
                pred = reg_sign * (1 if w > 0 else -1)
                ev = [Evidence(source="footprint", record_id=f"{pw}:{gene}", detail=f"{pw} footprint weight {w:+.3g}")]
                if pred == want:
                    return self._v(
                        c, "supported", f"{gene} is in the {pw} footprint (weight {w:+.3g})", ev, score=0.9, ctx=ctx
                    )
                return self._v(c, "contradicted", f"{gene} responds {_NAME[pred]} in the {pw} footprint", ev)
        # 3) a signed path from the regulator to a TF that regulates the gene
        best: tuple[SignedPath, str, int] | None = None
        for tf, s in sorted(tf_of.items()):
            for p in self._signed_paths(ctx, reg, tf, max(1, ctx.settings.max_path_len - 1)):
                if p.sign and (best is None or p.length < best[0].length):
                    best = (p, tf, s)
        if best is not None:
            p, tf, s = best
            pred = reg_sign * p.sign * s
            rels = kb.relations(subject=tf, predicate="regulates_expression", object=gene, resolve=False)
            ev = path_evidence(p) + [relation_evidence(x) for x in rels[:3]]
            if pred == want:
                return self._v(
                    c,
                    "supported",
                    f"{p.render()} and {tf} regulates {gene} ({'+' if s > 0 else '-'})",
                    ev,
                    score=1.0 / (1.0 + 0.25 * p.length),
                    ctx=ctx,
                )
            return self._v(c, "contradicted", f"{p.render()} then {tf} predicts {gene} {_NAME[pred]}", ev)
        return self._v(c, "inconclusive", f"no KB link from {reg} to {gene}")

    @staticmethod
    def _pathways_for(kb: KnowledgeBase, reg: str, regs: list[str]) -> list[str]:
        names = kb.footprint_names()
        out = [n for n in names if n.lower() == reg.lower()]
        for n in names:
            if any(a.subject in regs for a in kb.pathway_anchors(n)) and n not in out:
                out.append(n)
        return out

    def _annotation(self, c: Claim, ctx: VerificationContext) -> Verdict:
        kb = ctx.kb
        assert kb is not None
        members = kb.gene_set(c.object or "")
        if not members:
            return self._v(c, "uncheckable", f"gene set / term {c.object!r} is not in the KB")
        genes = set(self._genes(kb, c.subject))
        if genes & set(members):
            return self._v(
                c,
                "supported",
                f"{c.subject} is a member of {c.object}",
                [Evidence(source="gene-sets", record_id=str(c.object), detail=f"{c.subject} ∈ {c.object}")],
                score=1.0,
                ctx=ctx,
            )
        return self._v(
            c,
            "contradicted",
            f"{c.subject} is not among the {len(members)} members of {c.object}",
            [Evidence(source="gene-sets", record_id=str(c.object), detail=f"{len(members)} members")],
        )

    def _phenotype(self, c: Claim, ctx: VerificationContext) -> Verdict:
        kb = ctx.kb
        assert kb is not None
        r = kb.resolve(c.object or "")
        if r.status != "resolved" or r.entity_type not in ("process", "pathway", "gene_set"):
            return self._v(c, "uncheckable", f"phenotype {c.object!r} is not a KB process")
        up, up_sign, _ = self._upstream(c, ctx)
        src = c.subject or up
        if not src:
            return self._v(c, "uncheckable", "no source for the phenotype")
        want = -1 if c.primitive == "alleviates_phenotype" else 1
        paths = self._signed_paths(ctx, src, r.id or "", ctx.settings.max_path_len)
        sign = up_sign if c.subject == up else 1
        return self._judge_paths(c, ctx, paths, sign, want, f"{src} → {r.id}")

    def _set_verdict(self, c: Claim, genes: list[Verdict]) -> Verdict:
        checkable = [v for v in genes if v.checkable]
        sup = [v for v in checkable if v.status == "supported"]
        con = [v for v in checkable if v.status == "contradicted"]
        detail = (
            f"{len(sup)} supported, {len(con)} contradicted, {len(checkable) - len(sup) - len(con)} "
            f"inconclusive of {len(genes)} genes"
        )
        ev = [Evidence(source="knowledge-per-gene", detail=detail)]
        if not checkable:
            return self._v(c, "uncheckable", detail, ev)
        if sup and len(sup) >= len(checkable) / 2 and len(sup) > len(con):
            v = self._v(c, "supported", detail, ev, score=len(sup) / len(genes))
            return v.model_copy(update={"model_generated_source": all(x.model_generated_source for x in sup)})
        if len(con) > len(sup):
            return self._v(c, "contradicted", detail, ev)
        return self._v(c, "inconclusive", detail, ev)


KNOWLEDGE = register(KnowledgeVerifier())
