"""Kernels on plain float64 arrays: Gram matrices, the median-heuristic bandwidth, random Fourier features.

Why one module: the two-sample, doubly robust and gap tests must agree on what "rbf with median
bandwidth" means, so a p-value from one is comparable to another.
Convention: rbf k(x, y) = exp(−‖x − y‖² / (2 h²)), laplace k(x, y) = exp(−‖x − y‖ / h), h = bandwidth.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mechcell.causal_stats.results import CausalStatsInputError

KernelFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
KERNELS = ("rbf", "laplace", "linear")


def as_2d(a: Any, name: str) -> np.ndarray:
    """Coerce to a finite float64 (n, d) array; a 1-D array is one column."""
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CausalStatsInputError(f"{name} must be numeric (got {type(a).__name__}): {exc}") from exc
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise CausalStatsInputError(f"{name} must be 1-D or 2-D (got shape {arr.shape})")
    if arr.shape[0] == 0:
        raise CausalStatsInputError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        bad = int(np.argwhere(~np.isfinite(arr))[0, 0])
        raise CausalStatsInputError(f"{name} has a non-finite value (first at row {bad})")
    return arr


def sq_dists(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (n_A, n_B), clipped at 0 against rounding."""
    d = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * (A @ B.T)
    np.maximum(d, 0.0, out=d)
    return d


def median_bandwidth(Z: np.ndarray, *, max_points: int = 2000, seed: int = 0) -> float:
    """Median of the off-diagonal pairwise distances (on a seeded subsample of `max_points` rows).

    Falls back to the median positive distance when over half the pairs coincide (zero-inflated
    expression), and to 1.0 when all points coincide, so the kernel never degenerates.
    """
    Z = np.asarray(Z, dtype=np.float64)
    if Z.shape[0] > max_points:
        idx = np.random.default_rng(seed).choice(Z.shape[0], size=max_points, replace=False)
        Z = Z[idx]
    n = Z.shape[0]
    if n < 2:
        return 1.0
    d = np.sqrt(sq_dists(Z, Z)[np.triu_indices(n, k=1)])
    med = float(np.median(d))
    if med <= 0.0:
        pos = d[d > 0]
        med = float(np.median(pos)) if pos.size else 1.0
    return med


def resolve_bandwidth(bandwidth: float | str, Z: np.ndarray, *, seed: int = 0, name: str = "bandwidth") -> float:
    """`"median"` → median heuristic on Z; a positive number is used as given."""
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise CausalStatsInputError(f"{name} must be 'median' or a positive number (got {bandwidth!r})")
        return median_bandwidth(Z, seed=seed)
    h = float(bandwidth)
    if not np.isfinite(h) or h <= 0:
        raise CausalStatsInputError(f"{name} must be positive (got {bandwidth!r})")
    return h


def make_kernel(kernel: str | KernelFn, bandwidth: float) -> KernelFn:
    """A function (A, B) → Gram matrix for a named kernel, or the user's callable unchanged."""
    if callable(kernel):
        return kernel
    h = float(bandwidth)
    if kernel == "rbf":
        return lambda A, B: np.exp(-sq_dists(A, B) / (2.0 * h * h))
    if kernel == "laplace":
        return lambda A, B: np.exp(-np.sqrt(sq_dists(A, B)) / h)
    if kernel == "linear":
        return lambda A, B: A @ B.T
    raise CausalStatsInputError(f"kernel must be one of {KERNELS} or a callable (got {kernel!r})")


def rff_sampler(
    kernel: str, dim: int, *, bandwidth: float, n_features: int, seed: int
) -> Callable[[np.ndarray], np.ndarray]:
    """Random Fourier features z(x) with z(x)·z(y) ≈ k(x, y) (Rahimi & Recht); O(n D) to apply.

    rbf: frequencies N(0, I/h²); laplace: independent Cauchy(0, 1/h) per coordinate.
    """
    if kernel not in ("rbf", "laplace"):
        raise CausalStatsInputError(f"approx='rff' needs kernel 'rbf' or 'laplace' (got {kernel!r})")
    rng = np.random.default_rng(seed)
    if kernel == "rbf":
        W = rng.standard_normal((dim, n_features)) / bandwidth
    else:
        W = rng.standard_cauchy((dim, n_features)) / bandwidth
    b = rng.uniform(0.0, 2.0 * np.pi, n_features)
    scale = np.sqrt(2.0 / n_features)

    def features(Z: np.ndarray) -> np.ndarray:
        return scale * np.cos(Z @ W + b)

    return features
