"""Expression verifier: claims against the condition's own data.

- one gene, one direction: the gene's log2 fold change in the condition's signature. One-sided p for the claimed
  direction (from the signature's two-sided p), BH across the graph's gene claims (the hypotheses the graph states),
  and an effect-size floor read from the signature's own distribution (one robust SD of all log2 fold changes,
  1.4826·MAD), not a fixed |log2FC| > 1. Null: the gene's mean expression does not move in the claimed direction
  (unit: the signature's test — cells or pseudobulk replicates).
- a gene list as a whole: a competitive rank test — the mean signed normal score of the listed genes against
  random gene sets of the same size (permutation over genes; null: the list moves no more than random genes).
- pathway / TF activity: a footprint score Σ w_g z_g with PROGENy-style weights, the TF's regulon signs, or the
  regulons of the nearest TFs downstream (≤ 2 signed steps, else the nearest within max_path_len); permutation p
  over gene labels.
- distributional: when cells are available, the doubly robust kernel test of the drug's effect on the claimed genes
  (log-normalised), adjusting for library size and cell-cycle scores, permuting at the well (sample) level.
Binding and other claims RNA cannot measure are `uncheckable` here (the knowledge verifier still checks them).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mechcell.causal_stats import dr_kernel_test, p_to_e
from mechcell.causal_stats.evalues import bh_adjust
from mechcell.graphs import Claim
from mechcell.verifiers.base import VerificationContext, register
from mechcell.verifiers.doses import PooledView, pooled_view
from mechcell.verifiers.knowledge import KnowledgeVerifier
from mechcell.verifiers.types import Evidence, Status, Verdict

_DIR = {"up": 1, "down": -1}
_MEASURABLE_BY_RNA = {"expression", "expression_set", "molecule_activity", "pathway_activity"}


class SignatureView:
    """A signature prepared for testing: signed normal scores z, log2fc, the effect floor, gene lookup."""

    def __init__(self, frame: pd.DataFrame) -> None:
        frame = frame[~frame.index.duplicated(keep="first")]
        lfc = frame["log2fc"].to_numpy(np.float64)
        p = np.clip(frame["pvalue"].to_numpy(np.float64), 1e-300, 1.0)
        ok = np.isfinite(lfc) & np.isfinite(p)
        self.frame = frame[ok]
        self.lfc = lfc[ok]
        self.p = p[ok]
        self.z = np.sign(self.lfc) * stats.norm.isf(self.p / 2.0)
        self.genes = list(self.frame.index.astype(str))
        self.memo: dict[str, Any] = {}  # per-signature results reused across graphs (e.g. the empirical null)
        self.pos = {g: i for i, g in enumerate(self.genes)}
        med = np.median(self.lfc) if self.lfc.size else 0.0
        # Effect floor: half a robust SD (1.4826·MAD) of the signature's own log2 fold changes.
        self.floor = float(0.5 * 1.4826 * np.median(np.abs(self.lfc - med))) if self.lfc.size else 0.0

    def index_of(self, gene: str, ctx: VerificationContext) -> int | None:
        if gene in self.pos:
            return self.pos[gene]
        if ctx.kb is not None:
            r = ctx.kb.resolve_gene(gene)
            if r.status == "resolved" and r.id in self.pos:
                return self.pos[r.id]
        return None


_VIEWS: OrderedDict[tuple, SignatureView] = OrderedDict()
_VIEWS_LOCK = threading.Lock()


def signature_view(ctx: VerificationContext) -> SignatureView | None:
    """The prepared signature, shared across graphs verified against the same signature (small LRU)."""
    sig = ctx.signature
    if sig is None:
        return None
    if "sigview" not in ctx.cache:
        key = (sig.condition.key, sig.method, len(sig.genes), hash(tuple(sig.log2fc[:64])), hash(tuple(sig.genes[:64])))
        with _VIEWS_LOCK:  # panels run in worker threads (the pipeline's asyncio.to_thread)
            view = _VIEWS.get(key)
        if view is None:
            view = SignatureView(sig.to_frame())
            with _VIEWS_LOCK:
                _VIEWS[key] = view
                while len(_VIEWS) > 32:
                    _VIEWS.popitem(last=False)
        else:
            with _VIEWS_LOCK:
                if key in _VIEWS:
                    _VIEWS.move_to_end(key)
        ctx.cache["sigview"] = view
    return ctx.cache["sigview"]


def _perm_p(obs: float, null: np.ndarray) -> float:
    return float((1 + np.sum(null >= obs)) / (1 + null.size))


class ExpressionVerifier:
    name = "expression"
    description = "claims against the condition's signature (and cells): gene directions, set and footprint tests"

    def verify(self, claims: Sequence[Claim], ctx: VerificationContext) -> list[Verdict]:
        sv = signature_view(ctx)
        out: list[Verdict] = []
        gene_claims = [c for c in claims if c.kind == "expression"]
        if sv is None:
            return [
                self._v(c, "uncheckable", "no signature for this condition")
                for c in claims
                if c.kind in _MEASURABLE_BY_RNA
            ]
        rng = np.random.default_rng(ctx.settings.seed)
        sets = {c.node_id: self._set(c, sv, ctx, rng) for c in claims if c.kind == "expression_set"}
        gated = {n for n, v in sets.items() if v.status == "supported"}
        # dose pooling: does this dose move each list (its own competitive test at level `dose_own_level`)?
        own_ok = {
            n: v.diagnostics["own_p"] < ctx.settings.dose_own_level and v.diagnostics["own_statistic"] > 0
            for n, v in sets.items()
            if "own_p" in v.diagnostics
        }
        out += self._genes(gene_claims, sv, ctx, gated, own_ok)
        out += list(sets.values())
        for c in claims:
            if c.kind == "phenotype":
                out.append(self._v(c, "uncheckable", f"expression data cannot measure the phenotype {c.object!r}"))
        silent = _silent_drug(ctx) if ctx.settings.require_drug_effect else None
        for c in claims:
            v = None
            if c.kind in ("molecule_activity", "pathway_activity"):
                v = self._footprint(c, sv, ctx, rng)
            elif c.kind == "binding":
                v = self._binding_consequence(c, sv, ctx, rng)
            unread = v is None or bool(v.diagnostics.get("no_readout"))
            if c.kind in ("molecule_activity", "pathway_activity", "binding") and silent is not None and unread:
                v = self._v(
                    c,
                    "inconclusive",
                    f"no readout of {c.object} in RNA, and the drug moves no gene at q < {ctx.settings.alpha:g} "
                    f"at any measured dose in this line ({silent}): nothing shows it acting in this context, "
                    "and a KB record alone does not",
                    null="H0: the drug changes no gene's expression (BH across genes, each dose's signature)",
                )
            if v is not None:
                out.append(v)
        if ctx.cells is not None and ctx.settings.distributional_test:
            for c in claims:
                if c.kind == "expression_set" or (
                    c.kind == "expression"
                    and len(c.genes) == 1
                    and not any(x.kind == "expression_set" and x.node_id == c.node_id for x in claims)
                ):
                    v = self._distributional(c, ctx)
                    if v is not None:
                        out.append(v)
        return out

    def _v(
        self,
        c: Claim,
        status: Status,
        reason: str,
        *,
        score: float = 0.0,
        evidence: list[Evidence] | None = None,
        verifier: str | None = None,
        **kw: Any,
    ) -> Verdict:
        return Verdict(
            claim=c,
            verifier=verifier or self.name,
            status=status,
            score=score if status == "supported" else 0.0,
            evidence=evidence or [],
            reason=reason,
            **kw,
        )

    # ------------------------------------------------------------------ one gene
    def _genes(
        self,
        claims: list[Claim],
        sv: SignatureView,
        ctx: VerificationContext,
        gated: set[str],
        own_ok: dict[str, bool] | None = None,
    ) -> list[Verdict]:
        """Per-gene tests. Genes of a list the data support as a whole (`gated` node ids) are tested at level α
        one by one (hierarchical testing: the list's rejection gates its members); the others need BH across
        all of the graph's gene claims."""
        alpha = ctx.settings.alpha
        rows: list[tuple[Claim, int, int]] = []
        out: list[Verdict] = []
        for c in claims:
            i = sv.index_of(c.object or "", ctx)
            if i is None:
                out.append(self._v(c, "uncheckable", f"{c.object} is not measured in this signature"))
                continue
            rows.append((c, i, _DIR[c.direction or "up"]))
        if not rows:
            return out
        p1 = np.array([sv.p[i] / 2 if np.sign(sv.lfc[i]) == d else 1 - sv.p[i] / 2 for _, i, d in rows])
        p_opp = np.array([sv.p[i] / 2 if np.sign(sv.lfc[i]) == -d else 1 - sv.p[i] / 2 for _, i, d in rows])
        if ctx.settings.multiplicity == "none":
            q, q_opp = p1, p_opp
        else:
            q = np.minimum(1.0, bh_adjust(p1))
            q_opp = np.minimum(1.0, bh_adjust(p_opp))
        pv = pooled_view(ctx)
        if pv is not None:
            zp = np.array([pv.z[i] * d for _, i, d in rows])
            pp = stats.norm.sf(zp)
            qp = pp if ctx.settings.multiplicity == "none" else np.minimum(1.0, bh_adjust(pp))
        else:
            zp = pp = qp = np.full(len(rows), np.nan)
        e = p_to_e(p1 if pv is None else pp)
        null = (
            f"H0: {{gene}} does not move {{dir}} (one-sided test from the signature's {ctx.signature.method} "
            f"p-value; BH across the graph's {len(rows)} gene claims, or level α inside a list the data "
            "support as a whole)"
        )
        if pv is not None:
            null = (
                f"H0: {{gene}} does not move {{dir}} at any dose of {ctx.signature.condition.perturbation} in this "
                f"line (weighted Stouffer of the one-sided {ctx.signature.method} scores over {pv.n_doses} doses "
                f"{pv.label}, weights = dose rank; doses on separate plates vs their own controls, so independent; "
                f"BH across the graph's {len(rows)} gene claims, or level α inside a supported list), plus the "
                "sign at this dose"
            )
        for (c, i, d), pi, qi, qo, ei, zpi, ppi, qpi in zip(rows, p1, q, q_opp, e, zp, pp, qp, strict=True):
            if c.node_id in gated:
                qi = min(qi, pi)  # second stage of the hierarchy: level α within a supported list
                qpi = min(qpi, ppi)
            lfc = float(sv.lfc[i])
            big = abs(lfc) >= sv.floor
            gene = sv.genes[i]
            ev = [
                Evidence(
                    source=f"signature:{ctx.signature.method}",
                    record_id=f"{ctx.signature.condition.key}:{gene}",
                    detail=f"{gene} log2FC {lfc:+.3f}, p {sv.p[i]:.3g}, padj {sv.frame['padj'].iloc[i]:.3g} "
                    f"(effect floor {sv.floor:.3f})",
                )
            ]
            diag: dict[str, Any] = {"floor": sv.floor, "n_claims": len(rows)}
            material = (False, 0.0, 0)
            if pv is not None:
                material = pv.material(i, d)
                ev.append(
                    Evidence(
                        source="dose-pooled",
                        record_id=f"{ctx.signature.condition.key}:{gene}",
                        detail=f"dose-pooled: doses {pv.label}, per-dose log2FC "
                        + " ".join(f"{x:+.2f}" if np.isfinite(x) else "na" for x in pv.LFC[:, i])
                        + f" (this dose first), Stouffer Z {zpi:+.2f}, p {ppi:.3g}, q {qpi:.3g}",
                    )
                )
                diag.update(
                    {"dose_pooled": True, "pooled_z": float(zpi), "pooled_p": float(ppi), "n_doses": pv.n_doses}
                )
            common = dict(
                statistic=lfc if pv is None else float(zpi),
                p_value=float(pi if pv is None else ppi),
                e_value=float(ei),
                q_value=float(qi if pv is None else qpi),
                null=null.format(gene=gene, dir=c.direction),
                evidence=ev,
                diagnostics=diag,
            )
            score = max(float(min(1.0, abs(lfc) / (2 * sv.floor + 1e-12))), 0.5)
            # With dose pooling, "this dose carries the effect" is judged where the data can speak: for a gene of a
            # list, by the list's own-dose test (its mean z goes the claimed way at level `dose_own_level`); one
            # gene's sign at a weak dose is mostly noise (a planted −0.15 log2 against a per-gene SE of ~0.3 flips
            # a third of the time), so it is not required on top — a significant move the other way still
            # contradicts. A lone gene is its own evidence at this dose: sign and own p.
            list_ok = (own_ok or {}).get(c.node_id)
            here_ok = bool(list_ok) if list_ok is not None else (np.sign(lfc) == d and pi < ctx.settings.dose_own_level)
            if qo < alpha and big:  # a contradiction at this dose wins, pooled or not
                out.append(
                    self._v(
                        c,
                        "contradicted",
                        f"{gene} goes {'down' if d > 0 else 'up'}, not {c.direction} (log2FC {lfc:+.2f})",
                        **common,
                    )
                )
            elif pv is None and qi < alpha and big:
                out.append(
                    self._v(
                        c,
                        "supported",
                        f"{gene} goes {c.direction} (log2FC {lfc:+.2f}, q {qi:.2g})",
                        score=score,
                        **common,
                    )
                )
            elif pv is not None and qpi < alpha and material[0] and here_ok:
                here = (
                    f"goes {c.direction} here (log2FC {lfc:+.2f})"
                    if np.sign(lfc) == d
                    else f"is within noise here (log2FC {lfc:+.2f}, its list moves {c.direction} at this dose)"
                )
                out.append(
                    self._v(
                        c,
                        "supported",
                        f"{gene} {here} and goes {c.direction} along the dose series "
                        f"(dose-pooled Z {zpi:+.2f}, q {qpi:.2g}; log2FC {material[1]:+.2f} at its strongest dose)",
                        score=score,
                        **common,
                    )
                )
            elif pv is None:
                why = "not significant" if qi >= alpha else f"|log2FC| below the floor {sv.floor:.2f}"
                out.append(self._v(c, "inconclusive", f"{gene}: {why} (log2FC {lfc:+.2f}, q {qi:.2g})", **common))
            else:
                why = (
                    f"not significant along the dose series (dose-pooled q {qpi:.2g})"
                    if qpi >= alpha
                    else "below the effect floor at every dose"
                    if not material[0]
                    else f"goes the other way at this dose (log2FC {lfc:+.2f})"
                    if list_ok is None and np.sign(lfc) != d
                    else f"this dose barely moves {'its list' if list_ok is not None else 'it'} "
                    f"(own p ≥ {ctx.settings.dose_own_level:g} or the other sign)"
                )
                out.append(self._v(c, "inconclusive", f"{gene}: {why} (log2FC {lfc:+.2f} here)", **common))
        return out

    # ------------------------------------------------------------------ gene list
    def _set(self, c: Claim, sv: SignatureView, ctx: VerificationContext, rng: np.random.Generator) -> Verdict:
        idx = [i for g in c.genes if (i := sv.index_of(g, ctx)) is not None]
        if len(idx) < 2:
            return self._v(c, "uncheckable", f"only {len(idx)} of {len(c.genes)} genes are measured")
        d = _DIR[c.direction or "up"]
        z = sv.z * d
        obs = float(np.mean(z[idx]))
        B = ctx.settings.n_permutations
        null = z[rng.integers(0, z.size, size=(B, len(idx)))].mean(axis=1)
        p = _perm_p(obs, null)
        p_opp = _perm_p(-obs, -null)
        common = dict(
            statistic=obs,
            p_value=p,
            e_value=float(p_to_e(p)),
            null=f"H0 (competitive): the {len(idx)} listed genes move {c.direction} no more than random "
            f"sets of {len(idx)} genes (unit: genes; {B} permutations)",
            evidence=[
                Evidence(
                    source=f"signature:{ctx.signature.method}",
                    detail=f"mean signed z "  # type: ignore[union-attr]
                    f"{obs:+.2f} over {len(idx)}/{len(c.genes)} genes vs random sets",
                )
            ],
            diagnostics={"n_measured": len(idx), "n_permutations": B},
        )
        pv = pooled_view(ctx)
        if pv is not None:
            zc = pv.z * d
            obs_p = float(np.mean(zc[idx]))
            prng = np.random.default_rng([ctx.settings.seed, 7])
            pp = _perm_p(obs_p, zc[prng.integers(0, zc.size, size=(B, len(idx)))].mean(axis=1))
            return self._pooled(
                c,
                own=(obs, p, p_opp),
                pooled=(obs_p, pp),
                pv=pv,
                what=f"the list (mean z {obs:+.2f} here)",
                stat_name="mean pooled z",
                null=f"H0 (competitive, dose-pooled): the {len(idx)} listed genes move {c.direction} no more than "
                f"random sets of {len(idx)} genes, on the weighted Stouffer z over {pv.n_doses} doses {pv.label} "
                f"(weights = dose rank; one gene draw across all doses; unit: genes; {B} permutations); plus the "
                "sign at this dose",
                common=common,
                score=float(min(1.0, 0.5 + abs(obs_p) / 10)),
                alpha=ctx.settings.alpha,
                own_level=ctx.settings.dose_own_level,
            )
        if p < ctx.settings.alpha:
            return self._v(
                c,
                "supported",
                f"the list moves {c.direction} as a whole (mean z {obs:+.2f}, p {p:.2g})",
                score=float(min(1.0, 0.5 + abs(obs) / 10)),
                **common,
            )
        if p_opp < ctx.settings.alpha:
            return self._v(c, "contradicted", f"the list moves the other way (mean z {obs:+.2f})", **common)
        return self._v(c, "inconclusive", f"the list does not move as a whole (mean z {obs:+.2f}, p {p:.2g})", **common)

    def _pooled(
        self,
        c: Claim,
        *,
        own: tuple[float, float, float],
        pooled: tuple[float, float],
        pv: PooledView,
        what: str,
        stat_name: str,
        null: str,
        common: dict[str, Any],
        score: float,
        alpha: float,
        own_level: float,
    ) -> Verdict:
        """The dose-pooled decision for a list or footprint claim: contradicted when this dose's own test says the
        other way; supported when the dose-response test rejects at α and this dose's own test goes the claimed way
        at the lenient level `own_level` (the dose must carry some of the effect, not a coin-flip sign); else
        inconclusive. The verdict carries both the own-dose and the dose-pooled evidence."""
        obs, p, p_opp = own
        obs_p, pp = pooled
        evidence = [
            *common["evidence"],
            Evidence(
                source="dose-pooled",
                detail=f"dose-pooled: doses {pv.label}, {stat_name} {obs_p:+.2f}, p {pp:.3g}; this dose "
                f"{obs:+.2f} (own p {p:.3g})",
            ),
        ]
        kw = dict(common)
        kw.update(
            statistic=obs_p,
            p_value=pp,
            e_value=float(p_to_e(pp)),
            null=null,
            evidence=evidence,
            diagnostics={**common["diagnostics"], "dose_pooled": True, "own_statistic": obs, "own_p": p},
        )
        if p_opp < alpha:
            kw.update(statistic=obs, p_value=p, e_value=float(p_to_e(p)))
            return self._v(c, "contradicted", f"{what}: goes the other way at this dose (own p {p_opp:.2g})", **kw)
        if pp < alpha and obs > 0 and p < own_level:
            return self._v(
                c,
                "supported",
                f"{what}: moves {c.direction} along the dose series (dose-pooled {obs_p:+.2f}, p {pp:.2g}) "
                "and the same way at this dose",
                score=score,
                **kw,
            )
        why = (
            f"not significant along the dose series (p {pp:.2g})"
            if pp >= alpha
            else "other sign at this dose"
            if obs <= 0
            else f"this dose barely moves it (own p {p:.2g} ≥ {own_level:g})"
        )
        return self._v(c, "inconclusive", f"{what}: {why}", **kw)

    # ------------------------------------------------------------------ activity footprints
    def _weights(self, c: Claim, ctx: VerificationContext) -> tuple[dict[str, float], str] | None:
        kb = ctx.kb
        if kb is None or not c.object:
            return None
        name = c.object
        w: dict[str, float] = {}
        if c.kind == "pathway_activity":
            fp = kb.footprint(name)
            if fp:
                return fp, f"{name} footprint"
            genes = [name]  # a process node without a footprint (DNA damage): read it by the TFs it drives
        else:
            r = kb.resolve_gene(name)
            genes = (
                list(r.symbols)
                if r.status == "resolved" and r.entity_type in ("family", "complex")
                else ([r.id] if r.status == "resolved" and r.id else [])
            )
            for g in genes:
                for t, s in kb.regulon(g).items():
                    w[t] = w.get(t, 0.0) + s
            if w:
                return w, f"{name} regulon"
            for fpn in kb.footprint_names():
                if any(a.subject in genes for a in kb.pathway_anchors(fpn)):
                    return kb.footprint(fpn), f"{fpn} footprint (anchored by {name})"
        # TFs reachable in ≤ 2 signed steps: their regulons, signed by the path. When none is that close, the
        # nearest ones within `max_path_len` steps (RRM1 ⊣ DNA damage → ATM → TP53): the KB path the knowledge
        # verifier accepts as support is also the one whose end the data can read. The weights come from the KB
        # alone, never from the data, so the footprint test keeps its null whichever TFs are chosen.
        key = f"downstream|{','.join(genes)}|{ctx.settings.max_path_len}"
        if key not in ctx.cache:
            ctx.cache[key] = _downstream_tfs(
                kb, genes, set(kb.regulon_tfs()), depth=2, max_depth=ctx.settings.max_path_len
            )
        for tf, s in ctx.cache[key].items():
            for t, rs in kb.regulon(tf).items():
                w[t] = w.get(t, 0.0) + s * rs
        return (w, f"regulons of {len(ctx.cache[key])} TFs downstream of {name}") if w else None

    def _footprint(self, c: Claim, sv: SignatureView, ctx: VerificationContext, rng: np.random.Generator) -> Verdict:
        found = self._weights(c, ctx)
        if found is None:
            return self._v(
                c,
                "uncheckable",
                f"no footprint or regulon links {c.object} to expression",
                diagnostics={"no_readout": True},
            )
        weights, what = found
        pairs = [(i, w) for g, w in weights.items() if w and (i := sv.pos.get(g)) is not None]
        if len(pairs) < 3:
            return self._v(c, "uncheckable", f"{what}: only {len(pairs)} weighted genes are measured")
        idx = np.array([i for i, _ in pairs])
        w = np.array([x for _, x in pairs], dtype=np.float64)
        w = w / np.sqrt(np.sum(w * w))
        d = _DIR[c.direction or "up"]
        raw = float(sv.z[idx] @ w)
        B = ctx.settings.n_permutations
        null = sv.z[rng.integers(0, sv.z.size, size=(B, idx.size))] @ w
        # Gene-label permutations ignore that co-regulated genes move together (depth, well effects): also
        # standardise against the empirical null of every KB regulon/footprint score on this signature, and keep
        # the larger (more conservative) p.
        m0, s0, n0 = _program_null(ctx, sv)
        obs = d * raw
        p = max(_perm_p(obs, d * null), float(stats.norm.sf(d * (raw - m0) / s0)))
        p_opp = max(_perm_p(-obs, -d * null), float(stats.norm.sf(-d * (raw - m0) / s0)))
        common = dict(
            statistic=obs,
            p_value=p,
            e_value=float(p_to_e(p)),
            null=f"H0: the {what} score is no larger than with random genes in its slots ({B} permutations, unit: "
            f"genes) nor than the empirical null of {n0} KB programme scores on this signature (sd {s0:.2f})",
            evidence=[Evidence(source=f"footprint:{what}", detail=f"weighted score {obs:+.2f} over {idx.size} genes")],
            diagnostics={"n_genes": int(idx.size), "empirical_null_center": m0, "empirical_null_sd": s0},
        )
        pv = pooled_view(ctx)
        if pv is not None:
            raw_p = float(pv.z[idx] @ w)
            prng = np.random.default_rng([ctx.settings.seed, 11])
            null_p = pv.z[prng.integers(0, pv.z.size, size=(B, idx.size))] @ w
            m1, s1, n1 = _program_null(ctx, pv)
            pp = max(_perm_p(d * raw_p, d * null_p), float(stats.norm.sf(d * (raw_p - m1) / s1)))
            return self._pooled(
                c,
                own=(d * (raw - m0), p, p_opp),
                pooled=(d * raw_p, pp),
                pv=pv,
                what=f"{what} ({c.object} activity {c.direction}; score {obs:+.2f} here)",
                stat_name="pooled score",
                null=f"H0 (dose-pooled): the {what} score on the weighted Stouffer z over {pv.n_doses} doses "
                f"{pv.label} (weights = dose rank) is no larger than with random genes in its slots ({B} "
                f"permutations, unit: genes; one gene draw across all doses) nor than the empirical null of {n1} "
                f"KB programme scores on the pooled z (sd {s1:.2f}); plus this dose's own score the claimed way",
                common=common,
                score=float(min(1.0, 0.5 + abs(raw_p) / 10)),
                alpha=ctx.settings.alpha,
                own_level=ctx.settings.dose_own_level,
            )
        if p < ctx.settings.alpha:
            return self._v(
                c,
                "supported",
                f"{what} says {c.object} activity went {c.direction} (score {obs:+.2f})",
                score=float(min(1.0, 0.5 + abs(obs) / 10)),
                **common,
            )
        if p_opp < ctx.settings.alpha:
            return self._v(
                c, "contradicted", f"{what} says {c.object} activity went the other way (score {obs:+.2f})", **common
            )
        return self._v(c, "inconclusive", f"{what}: no clear change (score {obs:+.2f}, p {p:.2g})", **common)

    def _binding_consequence(
        self, c: Claim, sv: SignatureView, ctx: VerificationContext, rng: np.random.Generator
    ) -> Verdict | None:
        """A binding is active in this condition only if the target's downstream programme moves the way the
        drug's recorded action predicts (inhibitor → target activity down). None when the KB gives no action."""
        if ctx.kb is None or not c.subject or not c.object:
            return None
        targets = set(KnowledgeVerifier._genes(ctx.kb, c.object))
        signs = {r.sign for r in ctx.kb.drug_targets(c.subject) if r.object in targets and r.sign}
        if len(signs) != 1:
            return None
        direction = "up" if signs.pop() > 0 else "down"
        probe = c.model_copy(update={"kind": "molecule_activity", "direction": direction})
        v = self._footprint(probe, sv, ctx, rng)
        reason = f"consequence of {c.subject} acting on {c.object} ({direction}): {v.reason}"
        return v.model_copy(update={"claim": c, "reason": reason})

    # ------------------------------------------------------------------ cells
    def _distributional(self, c: Claim, ctx: VerificationContext) -> Verdict | None:
        try:
            cells = ctx.cells(c.genes) if ctx.cells else None
        except Exception as exc:
            return self._v(c, "uncheckable", f"cells unavailable: {exc}", verifier="expression-dr")
        if cells is None or cells.n_treated < 10 or cells.n_control < 10:
            return None
        s = ctx.settings
        rng = np.random.default_rng(s.seed)
        keep = np.concatenate(
            [
                _sub(np.flatnonzero(cells.treated), s.max_cells_per_arm, rng),
                _sub(np.flatnonzero(~cells.treated), s.max_cells_per_arm, rng),
            ]
        )
        cov = cells.covariates.iloc[keep]
        lib = np.asarray(cov["library_size"], dtype=np.float64)
        Y = np.log1p(cells.X[keep] / np.maximum(lib, 1.0)[:, None] * 1e4)
        cols = [np.log(np.maximum(lib, 1.0))]
        cols += [np.asarray(cov[k], dtype=np.float64) for k in ("S_score", "G2M_score") if k in cov.columns]
        X = np.column_stack(cols)
        X = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1.0)
        T = cells.treated[keep].astype(np.int64)
        groups = cov["sample"].to_numpy() if "sample" in cov.columns and cov["sample"].notna().all() else None
        unit_note = ""
        if groups is not None:
            n1, n0 = len(np.unique(groups[T == 1])), len(np.unique(groups[T == 0]))
            if min(n1, n0) < 5:  # with so few wells a well-level permutation test cannot reach α at all
                groups = None
                unit_note = f" (only {n1} treated / {n0} control wells: too few for a well-level test)"
        res = dr_kernel_test(X, T, Y, n_permutations=min(s.n_permutations, 200), groups=groups, seed=s.seed)
        unit = "wells (sample)" if groups is not None else "cells" + unit_note
        common = dict(
            statistic=res.statistic,
            p_value=res.p_value,
            e_value=res.e_value,
            null=res.null + f"; unit: {unit}",
            evidence=[
                Evidence(
                    source="dr_kernel_test",
                    detail=f"DATE {res.statistic:.3g} on {Y.shape[1]} "
                    f"genes, {int(T.sum())} treated / {int((1 - T).sum())} control cells",
                )
            ],
            diagnostics={k: v for k, v in res.diagnostics.items() if isinstance(v, (int, float, str, bool))},
        )
        if res.p_value < s.alpha:
            return self._v(
                c,
                "supported",
                f"the drug changes the distribution of {', '.join(c.genes[:4])} "
                f"(p {res.p_value:.2g}, adjusted for covariates)",
                score=0.8,
                verifier="expression-dr",
                **common,
            )
        return self._v(
            c,
            "inconclusive",
            f"no distributional change detected (p {res.p_value:.2g})",
            verifier="expression-dr",
            **common,
        )


def _program_null(ctx: VerificationContext, sv: SignatureView | PooledView) -> tuple[float, float, int]:
    """Centre and robust SD of the scores of every KB regulon and footprint (≥ 5 measured genes) on this
    signature — an empirical null (Efron) that carries the signature's gene–gene correlation. SD floored at 1
    (the independent-gene value); (0, 1, n) when fewer than 10 programmes are scorable."""
    key = f"program_null|{ctx.kb.version if ctx.kb is not None else ''}"
    if key in sv.memo:
        return sv.memo[key]
    scores: list[float] = []
    kb = ctx.kb
    programs: list[dict[str, float]] = []
    if kb is not None:
        programs = [{g: float(x) for g, x in kb.regulon(tf).items()} for tf in kb.regulon_tfs()]
        programs += [kb.footprint(f) for f in kb.footprint_names()]
    for prog in programs:
        pairs = [(i, x) for g, x in prog.items() if x and (i := sv.pos.get(g)) is not None]
        if len(pairs) >= 5:
            w = np.array([x for _, x in pairs], dtype=np.float64)
            scores.append(float(sv.z[[i for i, _ in pairs]] @ (w / np.sqrt(w @ w))))
    if len(scores) < 10:
        out = (0.0, 1.0, len(scores))
    else:
        arr = np.asarray(scores)
        med = float(np.median(arr))
        out = (med, max(1.0, float(1.4826 * np.median(np.abs(arr - med)))), len(scores))
    sv.memo[key] = out
    return out


def _silent_drug(ctx: VerificationContext) -> str | None:
    """Which doses were looked at, when the drug moves no gene (BH q < alpha) at this dose nor at any sibling dose
    in this line; None when some gene moves, or when a signature lacks adjusted p-values (cannot tell).

    Why: a binding or activity claim with no RNA readout otherwise falls back on the KB record, which says the drug
    binds the target somewhere, not that it acts in these cells at these doses. When the drug leaves the
    transcriptome untouched at every dose measured here, the data speak against "acting in this context" without
    contradicting the binding itself — inconclusive. Under the global null BH keeps P(any q < alpha) ≤ alpha per
    dose, so an inactive drug is called silent with probability ≥ 1 − alpha·(doses)."""
    sigs = [ctx.signature] if ctx.signature is not None else []
    if ctx.doses is not None:
        sigs += [s.signature for s in (*ctx.doses.siblings, *ctx.doses.same_plate)]
    if not sigs:
        return None
    labels = []
    for sig in sigs:
        padj = np.asarray(sig.padj, dtype=np.float64) if sig.padj is not None else None
        if padj is None or padj.size == 0 or np.all(np.isnan(padj)):
            return None
        if np.nanmin(padj) < ctx.settings.alpha:
            return None
        c = sig.condition
        labels.append(f"{c.dose:g} {c.dose_unit or ''}".strip() if c.dose is not None else c.key)
    return "doses " + ", ".join(labels)


def _sub(idx: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    return idx if idx.size <= k else np.sort(rng.choice(idx, size=k, replace=False))


def _downstream_tfs(
    kb: Any, genes: list[str], tfs: set[str], depth: int, max_depth: int | None = None
) -> dict[str, int]:
    """TFs within `depth` signed steps of any gene, with the sign of the shortest path (first found wins); when
    there are none, the nearest ones within `max_depth` steps (the search goes on only while nothing is found)."""
    g = kb.signed_graph()
    out: dict[str, int] = {}
    frontier = {x: 1 for x in genes if x in g}
    seen = set(frontier)
    for step in range(max(depth, max_depth or 0)):
        if step >= depth and out:
            break
        nxt: dict[str, int] = {}
        for u, s in frontier.items():
            for v in g.successors(u):
                if v in seen:
                    continue
                sign = int(g.edges[u, v].get("sign", 0))
                if sign == 0:
                    continue
                nxt.setdefault(v, s * sign)
        for v, s in nxt.items():
            seen.add(v)
            if v in tfs:
                out.setdefault(v, s)
        frontier = nxt
    return out


EXPRESSION = register(ExpressionVerifier())
