"""Sensitivity bounds under selection, proxy-label and proxy-attribute bias (saturated DAGs).

No sampling here: the checks are of optimisation — exactness (LP = closed form = vertex enumeration),
validity (no model consistent with the table and the bias falls outside the bounds), D = 0 collapse
and monotone widening.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mechcell.causal_stats import Bounds, CausalStatsInputError, breaking_point, sensitivity_bounds
from mechcell.causal_stats.sensitivity import (
    BIASES,
    METRICS,
    _group_types,
    _max_rate_difference_separable,
    _Problem,
    joint_from_table,
    observed_metric,
    selection_closed_form,
)

from .helpers import random_table

COMBOS = list(itertools.product(BIASES, METRICS))


def _true_metric(p_true: np.ndarray, metric: str) -> float:
    """The metric computed from scratch on an 8-cell joint indexed 4a + 2y + p."""
    P = p_true.reshape(2, 2, 2)  # [a, y, p]
    rates = []
    for a in (0, 1):
        c = P[a]
        rate = {
            "fpr": c[0, 1] / c[0].sum(),
            "fnr": c[1, 0] / c[1].sum(),
            "ppv": c[1, 1] / c[:, 1].sum(),
            "npv": c[1, 0] / c[:, 0].sum(),
            "dp": c[:, 1].sum() / c.sum(),
        }[metric]
        rates.append(rate)
    return float(rates[1] - rates[0])


def _random_true_joints(p_obs: np.ndarray, bias: str, D: float, rng: np.random.Generator, k: int) -> np.ndarray:
    """k true joints consistent with the observed joint and a bias of size ≤ D, built from the DAG's story."""
    out = []
    for _ in range(k):
        if bias == "selection":
            s = D * rng.random() ** 0.3
            q = rng.dirichlet(np.full(8, rng.choice([0.05, 0.3, 1.0])))
            out.append((1 - s) * p_obs + s * q)
            continue
        # flip mass z(cell) ≤ p_obs(cell), total ≤ D, concentrated on a random subset of cells
        z = rng.random(8) * (rng.random(8) < 0.5) * p_obs
        if z.sum() > D:
            z *= D / z.sum() * rng.random() ** 0.2
        p_true = p_obs.copy()
        for a, y, p in itertools.product((0, 1), repeat=3):
            j = 4 * a + 2 * y + p
            dest = 4 * a + 2 * (1 - y) + p if bias == "proxy_label" else 4 * (1 - a) + 2 * y + p
            p_true[j] -= z[j]
            p_true[dest] += z[j]
        out.append(p_true)
    return np.array(out)


@pytest.mark.parametrize(("bias", "metric"), COMBOS)
def test_bounds_collapse_at_zero_and_widen_monotonically(bias: str, metric: str) -> None:
    table = random_table(1)
    obs = observed_metric(table, metric)
    b0 = sensitivity_bounds(table, metric, bias, 0.0)
    assert b0.lower == b0.upper == pytest.approx(obs, abs=1e-15)
    tiny = sensitivity_bounds(table, metric, bias, 1e-9)
    assert tiny.lower == pytest.approx(obs, abs=1e-6) and tiny.upper == pytest.approx(obs, abs=1e-6)
    prev = b0
    for D in (0.01, 0.03, 0.08, 0.15, 0.3, 0.5):
        b = sensitivity_bounds(table, metric, bias, D)
        assert b.certified
        assert b.lower <= prev.lower + 1e-12 and b.upper >= prev.upper - 1e-12
        assert -1 - 1e-12 <= b.lower <= obs <= b.upper <= 1 + 1e-12
        prev = b
    if not (bias == "proxy_label" and metric == "dp"):  # label noise cannot move demographic parity
        assert prev.upper - prev.lower > 0.05


@pytest.mark.parametrize(("bias", "metric"), COMBOS)
def test_no_consistent_model_falls_outside_the_exact_bounds(bias: str, metric: str) -> None:
    """Validity: 3000 random true joints allowed by the bias (the DAG's own story) stay inside."""
    table = random_table(2)
    p_obs = joint_from_table(table)
    D = 0.12
    b = sensitivity_bounds(table, metric, bias, D)
    rng = np.random.default_rng(0)
    vals = [_true_metric(p, metric) for p in _random_true_joints(p_obs, bias, D, rng, 3000)]
    assert min(vals) >= b.lower - 1e-9
    assert max(vals) <= b.upper + 1e-9


@pytest.mark.parametrize(("bias", "metric"), COMBOS)
def test_exact_agrees_with_lp_and_local_is_never_wider(bias: str, metric: str) -> None:
    table = random_table(3)
    exact = sensitivity_bounds(table, metric, bias, 0.1)
    lp = sensitivity_bounds(table, metric, bias, 0.1, method="lp")
    local = sensitivity_bounds(table, metric, bias, 0.1, method="local")
    assert exact.certified
    assert lp.lower == pytest.approx(exact.lower, abs=1e-6)
    assert lp.upper == pytest.approx(exact.upper, abs=1e-6)
    assert local.lower >= exact.lower - 1e-7 and local.upper <= exact.upper + 1e-7
    if not (bias == "proxy_label" and metric == "dp"):
        assert not lp.certified and not local.certified


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("metric", ["fpr", "fnr", "ppv", "npv"])
@pytest.mark.parametrize("D", [0.02, 0.1, 0.4])
def test_proxy_label_single_group_rate_matches_charnes_cooper_lp(seed: int, metric: str, D: float) -> None:
    table = random_table(10 + seed, concentration=1.0)
    for group in (0, 1):
        exact = sensitivity_bounds(table, metric, "proxy_label", D, group=group)
        lp = sensitivity_bounds(table, metric, "proxy_label", D, group=group, method="lp")
        assert exact.certified and lp.certified
        assert lp.lower == pytest.approx(exact.lower, abs=1e-9)
        assert lp.upper == pytest.approx(exact.upper, abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("metric", METRICS)
def test_selection_closed_form_equals_vertex_enumeration(seed: int, metric: str) -> None:
    p_obs = joint_from_table(random_table(20 + seed, concentration=0.7))
    for D in (0.01, 0.2, 0.6, 0.95):
        lo, hi = selection_closed_form(p_obs, metric, D)
        prob = _Problem(p_obs, metric, "selection", D)
        assert prob.separable
        hi_enum = _max_rate_difference_separable(_group_types(prob, 1), _group_types(prob, 0), D)
        lo_enum = -_max_rate_difference_separable(_group_types(prob, 0), _group_types(prob, 1), D)
        assert hi == pytest.approx(hi_enum, abs=1e-12)
        assert lo == pytest.approx(lo_enum, abs=1e-12)


@pytest.mark.parametrize("bias", BIASES)
def test_breaking_point_is_where_the_bounds_first_reach_the_threshold(bias: str) -> None:
    table = random_table(4)
    metric = "dp" if bias != "proxy_label" else "fpr"
    obs = observed_metric(table, metric)
    d_star = breaking_point(table, metric, bias, threshold=0.0)
    assert 0 < d_star < 1
    at = sensitivity_bounds(table, metric, bias, d_star)
    before = sensitivity_bounds(table, metric, bias, d_star * 0.99)
    if obs > 0:
        assert at.lower <= 1e-6 and before.lower > 0
    else:
        assert at.upper >= -1e-6 and before.upper < 0


def test_breaking_point_edge_cases() -> None:
    table = random_table(4)
    assert breaking_point(table, "dp", "proxy_label") == math.inf  # label noise never moves DP
    obs = observed_metric(table, "fpr")
    assert breaking_point(table, "fpr", "selection", threshold=obs) == 0.0


def test_known_small_case_by_hand() -> None:
    """Selection, dp: group 1 has P(P=1) = 0.5 on mass 0.5, group 0 likewise; with D = 0.1 the upper bound
    puts x on (A=1, P=1) and 0.1 − x on (A=0, P=0); by symmetry x = 0.05."""
    rows = [{"A": a, "Y": y, "P": p, "prob": 0.125} for a, y, p in itertools.product((0, 1), repeat=3)]
    b = sensitivity_bounds(pd.DataFrame(rows), "dp", "selection", 0.1)
    expected = (0.225 + 0.05) / (0.45 + 0.05) - 0.225 / (0.45 + 0.05)
    assert b.upper == pytest.approx(expected, abs=1e-12)
    assert b.lower == pytest.approx(-expected, abs=1e-12)
    assert isinstance(b, Bounds) and b.certified and "closed form" in b.method


def test_table_validation() -> None:
    table = random_table(0)
    with pytest.raises(CausalStatsInputError, match="column 'prob' not in table"):
        sensitivity_bounds(table.drop(columns="prob"), "fpr", "selection", 0.1)
    bad = table.copy()
    bad.loc[0, "Y"] = 2
    with pytest.raises(CausalStatsInputError, match="column 'Y' must be binary"):
        sensitivity_bounds(bad, "fpr", "selection", 0.1)
    with pytest.raises(CausalStatsInputError, match="metric must be one of"):
        sensitivity_bounds(table, "auc", "selection", 0.1)
    with pytest.raises(CausalStatsInputError, match="bias must be one of"):
        sensitivity_bounds(table, "fpr", "measurement", 0.1)
    with pytest.raises(CausalStatsInputError, match="D must lie in"):
        sensitivity_bounds(table, "fpr", "selection", 1.0)
    empty_group = table[~((table.A == 1) & (table.Y == 0))]
    with pytest.raises(CausalStatsInputError, match="group A=1 has no mass"):
        sensitivity_bounds(empty_group, "fpr", "proxy_label", 0.1)
    counts = table.assign(prob=table.prob * 1000)  # counts are normalised
    assert sensitivity_bounds(counts, "ppv", "proxy_attribute", 0.05) == sensitivity_bounds(
        table, "ppv", "proxy_attribute", 0.05
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    probs=st.lists(st.floats(0.01, 1.0), min_size=8, max_size=8),
    D=st.floats(0.0, 0.9),
    bias=st.sampled_from(BIASES),
    metric=st.sampled_from(METRICS),
)
def test_property_bounds_contain_observed_and_are_nested(probs, D, bias, metric) -> None:
    cells = itertools.product((0, 1), repeat=3)
    rows = [{"A": a, "Y": y, "P": p, "prob": v} for (a, y, p), v in zip(cells, probs, strict=True)]
    table = pd.DataFrame(rows)
    b = sensitivity_bounds(table, metric, bias, D)
    wider = sensitivity_bounds(table, metric, bias, min(D + 0.05, 0.95))
    assert b.lower <= b.observed <= b.upper
    assert wider.lower <= b.lower + 1e-12 and wider.upper >= b.upper - 1e-12
