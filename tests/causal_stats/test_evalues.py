"""p → e calibrators, sequential products of e-values, BH and e-BH.

Nulls: p-values uniform on [0, 1] (independent across tests); the unit is one test / hypothesis.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import false_discovery_control, norm

from mechcell.causal_stats import CausalStatsInputError, benjamini_hochberg, combine_e, e_bh, p_to_e
from mechcell.causal_stats.evalues import bh_adjust

from .helpers import max_rejections


@pytest.mark.parametrize(("method", "kappa"), [("integral", 0.5), ("kappa", 0.2), ("kappa", 0.5), ("kappa", 0.8)])
def test_calibrators_have_expectation_one_under_uniform_p(method: str, kappa: float) -> None:
    """E[e(U)] = ∫₀¹ e(p) dp ≤ 1 (both calibrators are admissible: exactly 1).

    Substituting p = exp(−s) removes the singularity at p = 0: ∫₀^∞ e(exp(−s)) exp(−s) ds, computed on
    [0, 700] (p ≥ 1e-304) plus the tail in closed form: for the integral calibrator the integrand is
    (1 − e^(−s)(1 + s))/s² ≈ 1/s² (tail 1/700); for κ p^(κ−1) it is κ e^(−κs) (tail e^(−700κ)).
    """
    s_max = 700.0
    val, _ = integrate.quad(lambda s: p_to_e(float(np.exp(-s)), method=method, kappa=kappa) * np.exp(-s),
                            0.0, s_max, limit=1000, points=[1.0, 10.0, 100.0])  # fmt: skip
    val += 1.0 / s_max if method == "integral" else np.exp(-kappa * s_max)
    assert val <= 1.0 + 1e-6
    assert val == pytest.approx(1.0, abs=1e-4)


def test_integral_calibrator_shape() -> None:
    p = np.array([1e-12, 1e-6, 1e-3, 0.01, 0.05, 0.2, 0.5, 0.9, 0.99999, 1.0])
    e = p_to_e(p)
    assert np.all(np.diff(e) < 0)  # decreasing in p
    assert p_to_e(1.0) == pytest.approx(0.5)
    assert p_to_e(1 - 1e-5) == pytest.approx(0.5, abs=1e-5)  # continuous across the series switch
    assert p_to_e(1 - 2e-4) == pytest.approx((1 - (1 - 2e-4) + (1 - 2e-4) * np.log(1 - 2e-4))
                                             / ((1 - 2e-4) * np.log(1 - 2e-4) ** 2), rel=1e-6)  # fmt: skip
    assert p_to_e(0.0) == np.inf
    assert isinstance(p_to_e(0.3), float)


def test_products_of_sequential_e_values_keep_type_one_error() -> None:
    """H0 true at every step; reject as soon as the running product reaches 1/α (anytime-valid)."""
    rng = np.random.default_rng(0)
    n_seq, steps, alpha = 4000, 25, 0.05
    p = rng.random((n_seq, steps))
    running = np.cumprod(p_to_e(p.ravel()).reshape(n_seq, steps), axis=1)
    rejected = int(np.sum(running.max(axis=1) >= 1 / alpha))
    assert rejected <= max_rejections(n_seq, alpha)
    # and the same procedure has power when the p-values are small
    p_alt = norm.sf(rng.standard_normal((n_seq, steps)) + 2.0)
    running_alt = np.cumprod(p_to_e(p_alt.ravel()).reshape(n_seq, steps), axis=1)
    assert np.mean(running_alt.max(axis=1) >= 1 / alpha) > 0.9
    assert combine_e(p_to_e(p_alt[0])) == pytest.approx(running_alt[0, -1])


def _fdr_simulation(procedure: str, reps: int = 600, m: int = 40, m0: int = 30, alpha: float = 0.1) -> float:
    rng = np.random.default_rng(1)
    fdp = []
    for _ in range(reps):
        z = rng.standard_normal(m)
        z[m0:] += 3.0
        p = norm.sf(z)
        rej = benjamini_hochberg(p, alpha) if procedure == "bh" else e_bh(p_to_e(p), alpha)
        fdp.append(rej[:m0].sum() / max(rej.sum(), 1))
    return float(np.mean(fdp)), float(np.std(fdp) / np.sqrt(reps))


@pytest.mark.parametrize("procedure", ["bh", "e_bh"])
def test_bh_and_e_bh_control_fdr(procedure: str) -> None:
    """H0: the first 30 of 40 hypotheses (uniform p); FDR estimate ≤ α within 3 Monte-Carlo SEs."""
    fdr, se = _fdr_simulation(procedure)
    assert fdr <= 0.1 + 3 * se


def test_bh_matches_scipy_and_e_bh_is_bh_on_inverse_e() -> None:
    rng = np.random.default_rng(2)
    p = np.concatenate([rng.random(30), rng.random(10) * 1e-3])
    np.testing.assert_allclose(bh_adjust(p), false_discovery_control(p), rtol=1e-12)
    e = p_to_e(p)
    np.testing.assert_array_equal(e_bh(e, 0.1), benjamini_hochberg(np.minimum(1 / e, 1), 0.1))
    assert benjamini_hochberg(p, 0.05).sum() >= 5


def test_combine_e_methods_and_errors() -> None:
    assert combine_e([2.0, 3.0]) == pytest.approx(6.0)
    assert combine_e([2.0, 4.0], method="mean") == pytest.approx(3.0)
    assert combine_e([2.0, 4.0], method="mean", weights=[0.25, 0.75]) == pytest.approx(3.5)
    assert combine_e([]) == 1.0
    assert combine_e([0.0, 5.0]) == 0.0
    with pytest.raises(CausalStatsInputError):
        combine_e([-1.0])
    with pytest.raises(CausalStatsInputError):
        combine_e([1.0, 2.0], method="mean", weights=[0.5, 0.6])
    with pytest.raises(CausalStatsInputError, match="p values must lie in"):
        p_to_e(1.5)
    with pytest.raises(CausalStatsInputError, match="kappa"):
        p_to_e(0.5, method="kappa", kappa=1.0)
