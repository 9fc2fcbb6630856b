"""Helpers of the causal-statistics tests: binomial tolerances (so fixed-seed simulations cannot flake
and still fail on a real size or power defect) and random observed tables."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy.stats import binom


def max_rejections(n_reps: int, alpha: float = 0.05, level: float = 0.999) -> int:
    """Largest rejection count a size-α test produces with probability `level` (one-sided binomial)."""
    return int(binom.ppf(level, n_reps, alpha))


def min_rejections(n_reps: int, power: float, level: float = 0.999) -> int:
    """Smallest rejection count a test of the stated power produces with probability `level`."""
    return int(binom.ppf(1 - level, n_reps, power))


def random_table(seed: int, concentration: float = 3.0) -> pd.DataFrame:
    """A random observed joint of binary (A, Y, P) with every cell positive."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(8, concentration))
    rows = [
        {"A": a, "Y": y, "P": p, "prob": float(v)}
        for (a, y, p), v in zip(itertools.product((0, 1), repeat=3), probs, strict=True)
    ]
    return pd.DataFrame(rows)
