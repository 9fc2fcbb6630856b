"""Verifier panel on synthetic worlds: per-claim confusion against the planted truth, and throughput.

Claims scored (all on one world, signatures by the datasets code vs plate-matched controls, cells for the DR test):
- true claims: every claim of each active condition's planted graph; goal ≥ 90 % of the checkable ones supported;
- decoy claims: for each decoy edge (a KB target annotation the world does not act on), the binding and the target
  activity a proposer would assert, plus its downstream expression claims; goal ≥ 95 % not supported. Split by a
  class fixed in advance from the KB and the planted mechanism only, never from a verdict
  (`mechcell.datasets.synthetic.identifiability`): `identifiable` (the decoy target predicts a TF/pathway readout the
  world does not move), `no KB readout` (the KB links the target to no expression programme: RNA cannot speak to
  it, so the panel falls back on the KB record) and `indistinguishable` (every readout it predicts, the real mechanism
  moves the same way). The goal is meant for the identifiable ones; the others are reported beside it. Claims of one
  decoy in one cell line share a dose series (one dose-response test), so the number of (decoy, line) series with a
  supported claim is printed too: that is the unit of independent errors;
- sub-threshold claims: an active drug's planted graph (its weakest active dose in the line) claimed at the line's
  conditions whose effect scale is below the world's `min_active_effect` (the truth counts them inactive);
- null claims: per active condition a random TF's activity and a random list of 5 measured genes (not planted, not
  cell-cycle genes, which a drug-induced arrest moves) under a random TF, random directions; goal false support ≤ 5 %.
Where true claims stay unsupported: a breakdown by claim kind × effect-scale bin (support rate), by kind × bin ×
status × the rule that decided (the verdict's reason reduced to a class), and by condition; `--dump FILE` writes
every true claim's verdict as JSON lines (docs/verifiers.md, "True claims left unsupported").
Throughput: graphs verified per second for a 10-node graph with the full KB (../shared/kb, when present), printed
beside the structural check alone (the baseline, same process).

    python benchmarks/bench_verifiers.py [--seed 0] [--drugs 12] [--kb ../shared/kb] [--no-cells] [--dump F] [--top N]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import time
from collections import Counter
from pathlib import Path

from _machine import machine

from mechcell.datasets.cells import G2M_GENES, S_GENES
from mechcell.datasets.readers import open_dataset
from mechcell.datasets.signatures import compute_signatures
from mechcell.datasets.store import Store
from mechcell.datasets.synthetic import H5AD_FILE, SyntheticWorldConfig, generate_world, load_truth
from mechcell.datasets.synthetic.identifiability import classify_decoys
from mechcell.graphs import ActionGraph, Edge
from mechcell.graphs.primitives import BindsTo, ModulatesMoleculeActivity, RegulatesExpression, SetContext
from mechcell.knowledge import load_kb
from mechcell.verifiers import PanelSettings
from mechcell.verifiers.api import CellCache
from mechcell.verifiers.doses import dose_series
from mechcell.verifiers.panel import run_panel

DIR = {1: "up", -1: "down"}
DATA = ("expression", "expression-dr")
EFFECT_BINS = ((0.5, "≥ 0.5"), (0.25, "0.25–0.5"), (0.0, "< 0.25"))
# reason text → a short class (first match wins); numbers and names vary, the rule that decided does not
REASON_CLASSES = (
    ("no readout of", "silent drug, no RNA readout"),
    ("no footprint or regulon", "no footprint/regulon"),
    ("weighted genes are measured", "too few footprint genes measured"),
    ("is not measured", "gene not measured"),
    ("below the effect floor at every dose", "below the effect floor at every dose"),
    ("below the floor", "below the effect floor"),
    ("not significant along the dose series", "pooled test not significant"),
    ("goes the other way at this dose", "other sign at this dose"),
    ("other sign at this dose", "other sign at this dose"),
    ("barely moves", "own-dose gate (own p ≥ dose_own_level)"),
    ("no clear change", "footprint not significant"),
    ("does not move as a whole", "list not significant"),
    ("not significant", "not significant"),
    ("goes down, not", "contradicted: gene goes the other way"),
    ("goes up, not", "contradicted: gene goes the other way"),
    ("the other way", "contradicted: other way"),
    ("no distributional change", "DR test not significant"),
)


def effect_bin(scale: float) -> str:
    return next(label for lo, label in EFFECT_BINS if scale >= lo)


def reason_class(reason: str) -> str:
    """A verdict's reason text reduced to the rule that decided it ("consequence:" marks a binding judged by its
    target's downstream footprint)."""
    pre = "consequence: " if reason.startswith("consequence of ") else ""
    for pat, label in REASON_CLASSES:
        if pat in reason:
            return pre + label
    return pre + re.sub(r"[-+]?\d[\d.eE+-]*", "#", reason)[:60]


def deciding_verdict(report, claim_id: str, status: str):
    """The verdict behind the panel's status of one claim: a data verifier's when one had its say (data first)."""
    vs = [v for v in report.verdicts if v.claim.id == claim_id and v.status == status]
    data = [v for v in vs if v.verifier in DATA]
    return (data or vs or [None])[0]


def graph_of(nodes: list, edges: list[tuple[str, str]]) -> ActionGraph:
    return ActionGraph(nodes=[SetContext(id="n0"), *nodes], edges=[Edge(src=a, tgt=b) for a, b in edges])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--drugs", type=int, default=12)
    ap.add_argument("--cells", type=int, default=120)
    ap.add_argument("--kb", type=str, default=None, help="KB for the world and the panel (default: starter)")
    ap.add_argument("--full-kb", type=str, default=str(Path(__file__).resolve().parents[2] / "shared" / "kb"))
    ap.add_argument("--no-cells", action="store_true")
    ap.add_argument("--no-dose-pooling", action="store_true", help="judge each dose on its own data (baseline)")
    ap.add_argument("--own-level", type=float, default=None, help="PanelSettings.dose_own_level (default: its default)")
    ap.add_argument("--dump", type=str, default=None, help="write every true claim's verdict as JSON lines here")
    ap.add_argument("--top", type=int, default=12, help="rows of each breakdown table")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="bench_verifiers_"))
    t0 = time.perf_counter()
    cfg = SyntheticWorldConfig(seed=args.seed, n_drugs=args.drugs, cells_per_condition=args.cells, kb=args.kb)
    generate_world(cfg, tmp / "world", "h5ad")
    truth = load_truth(tmp / "world")
    kb = load_kb(args.kb)
    store = Store(tmp / "store.duckdb")
    ds = open_dataset(tmp / "world" / H5AD_FILE)
    rep = compute_signatures(ds, store=store, method="welch_t")
    dataset_id = store.datasets()[0].id
    print(f"machine: {machine()}")
    print(
        f"world: seed {args.seed}, {len(truth.drugs)} drugs, {len(truth.conditions)} conditions "
        f"({len(truth.active_keys())} active), {len(truth.decoys)} decoy edges, {truth.n_cells} cells; "
        f"signatures {len(rep.keys)} in {time.perf_counter() - t0:.1f} s"
    )
    settings = PanelSettings(seed=args.seed, n_permutations=500, dose_pooling=not args.no_dose_pooling)
    if args.own_level is not None:
        settings = settings.model_copy(update={"dose_own_level": args.own_level})
    print(f"dose pooling: {'off' if args.no_dose_pooling else 'on'}")
    tally: dict[str, Counter] = {
        "true": Counter(),
        "true, effect ≥ 0.5": Counter(),
        "true, effect < 0.5": Counter(),
        "decoy": Counter(),
        "decoy-downstream": Counter(),
        "decoy, identifiable": Counter(),
        "decoy, no KB readout": Counter(),
        "decoy, indistinguishable": Counter(),
        "null": Counter(),
        "sub-threshold": Counter(),
    }
    # the planted graph of an active drug's active dose, per line: claimed at the line's conditions the world
    # counts inactive (effect scale below min_active_effect) it must not be supported — dose pooling must not
    # assert a mechanism where this dose barely acts
    active_graph: dict[tuple[str, str], str] = {}
    for _k2, c2 in sorted(truth.conditions.items(), key=lambda kv: kv[1].effect_scale):
        if c2.active and c2.graph:
            active_graph[(c2.drug, c2.context)] = c2.graph
    excluded = set(S_GENES) | set(G2M_GENES)
    tfs = sorted(kb.regulon_tfs())
    t_panel, n_panel = 0.0, 0
    last_report: list = [None]
    supported_decoys: list[str] = []
    true_rows: list[dict] = []  # every true claim: kind × effect bin × reason × condition (the breakdown)
    decoy_class = classify_decoys(kb, truth)  # KB + planted mechanism only: fixed before any verdict
    cls_label = {
        "identifiable": "identifiable",
        "no_readout": "no KB readout",
        "indistinguishable": "indistinguishable",
    }
    series: dict[str, set[tuple[str, str, str]]] = {k: set() for k in cls_label.values()}
    series_hit: dict[str, set[tuple[str, str, str]]] = {k: set() for k in cls_label.values()}
    for key, ct in sorted(truth.conditions.items()):
        found = store.find_condition(key)
        cond = found.condition
        sig = store.signature(key)
        measured = [g for g in sig.genes if g not in excluded]
        doses = None if args.no_dose_pooling else dose_series(store, cond, dataset_id=dataset_id, method=sig.method)

        def panel(g: ActionGraph, cond=cond, sig=sig, doses=doses):
            nonlocal t_panel, n_panel
            cells = (
                None if args.no_cells else CellCache(store, dataset_id, cond, [x for c in g.claims() for x in c.genes])
            )
            t = time.perf_counter()
            r = run_panel(g, condition=cond, kb=kb, signature=sig, cells=cells, settings=settings, doses=doses)
            t_panel += time.perf_counter() - t
            n_panel += 1
            last_report[0] = r
            return {c.claim_id: c.status for c in r.claims}

        if not ct.active and ct.targets and (ct.drug, ct.context) in active_graph:
            from mechcell.graphs import parse_text

            sub = parse_text(active_graph[(ct.drug, ct.context)]).graph
            if sub is not None:
                for status in panel(sub).values():
                    tally["sub-threshold"][status] += 1
        if ct.active and ct.graph:
            g = truth.graph(key)
            planted_lfc = {x.gene: x.log2fc for x in ct.up + ct.down}
            for cid, status in panel(g).items():
                tally["true"][status] += 1
                tally["true, effect ≥ 0.5" if ct.effect_scale >= 0.5 else "true, effect < 0.5"][status] += 1
                rep_ = last_report[0]
                claim = next(c for c in rep_.claims if c.claim_id == cid)
                v = deciding_verdict(rep_, cid, status)
                vc = v.claim if v is not None else None
                true_rows.append(
                    {
                        "condition": key,
                        "drug": ct.drug,
                        "context": ct.context,
                        "dose": ct.dose,
                        "effect_scale": ct.effect_scale,
                        "effect_bin": effect_bin(ct.effect_scale),
                        "claim_id": cid,
                        "kind": claim.kind,
                        "object": vc.object if vc else None,
                        "direction": vc.direction if vc else None,
                        "n_genes": len(vc.genes) if vc else 0,
                        "planted_log2fc": planted_lfc.get(vc.object) if vc and claim.kind == "expression" else None,
                        "status": status,
                        "verifier": v.verifier if v else None,
                        "reason": v.reason if v else "",
                        "reason_class": reason_class(v.reason) if v else "no verdict",
                        "p_value": v.p_value if v else None,
                        "statistic": v.statistic if v else None,
                        "diagnostics": {
                            k: x for k, x in (v.diagnostics if v else {}).items() if isinstance(x, (int, float, str))
                        },
                    }
                )
        for d in truth.decoys:
            if d.drug != ct.drug:
                continue
            direction = DIR.get(d.sign, "down")
            nodes = [
                BindsTo(id="n1", actor=d.drug, target=d.target),
                ModulatesMoleculeActivity(id="n2", target=d.target, direction=direction),
            ]
            edges = [("n1", "n2")]
            for k, tf in enumerate(d.predicted_tfs[:2], start=3):
                reg = kb.regulon(tf)
                genes = sorted(reg)[:8]
                if genes:
                    s = reg[genes[0]]
                    same = [x for x in genes if reg[x] == s]
                    nodes.append(
                        RegulatesExpression(
                            id=f"n{k}",
                            regulator=tf,
                            gene_list=same,
                            direction=DIR[(1 if direction == "up" else -1) * s],
                        )
                    )
                    edges.append(("n2", f"n{k}"))
            if len(nodes) == 2:
                nodes.append(
                    RegulatesExpression(
                        id="n3", regulator=d.target, gene_list=rng.sample(measured, 3), direction=direction
                    )
                )
                edges.append(("n2", "n3"))
            res = panel(graph_of(nodes, edges))
            label = cls_label[decoy_class[(d.drug, d.target)].cls]
            series[label].add((d.drug, d.target, ct.context))
            for cid, status in res.items():
                tally["decoy" if cid in ("n1", "n2") else "decoy-downstream"][status] += 1
                if cid in ("n1", "n2"):
                    tally[f"decoy, {label}"][status] += 1
                if cid in ("n1", "n2") and status == "supported":
                    series_hit[label].add((d.drug, d.target, ct.context))
                    why = [v.reason for v in last_report[0].verdicts if v.claim.id == cid and v.status == "supported"]
                    supported_decoys.append(f"{key} {d.drug}->{d.target} ({d.kind}, {label}) {cid}: {why[-1][:140]}")
        if ct.active:
            planted = {x.gene for x in ct.up + ct.down} | set(ct.tfs) | set(ct.targets)
            pool = [g for g in measured if g not in planted]
            tf = rng.choice([t for t in tfs if t not in planted])
            tf2 = rng.choice([t for t in tfs if t not in planted])
            engaged = (ct.targets or [None])[0]
            nodes = [
                ModulatesMoleculeActivity(id="n2", target=tf, direction=rng.choice(["up", "down"])),
                RegulatesExpression(
                    id="n3", regulator=tf2, gene_list=rng.sample(pool, 5), direction=rng.choice(["up", "down"])
                ),
            ]
            edges = [("n2", "n3")]
            if engaged:
                nodes.insert(0, BindsTo(id="n1", actor=ct.drug, target=engaged))
                edges.insert(0, ("n1", "n2"))
            res = panel(graph_of(nodes, edges))
            for cid, status in res.items():
                if cid != "n1":
                    tally["null"][status] += 1
    print("\nper-claim confusion (panel status by ground truth):")
    print(
        f"{'claims':26s} {'n':>5s} {'supported':>10s} {'contradicted':>13s} {'inconclusive':>13s} {'uncheckable':>12s}"
    )
    for k, c in tally.items():
        n = sum(c.values())
        print(
            f"{k:26s} {n:5d} {c['supported']:10d} {c['contradicted']:13d} {c['inconclusive']:13d} "
            f"{c['uncheckable']:12d}"
        )
    tr, de, nu = tally["true"], tally["decoy"], tally["null"]
    chk = tr["supported"] + tr["contradicted"] + tr["inconclusive"]
    print(f"\ntrue checkable claims supported: {tr['supported'] / max(chk, 1):.3f} (goal ≥ 0.90)")
    strong = tally["true, effect ≥ 0.5"]
    print(f"  ... in conditions with effect scale ≥ 0.5: {strong['supported'] / max(sum(strong.values()), 1):.3f}")
    true_breakdown(true_rows, args.top)
    if args.dump:
        Path(args.dump).write_text("".join(json.dumps(r) + "\n" for r in true_rows))
        print(f"  ({len(true_rows)} true-claim verdicts written to {args.dump})")
    print(f"decoy claims not supported:      {1 - de['supported'] / max(sum(de.values()), 1):.3f} (goal ≥ 0.95)")
    for label in cls_label.values():
        c = tally[f"decoy, {label}"]
        n = sum(c.values())
        print(
            f"  decoys {label + ':':19s} n {n:4d}, not supported {1 - c['supported'] / max(n, 1):.3f}; "
            f"(decoy, line) series with a supported claim {len(series_hit[label])}/{len(series[label])}"
        )
    for k, v in sorted(decoy_class.items()):
        print(f"    class of {k[0]}->{k[1]} ({v.kind}): {v.cls}; predicts {', '.join(v.decoy_readouts) or 'nothing'}")
    dd = tally["decoy-downstream"]
    print(f"decoy downstream not supported:  {1 - dd['supported'] / max(sum(dd.values()), 1):.3f}")
    for line in supported_decoys[:12]:
        print(f"  supported decoy: {line}")
    print(f"null claims falsely supported:   {nu['supported'] / max(sum(nu.values()), 1):.3f} (goal ≤ 0.05)")
    sb = tally["sub-threshold"]
    print(f"sub-threshold claims supported:  {sb['supported'] / max(sum(sb.values()), 1):.3f} (effect scale < min)")
    print(
        f"panel: {n_panel} graphs in {t_panel:.1f} s ({n_panel / max(t_panel, 1e-9):.1f} graphs/s, "
        f"{'without' if args.no_cells else 'with'} cell-level tests, world KB)"
    )
    throughput(Path(args.full_kb), store, truth, args.seed)


def true_breakdown(rows: list[dict], top: int) -> None:
    """Where the unsupported true claims are: kind × effect bin (support rate), kind × effect bin × reason, and
    the conditions carrying most of them."""
    print("\ntrue claims by kind × effect scale (supported / checkable):")
    kinds = sorted({r["kind"] for r in rows})
    bins = [label for _, label in EFFECT_BINS]
    print(f"  {'kind':18s}" + "".join(f"{'effect ' + b:>20s}" for b in bins) + f"{'all':>14s}")
    for k in kinds:
        cells = []
        for b in [*bins, None]:
            rs = [r for r in rows if r["kind"] == k and (b is None or r["effect_bin"] == b)]
            chk = [r for r in rs if r["status"] != "uncheckable"]
            sup = sum(r["status"] == "supported" for r in chk)
            cells.append(f"{sup}/{len(chk)} ({sup / len(chk):.2f})" if chk else "-")
        print(f"  {k:18s}" + "".join(f"{c:>20s}" for c in cells[:-1]) + f"{cells[-1]:>14s}")
    bad = [r for r in rows if r["status"] in ("inconclusive", "contradicted")]
    print(f"unsupported true claims ({len(bad)}) by kind × effect scale × status × reason:")
    cnt = Counter((r["kind"], r["effect_bin"], r["status"], r["reason_class"]) for r in bad)
    for (k, b, st, why), n in cnt.most_common(top):
        print(f"  {n:5d}  {k:18s} effect {b:9s} {st:12s} {why}")
    if len(cnt) > top:
        print(f"  ... {len(cnt) - top} more rows ({sum(n for _, n in cnt.most_common()[top:])} claims)")
    by_cond = Counter(r["condition"] for r in bad)
    n_cond = Counter(r["condition"] for r in rows)
    scale = {r["condition"]: r["effect_scale"] for r in rows}
    print(f"unsupported true claims by condition ({len(by_cond)} of {len(n_cond)} conditions):")
    for key, n in by_cond.most_common(top):
        why = Counter(r["reason_class"] for r in bad if r["condition"] == key).most_common(1)[0][0]
        print(f"  {n:4d}/{n_cond[key]:<4d} {key:42s} effect {scale[key]:.3f}; mostly: {why}")


def throughput(full_kb: Path, store: Store, truth, seed: int) -> None:
    """10-node graph with the full KB: graphs/s of the panel beside the structural check (baseline)."""
    if not full_kb.is_dir():
        print(f"full KB not found at {full_kb}: throughput with the full KB skipped")
        return
    t = time.perf_counter()
    kb = load_kb(full_kb)
    print(f"\nfull KB {kb.version} loaded in {time.perf_counter() - t:.1f} s")
    key = truth.active_keys()[0]
    sig = store.signature(key)
    cond = store.find_condition(key).condition
    genes = [g for g in sig.genes][:1]
    nodes = [
        BindsTo(id="n1", actor="Trametinib", target="MAP2K1"),
        ModulatesMoleculeActivity(id="n2", target="MAP2K1", direction="down"),
        ModulatesMoleculeActivity(id="n3", target="MAPK1", direction="down"),
        ModulatesMoleculeActivity(id="n4", target="MAPK3", direction="down"),
        ModulatesMoleculeActivity(id="n5", target="ELK1", direction="down"),
        ModulatesMoleculeActivity(id="n6", target="ETV4", direction="down"),
        RegulatesExpression(id="n7", regulator="ELK1", gene_list=["DUSP6", "SPRY4", "EGR1", *genes], direction="down"),
        RegulatesExpression(id="n8", regulator="ETV4", gene_list=["DUSP6", "SPRY2"], direction="down"),
        RegulatesExpression(id="n9", regulator="MAPK1", gene_list=["FOSL1", "IER3"], direction="down"),
    ]
    g = graph_of(
        nodes,
        [
            ("n1", "n2"),
            ("n2", "n3"),
            ("n2", "n4"),
            ("n3", "n5"),
            ("n4", "n6"),
            ("n5", "n7"),
            ("n6", "n8"),
            ("n3", "n9"),
        ],
    )
    assert len(g.nodes) == 10 and g.is_valid(), g.problems()
    settings = PanelSettings(seed=seed, n_permutations=500)
    run_panel(g, condition=cond, kb=kb, signature=sig, settings=settings)  # warm caches (KB views)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < 5.0:
        run_panel(g, condition=cond, kb=kb, signature=sig, settings=settings)
        n += 1
    ours = n / (time.perf_counter() - t)
    n2, t = 0, time.perf_counter()
    while time.perf_counter() - t < 1.0:
        g.problems()
        n2 += 1
    base = n2 / (time.perf_counter() - t)
    print(
        f"10-node graph, full KB, signature of {len(sig.genes)} genes: {ours:.1f} graphs/s "
        f"(structural check alone: {base:,.0f}/s; ratio {ours / base:.4f})"
    )


if __name__ == "__main__":
    main()
