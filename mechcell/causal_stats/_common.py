"""Helpers shared by the tests: permutation p-values, treatment/group validation, seeded batching."""

from __future__ import annotations

from typing import Any

import numpy as np

from mechcell.causal_stats.results import CausalStatsInputError


def perm_p_value(observed: float, null: np.ndarray) -> float:
    """(1 + #{null ≥ observed}) / (1 + B): valid (super-uniform) for any B; ties count against us.

    A relative tolerance of 1e-12 makes the identity permutation's rounding noise count as a tie.
    """
    tol = 1e-12 * max(1.0, abs(observed))
    return float((1 + int(np.sum(null >= observed - tol))) / (1 + null.size))


def as_treatment(T: Any, n: int, name: str = "T") -> np.ndarray:
    """A binary treatment vector as float64 0/1, length n."""
    arr = np.asarray(T)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise CausalStatsInputError(f"{name} must be a 1-D array of length {n} (got shape {arr.shape})")
    if arr.dtype == bool:
        return arr.astype(np.float64)
    try:
        f = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise CausalStatsInputError(f"{name} must be binary 0/1 (got dtype {arr.dtype})") from exc
    bad = ~np.isin(f, (0.0, 1.0))
    if bad.any():
        raise CausalStatsInputError(f"{name} must be binary 0/1 (got {arr[bad][0]!r} at row {int(np.argmax(bad))})")
    return f


def group_codes(groups: Any, n: int, name: str = "groups") -> tuple[np.ndarray, np.ndarray]:
    """Integer codes 0..G−1 for a length-n label vector, and the labels themselves."""
    arr = np.asarray(groups)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise CausalStatsInputError(f"{name} must be a 1-D array of length {n} (got shape {arr.shape})")
    labels, codes = np.unique(arr, return_inverse=True)
    return codes.astype(np.int64), labels


def group_treatment(T: np.ndarray, codes: np.ndarray, labels: np.ndarray, name: str = "groups") -> np.ndarray:
    """The treatment of each group; raises if treatment varies inside a group (it must be assigned per unit)."""
    G = labels.size
    lo = np.full(G, np.inf)
    hi = np.full(G, -np.inf)
    np.minimum.at(lo, codes, T)
    np.maximum.at(hi, codes, T)
    mixed = np.flatnonzero(lo != hi)
    if mixed.size:
        raise CausalStatsInputError(
            f"treatment varies inside {name} {labels[mixed[0]]!r}: groups must be the unit treatment was "
            "assigned to (well, plate), with one arm per group"
        )
    return lo


def random_subsets(rng: np.random.Generator, n: int, k: int, size: int) -> np.ndarray:
    """`size` uniform random k-subsets of range(n) as a (size, n) 0/1 float matrix."""
    keys = rng.random((size, n))
    idx = np.argpartition(keys, k - 1, axis=1)[:, :k] if 0 < k < n else None
    out = np.zeros((size, n))
    if k == n:
        out[:] = 1.0
    elif idx is not None:
        np.put_along_axis(out, idx, 1.0, axis=1)
    return out
