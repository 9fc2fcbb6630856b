"""Doubly robust kernel tests (DATE / DETT, DR / IPW).

Null of the size tests: Y ⟂ T | X, made as the method note says — a real ±1 effect exists, but each
unit's observed Y is a fair coin-flip between its two potential outcomes; assignment is confounded by x₁,
which also drives Y. Unit of exchangeability: the cell, or the group (well) when `groups` is passed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mechcell.causal_stats import CausalStatsInputError, TestResult, dr_kernel_test, kernel_two_sample_test
from mechcell.causal_stats.dr import (
    dr_features,
    dr_gram,
    permuted_treatments,
    propensity_bins,
    split_folds,
    treatment_weights,
)
from mechcell.causal_stats.kernels import rff_sampler
from mechcell.causal_stats.simulate import simulate_dr

from .helpers import max_rejections, min_rejections

RIDGE = 1e-2


def _finite_maps(seed: int = 3) -> tuple:
    """Explicit finite feature maps: φ for outcomes (random cosines), ψ for covariates (polynomial)."""
    phi = rff_sampler("rbf", 2, bandwidth=1.3, n_features=25, seed=seed)

    def psi(X: np.ndarray) -> np.ndarray:
        return np.column_stack([np.ones(len(X)), X, X**2, X[:, :1] * X[:, 1:2]])

    return phi, psi


def _explicit_embedding_difference(X_te, T_te, Y_te, e, X_tr, T_tr, Y_tr, phi, psi, estimator, statistic):
    """‖μ̂_{Y(1)} − μ̂_{Y(0)}‖² straight from the AIPW definitions in the explicit feature space."""

    def mu_hat(t: int) -> np.ndarray:  # primal ridge: E[φ(Y) | X, T=t] ≈ ψ(X) W_t
        if estimator == "ipw":
            return np.zeros((len(X_te), phi(Y_te).shape[1]))
        P, F = psi(X_tr[T_tr == t]), phi(Y_tr[T_tr == t])
        W = np.linalg.solve(P.T @ P + len(P) * RIDGE * np.eye(P.shape[1]), P.T @ F)
        return psi(X_te) @ W

    F, T, m = phi(Y_te), T_te[:, None], len(T_te)
    ee = e[:, None]
    mu1, mu0 = mu_hat(1), mu_hat(0)
    if statistic == "date":
        emb1 = np.mean(T / ee * F + (1 - T / ee) * mu1, axis=0)
        emb0 = np.mean((1 - T) / (1 - ee) * F + (1 - (1 - T) / (1 - ee)) * mu0, axis=0)
    else:  # effect on the treated: E[Y(1)|T=1] vs E[Y(0)|T=1]
        m1 = T.sum()
        emb1 = (T * F).sum(axis=0) / m1
        emb0 = (T * mu0 + (1 - T) * ee / (1 - ee) * (F - mu0)).sum(axis=0) / m1
    assert m == len(F)
    return float(np.sum((emb1 - emb0) ** 2))


@pytest.mark.parametrize("estimator", ["dr", "ipw"])
@pytest.mark.parametrize("statistic", ["date", "dett"])
def test_gram_statistic_equals_explicit_feature_map_norm(estimator: str, statistic: str) -> None:
    """cᵀGc/m² (kernel matrices only) = ‖DR embedding difference‖² computed with explicit features."""
    rng = np.random.default_rng(0)
    n_tr, m = 70, 45
    X_tr, X_te = rng.standard_normal((n_tr, 2)), rng.standard_normal((m, 2))
    Y_tr, Y_te = rng.standard_normal((n_tr, 2)), rng.standard_normal((m, 2))
    T_tr = (rng.random(n_tr) < 0.5).astype(float)
    T_te = (rng.random(m) < 0.4).astype(float)
    e = rng.uniform(0.1, 0.9, m)
    phi, psi = _finite_maps()

    y_kernel = lambda A, B: phi(A) @ phi(B).T  # noqa: E731
    x_kernel = lambda A, B: psi(A) @ psi(B).T  # noqa: E731
    G = dr_gram(X_te, e, Y_te, X_tr, T_tr, Y_tr, y_kernel=y_kernel, x_kernel=x_kernel, ridge=RIDGE,
                estimator=estimator, statistic=statistic)  # fmt: skip
    w, norm = treatment_weights(T_te, e, statistic)
    gram_stat = float(w @ G @ w) / norm**2
    explicit = _explicit_embedding_difference(X_te, T_te, Y_te, e, X_tr, T_tr, Y_tr, phi, psi, estimator, statistic)
    assert explicit > 1e-4  # a non-trivial value, so the comparison means something
    assert gram_stat == pytest.approx(explicit, rel=1e-10, abs=1e-10)

    # the feature (random-Fourier) path computes the same a_i in the primal
    A = dr_features(psi(X_te), e, phi(Y_te), psi(X_tr), T_tr, phi(Y_tr), ridge=RIDGE,
                    estimator=estimator, statistic=statistic)  # fmt: skip
    feat_stat = float(np.sum((w @ A) ** 2)) / norm**2
    assert feat_stat == pytest.approx(explicit, rel=1e-10, abs=1e-10)


def test_dr_kernel_test_statistic_is_the_gram_statistic_on_its_test_fold() -> None:
    """End to end: the reported statistic is cᵀGc/m² on the seeded test fold with the given propensity."""
    w = simulate_dr(120, effect="mean", b=0.8, seed=4)
    phi, psi = _finite_maps()
    y_kernel = lambda A, B: phi(np.hstack([A, A])) @ phi(np.hstack([B, B])).T  # noqa: E731
    x_kernel = lambda A, B: psi(A) @ psi(B).T  # noqa: E731
    res = dr_kernel_test(w.X, w.T, w.Y, propensity=w.propensity, kernel=y_kernel, x_kernel=x_kernel,
                         ridge=RIDGE, seed=11, n_permutations=20)  # fmt: skip
    tr, te = split_folds(w.T, None, 0.5, np.random.default_rng(11))
    mu, sd = w.X[tr].mean(0), w.X[tr].std(0)
    Xs = (w.X - mu) / sd
    e = np.clip(w.propensity[te], 0.01, 0.99)
    G = dr_gram(Xs[te], e, w.Y[te], Xs[tr], w.T[tr], w.Y[tr], y_kernel=y_kernel, x_kernel=x_kernel, ridge=RIDGE)
    c, norm = treatment_weights(w.T[te], e, "date")
    assert res.statistic == pytest.approx(float(c @ G @ c) / norm**2, rel=1e-10)
    assert res.diagnostics["n_test"] == te.size


def test_permutations_stay_within_every_bin_including_the_top_one() -> None:
    rng = np.random.default_rng(0)
    e = rng.random(103)
    T = (rng.random(103) < e).astype(float)
    bins = propensity_bins(e, 10)
    assert np.unique(bins).size == 10
    Tp = permuted_treatments(T, bins, 50, rng)
    top = bins == bins.max()
    for b in np.unique(bins):
        idx = bins == b
        np.testing.assert_array_equal(Tp[:, idx].sum(axis=1), T[idx].sum())
    # the top bin is really permuted (not left as is)
    assert 0 < T[top].sum() < top.sum()
    assert np.any(np.any(Tp[:, top] != T[top], axis=1))


SIZE_REPS = 150


@pytest.mark.parametrize("grouped", [False, True], ids=["cells", "groups"])
@pytest.mark.parametrize("estimator", ["dr", "ipw"])
@pytest.mark.parametrize("statistic", ["date", "dett"])
def test_size_under_the_coin_flip_null(estimator: str, statistic: str, grouped: bool) -> None:
    """H0 true (coin-flip null); rejections at α = 0.05 within the 99.9% binomial bound of 0.05."""
    rejections = 0
    for rep in range(SIZE_REPS):
        w = simulate_dr(160, effect="null", b=1.0, n_groups=40 if grouped else None, seed=1000 + rep)
        res = dr_kernel_test(w.X, w.T, w.Y, estimator=estimator, statistic=statistic, groups=w.groups,
                             n_permutations=99, seed=rep)  # fmt: skip
        rejections += res.p_value <= 0.05
    assert rejections <= max_rejections(SIZE_REPS)


def test_the_null_world_is_confounded_so_a_naive_test_would_fail() -> None:
    """The same null worlds fool an unadjusted two-sample test: the DR test's size is earned."""
    rejections = 0
    for rep in range(40):
        w = simulate_dr(160, effect="null", b=1.0, seed=1000 + rep)
        res = kernel_two_sample_test(w.Y[w.T == 0], w.Y[w.T == 1], n_permutations=99, seed=rep)
        rejections += res.p_value <= 0.05
    assert rejections >= 20


POWER_REPS = 60


def _rejections(effect: str, b: float, estimator: str, reps: int = POWER_REPS, n: int = 300) -> int:
    count = 0
    for rep in range(reps):
        w = simulate_dr(n, effect=effect, b=b, seed=5000 + rep)
        count += dr_kernel_test(w.X, w.T, w.Y, estimator=estimator, n_permutations=99, seed=rep).p_value <= 0.05
    return count


def test_power_against_a_mean_shift() -> None:
    assert _rejections("mean", 1.0, "dr") >= min_rejections(POWER_REPS, 0.8)


def test_power_against_a_mean_zero_effect_and_dr_at_least_ipw() -> None:
    """±b with probability ½: the mean does not move, the distribution does (invisible to ATE tests)."""
    dr = _rejections("pm", 1.5, "dr")
    ipw = _rejections("pm", 1.5, "ipw")
    assert dr >= min_rejections(POWER_REPS, 0.5)
    assert dr >= ipw


def test_rff_path_agrees_with_exact_path() -> None:
    """The random-Fourier-feature approximation gives the same verdicts as the exact statistic."""
    agree = 0
    for rep, (effect, b) in enumerate([("null", 1.0)] * 4 + [("pm", 2.0)] * 4):
        w = simulate_dr(400, effect=effect, b=b, seed=7000 + rep)
        exact = dr_kernel_test(w.X, w.T, w.Y, n_permutations=99, seed=rep)
        approx = dr_kernel_test(w.X, w.T, w.Y, n_permutations=99, seed=rep, approx="rff", n_features=400)
        assert approx.diagnostics["approx"] == "rff"
        assert abs(approx.p_value - exact.p_value) < 0.2
        agree += (approx.p_value <= 0.05) == (exact.p_value <= 0.05)
    assert agree >= 7


def test_result_is_json_and_reports_overlap() -> None:
    w = simulate_dr(200, effect="mean", b=1.0, seed=2)
    res = dr_kernel_test(w.X, w.T, w.Y, n_permutations=50)
    assert isinstance(res, TestResult)
    doc = json.loads(res.model_dump_json())
    assert set(doc) == {"statistic", "p_value", "e_value", "null", "n", "diagnostics"}
    json.dumps(res.model_dump())  # plain Python all the way down
    for key in ("propensity_min", "propensity_max", "frac_clipped", "ess_treated", "overlap_ok"):
        assert key in res.diagnostics
    assert 1 / 51 <= res.p_value <= 1
    assert res.n == 200


def test_group_permutation_requires_constant_treatment_per_group() -> None:
    w = simulate_dr(100, effect="null", n_groups=20, seed=0)
    T = w.T.copy()
    row = int(np.flatnonzero(np.bincount(w.groups)[w.groups] >= 2)[0])  # a row whose well has other cells
    T[row] = 1 - T[row]
    with pytest.raises(CausalStatsInputError, match="treatment varies inside groups"):
        dr_kernel_test(w.X, T, w.Y, groups=w.groups)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"estimator": "tmle"}, "estimator"),
        ({"statistic": "ate"}, "statistic"),
        ({"clip": 0.7}, "clip"),
        ({"propensity": np.full(50, 1.0)}, "propensity"),
        ({"approx": "nystrom"}, "approx"),
    ],
)
def test_bad_arguments_raise_typed_errors(kwargs: dict, match: str) -> None:
    w = simulate_dr(50, effect="null", seed=0)
    with pytest.raises(CausalStatsInputError, match=match):
        dr_kernel_test(w.X, w.T, w.Y, **kwargs)


def test_bad_shapes_and_values_name_the_argument() -> None:
    w = simulate_dr(50, effect="null", seed=0)
    with pytest.raises(CausalStatsInputError, match="Y has 49 rows"):
        dr_kernel_test(w.X, w.T, w.Y[:-1])
    T = w.T.copy()
    T[3] = 2
    with pytest.raises(CausalStatsInputError, match="binary"):
        dr_kernel_test(w.X, T, w.Y)
    Y = w.Y.copy()
    Y[5] = np.nan
    with pytest.raises(CausalStatsInputError, match="Y has a non-finite value"):
        dr_kernel_test(w.X, w.T, Y)


def test_dett_normaliser_is_per_permutation_when_wells_differ_in_size() -> None:
    """Permuting wells of unequal sizes changes the number of treated cells: each row keeps its own m₁."""
    e = np.full(4, 0.5)
    Tb = np.array([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    _, norm = treatment_weights(Tb, e, "dett")
    np.testing.assert_array_equal(norm, [2.0, 1.0])
    _, norm_date = treatment_weights(Tb, e, "date")
    assert norm_date == 4.0


def test_bin_count_rule() -> None:
    """n_bins is a minimum; bins hold ≤ max_bin_size units but never fewer than 4."""
    e = np.random.default_rng(0).random(1000)
    assert np.unique(propensity_bins(e, 10, None)).size == 10
    assert np.unique(propensity_bins(e, 10, 6)).size == 167
    assert np.bincount(propensity_bins(e, 10, 6)).max() <= 6
    few = propensity_bins(e[:20], 10, 6)  # 20 wells: 5 bins of 4 rather than 10 bins of 2
    np.testing.assert_array_equal(np.bincount(few), [4, 4, 4, 4, 4])
