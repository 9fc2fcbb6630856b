"""Speed and agreement of mechcell.causal_stats against baselines run in the same process.

1. kernel_two_sample_test vs hyppo.ksample.MMD (permutation, same data, same bandwidth):
   n = 2,000 per arm, 1,000 permutations — p-values within Monte-Carlo error, and the speed ratio.
2. dr_kernel_test, exact path at n = 1,000 (goal < 10 s).
3. dr_kernel_test, approx="rff" at 10⁵ cells (goal < 60 s), and its p-values against the exact path on
   subsamples of the same data.

Run: .venv/bin/python benchmarks/bench_causal_stats.py [--hyppo-reps 1000] [--n-rff 100000]
(hyppo re-centres two n × n matrices per permutation: at n = 4,000 expect ~1 s per permutation on an
idle core, far more on a busy one — `--hyppo-reps 200` compares at 200 and projects hyppo's time to 1000.)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings

import numpy as np
import scipy
from _machine import machine as describe_machine

from mechcell.causal_stats import dr_kernel_test, kernel_two_sample_test
from mechcell.causal_stats.simulate import simulate_dr


def machine() -> None:
    print(f"machine: {describe_machine()}, scipy {scipy.__version__}")
    with contextlib.suppress(OSError):
        print(f"  load average at start: {tuple(round(x, 2) for x in os.getloadavg())} (shared machine: ratios count)")


def bench_two_sample(hyppo_reps: int, n: int = 2000) -> None:
    print(f"\n1. kernel two-sample test, n = {n} per arm, d = 5, {hyppo_reps} permutations")
    rng = np.random.default_rng(0)
    Y0 = rng.standard_normal((n, 5))
    Y1 = rng.standard_normal((n, 5))
    Y1[:, 0] += 0.06  # a small shift: a p-value away from 0 and 1 makes the agreement check informative
    t0 = time.perf_counter()
    ours = kernel_two_sample_test(Y0, Y1, n_permutations=hyppo_reps, seed=0)
    t_ours = time.perf_counter() - t0
    h = ours.diagnostics["bandwidth"]
    try:
        from hyppo.ksample import MMD
    except ImportError:
        print("  hyppo not installed: baseline skipped (pip install '.[dev]')")
        print(f"  mechcell: p = {ours.p_value:.4f}  time = {t_ours:.2f} s")
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MMD(compute_kernel="gaussian", gamma=1 / (2 * h * h)).test(Y0[:50], Y1[:50], reps=10, auto=False)  # JIT warm-up
        t0 = time.perf_counter()
        stat_ref, p_ref = MMD(compute_kernel="gaussian", gamma=1 / (2 * h * h)).test(
            Y0, Y1, reps=hyppo_reps, auto=False, random_state=0, workers=1
        )
        t_ref = time.perf_counter() - t0
    se = np.sqrt(2 * max(p_ref * (1 - p_ref), 1e-3) / hyppo_reps)
    print(f"  bandwidth (median heuristic, shared): {h:.4f}")
    print(f"  mechcell : unbiased MMD² = {ours.statistic:.6e}  p = {ours.p_value:.4f}  time = {t_ours:7.2f} s")
    print(f"  hyppo MMD: statistic     = {stat_ref:.6e}  p = {p_ref:.4f}  time = {t_ref:7.2f} s")
    print(f"  |Δp| = {abs(ours.p_value - p_ref):.4f}  (Monte-Carlo SE of the difference {se:.4f}; "
          f"z = {abs(ours.p_value - p_ref) / se:.2f})")  # fmt: skip
    print(f"  speed ratio hyppo / mechcell = {t_ref / t_ours:.1f}x  (goal ≥ 5x)")
    if hyppo_reps != 1000:
        t0 = time.perf_counter()
        full = kernel_two_sample_test(Y0, Y1, n_permutations=1000, seed=0)
        t_full = time.perf_counter() - t0
        print(f"  mechcell at 1000 permutations: p = {full.p_value:.4f}  time = {t_full:.2f} s; hyppo at 1000 "
              f"permutations projected from its per-permutation time: {t_ref * 1000 / hyppo_reps:.0f} s")  # fmt: skip


def bench_dr_exact(n: int = 1000) -> None:
    print(f"\n2. dr_kernel_test exact path, n = {n} (500 train / 500 test), 200 permutations")
    w = simulate_dr(n, effect="pm", b=1.0, seed=1)
    for estimator in ("dr", "ipw"):
        for statistic in ("date", "dett"):
            t0 = time.perf_counter()
            r = dr_kernel_test(w.X, w.T, w.Y, estimator=estimator, statistic=statistic, seed=0)
            dt = time.perf_counter() - t0
            print(f"  {estimator:>3}/{statistic:<4}: p = {r.p_value:.4f}  time = {dt:6.2f} s  (goal < 10 s)")


def bench_dr_rff(n_big: int, n_sub: int = 2000, n_subsamples: int = 8) -> None:
    print(f"\n3. dr_kernel_test approx='rff' (256 features per kernel), n = {n_big:,}, 200 permutations")
    w = simulate_dr(n_big, effect="pm", b=0.3, seed=2)
    t0 = time.perf_counter()
    r = dr_kernel_test(w.X, w.T, w.Y, approx="rff", seed=0)
    dt = time.perf_counter() - t0
    print(f"  DR/DATE: p = {r.p_value:.4f}  statistic = {r.statistic:.3e}  time = {dt:6.2f} s  (goal < 60 s)")
    print(f"\n  rff vs exact on {n_subsamples} subsamples of {n_sub} cells per world (same seeds, 200 permutations)")
    rows = []
    for world, effect, b in (("null", "null", 1.0), ("±0.6 effect", "pm", 0.6)):
        ww = simulate_dr(n_big, effect=effect, b=b, seed=3)
        rng = np.random.default_rng(4)
        for k in range(n_subsamples):
            idx = rng.choice(n_big, n_sub, replace=False)
            ex = dr_kernel_test(ww.X[idx], ww.T[idx], ww.Y[idx], seed=k)
            ap = dr_kernel_test(ww.X[idx], ww.T[idx], ww.Y[idx], seed=k, approx="rff")
            rows.append((world, ex.p_value, ap.p_value))
    print("    world          p exact   p rff")
    for world, pe, pa in rows:
        print(f"    {world:<13} {pe:8.4f} {pa:8.4f}")
    pe = np.array([r[1] for r in rows])
    pa = np.array([r[2] for r in rows])
    agree = np.mean((pe <= 0.05) == (pa <= 0.05))
    print(f"  max |Δp| = {np.max(np.abs(pe - pa)):.4f}  mean |Δp| = {np.mean(np.abs(pe - pa)):.4f}  "
          f"corr = {np.corrcoef(pe, pa)[0, 1]:.3f}  same verdict at 0.05: {agree:.0%}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hyppo-reps", type=int, default=1000, help="permutations for both two-sample tests")
    ap.add_argument("--n-rff", type=int, default=100_000, help="cells for the random-feature DR run")
    ap.add_argument("--skip-two-sample", action="store_true")
    args = ap.parse_args(argv)
    machine()
    if not args.skip_two_sample:
        bench_two_sample(args.hyppo_reps)
    bench_dr_exact()
    bench_dr_rff(args.n_rff)
    return 0


if __name__ == "__main__":
    sys.exit(main())
