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

Usage: .venv/bin/python benchmarks/bench_policy.py [--drugs 10] [--seed 1] [--steps 120] [--bc-steps 150] [--k 16]
About 4 minutes on two cores (the panel is ~90 % of it).
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _machine import machine

OUT = Path(__file__).resolve().parent / "_out" / "policy.md"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--drugs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--bc-steps", type=int, default=150)
    ap.add_argument("--holdout", type=float, default=0.3)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--keep", type=Path, default=None, help="keep the world and store here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from mechcell.agents.pipeline import Pipeline, PipelineConfig
    from mechcell.datasets.readers import open_dataset
    from mechcell.datasets.signatures import compute_signatures
    from mechcell.datasets.store import Store
    from mechcell.datasets.synthetic import SyntheticWorldConfig, generate_world, load_truth
    from mechcell.datasets.traces import TraceStore
    from mechcell.knowledge import load_kb
    from mechcell.models.policy import PolicyModel
    from mechcell.models.train_policy import (
        PolicyTrainConfig,
        RewardCache,
        attempts_offpolicy,
        demonstrations,
        eval_table,
        evaluate_local,
        evaluate_policy,
        load_conditions,
        split_by_drug,
        train_bc,
        train_ftb,
    )

    print(f"machine: {machine()}")
    t0 = time.perf_counter()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_policy_"))
    root.mkdir(parents=True, exist_ok=True)
    cfg = SyntheticWorldConfig(
        seed=args.seed, n_drugs=args.drugs, n_cell_lines=2, doses=[0.5, 5.0], n_genes=500, cells_per_condition=150
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
    train_keys, held_keys = split_by_drug(keys, lambda k: truth.condition(k).drug, frac=args.holdout, seed=args.seed)
    with Pipeline(
        kb=kb, store=store, proposer="local", config=PipelineConfig(n_candidates=3, max_rounds=1, use_cells=False)
    ) as pipe:
        pipe.run_many(train_keys)
    t_data = time.perf_counter() - t0
    held_drugs = ", ".join(sorted({truth.condition(k).drug for k in held_keys}))
    print(
        f"world: {args.drugs} drugs, {len(keys)} conditions ({len(truth.active_keys())} active);"
        f" train {len(train_keys)} / held out {len(held_keys)} (drugs: {held_drugs});"
        f" data + local traces {t_data:.1f} s"
    )

    config = PolicyTrainConfig(seed=args.seed, bc_steps=args.bc_steps, steps=args.steps)
    with Store(store, read_only=True) as st:
        items = load_conditions(st, kb, config.policy, keys)
        train = [it for it in items if it.key in set(train_keys)]
        held = [it for it in items if it.key in set(held_keys)]
        traces = TraceStore(st)
        demos, dstats = demonstrations(traces, train)
        offp = attempts_offpolicy(traces, train)
    print(f"demonstrations: {dstats.model_dump()}; off-policy attempts {len(offp)}")
    rewards = RewardCache(kb, config.panel, config.abstain_value)

    torch.manual_seed(args.seed)
    bc = PolicyModel(config.policy)
    t = time.perf_counter()
    bc_curve = train_bc(bc, demos, config)
    print(
        f"BC: {len(bc_curve)} steps, mean log P_F of demos {bc_curve[0]['mean_log_pf']:.2f} → "
        f"{bc_curve[-1]['mean_log_pf']:.2f} ({time.perf_counter() - t:.1f} s)"
    )
    evals = [evaluate_policy("policy (BC only)", bc, held, rewards, truth=truth, kb=kb, k=args.k, seed=args.seed)]
    tuned = {}
    for alpha, name in ((0.5, "policy (BC + f-TB α=½)"), (1.0, "policy (BC + f-TB α=1, TB)")):
        m = copy.deepcopy(bc)
        c = config.model_copy(update={"alpha": alpha})
        t = time.perf_counter()
        curve = train_ftb(m, train, c, rewards, offpolicy=offp)
        print(
            f"f-TB α={alpha}: on-policy reward {curve[0]['reward']:.3f} → {curve[-1]['reward']:.3f}, accepted "
            f"{curve[0]['accepted']:.2f} → {curve[-1]['accepted']:.2f} ({time.perf_counter() - t:.1f} s)"
        )
        tuned[alpha] = m
        evals.append(evaluate_policy(name, m, held, rewards, truth=truth, kb=kb, k=args.k, seed=args.seed))
    evals.append(evaluate_local(held, rewards, truth=truth, kb=kb))

    rows = eval_table(evals)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)) for r in rows]
    print("\nheld-out conditions (whole drugs):")
    print("\n".join(lines))
    local = evals[-1]
    bc_e, h_e, tb_e = evals[0], evals[1], evals[2]
    ratio = h_e.mean_reward / local.mean_reward if local.mean_reward else float("nan")
    print(f"\nratio mean reward, policy (BC + f-TB α=½) / local: {ratio:.3f}")
    print(f"ratio mean reward, policy (BC + f-TB α=½) / policy (BC only): {h_e.mean_reward / bc_e.mean_reward:.3f}")
    if tb_e.mean_distinct_accepted:
        print(
            f"diversity (distinct accepted graphs per condition among {args.k} samples): α=½ "
            f"{h_e.mean_distinct_accepted:.2f} vs TB {tb_e.mean_distinct_accepted:.2f} — ratio "
            f"{h_e.mean_distinct_accepted / tb_e.mean_distinct_accepted:.2f}"
        )
    print(f"panel calls {rewards.calls} ({rewards.seconds:.1f} s); total {time.perf_counter() - t0:.1f} s")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        "# bench_policy\n\n"
        + f"machine: {machine()}\n\n"
        + "| "
        + " | ".join(rows[0])
        + " |\n|"
        + "---|" * len(rows[0])
        + "\n"
        + "\n".join("| " + " | ".join(r) + " |" for r in rows[1:])
        + "\n"
    )
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
