"""GP intervals on the obs/exp gap Δ = τ − ω and the falsification test of Δ = 0.

Coverage checks draw Δ and h from the GP prior (true hyper-parameters passed in), so the Bayesian
95% band must cover Δ at ≈ 95% of query points averaged over draws — inside and outside the support.
Falsification null: Δ = 0 (ω equals the true τ); unit: the randomised trial unit (independent rows).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mechcell.causal_stats import CausalStatsInputError, GapIntervals, falsify_gap, gap_intervals
from mechcell.causal_stats.kernels import sq_dists

from .helpers import max_rejections, min_rejections

P, LS, VAR, SIGMA = 0.3, 0.2, 1.0, 0.5


def _prior_world(seed: int, n: int = 60, n_query: int = 10):
    """Trial on X ∈ [0, 1]; query points inside [0, 1] and outside [1.3, 2.3]; Δ, h ~ GP(0, rbf)."""
    rng = np.random.default_rng(seed)
    X = rng.random(n)
    Xq = np.concatenate([rng.random(n_query), 1.3 + rng.random(n_query)])
    Xall = np.concatenate([X, Xq])[:, None]
    L = np.linalg.cholesky(VAR * np.exp(-sq_dists(Xall, Xall) / (2 * LS * LS)) + 1e-9 * np.eye(Xall.shape[0]))
    delta, h = L @ rng.standard_normal(len(Xall)), L @ rng.standard_normal(len(Xall))
    omega = 0.5 * np.sin(3 * Xall[:, 0])
    tau = omega + delta
    mu1, mu0 = h + P * tau, h - (1 - P) * tau  # so that τ = μ1 − μ0 and h = p μ0 + (1 − p) μ1
    T = (rng.random(n) < P).astype(float)
    Y = np.where(T == 1, mu1[:n], mu0[:n]) + SIGMA * rng.standard_normal(n)
    return X[:, None], T, Y, omega[:n], Xq[:, None], omega[n:], delta[n:]


def _coverage(noise_model: str, reps: int) -> tuple[float, float]:
    inside, outside = [], []
    for rep in range(reps):
        X, T, Y, om, Xq, omq, dq = _prior_world(rep)
        g = gap_intervals(X, T, Y, om, P, Xq, kernel_delta=(LS, VAR), kernel_h=(LS, VAR), noise=SIGMA,
                          omega_query=omq, noise_model=noise_model)  # fmt: skip
        hit = (g.lower <= dq) & (dq <= g.upper)
        inside.append(hit[:10].mean())
        outside.append(hit[10:].mean())
    return float(np.mean(inside)), float(np.mean(outside))


def test_band_covers_95_percent_inside_and_outside_the_support() -> None:
    """600 prior draws × 10 points per region; SE ≤ 0.009 even if points within a draw were one."""
    inside, outside = _coverage("per_observation", 600)
    assert abs(inside - 0.95) < 0.03
    assert abs(outside - 0.95) < 0.03


def test_homoscedastic_noise_under_covers_inside_the_support() -> None:
    """One noise level σ² for every φ̃ ignores that φ̃'s noise is c_T²σ² (c₁² = 11 at p = 0.3)."""
    inside, _ = _coverage("homoscedastic", 200)
    assert inside < 0.88


def test_far_from_the_support_the_width_returns_to_the_prior_width() -> None:
    X, T, Y, om, _, _, _ = _prior_world(0, n=80)
    g = gap_intervals(X, T, Y, om, P, np.array([[0.5], [50.0]]), kernel_delta=(LS, VAR), kernel_h=(LS, VAR),
                      noise=SIGMA)  # fmt: skip
    prior_width = 2 * 1.959963984540054 * np.sqrt(VAR)
    assert g.upper[1] - g.lower[1] == pytest.approx(prior_width, rel=1e-9)
    assert g.mean[1] == pytest.approx(0.0, abs=1e-9)
    assert g.upper[0] - g.lower[0] < 0.9 * prior_width
    assert g.in_support.tolist() == [True, False]
    np.testing.assert_allclose(g.prior_sd, np.sqrt(VAR))


def test_tau_interval_adds_omega_uncertainty() -> None:
    X, T, Y, om, Xq, omq, _ = _prior_world(3)
    g0 = gap_intervals(X, T, Y, om, P, Xq, kernel_delta=(LS, VAR), kernel_h=(LS, VAR), noise=SIGMA, omega_query=omq)
    g1 = gap_intervals(X, T, Y, om, P, Xq, kernel_delta=(LS, VAR), kernel_h=(LS, VAR), noise=SIGMA, omega_query=omq,
                       omega_query_sd=np.full(len(Xq), 0.4))  # fmt: skip
    np.testing.assert_allclose(g0.tau_mean, omq + g0.mean)
    assert np.all(g1.tau_upper - g1.tau_lower > g0.tau_upper - g0.tau_lower)
    np.testing.assert_allclose(g1.lower, g0.lower)


def test_marginal_likelihood_fit_is_sane_and_result_serialises() -> None:
    X, T, Y, om, Xq, omq, dq = _prior_world(7, n=150)
    g = gap_intervals(X, T, Y, om, P, Xq, omega_query=omq)
    hp = g.hyperparameters
    assert set(hp["fitted"]) == {"lengthscale_delta", "variance_delta", "lengthscale_h", "variance_h", "noise"}
    assert 0.5 * SIGMA < hp["noise"] < 2 * SIGMA
    assert isinstance(g, GapIntervals)
    doc = json.loads(g.model_dump_json())
    assert len(doc["lower"]) == len(Xq) and isinstance(doc["in_support"][0], bool)
    only_noise = gap_intervals(X, T, Y, om, P, Xq, kernel_delta=(LS, VAR), kernel_h=(LS, VAR))
    assert only_noise.hyperparameters["fitted"] == ["noise"]


def _trial(seed: int, gap: float, n: int = 120):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 1))
    mu0 = np.sin(2 * np.pi * X[:, 0])
    tau = 1.0 + 0.5 * X[:, 0]
    T = (rng.random(n) < 0.5).astype(float)
    Y = mu0 + T * tau + 0.5 * rng.standard_normal(n)
    omega = tau - gap * (X[:, 0] > 0.5)  # ω wrong by `gap` on half the support
    return X, T, Y, omega


def test_falsification_holds_its_size_when_the_gap_is_zero() -> None:
    reps, rejections = 200, 0
    for rep in range(reps):
        X, T, Y, omega = _trial(rep, gap=0.0)
        rejections += falsify_gap(X, T, Y, omega, 0.5, n_boot=199, seed=rep).p_value <= 0.05
    assert rejections <= max_rejections(reps)


def test_falsification_has_power_under_a_known_gap() -> None:
    reps, rejections = 60, 0
    for rep in range(reps):
        X, T, Y, omega = _trial(10_000 + rep, gap=1.5)
        res = falsify_gap(X, T, Y, omega, 0.5, n_boot=199, seed=rep)
        rejections += res.p_value <= 0.05
    assert rejections >= min_rejections(reps, 0.7)
    assert "does not validate" in res.diagnostics["note"]


def test_bad_inputs_raise_typed_errors() -> None:
    X, T, Y, omega = _trial(0, gap=0.0)
    with pytest.raises(CausalStatsInputError, match="assignment probability"):
        falsify_gap(X, T, Y, omega, 1.0)
    with pytest.raises(CausalStatsInputError, match="omega must hold"):
        falsify_gap(X, T, Y, omega[:-1], 0.5)
    with pytest.raises(CausalStatsInputError, match="kernel_delta"):
        gap_intervals(X, T, Y, omega, 0.5, X[:3], kernel_delta=(0.2,))
    with pytest.raises(CausalStatsInputError, match="X_query has 2 columns"):
        gap_intervals(X, T, Y, omega, 0.5, np.zeros((3, 2)))
