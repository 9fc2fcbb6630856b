"""Simulated worlds with known truth, for the size/power checks of the tests in this package.

Why here (not in tests/): the fast tests and the long calibration script must draw from the *same*
worlds, so their figures are comparable. Each generator documents its null and its unit of assignment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import expit

Effect = Literal["null", "mean", "pm"]


@dataclass(frozen=True)
class DRWorld:
    """One observational dataset: covariates X (n, 2), treatment T, outcome Y (n, 1), true e(X)."""

    X: np.ndarray
    T: np.ndarray
    Y: np.ndarray
    propensity: np.ndarray
    groups: np.ndarray | None


def simulate_dr(
    n: int,
    *,
    effect: Effect = "null",
    b: float = 1.0,
    confounding: float = 1.0,
    noise: float = 0.5,
    n_groups: int | None = None,
    group_sd: float = 0.5,
    seed: int = 0,
) -> DRWorld:
    """Confounded assignment: e(x) = expit(confounding · x₁), Y(0) = x₁ + 1.5 tanh(x₂) + noise·ε
    (x₂ is prognostic only, as library size or cell cycle are for expression).

    effect="null": Y(1) = Y(0) ± b (a real ±b effect), but each unit's observed Y is a fair coin-flip
    between its two potential outcomes, independent of T — so Y ⟂ T | X holds while Y still depends on X
    (a naive two-sample test rejects). "mean": Y(1) = Y(0) + b. "pm": Y(1) = Y(0) + b·S, S = ±1 w.p. ½
    (mean zero: invisible to ATE tests). With n_groups, treatment and x₁ are per group (well), cells
    share a group effect N(0, group_sd²), and the null's coin is flipped per group.
    """
    rng = np.random.default_rng(seed)
    if n_groups is None:
        x1 = rng.standard_normal(n)
        unit = np.arange(n)
        n_units = n
    else:
        unit = np.sort(rng.integers(0, n_groups, n))
        unit[:n_groups] = np.arange(n_groups)  # every group has at least one cell
        unit = np.sort(unit)
        n_units = n_groups
        x1 = rng.standard_normal(n_units)[unit]
    x2 = rng.standard_normal(n)
    X = np.column_stack([x1, x2])
    e_unit = expit(confounding * np.bincount(unit, weights=x1) / np.bincount(unit))
    T_unit = (rng.random(n_units) < e_unit).astype(np.float64)
    T = T_unit[unit]
    u = rng.standard_normal(n_units)[unit] * group_sd if n_groups is not None else 0.0
    y0 = x1 + 1.5 * np.tanh(x2) + u + noise * rng.standard_normal(n)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    y1 = y0 + b if effect == "mean" else y0 + b * sign
    if effect == "null":
        coin = (rng.random(n_units) < 0.5)[unit]
        y = np.where(coin, y1, y0)
    elif effect in ("mean", "pm"):
        y = np.where(T == 1, y1, y0)
    else:
        raise ValueError(f"effect must be 'null', 'mean' or 'pm' (got {effect!r})")
    return DRWorld(
        X=X,
        T=T,
        Y=y[:, None],
        propensity=e_unit[unit],
        groups=unit if n_groups is not None else None,
    )
