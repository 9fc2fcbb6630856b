"""Causal sensitivity analysis in the oblivious setting (Fawkes, Fishman, Andrews, Lipton 2024).

Only the observed joint of binary (A, Y, P) is seen. A bias of size D lets the *true* joint be any
p_true = base + M z with 0 ≤ z ≤ u and Σz ≤ D (the saturated DAG: a latent U parent of every node):

- selection: base = (1 − D) p_obs, z ≥ 0 a free mass (P(S = 0) ≤ D; putting less than D is equivalent,
  since rates are scale-free and (1 − D)/(1 − D + s) ≥ 1 − D);
- proxy_label: z(a, y, p) ≤ p_obs(a, y, p) is the mass whose true label is 1 − y;
- proxy_attribute: z(a, y, p) ≤ p_obs(a, y, p) is the mass whose true group is 1 − a.

A metric is rate(group 1) − rate(group 0), each rate N_g/Den_g linear-fractional in z. Exact bounds:
a linear-fractional program attains its optimum at a vertex of the polytope, and every vertex, as a
function of one scalar (the budget given to group 1 when the groups' variables are disjoint; the group-1
denominator when they are coupled, Den_1 + Den_0 being constant), is affine on an interval; on each
piece the objective is a sum of Möbius terms with at most one stationary point in closed form. Maximising
over pieces is therefore exact (certified). `method="lp"` runs Charnes–Cooper LPs (HiGHS): exact for a
single group rate, a grid + refine search over the scalar for a difference (not certified); `"local"` is
multistart SLSQP (never certified).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.optimize import linprog, minimize, minimize_scalar

from mechcell.causal_stats.results import Bounds, CausalStatsInputError

Metric = Literal["fpr", "fnr", "ppv", "npv", "dp"]
Bias = Literal["selection", "proxy_label", "proxy_attribute"]
Method = Literal["exact", "lp", "local"]
METRICS = ("fpr", "fnr", "ppv", "npv", "dp")
BIASES = ("selection", "proxy_label", "proxy_attribute")
_EPS = 1e-14


def _cell(a: int, y: int, p: int) -> int:
    return 4 * a + 2 * y + p


# (denominator cells, numerator cells) of one group's rate, as predicates on the true (y, p)
_RATE: dict[str, tuple[Any, Any]] = {
    "fpr": (lambda y, p: y == 0, lambda y, p: y == 0 and p == 1),
    "fnr": (lambda y, p: y == 1, lambda y, p: y == 1 and p == 0),
    "ppv": (lambda y, p: p == 1, lambda y, p: p == 1 and y == 1),
    "npv": (lambda y, p: p == 0, lambda y, p: p == 0 and y == 1),
    "dp": (lambda y, p: True, lambda y, p: p == 1),
}


def joint_from_table(table: pd.DataFrame) -> np.ndarray:
    """The observed joint as 8 probabilities indexed 4a + 2y + p (missing cells are 0; normalised)."""
    if not isinstance(table, pd.DataFrame):
        raise CausalStatsInputError(f"table must be a pandas DataFrame (got {type(table).__name__})")
    missing = [c for c in ("A", "Y", "P", "prob") if c not in table.columns]
    if missing:
        raise CausalStatsInputError(
            f"column {missing[0]!r} not in table (have: {', '.join(map(str, table.columns))}); "
            "need binary A, Y, P and a probability column prob"
        )
    out = np.zeros(8)
    for col in ("A", "Y", "P"):
        vals = pd.to_numeric(table[col], errors="coerce")
        bad = ~vals.isin([0, 1])
        if bad.any():
            raise CausalStatsInputError(f"column {col!r} must be binary 0/1 (got {table[col][bad].iloc[0]!r})")
    prob = pd.to_numeric(table["prob"], errors="coerce").to_numpy(dtype=np.float64)
    if np.any(~np.isfinite(prob)) or np.any(prob < 0):
        raise CausalStatsInputError("column 'prob' must hold non-negative finite numbers")
    a, y, p = (table[c].astype(int).to_numpy() for c in ("A", "Y", "P"))
    idx = 4 * a + 2 * y + p
    np.add.at(out, idx, prob)
    total = out.sum()
    if total <= 0:
        raise CausalStatsInputError("column 'prob' sums to 0")
    return out / total


def _indicators(metric: str, g: int) -> tuple[np.ndarray, np.ndarray]:
    den_pred, num_pred = _RATE[metric]
    den = np.zeros(8)
    num = np.zeros(8)
    for y in (0, 1):
        for p in (0, 1):
            den[_cell(g, y, p)] = float(den_pred(y, p))
            num[_cell(g, y, p)] = float(num_pred(y, p))
    return num, den


def observed_rate(p_obs: np.ndarray, metric: str, g: int) -> float:
    num, den = _indicators(metric, g)
    return float(num @ p_obs / (den @ p_obs))


def observed_metric(table: pd.DataFrame | np.ndarray, metric: str) -> float:
    """rate(group 1) − rate(group 0) on the observed table."""
    p_obs = table if isinstance(table, np.ndarray) else joint_from_table(table)
    return observed_rate(p_obs, metric, 1) - observed_rate(p_obs, metric, 0)


class _Problem:
    """Rates as (n + αᵀz)/(d + βᵀz) per group over {0 ≤ z ≤ u, Σz ≤ D}, irrelevant coordinates pruned and
    coordinates with identical coefficients merged (their bounds add; the budget treats them alike)."""

    def __init__(self, p_obs: np.ndarray, metric: str, bias: str, D: float) -> None:
        if bias == "selection":
            base = (1.0 - D) * p_obs
            M = np.eye(8)
            u = np.full(8, np.inf)
        else:
            base = p_obs.copy()
            M = np.zeros((8, 8))
            u = p_obs.copy()
            for a, y, p in itertools.product((0, 1), repeat=3):
                j = _cell(a, y, p)
                dest = _cell(a, 1 - y, p) if bias == "proxy_label" else _cell(1 - a, y, p)
                M[j, j] -= 1.0
                M[dest, j] += 1.0
        self.D = D
        self.n, self.d, self.alpha, self.beta = {}, {}, {}, {}
        for g in (0, 1):
            num, den = _indicators(metric, g)
            self.n[g], self.d[g] = float(num @ base), float(den @ base)
            self.alpha[g], self.beta[g] = M.T @ num, M.T @ den
        coef = np.column_stack([self.alpha[1], self.beta[1], self.alpha[0], self.beta[0]])
        keep = np.flatnonzero((np.abs(coef).sum(axis=1) > 0) & (u > 0))
        uniq, inverse = np.unique(np.round(coef[keep], 12), axis=0, return_inverse=True)
        inverse = np.asarray(inverse).ravel()
        self.u = np.array([u[keep][inverse == i].sum() for i in range(uniq.shape[0])])
        self.alpha = {1: uniq[:, 0], 0: uniq[:, 2]}
        self.beta = {1: uniq[:, 1], 0: uniq[:, 3]}
        k = uniq.shape[0]
        touches = {g: (np.abs(self.alpha[g]) + np.abs(self.beta[g])) > 0 for g in (0, 1)}
        self.k = k
        self.separable = not bool(np.any(touches[0] & touches[1]))
        self.vars = {g: np.flatnonzero(touches[g]) for g in (0, 1)}
        self.total_den = self.d[1] + self.d[0]
        self.coupled_ok = bool(np.allclose(self.beta[1] + self.beta[0], 0.0, atol=1e-12))

    def rate(self, g: int, z: np.ndarray) -> float:
        with np.errstate(divide="ignore", invalid="ignore"):
            return (self.n[g] + self.alpha[g] @ z) / (self.d[g] + self.beta[g] @ z)


# ---------------------------------------------------------------- exact: vertex enumeration
def _budget_vertex_types(
    n: float, d: float, alpha: np.ndarray, beta: np.ndarray, u: np.ndarray, D: float
) -> np.ndarray:
    """Vertices of {0 ≤ z ≤ u, Σz ≤ x} as functions of the budget x: rows (a0, a1, b0, b1, lo, hi) with
    N(x) = a0 + a1 x, Den(x) = b0 + b1 x valid for x ∈ [lo, hi]."""
    k = alpha.size
    rows = []
    finite = np.isfinite(u)
    for status in itertools.product((0, 1), repeat=k):
        st = np.array(status, dtype=bool)
        if np.any(st & ~finite):
            continue
        z = np.where(st, u, 0.0)
        S = float(z.sum())
        if S > D + 1e-15:
            continue
        a0, b0 = n + alpha @ z, d + beta @ z
        rows.append((a0, 0.0, b0, 0.0, S, np.inf))
        for r in np.flatnonzero(~st):
            rows.append((a0 - alpha[r] * S, alpha[r], b0 - beta[r] * S, beta[r], S, S + u[r]))
    return np.array(rows, dtype=np.float64).reshape(-1, 6)


def _moebius(t: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(a0 + a1 x)/(b0 + b1 x); at a vanishing denominator the limit a1/b1 along the piece (num ≤ den)."""
    num = t[..., 0] + t[..., 1] * x
    den = t[..., 2] + t[..., 3] * x
    with np.errstate(divide="ignore", invalid="ignore"):
        val = np.where(den > _EPS, num / np.where(den > _EPS, den, 1.0), np.nan)
        lim = np.where(np.abs(t[..., 3]) > 0, t[..., 1] / np.where(np.abs(t[..., 3]) > 0, t[..., 3], 1.0), np.nan)
    return np.where(den > _EPS, val, lim)


def _max_rate_difference_separable(plus: np.ndarray, minus: np.ndarray, D: float) -> float:
    """max f_plus(x) − f_minus(y) over type pairs, x ∈ I_plus, y ∈ I_minus, x + y ≤ D (exact)."""
    P = plus[:, None, :]
    Q = minus[None, :, :]
    lo1, hi1, lo0, hi0 = P[..., 4], P[..., 5], Q[..., 4], Q[..., 5]
    feasible = lo1 + lo0 <= D + 1e-15
    xh = np.minimum(hi1, D - lo0)
    yh = np.minimum(hi0, D - lo1)
    xa = np.maximum(lo1, D - hi0)  # the segment of the line x + y = D inside the box
    xb = np.minimum(hi1, D - lo0)
    K1 = P[..., 1] * P[..., 2] - P[..., 0] * P[..., 3]
    K0 = Q[..., 1] * Q[..., 2] - Q[..., 0] * Q[..., 3]
    s1, s0 = np.sqrt(np.abs(K1)), np.sqrt(np.abs(K0))
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = s1 * Q[..., 3] + s0 * P[..., 3]
        xs = (s1 * (Q[..., 2] + Q[..., 3] * D) - s0 * P[..., 2]) / denom
    xs = np.where((K1 * K0 < 0) & np.isfinite(xs), xs, xa)
    xs = np.clip(xs, xa, np.maximum(xa, xb))
    cands = [(lo1, lo0), (xh, lo0), (lo1, yh), (xh, yh), (xa, D - xa), (xb, D - xb), (xs, D - xs)]
    best = np.full(feasible.shape, -np.inf)
    for x, y in cands:
        x = np.broadcast_to(x, feasible.shape)
        y = np.broadcast_to(y, feasible.shape)
        ok = feasible & (x >= lo1 - 1e-15) & (x <= hi1 + 1e-15) & (y >= lo0 - 1e-15) & (y <= hi0 + 1e-15)
        ok &= x + y <= D + 1e-12
        xv = np.where(ok, np.clip(x, lo1, hi1), lo1)
        yv = np.where(ok, np.clip(y, lo0, hi0), lo0)
        val = _moebius(P, xv) - _moebius(Q, yv)
        best = np.where(ok & np.isfinite(val), np.maximum(best, val), best)
    return float(best.max())


def _group_types(prob: _Problem, g: int) -> np.ndarray:
    v = prob.vars[g]
    return _budget_vertex_types(prob.n[g], prob.d[g], prob.alpha[g][v], prob.beta[g][v], prob.u[v], prob.D)


def _max_rate_difference_coupled(prob: _Problem, hi: int) -> float:
    """max R_hi − R_lo when both rates share variables and Den_hi + Den_lo = C (proxy attribute).

    Parameter s = Den_hi. Vertices of the slice {box, Σz ≤ D, Den_hi(z) = s}: all but ≤ 2 coordinates at
    a bound; each is affine in s, where the objective (p + q s)/s − (r + t s)/(C − s) has ≤ 1 stationary
    point s* = √|p| C / (√|p| + √|r + tC|).
    """
    lo = 1 - hi
    C = prob.total_den
    al_h, al_l, be = prob.alpha[hi], prob.alpha[lo], prob.beta[hi]
    n_h, n_l, d_h = prob.n[hi], prob.n[lo], prob.d[hi]
    u, D, k = prob.u, prob.D, prob.k
    best = -np.inf

    def evaluate(z0: np.ndarray, z1: np.ndarray, s_lo: float, s_hi: float) -> None:
        nonlocal best
        s_lo, s_hi = max(s_lo, 0.0), min(s_hi, C)
        if s_lo > s_hi + 1e-15:
            return
        p_, q_ = n_h + al_h @ z0, al_h @ z1
        r_, t_ = n_l + al_l @ z0, al_l @ z1
        cands = [s_lo, s_hi]
        rt = r_ + t_ * C
        if p_ * rt < 0:
            cands.append(math.sqrt(abs(p_)) * C / (math.sqrt(abs(p_)) + math.sqrt(abs(rt))))
        for s in cands:
            s = min(max(s, s_lo), s_hi)
            f_h = (p_ + q_ * s) / s if s > _EPS else (q_ if abs(p_) < 1e-12 else math.nan)
            f_l = (r_ + t_ * s) / (C - s) if C - s > _EPS else (-t_ if abs(rt) < 1e-12 else math.nan)
            val = f_h - f_l
            if math.isfinite(val):
                best = max(best, val)

    idx = np.arange(k)
    for n_free in (0, 1, 2):
        for free in itertools.combinations(idx, n_free):
            rest = [i for i in idx if i not in free]
            for status in itertools.product((0, 1), repeat=len(rest)):
                zf = np.zeros(k)
                zf[rest] = np.where(np.array(status, dtype=bool), u[rest], 0.0)
                R = D - zf.sum()
                if R < -1e-15:
                    continue
                s_fix = d_h + be @ zf
                if n_free == 0:
                    evaluate(zf, np.zeros(k), s_fix, s_fix)
                    continue
                if n_free == 1:
                    (j,) = free
                    # budget tight: z_j = R (a single s)
                    if 0 <= R <= u[j] + 1e-15:
                        z = zf.copy()
                        z[j] = min(R, u[j])
                        s = d_h + be @ z
                        evaluate(z, np.zeros(k), s, s)
                    # budget slack: z_j = (s − s_fix)/β_j ∈ [0, min(u_j, R)]
                    if abs(be[j]) > 1e-15:
                        z0, z1 = zf.copy(), np.zeros(k)
                        z0[j], z1[j] = -s_fix / be[j], 1.0 / be[j]
                        ends = sorted((s_fix, s_fix + be[j] * min(u[j], R)))
                        evaluate(z0, z1, ends[0], ends[1])
                    continue
                j, l_ = free
                det = be[j] - be[l_]
                if abs(det) < 1e-15:
                    continue
                # β_j z_j + β_l z_l = s − s_fix ; z_j + z_l = R  →  affine in s
                z0, z1 = zf.copy(), np.zeros(k)
                z0[j], z1[j] = (-s_fix - be[l_] * R) / det, 1.0 / det
                z0[l_], z1[l_] = R - z0[j], -z1[j]
                # 0 ≤ z_j ≤ u_j and 0 ≤ z_l ≤ u_l as an interval of s
                s_lo, s_hi = -np.inf, np.inf
                for i in (j, l_):
                    for bound, sign in ((0.0, 1.0), (u[i], -1.0)):
                        # sign·(z0 + z1 s − bound) ≥ 0
                        a, c = sign * z1[i], sign * (z0[i] - bound)
                        if abs(a) < 1e-18:
                            if c < -1e-15:
                                s_lo, s_hi = 1.0, 0.0
                        elif a > 0:
                            s_lo = max(s_lo, -c / a)
                        else:
                            s_hi = min(s_hi, -c / a)
                evaluate(z0, z1, s_lo, s_hi)
    return float(best)


def _single_rate_exact(prob: _Problem, g: int) -> tuple[float, float]:
    types = _group_types(prob, g)
    D = prob.D
    ok = (types[:, 4] <= D + 1e-15) & (types[:, 5] + 1e-15 >= D)
    vals = _moebius(types[ok], np.full(int(ok.sum()), D))
    vals = vals[np.isfinite(vals)]
    return float(vals.min()), float(vals.max())


def selection_closed_form(p_obs: np.ndarray, metric: str, D: float) -> tuple[float, float]:
    """Selection bias on a difference of rates, in closed form: all missing mass s = D on two cells.

    Upper bound: x on group 1's numerator cells, D − x on group 0's denominator-only cells; the
    objective (n₁ + x)/(d₁ + x) − n₀/(d₀ + D − x) is concave, maximised at
    x* = clip((√(d₁ − n₁)(d₀ + D) − √n₀ d₁) / (√(d₁ − n₁) + √n₀), 0, D). Lower bound by symmetry.
    """

    def upper(hi: int) -> float:
        lo = 1 - hi
        num_h, den_h = _indicators(metric, hi)
        num_l, den_l = _indicators(metric, lo)
        n1, d1 = (1 - D) * num_h @ p_obs, (1 - D) * den_h @ p_obs
        n0, d0 = (1 - D) * num_l @ p_obs, (1 - D) * den_l @ p_obs
        a, b = math.sqrt(max(d1 - n1, 0.0)), math.sqrt(max(n0, 0.0))
        x = (a * (d0 + D) - b * d1) / (a + b) if a + b > 0 else 0.0
        x = min(max(x, 0.0), D)
        return (n1 + x) / (d1 + x) - n0 / (d0 + D - x)

    return -upper(0), upper(1)


# ---------------------------------------------------------------- LP (Charnes–Cooper)
def _cc_lp(n: float, d: float, alpha: np.ndarray, beta: np.ndarray, u: np.ndarray, budget: float, sense: int) -> float:
    """max (sense=+1) or min (−1) of (n + αᵀz)/(d + βᵀz) over {0 ≤ z ≤ u, Σz ≤ budget} as one LP:
    y = t z, t = 1/(d + βᵀz): optimise n t + αᵀy s.t. d t + βᵀy = 1, y ≤ u t, Σy ≤ budget·t, y, t ≥ 0."""
    k = alpha.size
    c = -sense * np.concatenate([alpha, [n]])
    A_eq = np.concatenate([beta, [d]])[None, :]
    rows, rhs = [], []
    for j in range(k):
        if np.isfinite(u[j]):
            row = np.zeros(k + 1)
            row[j], row[k] = 1.0, -u[j]
            rows.append(row)
            rhs.append(0.0)
    row = np.ones(k + 1)
    row[k] = -budget
    rows.append(row)
    rhs.append(0.0)
    res = linprog(c, A_ub=np.array(rows), b_ub=np.array(rhs), A_eq=A_eq, b_eq=[1.0], bounds=(0, None), method="highs")
    if res.status != 0:
        raise CausalStatsInputError(f"the Charnes–Cooper LP failed: {res.message}")
    return float(-sense * res.fun) if sense == 1 else float(res.fun)


def _group_lp(prob: _Problem, g: int, budget: float, sense: int) -> float:
    v = prob.vars[g]
    return _cc_lp(prob.n[g], prob.d[g], prob.alpha[g][v], prob.beta[g][v], prob.u[v], budget, sense)


def _search_1d(f: Any, lo: float, hi: float, n_grid: int = 21) -> float:
    """Grid then bounded Brent refinement around the best grid point (a local search: not certified)."""
    if hi - lo < 1e-15:
        return float(f(lo))
    grid = np.linspace(lo, hi, n_grid)
    vals = np.array([f(x) for x in grid])
    i = int(np.nanargmax(vals))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, n_grid - 1)]
    res = minimize_scalar(lambda x: -f(x), bounds=(a, b), method="bounded", options={"xatol": 1e-10})
    return float(max(vals[i], -res.fun))


def _coupled_lp_value(prob: _Problem, hi: int, s: float) -> float:
    """For fixed Den_hi = s the difference is linear in z: one LP over the slice."""
    lo = 1 - hi
    C = prob.total_den
    k = prob.k
    c = -(prob.alpha[hi] / s - prob.alpha[lo] / (C - s))
    bounds = [(0.0, float(ub)) for ub in prob.u]
    res = linprog(
        c, A_ub=np.ones((1, k)), b_ub=[prob.D], A_eq=prob.beta[hi][None, :], b_eq=[s - prob.d[hi]], bounds=bounds,
        method="highs",
    )  # fmt: skip
    if res.status != 0:
        return -np.inf
    return float(-res.fun + prob.n[hi] / s - prob.n[lo] / (C - s))


def _den_range(prob: _Problem, g: int) -> tuple[float, float]:
    bounds = [(0.0, float(ub)) for ub in prob.u]
    out = []
    for sense in (1.0, -1.0):
        res = linprog(sense * prob.beta[g], A_ub=np.ones((1, prob.k)), b_ub=[prob.D], bounds=bounds, method="highs")
        out.append(prob.d[g] + sense * res.fun)
    return out[0], out[1]


def _max_difference_lp(prob: _Problem, hi: int) -> float:
    lo = 1 - hi
    if prob.separable:
        D = prob.D
        return _search_1d(lambda x: _group_lp(prob, hi, x, 1) - _group_lp(prob, lo, D - x, -1), 0.0, D)
    s_min, s_max = _den_range(prob, hi)
    C = prob.total_den
    s_min, s_max = max(s_min, 1e-12), min(s_max, C - 1e-12)
    return _search_1d(lambda s: _coupled_lp_value(prob, hi, s), s_min, s_max)


# ---------------------------------------------------------------- local (uncertified)
def _local_extreme(prob: _Problem, f: Any, seed: int, n_starts: int = 8) -> float:
    rng = np.random.default_rng(seed)
    k, D = prob.k, prob.D
    ub = np.minimum(prob.u, D)
    best = f(np.zeros(k))
    cons = [{"type": "ineq", "fun": lambda z: D - z.sum(), "jac": lambda z: -np.ones(k)}]
    for s in range(n_starts):
        z0 = np.zeros(k) if s == 0 else rng.random(k) * ub
        if z0.sum() > D:
            z0 *= D / z0.sum()
        res = minimize(lambda z: -f(z), z0, method="SLSQP", bounds=list(zip(np.zeros(k), ub, strict=True)),
                       constraints=cons)  # fmt: skip
        z = np.clip(res.x, 0, ub)
        if z.sum() > D:
            z *= D / z.sum()
        val = f(z)
        if np.isfinite(val):
            best = max(best, val)
    return float(best)


# ---------------------------------------------------------------- public API
def _validate(metric: str, bias: str, D: float) -> float:
    if metric not in METRICS:
        raise CausalStatsInputError(f"metric must be one of {', '.join(METRICS)} (got {metric!r})")
    if bias not in BIASES:
        raise CausalStatsInputError(f"bias must be one of {', '.join(BIASES)} (got {bias!r})")
    D = float(D)
    if not math.isfinite(D) or D < 0 or D > 1 or (bias == "selection" and D >= 1):
        raise CausalStatsInputError(f"D must lie in [0, 1] ([0, 1) for selection) (got {D!r})")
    return D


def sensitivity_bounds(
    table: pd.DataFrame,
    metric: Metric,
    bias: Bias,
    D: float,
    *,
    group: int | None = None,
    method: Method = "exact",
    seed: int = 0,
) -> Bounds:
    """Bounds on metric = rate(A=1) − rate(A=0) of the true distribution under a bias of size D.

    table: DataFrame with binary A, Y, P and prob (the observed joint; counts are normalised).
    group=0/1 bounds that group's rate alone instead of the difference.
    method: "exact" (closed form / vertex enumeration, certified), "lp" (Charnes–Cooper LPs; certified
    for a single group, a searched split otherwise), "local" (SLSQP multistart, not certified).
    """
    D = _validate(metric, bias, D)
    p_obs = joint_from_table(table)
    for g in (0, 1):
        _, den = _indicators(metric, g)
        if den @ p_obs <= 0:
            raise CausalStatsInputError(f"metric {metric!r} is undefined: group A={g} has no mass in its denominator")
    if group not in (None, 0, 1):
        raise CausalStatsInputError(f"group must be None, 0 or 1 (got {group!r})")
    observed = observed_rate(p_obs, metric, group) if group is not None else observed_metric(p_obs, metric)
    prob = _Problem(p_obs, metric, bias, D)
    if method not in ("exact", "lp", "local"):
        raise CausalStatsInputError(f"method must be 'exact', 'lp' or 'local' (got {method!r})")
    if D == 0.0:
        return Bounds(lower=observed, upper=observed, certified=True, method="observed (D = 0)", observed=observed,
                      metric=metric, bias=bias, D=D, group=group)  # fmt: skip
    if prob.k == 0 or (group is not None and prob.vars[group].size == 0):
        # e.g. demographic parity under label noise: the bias cannot move this metric at all
        return Bounds(lower=observed, upper=observed, certified=True, method="unaffected by this bias",
                      observed=observed, metric=metric, bias=bias, D=D, group=group)  # fmt: skip
    if group is not None:
        if method == "exact":
            lo, hi = _single_rate_exact(prob, group)
            how, cert = "vertex enumeration", True
        elif method == "lp":
            lo, hi = _group_lp(prob, group, D, -1), _group_lp(prob, group, D, 1)
            how, cert = "Charnes-Cooper LP (HiGHS)", True
        else:
            lo = -_local_extreme(prob, lambda z: -prob.rate(group, z), seed)
            hi = _local_extreme(prob, lambda z: prob.rate(group, z), seed)
            how, cert = "local SLSQP multistart", False
    elif method == "exact":
        if bias == "selection":
            lo, hi = selection_closed_form(p_obs, metric, D)
            how = "closed form (selection: budget on two cells)"
        elif prob.separable:
            lo = -_max_rate_difference_separable(_group_types(prob, 0), _group_types(prob, 1), D)
            hi = _max_rate_difference_separable(_group_types(prob, 1), _group_types(prob, 0), D)
            how = "vertex enumeration over the budget split"
        else:
            if not prob.coupled_ok:  # pragma: no cover - every supported bias/metric is one of the two forms
                raise CausalStatsInputError(f"no exact method for metric {metric!r} under bias {bias!r}")
            lo = -_max_rate_difference_coupled(prob, 0)
            hi = _max_rate_difference_coupled(prob, 1)
            how = "vertex enumeration over the group-1 denominator"
        cert = True
    elif method == "lp":
        lo, hi = -_max_difference_lp(prob, 0), _max_difference_lp(prob, 1)
        how = "Charnes-Cooper LPs + 1-D search (" + ("budget split" if prob.separable else "denominator") + ")"
        cert = False
    else:
        diff = lambda z: prob.rate(1, z) - prob.rate(0, z)  # noqa: E731
        lo = -_local_extreme(prob, lambda z: -diff(z), seed)
        hi = _local_extreme(prob, diff, seed)
        how, cert = "local SLSQP multistart", False
    # the observed table is always feasible (z = 0, or q = p_obs for selection): guard rounding
    lo, hi = min(lo, observed), max(hi, observed)
    return Bounds(lower=lo, upper=hi, certified=cert, method=how, observed=observed, metric=metric, bias=bias,
                  D=D, group=group)  # fmt: skip


def breaking_point(
    table: pd.DataFrame,
    metric: Metric,
    bias: Bias,
    threshold: float = 0.0,
    *,
    tol: float = 1e-7,
    group: int | None = None,
) -> float:
    """Smallest D whose (exact) bounds reach `threshold`: how much bias overturns the verdict's sign.

    Bounds widen monotonically in D (the feasible sets are nested), so bisection is exact to `tol`.
    Returns 0.0 if the observed value is already at the threshold and inf if no D ≤ 1 reaches it.
    """
    _validate(metric, bias, 0.0)
    p_obs = joint_from_table(table)
    observed = observed_rate(p_obs, metric, group) if group is not None else observed_metric(p_obs, metric)
    if observed == threshold:
        return 0.0
    above = observed > threshold

    def reached(D: float) -> bool:
        b = sensitivity_bounds(table, metric, bias, D, group=group)
        return b.lower <= threshold if above else b.upper >= threshold

    D_max = 1.0 - 1e-9 if bias == "selection" else 1.0
    if not reached(D_max):
        return math.inf
    lo, hi = 0.0, D_max
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if reached(mid):
            hi = mid
        else:
            lo = mid
    return float(hi)
