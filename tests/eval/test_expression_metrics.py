"""Expression metrics (cell-eval definitions) and their uncertainty, checked against independent computations and
by simulation (coverage, size, power) — never by eyeballing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mechcell.errors import InputError
from mechcell.eval.expression import (
    METRICS,
    bootstrap_ci,
    de_overlap_at_n,
    direction_accuracy,
    evaluate_predictions,
    mae,
    paired_margin,
    pearson_delta,
    real_de_mask,
)


def test_pearson_delta_and_mae_match_scipy_and_numpy_per_condition() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(6, 40))
    pred = 0.5 * real + rng.normal(size=(6, 40))
    got = pearson_delta(pred, real)
    want = [stats.pearsonr(pred[i], real[i])[0] for i in range(6)]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(mae(pred, real), np.abs(pred - real).mean(axis=1), rtol=0, atol=1e-15)
    # one condition as 1-D arrays gives a float; a perfect prediction scores 1 and 0
    assert isinstance(pearson_delta(pred[0], real[0]), float)
    assert pearson_delta(real[1], real[1]) == pytest.approx(1.0)
    assert mae(real[1], real[1]) == 0.0
    # a constant prediction (the control mean: delta ≡ 0) has no correlation, as scipy gives cell-eval
    assert math.isnan(pearson_delta(np.zeros(40), real[0]))


def test_de_overlap_follows_cell_eval_compute_overlap() -> None:
    """Hand example. Real DE (padj < 0.05): genes 0, 1, 2, 3 with |delta| 4 > 3 > 2 > 1 (gene 4 is large but not
    significant). N = 2: real top-2 = {0, 1}; predicted top-2 by |pred| = {0, 4} → overlap 1/2. N = 10: k_eff =
    min(10, 4 real DE) = 4, real = {0, 1, 2, 3}, predicted top-4 = {0, 4, 2, 5} → 2/4."""
    real = np.array([4.0, -3.0, 2.0, -1.0, 9.0, 0.1, 0.0, 0.0])
    padj = np.array([0.01, 0.01, 0.02, 0.04, 0.5, 0.9, np.nan, 1.0])
    pred = np.array([5.0, 0.1, 3.0, 0.0, -6.0, 2.5, 0.0, 0.0])
    assert de_overlap_at_n(pred, real, n=2, real_padj=padj) == pytest.approx(0.5)
    assert de_overlap_at_n(pred, real, n=10, real_padj=padj) == pytest.approx(0.5)
    # without p-values the real set is the top-N by |real delta|: {4, 0} vs predicted {4, 0}
    assert de_overlap_at_n(pred, real, n=2) == pytest.approx(1.0)
    # the control mean predicts nothing; no real DE gene makes the metric undefined
    assert de_overlap_at_n(np.zeros(8), real, n=2, real_padj=padj) == 0.0
    assert math.isnan(de_overlap_at_n(pred, real, n=2, real_padj=np.ones(8)))
    with pytest.raises(InputError):
        de_overlap_at_n(pred, real, n=0)


def test_direction_accuracy_follows_cell_eval_direction_match() -> None:
    """Share of real DE genes (padj < 0.05) whose predicted sign equals the real one; a zero prediction matches
    nothing. Genes 0–3 are DE: predicted signs + (right), + (wrong), + (right), 0 (wrong) → 2/4."""
    real = np.array([4.0, -3.0, 2.0, -1.0, 9.0])
    padj = np.array([0.01, 0.01, 0.02, 0.04, 0.5])
    pred = np.array([5.0, 0.1, 3.0, 0.0, -6.0])
    assert direction_accuracy(pred, real, real_padj=padj) == pytest.approx(0.5)
    assert direction_accuracy(real, real, real_padj=padj) == 1.0
    assert math.isnan(direction_accuracy(pred, real, real_padj=np.ones(5)))
    assert real_de_mask(real, padj).tolist() == [True, True, True, True, False]


def test_bad_shapes_and_non_finite_values_are_input_errors() -> None:
    with pytest.raises(InputError, match="same shape"):
        pearson_delta(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(InputError, match="NaN"):
        mae(np.array([np.nan, 1.0]), np.array([0.0, 1.0]))
    with pytest.raises(InputError, match="groups"):
        bootstrap_ci([1.0, 2.0], groups=["a"])


def test_evaluate_predictions_summarises_every_metric_and_counts_undefined_conditions() -> None:
    rng = np.random.default_rng(1)
    real = rng.normal(size=(10, 30))
    padj = np.where(np.abs(real) > 1.5, 0.01, 0.5)
    padj[0] = 0.9  # condition 0 has no real DE gene
    ev = evaluate_predictions(real + rng.normal(scale=0.3, size=real.shape), real, real_padj=padj, n_de=5)
    assert set(ev.summaries) == set(METRICS) and ev.de_source == "padj"
    assert ev.summaries["de_overlap_at_n"].n_nan == 1 and ev.values["de_overlap_at_n"][0] is None
    assert ev.summaries["pearson_delta"].n == 10 and ev.summaries["pearson_delta"].mean > 0.8
    s = ev.summaries["mae"]
    assert s.ci_low <= s.mean <= s.ci_high


def _coverage(n_sims: int, sampler, groups, seed: int, **kw) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for i in range(n_sims):
        v = sampler(rng)
        _, lo, hi = bootstrap_ci(v, groups=groups, n_boot=1000, seed=i, **kw)
        hits += lo <= 0.0 <= hi
    return hits / n_sims


def test_bootstrap_ci_covers_the_mean_at_its_level() -> None:
    """Size of the CI: iid normal values with true mean 0, n = 40 (unit: the condition). Over 400 simulated data
    sets the 95% percentile interval covers 0 in 0.91–0.98 of them (percentile intervals run slightly short at
    n = 40; the binomial SE at 400 runs is 0.011)."""
    cov = _coverage(400, lambda r: r.normal(size=40), None, seed=2)
    assert 0.91 <= cov <= 0.98, cov


def test_cluster_bootstrap_keeps_coverage_where_the_naive_one_fails() -> None:
    """Conditions of one drug share a drug effect (ICC 0.5): 20 drugs × 4 conditions, true mean 0. Resampling
    drugs (the unit of exchangeability) covers ≥ 0.88; resampling conditions as if independent covers ≤ 0.85
    (its interval ignores the shared drug effect) — the reason every figure resamples drugs."""
    groups = np.repeat(np.arange(20), 4)

    def draw(r: np.random.Generator) -> np.ndarray:
        return np.repeat(r.normal(size=20), 4) + r.normal(size=80)

    clustered = _coverage(300, draw, groups, seed=3)
    naive = _coverage(300, draw, None, seed=3)
    assert clustered >= 0.88, clustered
    assert naive <= 0.85, naive
    assert clustered - naive >= 0.08


def test_paired_margin_has_its_size_under_the_null_and_power_against_a_real_gain() -> None:
    """Null: model and reference scores are exchangeable within each condition (paired, shared condition
    difficulty), 30 conditions. The 95% margin CI excludes 0 in ≤ 9% of 300 runs (nominal 5%). Alternative: the
    model gains 0.2 per condition on average; the paired difference has SD 0.2·√2, so SE 0.052 and z ≈ 3.9 —
    expected power ≈ 0.97; the CI must exclude 0 in ≥ 90% of runs. The margin of mae is signed so that a lower
    error counts as a gain."""
    rng = np.random.default_rng(4)
    rej_null = rej_alt = 0
    for i in range(300):
        difficulty = rng.normal(size=30)
        ref = difficulty + rng.normal(scale=0.2, size=30)
        null = difficulty + rng.normal(scale=0.2, size=30)
        alt = difficulty + 0.2 + rng.normal(scale=0.2, size=30)
        m0 = paired_margin("pearson_delta", null, ref, n_boot=1000, seed=i)
        m1 = paired_margin("pearson_delta", alt, ref, n_boot=1000, seed=i)
        rej_null += not (m0.ci_low <= 0.0 <= m0.ci_high)
        rej_alt += m1.ci_low > 0.0
    assert rej_null / 300 <= 0.09, rej_null
    assert rej_alt / 300 >= 0.90, rej_alt
    lower_error = paired_margin("mae", np.full(5, 1.0), np.full(5, 2.0))
    assert lower_error.margin == pytest.approx(1.0) and lower_error.win_rate == 1.0
