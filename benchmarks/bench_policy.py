"""The proposer policy on held-out drugs of a synthetic world: BC only, BC + f-TB (α = ½ and TB α = 1), and the
local proposer, in one run.

World: `--drugs` drugs (default 10) × 2 cell lines × 2 doses, 500 genes, starter KB; signatures by the datasets
code; traces by the local proposer through the real pipeline (use_cells off) for the *training* drugs only
(whole drugs held out: `--holdout` of them). The policy is behaviour-cloned on those traces, then tuned with f-TB
against the signature-level verifier panel (log R = reward/β, DevGrad per condition, replay seeded with the
traces' attempts). Baseline in the same process: the local proposer's first candidate on the same held-out
conditions, scored by the same panel.

Figures per proposer on the held-out conditions: mean panel reward of the top graph (an abstention scores the
abstain reward, the panel's acceptance threshold), share accepted, edge precision / recall against the planted
graphs (mechcell.eval.recovery edge definition), and diversity = distinct *accepted* graphs among k samples
(temperature 1) per condition, α = ½ versus TB.

Seeds (`--seeds 0,1,2`): each seed is its own synthetic world, drug split and training seed; the summary gives per
proposer the mean over seeds with a 95 % Student-t interval over seeds (the seed is the replicate), and paired
differences (f-TB α=½ − TB on diversity; policy − local on reward and recall) both as a t-interval over the seeds'
differences and as a bootstrap over held-out conditions stratified by seed (the condition within its world is the
unit; it ignores between-world variance). Per-condition rows go to `_out/policy_seeds.json`.

Decoding: every policy row is decoded exactly (the most probable graph by best-first search); the α=½ model is
also decoded by the round-2 beam and by MBR (consensus of its 16 most probable graphs), and per model the run
records how often exact and beam disagree (`decoding` in the JSON).

`--inner-val`: the explain-bonus decision without the held-out drugs. The training drugs are split again; α=½ with
and without the bonus is trained on the inner part and scored on the inner validation drugs; the decision rule
(recall gain's bootstrap lower bound > 0 and reward's > −0.02) is applied and printed (`_out/policy_inner_val.md`).

Usage: .venv/bin/python benchmarks/bench_policy.py [--seeds 0,1,2] [--drugs 10] [--steps 120] [--bc-steps 150]
    [--k 16] [--explain-weight 0.5] [--set key=value ...] [--inner-val] [--out-json F] [--out-md F]
    (--set: PolicyTrainConfig fields; `policy.key=value` for PolicyConfig fields)
About 4–7 minutes per seed on two busy cores (the panel is ~85 % of it).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _machine import machine

OUT = Path(__file__).resolve().parent / "_out" / "policy.md"
OUT_JSON = Path(__file__).resolve().parent / "_out" / "policy_seeds.json"
OUT_INNER = Path(__file__).resolve().parent / "_out" / "policy_inner_val.md"
NAMES = {
    "bc": "policy (BC only)",
    "half": "policy (BC + f-TB α=½)",
    "tb": "policy (BC + f-TB α=1, TB)",
    "half_beam": "policy (BC + f-TB α=½), beam decoding",
    "half_mbr": "policy (BC + f-TB α=½), MBR decoding",
    "explain": "policy (BC + f-TB α=½, explain bonus)",
    "explain_beam": "policy (BC + f-TB α=½, explain bonus), beam decoding",
    "local": "local",
}
METRICS = ("mean_reward", "accepted", "edge_precision", "edge_recall", "mean_distinct_accepted", "mean_ends")


def _overrides(pairs: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`key=value` pairs (values parsed as JSON when they parse) → (PolicyTrainConfig, PolicyConfig) updates."""
    train: dict[str, Any] = {}
    pol: dict[str, Any] = {}
    for p in pairs:
        k, _, v = p.partition("=")
        try:
            val = json.loads(v)
        except json.JSONDecodeError:
            val = v
        (pol if k.startswith("policy.") else train)[k.removeprefix("policy.")] = val
    return train, pol


def prepare(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """One world (its own seed), its signatures in a store, the outer drug split and the local proposer's traces of
    the training drugs (the BC data)."""
    from mechcell.agents.pipeline import Pipeline, PipelineConfig
    from mechcell.datasets.readers import open_dataset
    from mechcell.datasets.signatures import compute_signatures
    from mechcell.datasets.store import Store
    from mechcell.datasets.synthetic import SyntheticWorldConfig, generate_world, load_truth
    from mechcell.knowledge import load_kb
    from mechcell.models.train_policy import split_by_drug

    t0 = time.perf_counter()
    root = (args.keep / f"seed{seed}") if args.keep else Path(tempfile.mkdtemp(prefix="bench_policy_"))
    root.mkdir(parents=True, exist_ok=True)
    cfg = SyntheticWorldConfig(
        seed=seed, n_drugs=args.drugs, n_cell_lines=2, doses=[0.5, 5.0], n_genes=500, cells_per_condition=150
    )
    world = root / "world"
    if world.exists():
        shutil.rmtree(world)
    generate_world(cfg, world, layout="h5ad")
    truth = load_truth(world)
    store = root / "store.duckdb"
    store.unlink(missing_ok=True)
    kb = load_kb(None)
    with Store(store) as st:
        ds = open_dataset(world / "world.h5ad")
        did = st.register(ds)
        compute_signatures(ds, None, store=st, dataset_id=did)
    keys = sorted(truth.conditions)
    train_keys, held_keys = split_by_drug(keys, lambda k: truth.condition(k).drug, frac=args.holdout, seed=seed)
    with Pipeline(
        kb=kb, store=store, proposer="local", config=PipelineConfig(n_candidates=3, max_rounds=1, use_cells=False)
    ) as pipe:
        pipe.run_many(train_keys)
    held_drugs = ", ".join(sorted({truth.condition(k).drug for k in held_keys}))
    print(
        f"[seed {seed}] world: {args.drugs} drugs, {len(keys)} conditions ({len(truth.active_keys())} active);"
        f" train {len(train_keys)} / held out {len(held_keys)} (drugs: {held_drugs});"
        f" data + local traces {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    return {
        "root": root,
        "truth": truth,
        "store": store,
        "kb": kb,
        "keys": keys,
        "train_keys": train_keys,
        "held_keys": held_keys,
        "held_drugs": held_drugs,
    }


def _config(seed: int, args: argparse.Namespace) -> Any:
    from mechcell.models.policy import PolicyConfig
    from mechcell.models.train_policy import PolicyTrainConfig

    tr_over, pol_over = _overrides(args.set)
    return PolicyTrainConfig(
        seed=seed, bc_steps=args.bc_steps, steps=args.steps, policy=PolicyConfig(seed=seed, **pol_over), **tr_over
    )


def _decoding_rows(model: Any, items: list[Any]) -> list[dict[str, Any]]:
    """Per condition: the exact decoder's and the beam's top graph (log P_T, actions, same graph?)."""
    out = []
    for it in items:
        ex = model.decode(it.env, 1, method="exact")
        bm = model.decode(it.env, 1, method="beam")
        (lpe, te), (lpb, tb) = ex.ranked[0], bm.ranked[0]
        out.append(
            {
                "key": it.key,
                "exact_log_p": lpe,
                "beam_log_p": lpb,
                "exact_actions": len(te.actions),
                "beam_actions": len(tb.actions),
                "same": te.actions == tb.actions,
                "certified": ex.certified,
                "expansions": ex.expansions,
            }
        )
    return out


def run_seed(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """BC → f-TB α=½, α=1 (and α=½ with the explain bonus) on the training drugs → held-out evaluation (exact
    decoding; the α=½ models also with the round-2 beam); the rows as JSON."""
    import torch

    from mechcell.datasets.store import Store
    from mechcell.datasets.traces import TraceStore
    from mechcell.models.policy import PolicyModel
    from mechcell.models.train_policy import (
        RewardCache,
        attempts_offpolicy,
        demonstrations,
        eval_table,
        evaluate_local,
        evaluate_policy,
        load_conditions,
        n_ends,
        train_bc,
        train_ftb,
    )

    t0 = time.perf_counter()
    d = prepare(seed, args)
    truth, kb, keys, train_keys, held_keys = d["truth"], d["kb"], d["keys"], d["train_keys"], d["held_keys"]
    config = _config(seed, args)
    with Store(d["store"], read_only=True) as st:
        items = load_conditions(st, kb, config.policy, keys)
        train = [it for it in items if it.key in set(train_keys)]
        held = [it for it in items if it.key in set(held_keys)]
        traces = TraceStore(st)
        demos, dstats = demonstrations(traces, train)
        offp = attempts_offpolicy(traces, train)
    demo_ends = [n_ends(it.env.graph(t.actions)) for it, t in demos if not t.abstain]
    print(
        f"[seed {seed}] demonstrations: {dstats.model_dump()}; off-policy attempts {len(offp)}; "
        f"mean ends per non-abstaining demo {sum(demo_ends) / max(len(demo_ends), 1):.2f}",
        flush=True,
    )
    rewards = RewardCache(kb, config.panel, config.abstain_value)
    torch.manual_seed(seed)
    bc = PolicyModel(config.policy)
    bc_curve = train_bc(bc, demos, config)
    print(
        f"[seed {seed}] BC: mean log P_F of demos {bc_curve[0]['mean_log_pf']:.2f} → {bc_curve[-1]['mean_log_pf']:.2f}",
        flush=True,
    )
    evals = [evaluate_policy(NAMES["bc"], bc, held, rewards, truth=truth, kb=kb, k=args.k, seed=seed)]
    decoding = {"bc": _decoding_rows(bc, held)}
    variants = [(0.5, "half", 0.0), (1.0, "tb", 0.0)]
    if args.explain_weight > 0:
        variants.append((0.5, "explain", args.explain_weight))
    for alpha, tag, ew in variants:
        m = copy.deepcopy(bc)
        c = config.model_copy(update={"alpha": alpha, "explain_weight": ew})
        t = time.perf_counter()
        curve = train_ftb(m, train, c, rewards, offpolicy=offp)
        print(
            f"[seed {seed}] {NAMES[tag]}: on-policy reward {curve[0]['reward']:.3f} → {curve[-1]['reward']:.3f}"
            f" ({time.perf_counter() - t:.1f} s)",
            flush=True,
        )
        evals.append(evaluate_policy(NAMES[tag], m, held, rewards, truth=truth, kb=kb, k=args.k, seed=seed))
        for dec in ("beam", "mbr"):
            if f"{tag}_{dec}" in NAMES:
                name = NAMES[f"{tag}_{dec}"]
                evals.append(evaluate_policy(name, m, held, rewards, truth=truth, kb=kb, k=0, decoding=dec))
        decoding[tag] = _decoding_rows(m, held)
    evals.append(evaluate_local(held, rewards, truth=truth, kb=kb))
    rows = eval_table(evals)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"[seed {seed}] held-out conditions (whole drugs):")
    print("\n".join("  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)) for r in rows))
    for tag, drows in decoding.items():
        print(
            f"[seed {seed}] decoding {tag}: exact ≠ beam in {sum(not r['same'] for r in drows)}/{len(drows)};"
            f" log P_T gain {sum(r['exact_log_p'] - r['beam_log_p'] for r in drows) / len(drows):.3f};"
            f" actions exact {sum(r['exact_actions'] for r in drows) / len(drows):.2f}"
            f" vs beam {sum(r['beam_actions'] for r in drows) / len(drows):.2f};"
            f" certified {sum(r['certified'] for r in drows)}/{len(drows)}",
            flush=True,
        )
    print(
        f"[seed {seed}] panel calls {rewards.calls} ({rewards.seconds:.1f} s); seed total"
        f" {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    if args.keep is None:
        shutil.rmtree(d["root"], ignore_errors=True)
    return {
        "seed": seed,
        "held_drugs": d["held_drugs"],
        "n_demo_ends": demo_ends,
        "evals": [e.model_dump(mode="json") for e in evals],
        "decoding": decoding,
    }


def run_inner(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """The explain-bonus decision without the held-out drugs: the training drugs are split again (inner train /
    inner validation, whole drugs), BC → f-TB α=½ with and without the bonus on the inner train, both scored on the
    inner validation. The outer held-out drugs are never loaded."""
    import torch

    from mechcell.datasets.store import Store
    from mechcell.datasets.traces import TraceStore
    from mechcell.models.policy import PolicyModel
    from mechcell.models.train_policy import (
        RewardCache,
        attempts_offpolicy,
        demonstrations,
        eval_table,
        evaluate_policy,
        load_conditions,
        split_by_drug,
        train_bc,
        train_ftb,
    )

    t0 = time.perf_counter()
    d = prepare(seed, args)
    truth, kb = d["truth"], d["kb"]
    outer_train = d["train_keys"]
    inner_train, inner_val = split_by_drug(
        outer_train, lambda k: truth.condition(k).drug, frac=args.holdout, seed=seed + 1000
    )
    config = _config(seed, args)
    with Store(d["store"], read_only=True) as st:
        items = load_conditions(st, kb, config.policy, outer_train)
        train = [it for it in items if it.key in set(inner_train)]
        val = [it for it in items if it.key in set(inner_val)]
        traces = TraceStore(st)
        demos, _ = demonstrations(traces, train)
        offp = attempts_offpolicy(traces, train)
    val_drugs = ", ".join(sorted({truth.condition(k).drug for k in inner_val}))
    print(f"[seed {seed}] inner split: train {len(train)} / validation {len(val)} (drugs: {val_drugs})", flush=True)
    rewards = RewardCache(kb, config.panel, config.abstain_value)
    torch.manual_seed(seed)
    bc = PolicyModel(config.policy)
    train_bc(bc, demos, config)
    evals = []
    for tag, ew in (("half", 0.0), ("explain", args.explain_weight)):
        m = copy.deepcopy(bc)
        train_ftb(m, train, config.model_copy(update={"alpha": 0.5, "explain_weight": ew}), rewards, offpolicy=offp)
        evals.append(evaluate_policy(NAMES[tag], m, val, rewards, truth=truth, kb=kb, k=0))
    rows = eval_table(evals)
    print(f"[seed {seed}] inner validation:")
    print("\n".join("  ".join(r) for r in rows))
    print(f"[seed {seed}] inner total {time.perf_counter() - t0:.1f} s", flush=True)
    if args.keep is None:
        shutil.rmtree(d["root"], ignore_errors=True)
    return {"seed": seed, "val_drugs": val_drugs, "evals": [e.model_dump(mode="json") for e in evals]}


def _value(ev: dict[str, Any], metric: str) -> float | None:
    if metric == "mean_ends":
        return sum(r["n_ends"] for r in ev["rows"]) / max(len(ev["rows"]), 1)
    return ev[metric]


def _fmt_ci(m: float, lo: float, hi: float, nd: int = 3) -> str:
    if math.isnan(m):
        return "—"
    if math.isnan(lo):
        return f"{m:.{nd}f}"
    return f"{m:.{nd}f} [{lo:.{nd}f}, {hi:.{nd}f}]"


def summarise(runs: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: per proposer the mean over seeds with a 95 % t-interval over seeds, then paired
    differences (t over seeds, and a bootstrap over conditions stratified by seed)."""
    from mechcell.models.train_policy import stratified_bootstrap, t_interval

    names = {t: n for t, n in NAMES.items() if all(any(e["name"] == n for e in r["evals"]) for r in runs)}
    by = {tag: [next(e for e in r["evals"] if e["name"] == name) for r in runs] for tag, name in names.items()}
    head = ["proposer", "reward", "accepted", "edge precision", "edge recall", "distinct accepted / cond"]
    head.append("ends / cond")
    lines = [
        f"seeds {', '.join(str(r['seed']) for r in runs)}; {sum(len(e['rows']) for e in by['local'])} held-out"
        " conditions in all; mean over seeds [95 % t-interval over seeds, df = n_seeds − 1]",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for tag, name in names.items():
        cells = []
        for mt in METRICS:
            vals = [_value(e, mt) for e in by[tag]]
            nd = 2 if mt in ("mean_distinct_accepted", "mean_ends") else 3
            cells.append(_fmt_ci(*t_interval([v for v in vals if v is not None]), nd=nd))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    def cond_vals(tag: str, field: str) -> list[dict[str, float | None]]:
        return [{row["key"]: row[field] for row in e["rows"]} for e in by[tag]]

    pairs = [
        ("diversity: α=½ − TB", "half", "tb", "distinct_accepted", "mean_distinct_accepted"),
        ("reward: α=½ − local", "half", "local", "reward", "mean_reward"),
        ("reward: TB − local", "tb", "local", "reward", "mean_reward"),
        ("edge recall: α=½ − local", "half", "local", "recall", "edge_recall"),
        ("edge recall: TB − local", "tb", "local", "recall", "edge_recall"),
        ("reward: α=½ − BC only", "half", "bc", "reward", "mean_reward"),
        ("edge recall: α=½ − BC only", "half", "bc", "recall", "edge_recall"),
        ("edge recall: TB − BC only", "tb", "bc", "recall", "edge_recall"),
        ("reward: explain bonus − local", "explain", "local", "reward", "mean_reward"),
        ("reward: explain bonus − α=½", "explain", "half", "reward", "mean_reward"),
        ("edge recall: explain bonus − α=½", "explain", "half", "recall", "edge_recall"),
        ("edge recall: explain bonus − local", "explain", "local", "recall", "edge_recall"),
        ("edge precision: explain bonus − α=½", "explain", "half", "precision", "edge_precision"),
        ("reward: α=½ exact − beam decoding", "half", "half_beam", "reward", "mean_reward"),
        ("edge recall: α=½ exact − beam decoding", "half", "half_beam", "recall", "edge_recall"),
        ("reward: α=½ MBR − exact decoding", "half_mbr", "half", "reward", "mean_reward"),
        ("edge recall: α=½ MBR − exact decoding", "half_mbr", "half", "recall", "edge_recall"),
        ("reward: explain exact − beam decoding", "explain", "explain_beam", "reward", "mean_reward"),
        ("edge recall: explain exact − beam decoding", "explain", "explain_beam", "recall", "edge_recall"),
    ]
    pairs = [p for p in pairs if p[1] in by and p[2] in by]
    lines += [
        "",
        "| paired difference | t over seeds (95 %) | bootstrap over conditions, stratified by seed (95 %) |",
        "|---|---|---|",
    ]
    for label, a, b, field, summary in pairs:
        seed_diffs = []
        for ea, eb in zip(by[a], by[b], strict=True):
            va, vb = ea[summary], eb[summary]
            if va is not None and vb is not None:
                seed_diffs.append(va - vb)
        strata = []
        for ca, cb in zip(cond_vals(a, field), cond_vals(b, field), strict=True):
            strata.append([ca[k] - cb[k] for k in ca if ca[k] is not None and cb.get(k) is not None])
        lines.append(
            f"| {label} | {_fmt_ci(*t_interval(seed_diffs))} | {_fmt_ci(*stratified_bootstrap(strata, seed=0))} |"
        )
    if all("decoding" in r for r in runs):
        lines += [
            "",
            "| decoding (all held-out conditions) | exact ≠ beam | mean log P_T gain | actions: exact / beam |"
            " exact certified |",
            "|---|---|---|---|---|",
        ]
        for tag in runs[0]["decoding"]:
            rows = [x for r in runs for x in r["decoding"][tag]]
            n = len(rows)
            lines.append(
                f"| {NAMES[tag]} | {sum(not x['same'] for x in rows)}/{n} |"
                f" {sum(x['exact_log_p'] - x['beam_log_p'] for x in rows) / n:.3f} |"
                f" {sum(x['exact_actions'] for x in rows) / n:.2f} / {sum(x['beam_actions'] for x in rows) / n:.2f} |"
                f" {sum(x['certified'] for x in rows)}/{n} |"
            )
    return lines


def summarise_inner(runs: list[dict[str, Any]]) -> list[str]:
    """Explain bonus − plain α=½ on the inner validation conditions: reward, recall, explained share (t over seeds,
    bootstrap over conditions stratified by seed), and the decision rule fixed before the run: make the bonus the
    default iff the recall difference's bootstrap interval is above 0 and the reward difference's lower bound is
    above −0.02 (non-inferiority margin)."""
    from mechcell.models.train_policy import stratified_bootstrap, t_interval

    lines = [
        f"inner validation (training drugs only), seeds {', '.join(str(r['seed']) for r in runs)}; "
        f"{sum(len(r['evals'][0]['rows']) for r in runs)} conditions in all",
        "",
        "| proposer | reward | accepted | edge recall | explained share |",
        "|---|---|---|---|---|",
    ]
    for i in range(2):
        evs = [r["evals"][i] for r in runs]
        expl = [sum(x["explained"] for x in e["rows"]) / len(e["rows"]) for e in evs]
        cells = [
            t_interval([e[m] for e in evs if e[m] is not None]) for m in ("mean_reward", "accepted", "edge_recall")
        ]
        lines.append(f"| {evs[0]['name']} | " + " | ".join(_fmt_ci(*c) for c in [*cells, t_interval(expl)]) + " |")
    lines += ["", "| explain − plain | t over seeds (95 %) | bootstrap over conditions (95 %) |", "|---|---|---|"]
    res = {}
    for field in ("reward", "recall", "explained"):
        strata, seed_diffs = [], []
        for r in runs:
            a = {x["key"]: x[field] for x in r["evals"][1]["rows"]}
            b = {x["key"]: x[field] for x in r["evals"][0]["rows"]}
            diffs = [a[k] - b[k] for k in a if a[k] is not None and b.get(k) is not None]
            strata.append(diffs)
            if diffs:
                seed_diffs.append(sum(diffs) / len(diffs))
        res[field] = stratified_bootstrap(strata, seed=0)
        lines.append(f"| {field} | {_fmt_ci(*t_interval(seed_diffs))} | {_fmt_ci(*res[field])} |")
    adopt = res["recall"][1] > 0 and res["reward"][1] > -0.02
    lines += [
        "",
        f"decision (recall lower bound > 0 and reward lower bound > −0.02): "
        f"{'adopt the explain bonus as default' if adopt else 'keep the explain bonus off'}",
    ]
    return lines


def run_seeds(args: argparse.Namespace, run: Any) -> list:
    """`run(seed, args)` for each of `--seeds`, the JSON rewritten after every seed (a long run keeps its rows)."""
    runs = []
    for seed in (int(x) for x in args.seeds.split(",") if x.strip()):
        runs.append(run(seed, args))
        args.out_json.parent.mkdir(parents=True, exist_ok=True)
        args.out_json.write_text(json.dumps({"args": vars(args), "runs": runs}, indent=1, default=str))
    return runs


def inner_main(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    print(f"machine: {machine()}; inner validation; seeds {args.seeds}; steps {args.steps}", flush=True)
    t0 = time.perf_counter()
    runs = run_seeds(args, run_inner)
    lines = summarise_inner(runs)
    print("\n" + "\n".join(lines) + f"\n\ntotal {time.perf_counter() - t0:.1f} s")
    head = f"# bench_policy --inner-val\n\nmachine: {machine()}\n\n"
    (args.out_md or OUT_INNER).write_text(head + "\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="1", help="comma-separated world/training seeds, e.g. 0,1,2")
    ap.add_argument("--drugs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--bc-steps", type=int, default=150)
    ap.add_argument("--holdout", type=float, default=0.3)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument(
        "--explain-weight", type=float, default=0.5, help="extra f-TB α=½ run with this explain bonus (0 = skip)"
    )
    ap.add_argument("--set", action="append", default=[], help="PolicyTrainConfig override key=value (repeatable)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the worlds and stores under this directory")
    ap.add_argument("--out-json", type=Path, default=None, help=f"default {OUT_JSON.name} (inner: {OUT_INNER.name})")
    ap.add_argument(
        "--inner-val",
        action="store_true",
        help="only the explain-bonus decision on an inner split of the training drugs (held-out drugs unused)",
    )
    ap.add_argument("--out-md", type=Path, default=None, help=f"summary file (default _out/{OUT.name})")
    ap.add_argument("--from-json", type=Path, default=None, help="only re-summarise a saved run (no training)")
    args = ap.parse_args()
    if args.out_json is None:
        args.out_json = OUT_INNER.with_suffix(".json") if args.inner_val else OUT_JSON
    if args.inner_val:
        return inner_main(args)
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text())
        lines = summarise(saved["runs"])
        print("\n".join(lines))
        head = f"# bench_policy (re-summarised from {args.from_json.name})\n\n"
        (args.out_md or OUT).write_text(head + "\n".join(lines) + "\n")
        return

    import torch

    torch.set_num_threads(1)
    print(f"machine: {machine()}; seeds {args.seeds}; steps {args.steps}; overrides {args.set or 'none'}", flush=True)
    t0 = time.perf_counter()
    runs = run_seeds(args, run_seed)
    lines = summarise(runs)
    print("\n" + "\n".join(lines))
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")
    (args.out_md or OUT).parent.mkdir(parents=True, exist_ok=True)
    (args.out_md or OUT).write_text(
        "# bench_policy\n\n"
        + f"machine: {machine()}; steps {args.steps}; overrides {args.set or 'none'}\n\n"
        + "\n".join(lines)
        + "\n"
    )


if __name__ == "__main__":
    sys.exit(main())
