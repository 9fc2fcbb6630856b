"""Size and power of mechcell.causal_stats by simulation (the long version of tests/causal_stats).

Every rate is printed with its Monte-Carlo standard error; α = 0.05 throughout. Worlds:
- DR tests: `mechcell.causal_stats.simulate.simulate_dr` (confounded assignment; the null replaces each
  unit's Y by a coin-flip between its potential outcomes; groups = wells with a shared well effect).
- kernel two-sample: iid Gaussians, and wells with a well effect (cell- vs well-level permutation).
- falsify_gap / gap_intervals: a randomised trial (p = 0.3 or 0.5), Δ and h drawn from the GP prior.
- e-values: uniform p-values (null) and shifted normals (alternatives).

Run: .venv/bin/python benchmarks/calibrate_causal_stats.py [--reps 500] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable

import numpy as np
from _machine import machine
from scipy.integrate import quad
from scipy.stats import norm

from mechcell.causal_stats import (
    benjamini_hochberg,
    dr_kernel_test,
    e_bh,
    falsify_gap,
    gap_intervals,
    kernel_two_sample_test,
    p_to_e,
)
from mechcell.causal_stats.kernels import sq_dists
from mechcell.causal_stats.simulate import simulate_dr

ALPHA = 0.05


def rate(hits: list[bool] | np.ndarray) -> str:
    h = np.asarray(hits, dtype=float)
    r = h.mean()
    return f"{r:6.3f} ± {np.sqrt(max(r * (1 - r), 1e-12) / h.size):.3f}"


def rejects(fn: Callable[[int], float], reps: int, offset: int = 0) -> list[bool]:
    return [fn(offset + r) <= ALPHA for r in range(reps)]


def dr_size(reps: int, n: int) -> None:
    print(f"\nA. DR kernel tests — size under the coin-flip null (n = {n}, 199 permutations, {reps} reps)")
    print("   estimator statistic unit    rejection rate")
    for grouped in (False, True):
        for estimator in ("dr", "ipw"):
            for statistic in ("date", "dett"):

                def p(seed: int, estimator=estimator, statistic=statistic, grouped=grouped) -> float:
                    w = simulate_dr(n, effect="null", n_groups=n // 5 if grouped else None, seed=seed)
                    return dr_kernel_test(w.X, w.T, w.Y, estimator=estimator, statistic=statistic, groups=w.groups,
                                          n_permutations=199, seed=seed).p_value  # fmt: skip

                unit = "well" if grouped else "cell"
                print(f"   {estimator:<9} {statistic:<9} {unit:<6} {rate(rejects(p, reps))}", flush=True)

    # the unit matters: cell-level permutation when treatment was assigned per well
    def p_cells_ignoring_wells(seed: int) -> float:
        w = simulate_dr(n, effect="null", n_groups=n // 5, group_sd=1.0, seed=seed)
        return dr_kernel_test(w.X, w.T, w.Y, n_permutations=199, seed=seed).p_value

    def p_wells(seed: int) -> float:
        w = simulate_dr(n, effect="null", n_groups=n // 5, group_sd=1.0, seed=seed)
        return dr_kernel_test(w.X, w.T, w.Y, groups=w.groups, n_permutations=199, seed=seed).p_value

    print(f"   well effect sd 1.0, DR/DATE permuting cells (wrong unit): {rate(rejects(p_cells_ignoring_wells, reps))}")
    print(f"   well effect sd 1.0, DR/DATE permuting wells             : {rate(rejects(p_wells, reps))}", flush=True)


def dr_power(reps: int, n: int, bs: tuple[float, ...]) -> None:
    print(f"\nB. DR kernel tests — power curves (n = {n}, DATE, 199 permutations, {reps} reps per point)")
    header = "   effect  b     " + "".join(f"{est:>17}" for est in ("dr", "ipw"))
    print(header)
    for effect in ("mean", "pm"):
        for b in bs:
            cells = []
            for estimator in ("dr", "ipw"):

                def p(seed: int, estimator=estimator, effect=effect, b=b) -> float:
                    w = simulate_dr(n, effect=effect, b=b, seed=seed)
                    return dr_kernel_test(w.X, w.T, w.Y, estimator=estimator, n_permutations=199, seed=seed).p_value

                cells.append(rate(rejects(p, reps, offset=50_000)))
            name = "mean" if effect == "mean" else "±b"
            print(f"   {name:<7} {b:<5} " + "".join(f"{c:>17}" for c in cells), flush=True)


def dr_large_n(reps: int, n: int) -> None:
    print(f"\nC. DR/DATE with approx='rff' at n = {n:,} — size ({reps} reps, 100 permutations)")
    for mbs in (6, None):

        def p(seed: int, mbs=mbs) -> float:
            w = simulate_dr(n, effect="null", seed=seed)
            return dr_kernel_test(w.X, w.T, w.Y, approx="rff", n_permutations=100, seed=seed,
                                  max_bin_size=mbs).p_value  # fmt: skip

        ps = np.array([p(90_000 + r) for r in range(reps)])
        label = "bins of 4–6 units (default)" if mbs else "exactly 10 bins"
        print(f"   {label:<30} rejection {rate(ps <= ALPHA)}   mean p = {ps.mean():.3f} (uniform: 0.5)", flush=True)


def two_sample(reps: int) -> None:
    print(f"\nD. Kernel two-sample test (199 permutations, {reps} reps)")

    def p_null(seed: int) -> float:
        rng = np.random.default_rng(seed)
        return kernel_two_sample_test(rng.standard_normal((50, 2)), rng.standard_normal((50, 2)),
                                      n_permutations=199, seed=seed).p_value  # fmt: skip

    print(f"   size, iid cells (50 vs 50)                       {rate(rejects(p_null, reps))}")

    def wells(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        Y = np.vstack([rng.standard_normal((10, 1)) + rng.standard_normal() for _ in range(8)])
        return Y, np.repeat(np.arange(8), 10)

    def p_wells(seed: int, by_group: bool) -> float:
        rng = np.random.default_rng(seed)
        (Y0, g0), (Y1, g1) = wells(rng), wells(rng)
        groups = np.concatenate([g0, g1 + 8]) if by_group else None
        return kernel_two_sample_test(Y0, Y1, groups=groups, n_permutations=199, seed=seed).p_value

    print(f"   size, 8 vs 8 wells with well effects, by well   {rate(rejects(lambda s: p_wells(s, True), reps))}")
    print(f"   size, same data permuting cells (wrong unit)    {rate(rejects(lambda s: p_wells(s, False), reps))}")
    for shift in (0.3, 0.6):

        def p_alt(seed: int, shift=shift) -> float:
            rng = np.random.default_rng(seed)
            return kernel_two_sample_test(rng.standard_normal((50, 2)), rng.standard_normal((50, 2)) + [shift, 0],
                                          n_permutations=199, seed=seed).p_value  # fmt: skip

        print(f"   power, mean shift {shift} (50 vs 50)                  {rate(rejects(p_alt, reps, 70_000))}")
    sys.stdout.flush()


def gap(reps: int) -> None:
    print(f"\nE. Obs/exp gap: GP interval coverage ({reps} prior draws) and falsification ({reps} reps)")
    ls, var, sigma = 0.2, 1.0, 0.5
    for p_assign in (0.3, 0.5):
        cover: dict[str, list[float]] = {}
        for rep in range(reps):
            rng = np.random.default_rng(rep)
            n, nq = 60, 10
            X = rng.random(n)
            Xq = np.concatenate([rng.random(nq), 1.3 + rng.random(nq)])
            Xall = np.concatenate([X, Xq])[:, None]
            L = np.linalg.cholesky(var * np.exp(-sq_dists(Xall, Xall) / (2 * ls * ls)) + 1e-9 * np.eye(n + 2 * nq))
            delta, h = L @ rng.standard_normal(n + 2 * nq), L @ rng.standard_normal(n + 2 * nq)
            omega = 0.5 * np.sin(3 * Xall[:, 0])
            tau = omega + delta
            T = (rng.random(n) < p_assign).astype(float)
            Y = np.where(T == 1, (h + p_assign * tau)[:n], (h - (1 - p_assign) * tau)[:n])
            Y = Y + sigma * rng.standard_normal(n)
            variants = {
                "per-observation c_T²σ² (true hyper-parameters)": {"noise": sigma, "noise_model": "per_observation"},
                "homoscedastic σ² (true σ)": {"noise": sigma, "noise_model": "homoscedastic"},
                "homoscedastic, σ fitted by marginal likelihood": {"noise": None, "noise_model": "homoscedastic"},
            }
            for name, kw in variants.items():
                g = gap_intervals(X[:, None], T, Y, omega[:n], p_assign, Xq[:, None], kernel_delta=(ls, var),
                                  kernel_h=(ls, var), omega_query=omega[n:], **kw)  # fmt: skip
                hit = (g.lower <= delta[n:]) & (delta[n:] <= g.upper)
                cover.setdefault(name + " in", []).append(hit[:nq].mean())
                cover.setdefault(name + " out", []).append(hit[nq:].mean())
        print(f"   p = {p_assign}: 95% band coverage           inside support   outside support")
        for name in variants:
            cin, cout = np.array(cover[name + " in"]), np.array(cover[name + " out"])
            se_in, se_out = cin.std() / np.sqrt(reps), cout.std() / np.sqrt(reps)
            print(f"     {name:<48} {cin.mean():.3f} ± {se_in:.3f}    {cout.mean():.3f} ± {se_out:.3f}")
        sys.stdout.flush()

    def trial(seed: int, gap_size: float, n: int = 150) -> float:
        rng = np.random.default_rng(seed)
        X = rng.random((n, 1))
        tau = 1.0 + 0.5 * X[:, 0]
        T = (rng.random(n) < 0.5).astype(float)
        Y = np.sin(2 * np.pi * X[:, 0]) + T * tau + 0.5 * rng.standard_normal(n)
        omega = tau - gap_size * (X[:, 0] > 0.5)
        return falsify_gap(X, T, Y, omega, 0.5, n_boot=199, seed=seed).p_value

    print("   falsify_gap (n = 150, ω wrong by `gap` on half the support):")
    for g_size in (0.0, 0.5, 1.0, 1.5):
        print(f"     gap {g_size:<4} rejection {rate(rejects(lambda s, g_size=g_size: trial(s, g_size), reps))}",
              flush=True)  # fmt: skip


def evalues(reps: int) -> None:
    print("\nF. e-values")
    rng = np.random.default_rng(0)
    for method, kappa in (("integral", 0.5), ("kappa", 0.5)):
        # p = exp(−s) removes the singularity at 0; the tail beyond s = 700 in closed form (see the tests)
        val = quad(lambda s, m=method, k=kappa: p_to_e(float(np.exp(-s)), method=m, kappa=k) * np.exp(-s), 0, 700,
                   limit=1000, points=[1.0, 10.0, 100.0])[0]  # fmt: skip
        val += 1 / 700 if method == "integral" else np.exp(-kappa * 700)
        mc = p_to_e(rng.random(2_000_000), method=method, kappa=kappa).mean()
        note = " (heavy right tail: the sample mean falls short of 1)" if method == "integral" else ""
        print(f"   E[e(U)], U uniform, {method:<8}: {val:.6f} by quadrature (≤ 1 required), "
              f"{mc:.4f} as a mean of 2·10⁶ draws{note}")  # fmt: skip
    n_seq, steps = 20 * reps, 30
    p = rng.random((n_seq, steps))
    prod = np.cumprod(p_to_e(p.ravel()).reshape(n_seq, steps), axis=1)
    print(f"   sequential product, 30 null tests, reject when it ever reaches 1/α: type-I {rate(prod.max(1) >= 20)}")
    for shift in (1.0, 2.0):
        pa = norm.sf(rng.standard_normal((n_seq, steps)) + shift)
        pa_prod = np.cumprod(p_to_e(pa.ravel()).reshape(n_seq, steps), axis=1)
        print(f"   sequential product, alternatives z-shift {shift}: power {rate(pa_prod.max(1) >= 20)}")
    for alpha in (0.05, 0.1):
        fdp = {"BH": [], "e-BH": []}
        power = {"BH": [], "e-BH": []}
        for _ in range(reps):
            z = rng.standard_normal(100)
            z[80:] += 3.0
            pv = norm.sf(z)
            for name, rej in (("BH", benjamini_hochberg(pv, alpha)), ("e-BH", e_bh(p_to_e(pv), alpha))):
                fdp[name].append(rej[:80].sum() / max(rej.sum(), 1))
                power[name].append(rej[80:].mean())
        for name in fdp:
            f = np.array(fdp[name])
            print(f"   {name:<4} α = {alpha}: FDR {f.mean():.4f} ± {f.std() / np.sqrt(reps):.4f} "
                  f"(80 of 100 null)   power {np.mean(power[name]):.3f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=500, help="simulated datasets per cell of the grid")
    ap.add_argument("--quick", action="store_true", help="100 reps, smaller large-n check (a smoke run)")
    ap.add_argument("--large-n", type=int, default=10_000, help="cells for the rff size check")
    ap.add_argument("--large-n-reps", type=int, default=100)
    args = ap.parse_args(argv)
    reps = 100 if args.quick else args.reps
    large_reps = 10 if args.quick else args.large_n_reps
    print(f"machine: {machine()}")
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")  # small matrices: one BLAS thread is fastest
        print("  BLAS pinned to 1 thread")
    t0 = time.perf_counter()
    dr_size(reps, n=300)
    dr_power(reps, n=300, bs=(0.25, 0.5, 0.75, 1.0, 1.5))
    dr_large_n(large_reps, n=args.large_n)
    two_sample(reps)
    gap(reps)
    evalues(reps)
    print(f"\ntotal time {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
