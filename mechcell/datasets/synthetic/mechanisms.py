"""Plant drug mechanisms along real knowledge-base edges, choose decoys, and score cell-line sensitivity.

Why plant along the KB rather than invent: the world is the ground truth for verifiers and proposers that read
the same KB, so every planted step must be a real record — drug → listed target with the listed action →
signed signalling path (≤ `max_path_len` steps) → TF with a regulon → its target genes with the regulon's signs
(and a PROGENy-like footprint where the path passes a pathway's activity anchor). A decoy is a real KB target
annotation the world does *not* act on, chosen so that what it predicts (its nearest TFs) stays unmoved.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mechcell.datasets.synthetic.models import (
    CellLineTruth,
    DecoyEdge,
    DrugTruth,
    SyntheticWorldConfig,
)
from mechcell.errors import InputError

if TYPE_CHECKING:
    from mechcell.knowledge import KnowledgeBase, Relation
    from mechcell.knowledge.graph import SignedAdjacency

TAHOE_DRUG_SOURCE = "tahoe_drugs"
TAHOE_LINE_SOURCE = "tahoe_cell_lines"
_ARROW = {1: "→", -1: "⊣", 0: "–?"}


def direction(sign: int) -> str:
    return "up" if sign > 0 else "down"


@dataclass
class TargetInfo:
    """A drug's KB annotation of one target, merged over sources (a target whose sources disagree is left out)."""

    target: str
    sign: int
    predicate: str
    action: str | None
    sources: list[str]
    model_generated: bool


@dataclass
class PlantedPath:
    """target → … → end (a TF), with the KB edge behind every step."""

    target: str
    nodes: list[str]
    signs: list[int]
    relations: list[Relation]
    processes: frozenset[str] = frozenset()  # nodes that are processes (DNA_DAMAGE), not molecules

    @property
    def sign(self) -> int:
        return math.prod(self.signs) if self.signs else 1

    def prefix_sign(self, i: int) -> int:
        """Sign of the path from the target to nodes[i]."""
        return math.prod(self.signs[:i]) if i else 1


@dataclass
class DrugPlan:
    """One drug's planted mechanism. `genes`: gene → (signed weight in [0.5, 1], via) before scaling by emax."""

    drug: str
    active: bool
    targets: dict[str, TargetInfo]
    engaged: list[str] = field(default_factory=list)
    paths: list[PlantedPath] = field(default_factory=list)
    tfs: dict[str, int] = field(default_factory=dict)
    pathways: dict[str, tuple[int, str]] = field(default_factory=dict)  # pathway → (direction, anchor gene)
    genes: dict[str, tuple[float, str]] = field(default_factory=dict)
    node_dir: dict[str, int] = field(default_factory=dict)  # activity change of every gene on the paths
    decoys: list[DecoyEdge] = field(default_factory=list)
    ec50: float = 1.0
    hill: float = 1.0
    emax: float = 1.0
    arrest: float = 0.0

    def path_genes(self) -> set[str]:
        return {n for p in self.paths for n in p.nodes if n not in p.processes}

    def base_log2fc(self) -> dict[str, float]:
        return {g: w * self.emax for g, (w, _) in self.genes.items()} if self.active else {}

    def rendered_paths(self) -> list[str]:
        out = []
        for p in self.paths:
            t = self.targets[p.target]
            s = [self.drug, _ARROW[t.sign], p.nodes[0]]
            for sg, n in zip(p.signs, p.nodes[1:], strict=True):
                s += [_ARROW[sg], n]
            out.append(" ".join(s))
        return out

    def truth(self) -> DrugTruth:
        return DrugTruth(
            drug=self.drug,
            active=self.active,
            kb_targets=sorted(self.targets),
            engaged_targets=list(self.engaged),
            decoy_targets=[d.target for d in self.decoys],
            paths=self.rendered_paths(),
            tfs={k: direction(v) for k, v in self.tfs.items()},  # type: ignore[misc]
            pathways={k: direction(v[0]) for k, v in self.pathways.items()},  # type: ignore[misc]
            ec50=self.ec50,
            hill=self.hill,
            emax_log2=self.emax,
            arrest=self.arrest,
            base_log2fc={g: round(v, 6) for g, v in sorted(self.base_log2fc().items())},
        )


@dataclass
class CellLine:
    name: str
    context: str
    drivers: list[tuple[str, str, str | None]]  # (gene, variant, effect)
    depmap: str | None = None
    organ: str | None = None
    phase_probs: tuple[float, float, float] = (0.5, 0.25, 0.25)

    def truth(self) -> CellLineTruth:
        return CellLineTruth(
            name=self.name,
            context=self.context,
            drivers=[f"{g} {v} ({e or 'unknown effect'})" for g, v, e in self.drivers],
            phase_probs=dict(zip(("G1", "S", "G2M"), map(float, self.phase_probs), strict=True)),
        )

    @property
    def genotype(self) -> str:
        return "; ".join(f"{g} {v} {e}" if e else f"{g} {v}" for g, v, e in self.drivers[:6])


@dataclass
class Sensitivity:
    potency: float
    efficacy: float
    reasons: list[str]


class MechanismPlanner:
    """Chooses the drug panel and cell lines of a world from a KB and plants each drug's mechanism."""

    def __init__(
        self,
        kb: KnowledgeBase,
        config: SyntheticWorldConfig,
        *,
        allowed_genes: set[str] | None = None,
        assayed_lines: set[str] | None = None,
    ) -> None:
        self.kb = kb
        self.cfg = config
        self.rng = np.random.default_rng([config.seed, 1])
        self.allowed = allowed_genes
        self.assayed = assayed_lines
        self.adj: SignedAdjacency = kb.adjacency()
        self.gene_set = set(kb.genes())
        self._kind: dict[str, str] = {}
        regs = kb.regulons()
        self.regulons = {
            tf: {g: s for g, s in r.items() if self._ok_gene(g)} for tf, r in regs.items() if tf in self.adj
        }
        self.tf_set = {
            tf for tf, r in self.regulons.items() if len(r) >= config.min_regulon_size and tf in self.gene_set
        }
        self.anchors: dict[str, list[tuple[str, int]]] = {}
        for pw in kb.footprint_names():
            for rel in kb.pathway_anchors(pw):
                self.anchors.setdefault(rel.subject, []).append((pw, rel.sign or 1))
        self._reach: dict[str, dict[str, int]] = {}
        self._upstream: dict[str, set[str]] = {}

    # ------------------------------------------------------------------ KB helpers
    def kind(self, node: str) -> str:
        """gene, process (DNA_DAMAGE), complex, family, ... of a network node."""
        if node in self.gene_set:
            return "gene"
        if node not in self._kind:
            r = self.kb.resolve(node)
            self._kind[node] = r.entity_type or "unknown" if r.status == "resolved" else "unknown"
        return self._kind[node]

    def _ok_gene(self, g: str) -> bool:
        return self.allowed is None or g in self.allowed

    def targets_of(self, drug: str) -> dict[str, TargetInfo]:
        by: dict[str, list[Relation]] = {}
        for r in self.kb.drug_targets(drug):
            if r.object_type == "gene":
                by.setdefault(r.object, []).append(r)
        out: dict[str, TargetInfo] = {}
        for t, rels in sorted(by.items()):
            signs = {r.sign for r in rels if r.sign != 0}
            if len(signs) != 1:
                continue
            sign = signs.pop()
            first = next(r for r in rels if r.sign == sign)
            out[t] = TargetInfo(
                target=t,
                sign=sign,
                predicate=first.predicate,
                action=first.action,
                sources=sorted({r.source for r in rels if r.sign == sign}),
                model_generated=all(r.model_generated for r in rels if r.sign == sign),
            )
        return out

    def reach(self, gene: str) -> dict[str, int]:
        """Distance (signalling steps ≤ max_path_len) from a gene to every node it reaches."""
        if gene not in self._reach:
            from mechcell.knowledge.graph import shortest_path_dag

            self._reach[gene] = shortest_path_dag(self.adj, gene, self.cfg.max_path_len)[0] if gene in self.adj else {}
        return self._reach[gene]

    def nearest_tfs(self, gene: str) -> list[str]:
        d = {n: k for n, k in self.reach(gene).items() if n in self.tf_set}
        if not d:
            return []
        m = min(d.values())
        return sorted(n for n, k in d.items() if k == m)

    def _path(self, start: str, tf: str, max_len: int) -> PlantedPath | None:
        """A signed path start → tf (every edge signed), shortest first; None when there is none."""
        if start == tf:
            return PlantedPath(target=start, nodes=[start], signs=[], relations=[])
        best: tuple[int, PlantedPath] | None = None
        for p in self.kb.paths(start, tf, max_len=max_len, k=10):
            # genes and processes (DNA_DAMAGE) only: complexes have no expression and no clean activity reading
            if p.sign == 0 or any(s == 0 for s in p.signs) or len(set(p.nodes)) != len(p.nodes):
                continue
            kinds = {n: self.kind(n) for n in p.nodes}
            if any(k not in ("gene", "process") for k in kinds.values()):
                continue
            # among equally short paths, the one whose edges most sources agree on
            support = sum(len(self.kb.edge_relations(u, v)) for u, v in zip(p.nodes, p.nodes[1:], strict=False))
            if best is None or support > best[0]:
                best = (
                    support,
                    PlantedPath(
                        target=start,
                        nodes=list(p.nodes),
                        signs=list(p.signs),
                        relations=list(p.relations),
                        processes=frozenset(n for n, k in kinds.items() if k == "process"),
                    ),
                )
        if best is not None:
            return best[1]
        return None

    # ------------------------------------------------------------------ one drug
    def _order(self, items: Iterable[str]) -> list[str]:
        items = sorted(items)
        return [items[i] for i in self.rng.permutation(len(items))] if items else []

    def _usable(self, targets: dict[str, TargetInfo]) -> list[str]:
        """Targets in the network that reach a TF with a regulon, nearest-TF first (ties in seeded order)."""
        cands = []
        for t in self._order(targets):
            tfs = self.nearest_tfs(t)
            if tfs:
                cands.append((self.reach(t)[tfs[0]], t))
        return [t for _, t in sorted(cands, key=lambda x: x[0])]

    def _add_path(self, plan: DrugPlan, path: PlantedPath) -> bool:
        """Add a path if it agrees with the activity directions already planted (no node both up and down)."""
        act = plan.targets[path.target].sign
        dirs = {n: act * path.prefix_sign(i) for i, n in enumerate(path.nodes)}
        if any(plan.node_dir.get(n, d) != d for n, d in dirs.items()):
            return False
        plan.node_dir.update(dirs)
        plan.paths.append(path)
        if path.target not in plan.engaged:
            plan.engaged.append(path.target)
        return True

    def _plant_tfs(self, plan: DrugPlan, target: str, avoid: set[str] | frozenset[str] = frozenset()) -> None:
        reach = self.reach(target)
        cands = [tf for tf in self._order(n for n in reach if n in self.tf_set and n not in avoid)]
        cands.sort(key=lambda tf: reach[tf])
        for tf in cands:
            if len(plan.tfs) >= self.cfg.max_tfs_per_drug:
                break
            path = self._path(target, tf, reach[tf])
            if path is None or not self._add_path(plan, path):
                continue
            plan.tfs[tf] = plan.node_dir[tf]

    def _plant_genes(self, plan: DrugPlan) -> None:
        """Regulon genes of each planted TF (sign = TF activity change × regulon sign), then footprints."""
        cfg = self.cfg
        for tf, tf_dir in plan.tfs.items():
            reg = self.regulons[tf]
            free = [g for g in sorted(reg) if g not in plan.genes]
            n = min(cfg.regulon_genes_per_tf, len(free))
            for g in sorted(self.rng.choice(free, size=n, replace=False).tolist()) if n else []:
                plan.genes[g] = (tf_dir * reg[g] * float(self.rng.uniform(0.5, 1.0)), tf)
        for p in plan.paths if cfg.footprint_genes > 0 else []:
            for n in p.nodes:
                for pw, a_sign in self.anchors.get(n, []):
                    if pw in plan.pathways:
                        continue
                    pw_dir = plan.node_dir[n] * a_sign
                    fp = {g: w for g, w in self.kb.footprint(pw).items() if self._ok_gene(g) and w != 0}
                    top = sorted(fp, key=lambda g: (-abs(fp[g]), g))
                    top = [g for g in top if g not in plan.genes][: cfg.footprint_genes]
                    if not top:
                        continue
                    wmax = max(abs(fp[g]) for g in top)
                    plan.pathways[pw] = (pw_dir, n)
                    for g in top:
                        plan.genes[g] = (pw_dir * (1 if fp[g] > 0 else -1) * (0.5 + 0.5 * abs(fp[g]) / wmax), pw)
        self._prune(plan)

    @staticmethod
    def _prune(plan: DrugPlan) -> None:
        """Keep only steps that lead to moved genes: a path ends at a TF with planted genes, or is cut at the
        anchor of a pathway with a planted footprint; TFs left without genes are dropped."""
        vias = {via for _, via in plan.genes.values()}
        plan.tfs = {tf: d for tf, d in plan.tfs.items() if tf in vias}
        anchors = {a for pw, (_, a) in plan.pathways.items() if pw in vias}
        kept: list[PlantedPath] = []
        for p in plan.paths:
            if p.nodes[-1] in plan.tfs:
                kept.append(p)
                continue
            cut = [i for i, n in enumerate(p.nodes) if n in anchors]
            if cut:
                i = cut[-1]
                kept.append(
                    PlantedPath(
                        target=p.target,
                        nodes=p.nodes[: i + 1],
                        signs=p.signs[:i],
                        relations=p.relations[:i],
                        processes=p.processes,
                    )
                )
        plan.paths = kept
        plan.engaged = [t for t in plan.engaged if any(p.target == t for p in kept)]
        on = {n for p in kept for n in p.nodes}
        plan.node_dir = {n: d for n, d in plan.node_dir.items() if n in on}

    def _kinetics(self, plan: DrugPlan) -> None:
        cfg = self.cfg
        lo, hi = cfg.ec50
        plan.ec50 = float(math.exp(self.rng.uniform(math.log(lo), math.log(hi))))
        plan.hill = float(self.rng.uniform(*cfg.hill))
        plan.emax = float(self.rng.uniform(*cfg.effect_log2))
        plan.arrest = float(self.rng.uniform(0.2, 0.5)) if self.rng.random() < cfg.arrest_fraction else 0.0

    def plan_drug(self, drug: str, *, decoy: bool) -> DrugPlan | None:
        """An active mechanism for a drug (with an other-target decoy when `decoy`), or None when impossible."""
        targets = self.targets_of(drug)
        usable = self._usable(targets)
        for primary in usable:
            if not decoy:
                plan = self._mechanism(drug, targets, primary, usable)
                if plan is not None:
                    self._kinetics(plan)
                    return plan
                continue
            # the decoy: another annotated target whose predictions (nearest TFs, pathways it anchors) the
            # mechanism through `primary` leaves unmoved
            for b in self._order(t for t in targets if t != primary and t in self.adj):
                pred = set(self.nearest_tfs(b))
                if not pred:
                    continue
                near = self._near(b, 1)  # b and what it acts on directly
                if self._families(b) & self._families(primary):
                    continue  # a paralog of the engaged target (AKT2 beside AKT1) predicts the same downstream
                plan = self._mechanism(drug, targets, primary, [], avoid=pred | near)
                if plan is None or any((pred | near) & set(p.nodes) for p in plan.paths):
                    continue
                if {pw for n in near for pw, _ in self.anchors.get(n, [])} & set(plan.pathways):
                    continue
                t = targets[b]
                plan.decoys.append(
                    DecoyEdge(
                        drug=drug,
                        target=b,
                        predicate=t.predicate,
                        sign=t.sign,
                        sources=t.sources,
                        model_generated=t.model_generated,
                        kind="other_target",
                        why=f"the world acts through {primary}, not {b}: nothing {b} would move moves",
                        predicted_tfs=sorted(pred)[:8],
                    )
                )
                self._kinetics(plan)
                return plan
        return None

    def _mechanism(
        self,
        drug: str,
        targets: dict[str, TargetInfo],
        primary: str,
        others: list[str],
        *,
        avoid: set[str] | frozenset[str] = frozenset(),
    ) -> DrugPlan | None:
        """TFs reached from `primary`, other annotated targets that reach them consistently (MAP2K2 beside
        MAP2K1, at most `max_targets_per_drug`), then their genes; None when no gene can be planted."""
        plan = DrugPlan(drug=drug, active=True, targets=targets)
        self._plant_tfs(plan, primary, avoid)
        if not plan.tfs:
            return None
        for t in others:
            if t == primary or len(plan.engaged) >= self.cfg.max_targets_per_drug:
                continue
            r = self.reach(t)
            for tf in sorted(plan.tfs, key=lambda x: r.get(x, 99)):
                if tf in r:
                    p = self._path(t, tf, r[tf])
                    if p is not None and self._add_path(plan, p):
                        break
        self._plant_genes(plan)
        return plan if plan.genes else None

    def _families(self, gene: str) -> set[str]:
        return {r.object for r in self.kb.relations(subject=gene, predicate="is_a", resolve=False)}

    def _near(self, gene: str, k: int) -> set[str]:
        return {n for n, d in self.reach(gene).items() if d <= k}

    def inactive(self, drug: str, plan: DrugPlan) -> DrugPlan:
        """The drug made inactive: no effect at any dose; every signed KB target annotation becomes a decoy."""
        out = DrugPlan(drug=drug, active=False, targets=plan.targets, ec50=plan.ec50, hill=plan.hill, emax=0.0)
        for b, t in plan.targets.items():
            out.decoys.append(
                DecoyEdge(
                    drug=drug,
                    target=b,
                    predicate=t.predicate,
                    sign=t.sign,
                    sources=t.sources,
                    model_generated=t.model_generated,
                    kind="inactive_drug",
                    why=f"{drug} is inactive in this world: {b} is never engaged, no gene moves at any dose",
                    predicted_tfs=self.nearest_tfs(b)[:8],
                )
            )
        return out

    # ------------------------------------------------------------------ the panel
    def _drug_pool(self) -> list[str]:
        cfg = self.cfg
        if cfg.drugs:
            out = []
            for name in cfg.drugs:
                r = self.kb.resolve_drug(name)
                if r.status != "resolved" or not r.id:
                    hint = f"; did you mean {', '.join(r.suggestions[:4])}?" if r.suggestions else ""
                    raise InputError(f"drug {name!r} is not in KB {self.kb.version}{hint}")
                out.append(r.id)
            return list(dict.fromkeys(out))
        drugs = self.kb.drugs()
        tahoe = [d for d in drugs if any(r.source == TAHOE_DRUG_SOURCE for r in self.kb.drug_targets(d))]
        rest = [d for d in drugs if d not in set(tahoe)]
        return self._order(tahoe) + self._order(rest)

    def plan_drugs(self) -> list[DrugPlan]:
        """The drug panel: `frac_decoy` of it with an other-target decoy, `frac_inactive` inactive, rest active."""
        cfg = self.cfg
        pool = self._drug_pool()
        n = len(pool) if cfg.drugs else cfg.n_drugs
        n_decoy = min(round(cfg.frac_decoy * n), n)
        n_inactive = min(round(cfg.frac_inactive * n), n - n_decoy)
        decoyed: list[DrugPlan] = []
        plain: list[DrugPlan] = []
        spare: list[DrugPlan] = []
        failed: list[str] = []
        for d in pool:
            if len(decoyed) >= n_decoy and len(plain) >= n - n_decoy:
                break
            if len(decoyed) < n_decoy:
                p = self.plan_drug(d, decoy=True)
                if p is not None:
                    decoyed.append(p)
                    continue
            p = self.plan_drug(d, decoy=False)
            if p is None:
                failed.append(d)
            else:
                (plain if len(plain) < n - n_decoy else spare).append(p)
        while len(decoyed) + len(plain) < n and spare:  # too few drugs could carry a decoy: plain ones fill in
            plain.append(spare.pop(0))
        if cfg.drugs and failed:
            raise InputError(
                f"drug(s) {failed} have no signed target that reaches a TF with a regulon in ≤ "
                f"{cfg.max_path_len} steps in KB {self.kb.version}; pick others or raise max_path_len"
            )
        plans = decoyed + plain
        if len(plans) < n:
            raise InputError(
                f"KB {self.kb.version} has only {len(plans)} drugs whose targets reach a TF with a "
                f"regulon in ≤ {cfg.max_path_len} steps; asked for {n} (lower --drugs)"
            )
        # inactive drugs come from the plain ones, so every decoy drug still has its real effect
        idx = (
            sorted(self.rng.choice(len(plain), size=min(n_inactive, len(plain)), replace=False).tolist())
            if n_inactive and plain
            else []
        )
        off = {plain[i].drug for i in idx}
        plans = [self.inactive(p.drug, p) if p.drug in off else p for p in plans]
        return sorted(plans, key=lambda p: p.drug)

    # ------------------------------------------------------------------ cell lines
    def _line(self, name: str) -> CellLine:
        info = self.kb.entity(name)
        attrs = info.get("attrs") or {}
        drivers = [(d.gene, d.variant or "?", d.effect) for d in self.kb.cell_line_drivers(name)]
        return CellLine(
            name=info["id"],
            context=str(attrs.get("cellosaurus") or info["id"]),
            drivers=drivers,
            depmap=attrs.get("depmap"),
            organ=attrs.get("organ"),
        )

    def sensitivity(self, plan: DrugPlan, line: CellLine) -> Sensitivity:
        """Driver mutations: GoF upstream of (≤ 2 steps) or on a planted path raises potency; LoF of an engaged
        target or planted TF lowers potency and efficacy."""
        if not plan.active:
            return Sensitivity(1.0, 1.0, [])
        from mechcell.knowledge.graph import distances_to

        on_path = {n for p in plan.paths for n in p.nodes}
        if plan.drug not in self._upstream:
            self._upstream[plan.drug] = set(distances_to(self.adj, plan.engaged, 2)) | on_path
        upstream = self._upstream[plan.drug]
        potency, efficacy, reasons = 1.0, 1.0, []
        gof = [d for d in line.drivers if d[2] == "GoF" and d[0] in upstream - set(plan.tfs)]
        lof = [d for d in line.drivers if d[2] == "LoF" and d[0] in set(plan.engaged) | set(plan.tfs)]
        if gof:
            potency *= self.cfg.gof_sensitivity
            reasons += [f"{g} {v} GoF {'on' if g in on_path else 'upstream of'} the planted path" for g, v, _ in gof]
        if lof:
            potency *= self.cfg.lof_sensitivity
            efficacy *= self.cfg.lof_sensitivity
            reasons += [f"{g} {v} LoF of a planted {'TF' if g in plan.tfs else 'target'}" for g, v, _ in lof]
        return Sensitivity(potency, efficacy, reasons)

    def plan_lines(self, plans: list[DrugPlan]) -> list[CellLine]:
        """Cell lines: the given ones, or the line whose drivers change the most drugs' sensitivity plus a seeded
        sample of the others (Tahoe's assayed lines when the KB directory holds them)."""
        cfg = self.cfg
        if cfg.cell_lines:
            names = []
            for c in cfg.cell_lines:
                r = self.kb.resolve_cell_line(c)
                if r.status != "resolved" or not r.id:
                    raise InputError(f"cell line {c!r} is not in KB {self.kb.version}")
                names.append(r.id)
            lines = [self._line(n) for n in dict.fromkeys(names)]
        else:
            rels = self.kb.relations(predicate="has_driver", resolve=False)
            pool = sorted({r.subject for r in rels})
            tahoe = sorted({r.subject for r in rels if r.source == TAHOE_LINE_SOURCE})
            if tahoe:
                pool = tahoe
            if self.assayed:
                pool = [p for p in pool if p in self.assayed] or pool
            if len(pool) < cfg.n_cell_lines:
                lines = [self._line(n) for n in pool]
                for i in range(cfg.n_cell_lines - len(pool)):
                    lines.append(CellLine(name=f"SYN-LINE-{i + 1}", context=f"SYN-LINE-{i + 1}", drivers=[]))
            else:
                order = self._order(pool)
                cands = [self._line(n) for n in order]
                score = [sum(self.sensitivity(p, c).reasons != [] for p in plans) for c in cands]
                first = int(np.argmax(score))
                rest = [c for i, c in enumerate(cands) if i != first]
                lines = [cands[first], *rest[: cfg.n_cell_lines - 1]]
        for c in lines:
            g1 = float(self.rng.uniform(0.4, 0.6))
            s = float((1 - g1) * self.rng.uniform(0.4, 0.6))
            c.phase_probs = (g1, s, 1.0 - g1 - s)
        return sorted(lines, key=lambda c: c.context)


def planted_graph(
    plan: DrugPlan, line: CellLine, *, dose: float, unit: str, plate: str, up: list[str], down: list[str]
) -> str:
    """The planted mechanism of one condition as an ActionGraph in the four-tag text format.

    set_context → binds_to(drug, target) → modulates_molecule_activity along each planted path (directions =
    action sign × path prefix sign) → regulates_expression(TF, genes up / down); where a path passes a pathway's
    activity anchor, modulates_pathway_activity → regulates_expression(pathway, footprint genes).
    """
    from mechcell.graphs import ActionGraph, Edge
    from mechcell.graphs.primitives import (
        BindsTo,
        ModulatesMoleculeActivity,
        ModulatesPathwayActivity,
        RegulatesExpression,
        SetContext,
    )

    nodes: list = [
        SetContext(
            id="n0",
            cell_type=line.name,
            genotype=line.genotype or None,
            extras={"cellosaurus": line.context, "dose": f"{dose:g} {unit}", "plate": plate},
        )
    ]
    edges: list[Edge] = []
    ids: dict[tuple[str, str], str] = {}

    def node(key: tuple[str, str], make) -> str:  # noqa: ANN001 - a small local factory
        if key not in ids:
            ids[key] = f"n{len(nodes)}"
            nodes.append(make(ids[key]))
        return ids[key]

    def link(a: str, b: str) -> None:
        e = Edge(src=a, tgt=b, relation="causal")
        if e not in edges:
            edges.append(e)

    for p in plan.paths:
        t = plan.targets[p.target]
        b = node(
            ("bind", p.target),
            lambda i, t=t: BindsTo(id=i, actor=plan.drug, target=t.target, via=t.action or t.predicate),
        )
        prev = node(
            ("mol", p.target),
            lambda i, t=t: ModulatesMoleculeActivity(
                id=i,
                target=t.target,
                direction=direction(plan.node_dir[t.target]),
                via=f"{t.action or t.predicate} ({', '.join(t.sources)})",
            ),
        )
        link(b, prev)
        for rel, n in zip(p.relations, p.nodes[1:], strict=True):
            via = f"{rel.subject} {rel.predicate} {rel.object} ({rel.source})"
            if n in p.processes:  # a cellular process (DNA damage, ER stress) is read as a pathway-level activity
                cur = node(
                    ("mol", n),
                    lambda i, n=n, via=via: ModulatesPathwayActivity(
                        id=i, pathway=n, direction=direction(plan.node_dir[n]), via=via
                    ),
                )
            else:
                cur = node(
                    ("mol", n),
                    lambda i, n=n, via=via: ModulatesMoleculeActivity(
                        id=i, target=n, direction=direction(plan.node_dir[n]), via=via
                    ),
                )
            link(prev, cur)
            prev = cur
    up_set, down_set = set(up), set(down)
    regulators = [(tf, "tf") for tf in plan.tfs] + [(pw, "pathway") for pw in plan.pathways]
    for name, kind in regulators:
        mine = [g for g, (_, via) in plan.genes.items() if via == name]
        if kind == "tf":
            src = ids[("mol", name)]
            mech = "regulon (CollecTRI-style TF → target signs)"
        else:
            d, anchor = plan.pathways[name]
            src = node(
                ("pw", name),
                lambda i, name=name, d=d, anchor=anchor: ModulatesPathwayActivity(
                    id=i, pathway=name, direction=direction(d), via=f"{anchor} activity anchor"
                ),
            )
            link(ids[("mol", anchor)], src)
            mech = "pathway footprint (PROGENy-style weights)"
        for genes, dirn in (
            (sorted(g for g in mine if g in up_set), "up"),
            (sorted(g for g in mine if g in down_set), "down"),
        ):
            if genes:
                r = node(
                    ("expr", f"{name}|{dirn}"),
                    lambda i, genes=genes, dirn=dirn, name=name, mech=mech: RegulatesExpression(
                        id=i, regulator=name, gene_list=genes, direction=dirn, mechanism=mech
                    ),
                )
                link(src, r)
    answer = (
        f"{'; '.join(plan.rendered_paths())}; {len(up)} genes up, {len(down)} down in {line.name} at {dose:g} {unit}."
    )
    return ActionGraph(nodes=nodes, edges=edges).to_text(think="planted by mechcell.datasets.synthetic", answer=answer)
