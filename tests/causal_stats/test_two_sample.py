"""Kernel two-sample test (unbiased MMD², permutations of cells or of whole groups).

Null: Y0 and Y1 are draws from one distribution. Unit of exchangeability: the cell, or the well when
`groups` is passed (cells of a well share a well effect, so cells are not exchangeable across wells).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mechcell.causal_stats import CausalStatsInputError, kernel_two_sample_test

from .helpers import max_rejections, min_rejections


def _mmd2_unbiased_direct(Y0: np.ndarray, Y1: np.ndarray, h: float) -> float:
    def k(A: np.ndarray, B: np.ndarray) -> np.ndarray:
        d2 = ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1)
        return np.exp(-d2 / (2 * h * h))

    n0, n1 = len(Y0), len(Y1)
    K00, K11, K01 = k(Y0, Y0), k(Y1, Y1), k(Y0, Y1)
    return float(
        (K00.sum() - np.trace(K00)) / (n0 * (n0 - 1)) + (K11.sum() - np.trace(K11)) / (n1 * (n1 - 1)) - 2 * K01.mean()
    )


def test_statistic_is_the_unbiased_mmd2_and_bandwidth_is_the_median_distance() -> None:
    rng = np.random.default_rng(0)
    Y0, Y1 = rng.standard_normal((30, 3)), rng.standard_normal((45, 3)) + 0.5
    res = kernel_two_sample_test(Y0, Y1, n_permutations=10)
    Z = np.vstack([Y0, Y1])
    d = np.sqrt(((Z[:, None] - Z[None]) ** 2).sum(-1))[np.triu_indices(75, 1)]
    assert res.diagnostics["bandwidth"] == pytest.approx(np.median(d), rel=1e-12)
    assert res.statistic == pytest.approx(_mmd2_unbiased_direct(Y0, Y1, np.median(d)), rel=1e-10, abs=1e-14)
    fixed = kernel_two_sample_test(Y0, Y1, bandwidth=0.7, n_permutations=10)
    assert fixed.statistic == pytest.approx(_mmd2_unbiased_direct(Y0, Y1, 0.7), rel=1e-10, abs=1e-14)


def test_p_value_agrees_with_hyppo_within_monte_carlo_error() -> None:
    hyppo = pytest.importorskip("hyppo.ksample")
    rng = np.random.default_rng(1)
    Y0, Y1 = rng.standard_normal((50, 2)), rng.standard_normal((50, 2)) + 0.3
    ours = kernel_two_sample_test(Y0, Y1, n_permutations=1000, seed=3)
    h = ours.diagnostics["bandwidth"]
    _, p_ref = hyppo.MMD(compute_kernel="gaussian", gamma=1 / (2 * h * h)).test(
        Y0, Y1, reps=1000, auto=False, random_state=3
    )
    se = np.sqrt(max(p_ref * (1 - p_ref), 0.01) / 1000)
    assert abs(ours.p_value - p_ref) <= 4 * np.sqrt(2) * se


def test_size_at_cell_level_under_iid_null() -> None:
    reps, rejections = 300, 0
    for rep in range(reps):
        rng = np.random.default_rng(rep)
        res = kernel_two_sample_test(rng.standard_normal((30, 2)), rng.standard_normal((40, 2)),
                                     n_permutations=99, seed=rep)  # fmt: skip
        rejections += res.p_value <= 0.05
    assert rejections <= max_rejections(reps)


def _wells(rng: np.random.Generator, n_wells: int = 8, cells: int = 10, sd: float = 1.0):
    """Both arms from one distribution of wells; each well adds its own offset to all its cells."""
    Y, g = [], []
    for w in range(n_wells):
        Y.append(rng.standard_normal((cells, 1)) + sd * rng.standard_normal())
        g += [w] * cells
    return np.vstack(Y), np.array(g)


def test_group_permutation_holds_size_where_cell_permutation_does_not() -> None:
    reps, by_group, by_cell = 150, 0, 0
    for rep in range(reps):
        rng = np.random.default_rng(10_000 + rep)
        Y0, g0 = _wells(rng)
        Y1, g1 = _wells(rng)
        groups = (g0.astype(str), np.char.add("t", g1.astype(str)))
        by_group += kernel_two_sample_test(Y0, Y1, groups=groups, n_permutations=99, seed=rep).p_value <= 0.05
        by_cell += kernel_two_sample_test(Y0, Y1, n_permutations=99, seed=rep).p_value <= 0.05
    assert by_group <= max_rejections(reps)
    assert by_cell > 3 * max_rejections(reps)  # ignoring the well effect is badly anti-conservative


def test_power_against_a_mean_shift() -> None:
    reps, rejections = 100, 0
    for rep in range(reps):
        rng = np.random.default_rng(20_000 + rep)
        res = kernel_two_sample_test(rng.standard_normal((40, 2)), rng.standard_normal((40, 2)) + [0.8, 0.0],
                                     n_permutations=99, seed=rep)  # fmt: skip
        rejections += res.p_value <= 0.05
    assert rejections >= min_rejections(reps, 0.8)


def test_groups_as_one_vector_and_result_is_json() -> None:
    rng = np.random.default_rng(5)
    Y0, g0 = _wells(rng, n_wells=5)
    Y1, g1 = _wells(rng, n_wells=5)
    res = kernel_two_sample_test(Y0, Y1 + 3.0, groups=np.concatenate([g0, g1 + 100]), n_permutations=200)
    assert res.diagnostics["unit"] == "group"
    assert res.diagnostics["n_distinct_assignments"] == 252
    assert res.p_value <= 0.05
    json.loads(res.model_dump_json())


def test_bad_inputs_raise_typed_errors() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(CausalStatsInputError, match="same number of features"):
        kernel_two_sample_test(rng.random((5, 2)), rng.random((5, 3)))
    with pytest.raises(CausalStatsInputError, match="at least 2 rows"):
        kernel_two_sample_test(rng.random((1, 2)), rng.random((5, 2)))
    with pytest.raises(CausalStatsInputError, match="treatment varies inside groups"):
        kernel_two_sample_test(rng.random((4, 1)), rng.random((4, 1)), groups=[0, 0, 1, 1, 1, 2, 2, 3])
    with pytest.raises(CausalStatsInputError, match="bandwidth"):
        kernel_two_sample_test(rng.random((4, 1)), rng.random((4, 1)), bandwidth="scott")
    with pytest.raises(CausalStatsInputError, match="kernel must be one of"):
        kernel_two_sample_test(rng.random((4, 1)), rng.random((4, 1)), kernel="poly")
