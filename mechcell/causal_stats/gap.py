"""Validating an observational effect ω with experimental data (Fawkes, O'Riordan, Vlontzos, Corcoll,
Gilligan-Lee 2025): GP intervals on the gap Δ = τ − ω, and a falsification test of Δ = 0.

With known assignment probability p the pseudo-outcome φ = (T − p)/(p(1 − p))·Y has E[φ|X] = τ(X), and
φ̃ = φ − ω(X) satisfies E[φ̃ | X, T] = Δ(X) + c_T h(X), c_1 = 1/p, c_0 = −1/(1 − p),
h = p μ_0 + (1 − p) μ_1, with noise c_T ε: the noise variance is c_T² σ² *per observation* (one
homoscedastic noise level under-covers). Δ ~ GP(0, k_Δ) and h ~ GP(0, k_h) independent give the multitask
covariance k_Δ + c_t c_t' k_h with the query task's factor 0. Experimental data can falsify ω, never
validate it: outside the support the interval on Δ reverts to the prior.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import scipy.linalg as sla
from scipy.optimize import minimize
from scipy.stats import norm

from mechcell.causal_stats._common import as_treatment, perm_p_value
from mechcell.causal_stats.evalues import p_to_e
from mechcell.causal_stats.kernels import as_2d, median_bandwidth, sq_dists
from mechcell.causal_stats.results import CausalStatsInputError, GapIntervals, TestResult

NoiseModel = Literal["per_observation", "homoscedastic"]
_PARAMS = ("lengthscale_delta", "variance_delta", "lengthscale_h", "variance_h", "noise")


def _inputs(X: Any, T: Any, Y: Any, omega: Any, p: Any) -> tuple[np.ndarray, ...]:
    Xa = as_2d(X, "X")
    n = Xa.shape[0]
    Ta = as_treatment(T, n)
    Ya = as_2d(Y, "Y")
    if Ya.shape != (n, 1):
        raise CausalStatsInputError(f"Y must be one outcome per row, shape ({n},) (got {Ya.shape})")
    om = as_2d(omega, "omega")
    if om.shape != (n, 1):
        raise CausalStatsInputError(f"omega must hold ω(X) for each of the {n} trial rows (got shape {om.shape})")
    pf = float(p)
    if not 0.0 < pf < 1.0:
        raise CausalStatsInputError(f"p (assignment probability) must lie in (0, 1) (got {p!r})")
    c = np.where(Ta == 1, 1.0 / pf, -1.0 / (1.0 - pf))
    phi_tilde = (Ta - pf) / (pf * (1.0 - pf)) * Ya[:, 0] - om[:, 0]
    return Xa, Ta, c, phi_tilde, pf


def pseudo_outcome(T: Any, Y: Any, omega: Any, p: float) -> np.ndarray:
    """φ̃_i = (T_i − p)/(p(1 − p))·Y_i − ω(X_i): an unbiased signal of the gap Δ(X_i) (plus c_T h)."""
    Ta = np.asarray(T, dtype=np.float64)
    return (Ta - p) / (p * (1.0 - p)) * np.asarray(Y, dtype=np.float64).ravel() - np.asarray(omega, float).ravel()


class _GapGP:
    """Covariance, negative log marginal likelihood and its gradient in log-parameters."""

    def __init__(self, X: np.ndarray, c: np.ndarray, y: np.ndarray, noise_model: NoiseModel) -> None:
        self.D2 = sq_dists(X, X)
        self.C = np.outer(c, c)
        self.c2 = c * c if noise_model == "per_observation" else np.ones_like(c)
        self.y = y
        self.n = y.size

    def parts(self, th: np.ndarray) -> tuple[np.ndarray, ...]:
        ld, vd, lh, vh, s = np.exp(th)
        Kd = vd * np.exp(-self.D2 / (2 * ld * ld))
        Kh = self.C * (vh * np.exp(-self.D2 / (2 * lh * lh)))
        nv = self.c2 * s * s
        return Kd, Kh, nv

    def cov(self, th: np.ndarray) -> np.ndarray:
        Kd, Kh, nv = self.parts(th)
        return Kd + Kh + np.diag(nv)

    def nll(self, th: np.ndarray) -> tuple[float, np.ndarray]:
        Kd, Kh, nv = self.parts(th)
        K = Kd + Kh + np.diag(nv)
        try:
            L = sla.cholesky(K, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            return 1e25, np.zeros_like(th)
        alpha = sla.cho_solve((L, True), self.y, check_finite=False)
        val = 0.5 * self.y @ alpha + np.log(np.diag(L)).sum() + 0.5 * self.n * math.log(2 * math.pi)
        W = sla.cho_solve((L, True), np.eye(self.n), check_finite=False) - np.outer(alpha, alpha)
        ld, _, lh, _, _ = np.exp(th)
        grads = np.array(
            [
                0.5 * np.sum(W * (Kd * self.D2 / (ld * ld))),
                0.5 * np.sum(W * Kd),
                0.5 * np.sum(W * (Kh * self.D2 / (lh * lh))),
                0.5 * np.sum(W * Kh),
                0.5 * np.sum(np.diag(W) * 2.0 * nv),
            ]
        )
        return float(val), grads


def _fit(gp: _GapGP, X: np.ndarray, Y_scale: float, fixed: dict[str, float | None], seed: int) -> np.ndarray:
    """Type-II maximum likelihood over the hyper-parameters left None (L-BFGS-B, a few restarts)."""
    med = median_bandwidth(X, seed=seed)
    yv = max(float(np.var(gp.y)), 1e-12)
    free = [k for k in _PARAMS if fixed[k] is None]
    base = {
        "lengthscale_delta": med,
        "variance_delta": yv / 4,
        "lengthscale_h": med,
        "variance_h": yv / 4 / max(float(np.mean(gp.C.diagonal())), 1e-12),
        "noise": max(Y_scale / 2, 1e-6),
    }
    lo = {"lengthscale_delta": med * 1e-3, "variance_delta": yv * 1e-8, "lengthscale_h": med * 1e-3,
          "variance_h": yv * 1e-8, "noise": max(Y_scale, 1e-6) * 1e-4}  # fmt: skip
    hi = {"lengthscale_delta": med * 1e3, "variance_delta": yv * 1e3, "lengthscale_h": med * 1e3,
          "variance_h": yv * 1e3, "noise": max(Y_scale, 1e-6) * 10}  # fmt: skip
    full = np.log([fixed[k] if fixed[k] is not None else base[k] for k in _PARAMS])
    if not free:
        return full
    idx = [_PARAMS.index(k) for k in free]
    bounds = [(math.log(lo[k]), math.log(hi[k])) for k in free]

    def obj(x: np.ndarray) -> tuple[float, np.ndarray]:
        th = full.copy()
        th[idx] = x
        v, g = gp.nll(th)
        return v, g[idx]

    best_val, best_x = np.inf, full[idx]
    for scale in (1.0, 0.3, 3.0):
        x0 = full[idx].copy()
        for j, k in enumerate(free):
            if k.startswith("lengthscale"):
                x0[j] = math.log(base[k] * scale)
        x0 = np.clip(x0, [b[0] for b in bounds], [b[1] for b in bounds])
        res = minimize(obj, x0, jac=True, method="L-BFGS-B", bounds=bounds)
        if res.fun < best_val:
            best_val, best_x = float(res.fun), res.x
    out = full.copy()
    out[idx] = best_x
    return out


def _check_kernel_arg(v: Any, name: str) -> tuple[float | None, float | None]:
    if v is None:
        return None, None
    try:
        ls, var = (float(x) for x in v)
    except (TypeError, ValueError) as exc:
        raise CausalStatsInputError(f"{name} must be (lengthscale, variance) or None (got {v!r})") from exc
    if ls <= 0 or var <= 0:
        raise CausalStatsInputError(f"{name} lengthscale and variance must be positive (got {v!r})")
    return ls, var


def default_support_radius(X: np.ndarray) -> float:
    """Twice the median nearest-neighbour distance among trial points: "near the data" at its own density."""
    n = X.shape[0]
    if n < 2:
        return 0.0
    sub = X if n <= 3000 else X[np.random.default_rng(0).choice(n, 3000, replace=False)]
    d = sq_dists(sub, sub)
    np.fill_diagonal(d, np.inf)
    return 2.0 * float(np.median(np.sqrt(d.min(axis=1))))


def gap_intervals(
    X: Any,
    T: Any,
    Y: Any,
    omega: Any,
    p: float,
    X_query: Any,
    *,
    kernel_delta: tuple[float, float] | None = None,
    kernel_h: tuple[float, float] | None = None,
    noise: float | None = None,
    omega_query: Any = None,
    omega_query_sd: Any = None,
    noise_model: NoiseModel = "per_observation",
    level: float = 0.95,
    support_radius: float | None = None,
    seed: int = 0,
) -> GapIntervals:
    """GP posterior intervals on the gap Δ(x*) = τ(x*) − ω(x*) at X_query (n_query, d).

    X, T, Y: the randomised trial (assignment probability p); omega: ω at the trial rows; omega_query:
    ω at X_query (default 0, i.e. the interval is on τ itself). kernel_delta, kernel_h: (lengthscale,
    variance) of RBF kernels; noise: outcome noise sd σ; any left None is fitted by marginal likelihood.
    noise_model="homoscedastic" (one noise level σ² for every φ̃) exists only to show why it is wrong.
    Exact GP: O(n³) per likelihood evaluation, meant for trials of up to a few thousand units.
    """
    Xa, Ta, c, phi_t, pf = _inputs(X, T, Y, omega, p)
    Xq = as_2d(X_query, "X_query")
    if Xq.shape[1] != Xa.shape[1]:
        raise CausalStatsInputError(f"X_query has {Xq.shape[1]} columns but X has {Xa.shape[1]}")
    if noise_model not in ("per_observation", "homoscedastic"):
        raise CausalStatsInputError(f"noise_model must be 'per_observation' or 'homoscedastic' (got {noise_model!r})")
    if not 0.0 < level < 1.0:
        raise CausalStatsInputError(f"level must lie in (0, 1) (got {level!r})")
    m = Xq.shape[0]
    oq = np.zeros(m) if omega_query is None else as_2d(omega_query, "omega_query")[:, 0]
    oq_sd = np.zeros(m) if omega_query_sd is None else np.abs(as_2d(omega_query_sd, "omega_query_sd")[:, 0])
    if oq.shape != (m,) or oq_sd.shape != (m,):
        raise CausalStatsInputError(f"omega_query and omega_query_sd need one value per X_query row ({m})")
    ld, vd = _check_kernel_arg(kernel_delta, "kernel_delta")
    lh, vh = _check_kernel_arg(kernel_h, "kernel_h")
    if noise is not None and float(noise) <= 0:
        raise CausalStatsInputError(f"noise must be positive (got {noise!r})")
    fixed = {"lengthscale_delta": ld, "variance_delta": vd, "lengthscale_h": lh, "variance_h": vh,
             "noise": None if noise is None else float(noise)}  # fmt: skip
    gp = _GapGP(Xa, c, phi_t, noise_model)
    y_scale = float(np.std(np.asarray(Y, dtype=np.float64)))
    th = _fit(gp, Xa, y_scale, fixed, seed)
    params = dict(zip(_PARAMS, np.exp(th).tolist(), strict=True))

    K = gp.cov(th)
    L = sla.cholesky(K + 1e-12 * np.mean(np.diag(K)) * np.eye(K.shape[0]), lower=True, check_finite=False)
    alpha = sla.cho_solve((L, True), phi_t, check_finite=False)
    ld_, vd_ = params["lengthscale_delta"], params["variance_delta"]
    Kq = vd_ * np.exp(-sq_dists(Xq, Xa) / (2 * ld_ * ld_))
    mean = Kq @ alpha
    V = sla.solve_triangular(L, Kq.T, lower=True, check_finite=False)
    var = np.maximum(vd_ - np.einsum("ij,ij->j", V, V), 0.0)
    sd = np.sqrt(var)
    z = float(norm.ppf(0.5 + level / 2))
    radius = default_support_radius(Xa) if support_radius is None else float(support_radius)
    nearest = np.sqrt(sq_dists(Xq, Xa).min(axis=1))
    tau_sd = np.sqrt(var + oq_sd**2)
    params.update(noise_model=noise_model, support_radius=radius, p=pf,
                  fitted=[k for k in _PARAMS if fixed[k] is None])  # fmt: skip
    return GapIntervals(
        mean=mean,
        lower=mean - z * sd,
        upper=mean + z * sd,
        in_support=nearest <= radius,
        sd=sd,
        prior_sd=np.full(m, math.sqrt(vd_)),
        tau_mean=oq + mean,
        tau_lower=oq + mean - z * tau_sd,
        tau_upper=oq + mean + z * tau_sd,
        level=level,
        hyperparameters=params,
    )


def falsify_gap(
    X: Any,
    T: Any,
    Y: Any,
    omega: Any,
    p: float,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    bandwidth: float | None = None,
) -> TestResult:
    """Test H0: Δ(x) = 0 on the trial's support (ω agrees with the experiment wherever it was run).

    Kernel conditional-moment statistic n‖(1/n) Σ φ̃_i k(X_i, ·)‖² = φ̃ᵀKφ̃/n (rbf on standardised X,
    median bandwidth unless given), calibrated by a Rademacher wild bootstrap (sign flips of φ̃_i, valid
    since E[φ̃|X] = 0 under H0; units independent). Rejecting falsifies ω; *not* rejecting validates nothing.
    """
    Xa, Ta, _, phi_t, pf = _inputs(X, T, Y, omega, p)
    if int(n_boot) < 1:
        raise CausalStatsInputError(f"n_boot must be ≥ 1 (got {n_boot!r})")
    n = Xa.shape[0]
    mu, sd = Xa.mean(axis=0), Xa.std(axis=0)
    sd[sd == 0] = 1.0
    Xs = (Xa - mu) / sd
    h = median_bandwidth(Xs, seed=seed) if bandwidth is None else float(bandwidth)
    K = np.exp(-sq_dists(Xs, Xs) / (2 * h * h))
    observed = float(phi_t @ K @ phi_t / n)
    rng = np.random.default_rng(seed)
    B = int(n_boot)
    null = np.empty(B)
    for start in range(0, B, 128):
        stop = min(B, start + 128)
        Wt = np.where(rng.random((stop - start, n)) < 0.5, -1.0, 1.0) * phi_t
        null[start:stop] = np.einsum("bi,bi->b", Wt @ K, Wt) / n
    pval = perm_p_value(observed, null)
    return TestResult(
        statistic=observed,
        p_value=pval,
        e_value=p_to_e(pval),
        null="Δ = τ − ω = 0 on the trial's support (E[φ̃ | X] = 0); Rademacher wild bootstrap over units",
        n=n,
        diagnostics={
            "bandwidth_standardised": h,
            "n_boot": B,
            "p": pf,
            "n_treated": int(Ta.sum()),
            "null_mean": float(null.mean()),
            "null_sd": float(null.std()),
            "note": "rejection falsifies ω; non-rejection does not validate it",
        },  # fmt: skip
    )
