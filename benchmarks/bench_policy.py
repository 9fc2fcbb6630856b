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

Usage: .venv/bin/python benchmarks/bench_policy.py [--seeds 0,1,2] [--drugs 10] [--steps 120] [--bc-steps 150]
    [--k 16] [--explain-weight 0.5] [--set key=value ...]
    (--set: PolicyTrainConfig fields; `policy.key=value` for PolicyConfig fields)
About 6 minutes per seed on two cores (the panel is ~90 % of it).
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
NAMES = {
    "bc": "policy (BC only)",
    "half": "policy (BC + f-TB α=½)",
    "tb": "policy (BC + f-TB α=1, TB)",
    "explain": "policy (BC + f-TB α=½, explain bonus)",
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


def run_seed(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """One world (its own seed), one drug split, BC → f-TB α=½ and α=1 → held-out evaluation; the rows as JSON."""
    import torch

    from mechcell.agents.pipeline import Pipeline, PipelineConfig
    from mechcell.datasets.readers import open_dataset
    from mechcell.datasets.signatures import compute_signatures
    from mechcell.datasets.store import Store
    from mechcell.datasets.synthetic import SyntheticWorldConfig, generate_world, load_truth
    from mechcell.datasets.traces import TraceStore
    from mechcell.knowledge import load_kb
    from mechcell.models.policy import PolicyConfig, PolicyModel
    from mechcell.models.train_policy import (
        PolicyTrainConfig,
        RewardCache,
        attempts_offpolicy,
        demonstrations,
        eval_table,
        evaluate_local,
        evaluate_policy,
        load_conditions,
        n_ends,
        split_by_drug,
        train_bc,
        train_ftb,
    )

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
    t_data = time.perf_counter() - t0
    held_drugs = ", ".join(sorted({truth.condition(k).drug for k in held_keys}))
    print(
        f"[seed {seed}] world: {args.drugs} drugs, {len(keys)} conditions ({len(truth.active_keys())} active);"
        f" train {len(train_keys)} / held out {len(held_keys)} (drugs: {held_drugs});"
        f" data + local traces {t_data:.1f} s",
        flush=True,
    )
    tr_over, pol_over = _overrides(args.set)
    config = PolicyTrainConfig(
        seed=seed, bc_steps=args.bc_steps, steps=args.steps, policy=PolicyConfig(seed=seed, **pol_over), **tr_over
    )
    with Store(store, read_only=True) as st:
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
    variants = [(0.5, "half", 0.0), (1.0, "tb", 0.0)]
    if args.explain_weight > 0:
        variants.append((0.5, "explain", args.explain_weight))
    for alpha, tag, ew in variants:
        m = copy.deepcopy(bc)
        c = config.model_copy(update={"alpha": alpha, "explain_weight": ew or config.explain_weight})
        t = time.perf_counter()
        curve = train_ftb(m, train, c, rewards, offpolicy=offp)
        print(
            f"[seed {seed}] {NAMES[tag]}: on-policy reward {curve[0]['reward']:.3f} → {curve[-1]['reward']:.3f}"
            f" ({time.perf_counter() - t:.1f} s)",
            flush=True,
        )
        evals.append(evaluate_policy(NAMES[tag], m, held, rewards, truth=truth, kb=kb, k=args.k, seed=seed))
    evals.append(evaluate_local(held, rewards, truth=truth, kb=kb))
    rows = eval_table(evals)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"[seed {seed}] held-out conditions (whole drugs):")
    print("\n".join("  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)) for r in rows))
    print(
        f"[seed {seed}] panel calls {rewards.calls} ({rewards.seconds:.1f} s); seed total"
        f" {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "seed": seed,
        "held_drugs": held_drugs,
        "n_demo_ends": demo_ends,
        "evals": [e.model_dump(mode="json") for e in evals],
    }


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
    return lines


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
    ap.add_argument("--out-json", type=Path, default=OUT_JSON)
    ap.add_argument("--from-json", type=Path, default=None, help="only re-summarise a saved run (no training)")
    args = ap.parse_args()
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text())
        lines = summarise(saved["runs"])
        print("\n".join(lines))
        OUT.write_text(f"# bench_policy (re-summarised from {args.from_json.name})\n\n" + "\n".join(lines) + "\n")
        return

    import torch

    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    print(f"machine: {machine()}; seeds {seeds}; steps {args.steps}; overrides {args.set or 'none'}", flush=True)
    t0 = time.perf_counter()
    runs = []
    for seed in seeds:
        runs.append(run_seed(seed, args))
        args.out_json.parent.mkdir(parents=True, exist_ok=True)
        args.out_json.write_text(json.dumps({"args": vars(args), "runs": runs}, indent=1, default=str))
    lines = summarise(runs)
    print("\n" + "\n".join(lines))
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        "# bench_policy\n\n"
        + f"machine: {machine()}; steps {args.steps}; overrides {args.set or 'none'}\n\n"
        + "\n".join(lines)
        + "\n"
    )


if __name__ == "__main__":
    sys.exit(main())
