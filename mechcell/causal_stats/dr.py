"""Doubly robust kernel tests of distributional treatment effects (Fawkes, Hu, Evans, Sejdinovic 2022).

The DR (AIPW) estimate of the counterfactual mean-embedding difference is (1/m) Σ c_i a_i with
c_i = (T_i − e_i)/(e_i(1 − e_i)) and a_i = φ(Y_i) − (1 − e_i) μ̂_1(X_i) − e_i μ̂_0(X_i); its squared RKHS
norm DATE = cᵀGc/m², G_ik = ⟨a_i, a_k⟩, needs kernel matrices only. IPW is the case μ̂ ≡ 0 (G = L).
DETT (effect on the treated) = ‖(1/m_1) Σ d_i (φ(Y_i) − μ̂_0(X_i))‖², d_i = (T_i − e_i)/(1 − e_i).

Test: fit ê and μ̂_t on a training fold, compute G on the test fold, and permute T within quantile bins
of ê there (a conditional randomisation test of Y ⟂ T | X). Only c depends on T, so a permutation costs
O(m²) (exact) or O(m D) (random Fourier features), batched into matrix products.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import scipy.linalg as sla
from scipy.optimize import minimize
from scipy.special import expit

from mechcell.causal_stats._common import as_treatment, group_codes, group_treatment, perm_p_value
from mechcell.causal_stats.evalues import p_to_e
from mechcell.causal_stats.kernels import KernelFn, as_2d, make_kernel, resolve_bandwidth, rff_sampler
from mechcell.causal_stats.results import CausalStatsInputError, TestResult

Estimator = Literal["dr", "ipw"]
Statistic = Literal["date", "dett"]
MAX_EXACT_TEST_FOLD = 15_000  # an (m × m) float64 G above this is > 1.8 GB: use approx="rff"
_CHUNK = 64


# ---------------------------------------------------------------- propensity model
def fit_logistic(X: np.ndarray, T: np.ndarray, *, l2: float = 1e-3) -> np.ndarray:
    """L2-regularised logistic regression (intercept unpenalised); returns [intercept, coefficients].

    Why so simple: the test only needs ê to rank units into bins and to weight them; a smooth convex fit
    on standardised covariates is stable in every fold, including near-separable ones.
    """
    Xd = np.hstack([np.ones((X.shape[0], 1)), X])
    pen = np.full(Xd.shape[1], l2)
    pen[0] = 0.0
    n = Xd.shape[0]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        eta = Xd @ w
        val = np.logaddexp(0.0, eta).sum() / n - (T @ eta) / n + 0.5 * (pen * w * w).sum()
        grad = Xd.T @ (expit(eta) - T) / n + pen * w
        return float(val), grad

    w0 = np.zeros(Xd.shape[1])
    mean_t = float(np.clip(T.mean(), 1e-3, 1 - 1e-3))
    w0[0] = np.log(mean_t / (1 - mean_t))
    res = minimize(loss, w0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return res.x


def predict_logistic(coef: np.ndarray, X: np.ndarray) -> np.ndarray:
    return expit(coef[0] + X @ coef[1:])


# ---------------------------------------------------------------- statistic building blocks
def _arm_weights(e: np.ndarray, estimator: Estimator, statistic: Statistic) -> list[tuple[int, np.ndarray]]:
    """Which outcome models enter a_i and with what per-unit weight."""
    if estimator == "ipw":
        return []
    if statistic == "date":
        return [(1, 1.0 - e), (0, e)]
    return [(0, np.ones_like(e))]


def treatment_weights(T: np.ndarray, e: np.ndarray, statistic: Statistic) -> tuple[np.ndarray, Any]:
    """Per-unit weights (c for DATE, d for DETT) and the normaliser (m, or m_1 = ΣT per row).

    T is (m,) or (B, m); for DETT the number treated is per row, since permuting wells of unequal sizes
    changes how many cells are treated.
    """
    if statistic == "date":
        return (T - e) / (e * (1.0 - e)), float(T.shape[-1])
    m1 = float(T.sum()) if T.ndim == 1 else T.sum(axis=1)
    return (T - e) / (1.0 - e), m1


def _chol_solve(K: np.ndarray, lam: float, rhs: np.ndarray) -> np.ndarray:
    """(K + lam I)⁻¹ rhs by a Cholesky solve, with growing jitter if K is numerically indefinite."""
    A = K + lam * np.eye(K.shape[0])
    jitter = 0.0
    for _ in range(6):
        try:
            cf = sla.cho_factor(A + jitter * np.eye(A.shape[0]), lower=True, check_finite=False)
            return sla.cho_solve(cf, rhs, check_finite=False)
        except np.linalg.LinAlgError:
            jitter = max(1e-12, 10 * jitter) * max(1.0, float(np.abs(np.diag(K)).max()))
    raise CausalStatsInputError("covariate kernel matrix is not positive definite even with jitter; raise ridge")


def dr_gram(
    X_te: np.ndarray,
    e_te: np.ndarray,
    Y_te: np.ndarray,
    X_tr: np.ndarray,
    T_tr: np.ndarray,
    Y_tr: np.ndarray,
    *,
    y_kernel: KernelFn,
    x_kernel: KernelFn,
    ridge: float,
    estimator: Estimator = "dr",
    statistic: Statistic = "date",
) -> np.ndarray:
    """G_ik = ⟨a_i, a_k⟩ on the test fold (m × m) from kernel matrices only.

    μ̂_t(x) = Σ_j β_j(x) φ(Y_j) over training units of arm t, β = (K_tt + n_t λ I)⁻¹ k(X_t, x); with
    W_t = diag(w_t) βᵀ, a_i = φ(Y_i) − Σ_t Φ_tᵀ W_t[i], so G = L − Σ_t (L_t W_tᵀ + W_t L_tᵀ) + Σ_ts W_t L_ts W_sᵀ.
    """
    G = np.array(y_kernel(Y_te, Y_te), dtype=np.float64)
    terms: list[tuple[np.ndarray, np.ndarray]] = []
    for t, w in _arm_weights(e_te, estimator, statistic):
        idx = T_tr == t
        Xt, Yt = X_tr[idx], Y_tr[idx]
        n_t = Xt.shape[0]
        beta = _chol_solve(x_kernel(Xt, Xt), n_t * ridge, x_kernel(Xt, X_te))  # (n_t × m)
        W = w[:, None] * beta.T  # (m × n_t)
        M = y_kernel(Y_te, Yt) @ W.T
        G -= M + M.T
        terms.append((W, Yt))
    for W_a, Y_a in terms:
        for W_b, Y_b in terms:
            G += W_a @ (y_kernel(Y_a, Y_b) @ W_b.T)
    return 0.5 * (G + G.T)


def dr_features(
    Psi_te: np.ndarray,
    e_te: np.ndarray,
    Phi_te: np.ndarray,
    Psi_tr: np.ndarray,
    T_tr: np.ndarray,
    Phi_tr: np.ndarray,
    *,
    ridge: float,
    estimator: Estimator = "dr",
    statistic: Statistic = "date",
) -> np.ndarray:
    """Explicit a_i (m × D_y) from finite feature maps: Φ (outcome) and Ψ (covariates).

    Ridge in the primal, W_t = (Ψ_tᵀΨ_t + n_t λ I)⁻¹ Ψ_tᵀ Φ_t (O(n D²)), equals the kernel ridge
    embedding for the kernel ΨΨᵀ (push-through identity), so this path and `dr_gram` agree exactly.
    """
    A = np.array(Phi_te, dtype=np.float64)
    for t, w in _arm_weights(e_te, estimator, statistic):
        idx = T_tr == t
        Pt = Psi_tr[idx]
        n_t = Pt.shape[0]
        W = _chol_solve(Pt.T @ Pt, n_t * ridge, Pt.T @ Phi_tr[idx])
        A -= w[:, None] * (Psi_te @ W)
    return A


# ---------------------------------------------------------------- folds and permutations
def split_folds(
    T: np.ndarray, codes: np.ndarray | None, train_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (by arm) random split into train / test row indices; whole groups stay together."""
    if codes is None:
        unit_T, unit_of_row = T, np.arange(T.size)
    else:
        unit_T = np.zeros(int(codes.max()) + 1)
        unit_T[codes] = T
        unit_of_row = codes
    train_units = []
    for arm in (0.0, 1.0):
        units = np.flatnonzero(unit_T == arm)
        rng.shuffle(units)
        k = int(round(train_fraction * units.size))
        train_units.append(units[:k])
    is_train_unit = np.zeros(unit_T.size, dtype=bool)
    is_train_unit[np.concatenate(train_units)] = True
    is_train = is_train_unit[unit_of_row]
    return np.flatnonzero(is_train), np.flatnonzero(~is_train)


MIN_BIN_SIZE = 4  # fewer units per bin leave too few bins holding both arms


def propensity_bins(e_unit: np.ndarray, n_bins: int, max_bin_size: int | None = None) -> np.ndarray:
    """Equal-count bins by rank of ê (ties split arbitrarily but deterministically).

    At least `n_bins` bins, more when needed so that no bin holds more than `max_bin_size` units, but
    never fewer than MIN_BIN_SIZE units per bin. Why small bins: a permutation treats the units of a bin
    as exchangeable, while c_i uses each unit's own ê; the spread of ê inside a bin widens the
    permutation null by an amount that does not shrink with n (10 bins over 5·10⁴ cells inflate it ~5×;
    at n = 300 bins of 6 instead of 15 raise DR power by a fifth at the same size).
    """
    n = e_unit.size
    k = max(1, int(n_bins))
    if max_bin_size is not None and max_bin_size > 0:
        k = max(k, -(-n // int(max_bin_size)))
    k = max(1, min(k, n // MIN_BIN_SIZE))
    ranks = np.empty(n, dtype=np.int64)
    ranks[np.argsort(e_unit, kind="stable")] = np.arange(n)
    return (ranks * k) // n


def permuted_treatments(T_unit: np.ndarray, bins: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, n_units) treatments, each row T permuted within every bin (all bins, the top one too).

    Vectorised: sorting bin + U(0, 1) keys orders units by bin and randomly within a bin; placing the
    values in that order onto the units in a fixed by-bin order keeps every value inside its own bin.
    """
    base = np.argsort(bins, kind="stable")
    keys = bins[None, :] + rng.random((size, T_unit.size))
    order = np.argsort(keys, axis=1)
    out = np.empty((size, T_unit.size))
    out[:, base] = T_unit[order]
    return out


def _iter_perms(
    T_unit: np.ndarray, bins: np.ndarray, B: int, rng: np.random.Generator, chunk: int
) -> Iterator[np.ndarray]:
    for start in range(0, B, chunk):
        yield permuted_treatments(T_unit, bins, min(chunk, B - start), rng)


# ---------------------------------------------------------------- the test
def _propensity_diagnostics(e_raw: np.ndarray, e: np.ndarray, T: np.ndarray, clip: float) -> dict[str, Any]:
    w1 = T / e
    w0 = (1 - T) / (1 - e)
    ess1 = float(w1.sum() ** 2 / max((w1**2).sum(), 1e-300))
    ess0 = float(w0.sum() ** 2 / max((w0**2).sum(), 1e-300))
    return {
        "propensity_min": float(e_raw.min()),
        "propensity_max": float(e_raw.max()),
        "frac_clipped": float(np.mean((e_raw < clip) | (e_raw > 1 - clip))),
        "ess_treated": ess1,
        "ess_control": ess0,
        "overlap_ok": bool(np.mean((e_raw < clip) | (e_raw > 1 - clip)) < 0.05),
    }


def dr_kernel_test(
    X: Any,
    T: Any,
    Y: Any,
    *,
    estimator: Estimator = "dr",
    statistic: Statistic = "date",
    n_bins: int = 10,
    n_permutations: int = 200,
    ridge: float = 1e-3,
    clip: float = 0.01,
    propensity: Any = None,
    groups: Any = None,
    approx: Literal["rff"] | None = None,
    n_features: int | None = None,
    seed: int = 0,
    kernel: str | KernelFn = "rbf",
    x_kernel: str | KernelFn = "rbf",
    bandwidth: float | str = "median",
    x_bandwidth: float | str = "median",
    train_fraction: float = 0.5,
    max_bin_size: int | None = 6,
) -> TestResult:
    """Test H0: Y ⟂ T | X (no distributional effect of T on Y given covariates X).

    X (n, p) covariates, T (n,) binary treatment, Y (n, q) outcome (a gene, a gene-set vector, a profile).
    estimator: "dr" (outcome models + propensity) or "ipw" (propensity only). statistic: "date" (average
    effect, both arms) or "dett" (effect on the treated; one outcome model). propensity: known e(X) per
    row (e.g. a randomised design) instead of a fitted logistic model. groups: the unit treatment was
    assigned to; folds and permutations then move whole groups, within bins of the group's mean ê.
    approx="rff": random Fourier features (n_features per kernel, default 256): O(n D²) for 10⁵–10⁶ cells.
    n_bins is a minimum: bins are added so none holds more than max_bin_size units (None: exactly n_bins),
    and removed so each holds at least 4 (see `propensity_bins`).
    """
    if estimator not in ("dr", "ipw"):
        raise CausalStatsInputError(f"estimator must be 'dr' or 'ipw' (got {estimator!r})")
    if statistic not in ("date", "dett"):
        raise CausalStatsInputError(f"statistic must be 'date' or 'dett' (got {statistic!r})")
    if approx not in (None, "rff"):
        raise CausalStatsInputError(f"approx must be None or 'rff' (got {approx!r})")
    if not 0.0 < clip < 0.5:
        raise CausalStatsInputError(f"clip must lie in (0, 0.5) (got {clip!r})")
    if int(n_permutations) < 1 or int(n_bins) < 1:
        raise CausalStatsInputError("n_permutations and n_bins must be ≥ 1")
    if ridge <= 0:
        raise CausalStatsInputError(f"ridge must be positive (got {ridge!r})")
    Xa = as_2d(X, "X")
    n = Xa.shape[0]
    Ya = as_2d(Y, "Y")
    if Ya.shape[0] != n:
        raise CausalStatsInputError(f"Y has {Ya.shape[0]} rows but X has {n}")
    Ta = as_treatment(T, n)
    if Ta.sum() < 2 or (1 - Ta).sum() < 2:
        raise CausalStatsInputError("T needs at least 2 treated and 2 control rows")
    e_given = None
    if propensity is not None:
        e_given = np.asarray(propensity, dtype=np.float64).ravel()
        if e_given.shape != (n,) or np.any(~np.isfinite(e_given)) or np.any((e_given <= 0) | (e_given >= 1)):
            raise CausalStatsInputError(f"propensity must be {n} values strictly inside (0, 1)")
    codes = labels = None
    if groups is not None:
        codes, labels = group_codes(groups, n, "groups")
        group_treatment(Ta, codes, labels)
        if labels.size < 4:
            raise CausalStatsInputError(f"groups: need at least 4 groups (got {labels.size})")

    rng = np.random.default_rng(seed)
    needs_train = estimator == "dr" or e_given is None
    if needs_train:
        if not 0.0 < train_fraction < 1.0:
            raise CausalStatsInputError(f"train_fraction must lie in (0, 1) (got {train_fraction!r})")
        tr, te = split_folds(Ta, codes, train_fraction, rng)
    else:
        tr, te = np.array([], dtype=np.int64), np.arange(n)
    T_te = Ta[te]
    if T_te.sum() < 1 or (1 - T_te).sum() < 1:
        raise CausalStatsInputError("the test fold lacks one arm; use more units")
    if needs_train and (Ta[tr].sum() < 2 or (1 - Ta[tr]).sum() < 2):
        raise CausalStatsInputError("the training fold needs at least 2 treated and 2 control rows")
    m = te.size
    if approx is None and m > MAX_EXACT_TEST_FOLD:
        raise CausalStatsInputError(f"test fold of {m} rows is too large for the exact O(m²) test; pass approx='rff'")

    ref = Xa[tr] if tr.size else Xa
    mu, sd = ref.mean(axis=0), ref.std(axis=0)
    sd[sd == 0] = 1.0
    Xs = (Xa - mu) / sd

    e_raw = e_given[te] if e_given is not None else predict_logistic(fit_logistic(Xs[tr], Ta[tr]), Xs[te])
    if codes is not None:  # treatment is assigned per group: use the group's mean propensity
        c_te = codes[te]
        _, unit_of_row = np.unique(c_te, return_inverse=True)
        G_te = int(unit_of_row.max()) + 1
        sums = np.bincount(unit_of_row, weights=e_raw, minlength=G_te)
        e_unit_raw = sums / np.bincount(unit_of_row, minlength=G_te)
        e_raw = e_unit_raw[unit_of_row]
        T_unit = np.zeros(G_te)
        T_unit[unit_of_row] = T_te
    else:
        unit_of_row = None
        e_unit_raw = e_raw
        T_unit = T_te
    e = np.clip(e_raw, clip, 1 - clip)
    e_unit = np.clip(e_unit_raw, clip, 1 - clip)

    y_h = resolve_bandwidth(bandwidth, Ya, seed=seed, name="bandwidth") if not callable(kernel) else float("nan")
    x_ref = Xs[tr] if tr.size else Xs
    x_h = (
        resolve_bandwidth(x_bandwidth, x_ref, seed=seed, name="x_bandwidth") if not callable(x_kernel) else float("nan")
    )

    if approx is None:
        G = dr_gram(
            Xs[te], e, Ya[te], Xs[tr], Ta[tr], Ya[tr],
            y_kernel=make_kernel(kernel, y_h), x_kernel=make_kernel(x_kernel, x_h),
            ridge=ridge, estimator=estimator, statistic=statistic,
        )  # fmt: skip

        def stats(Tb: np.ndarray) -> np.ndarray:
            w, norm = treatment_weights(Tb, e, statistic)
            return np.einsum("bi,bi->b", w @ G, w) / norm**2

    else:
        if callable(kernel) or callable(x_kernel):
            raise CausalStatsInputError("approx='rff' needs named kernels ('rbf' or 'laplace'), not callables")
        D = int(n_features) if n_features is not None else 256
        if D < 1:
            raise CausalStatsInputError(f"n_features must be ≥ 1 (got {n_features!r})")
        phi = rff_sampler(str(kernel), Ya.shape[1], bandwidth=y_h, n_features=D, seed=seed + 1)
        psi = rff_sampler(str(x_kernel), Xs.shape[1], bandwidth=x_h, n_features=D, seed=seed + 2)
        A = dr_features(
            psi(Xs[te]), e, phi(Ya[te]), psi(Xs[tr]), Ta[tr], phi(Ya[tr]),
            ridge=ridge, estimator=estimator, statistic=statistic,
        )  # fmt: skip

        def stats(Tb: np.ndarray) -> np.ndarray:
            w, norm = treatment_weights(Tb, e, statistic)
            v = w @ A
            return np.einsum("bd,bd->b", v, v) / norm**2

    observed = float(stats(T_te[None, :])[0])
    bins = propensity_bins(e_unit, int(n_bins), max_bin_size)
    B = int(n_permutations)
    null = np.empty(B)
    chunk = _CHUNK if approx is None else max(1, min(_CHUNK, 2_000_000 // max(m, 1)))
    pos = 0
    for Tu in _iter_perms(T_unit, bins, B, rng, chunk):
        Tb = Tu if unit_of_row is None else Tu[:, unit_of_row]
        null[pos : pos + Tb.shape[0]] = stats(Tb)
        pos += Tb.shape[0]
    p = perm_p_value(observed, null)

    informative = sum(1 for b in np.unique(bins) if 0 < T_unit[bins == b].sum() < np.sum(bins == b))
    unit = "group" if codes is not None else "cell"
    diagnostics: dict[str, Any] = {
        "estimator": estimator,
        "statistic": statistic,
        "unit": unit,
        "n_train": int(tr.size),
        "n_test": int(m),
        "n_units_test": int(T_unit.size),
        "n_bins": int(np.unique(bins).size),
        "n_bins_with_both_arms": int(informative),
        "n_permutations": B,
        "propensity": "given" if e_given is not None else "logistic (fitted on the training fold)",
        "approx": approx or "exact",
        "n_features": int(n_features or 256) if approx else None,
        "bandwidth": y_h,
        "x_bandwidth": x_h,
        "ridge": float(ridge),
        "null_mean": float(null.mean()),
        "null_sd": float(null.std()),
        **_propensity_diagnostics(e_raw, e, T_te, clip),
    }
    if codes is not None:
        diagnostics["n_groups"] = int(labels.size)
    return TestResult(
        statistic=observed,
        p_value=p,
        e_value=p_to_e(p),
        null=(
            f"Y ⟂ T | X: no distributional effect ({statistic.upper()}, {estimator.upper()} estimator); "
            f"T permuted within {int(np.unique(bins).size)} propensity bins, unit of exchange: {unit}"
        ),
        n=n,
        diagnostics=diagnostics,
    )
