"""p → e calibrators and multiple-testing aggregation (BH on p-values, e-BH on e-values).

Why e-values: the product of e-values of tests run one after another (each valid given the past) is again
an e-value, so a sequential falsification loop can stop whenever it likes and still keep type-I error ≤ α
by rejecting when the product reaches 1/α (Ville's inequality). Mean of e-values is valid under any
dependence; e-BH controls FDR under any dependence as well.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, overload

import numpy as np

from mechcell.causal_stats.results import CausalStatsInputError


def _as_p(p: Any, name: str = "p") -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    if arr.size and (np.any(~np.isfinite(arr)) or np.any(arr < 0) or np.any(arr > 1)):
        bad = arr[~((arr >= 0) & (arr <= 1))].ravel()[0]
        raise CausalStatsInputError(f"{name} values must lie in [0, 1] (got {bad!r})")
    return arr


@overload
def p_to_e(p: float, *, method: Literal["integral", "kappa"] = ..., kappa: float = ...) -> float: ...
@overload
def p_to_e(p: np.ndarray, *, method: Literal["integral", "kappa"] = ..., kappa: float = ...) -> np.ndarray: ...
def p_to_e(p: Any, *, method: Literal["integral", "kappa"] = "integral", kappa: float = 0.5) -> Any:
    """Calibrate a p-value into an e-value: E[e(P)] ≤ 1 whenever P is (super-)uniform under the null.

    `kappa`: e = κ p^(κ−1), κ ∈ (0, 1). `integral` (default): the same averaged over κ ∈ (0, 1),
    e = (1 − p + p ln p) / (p (ln p)²) — no κ to choose, e(1) = 1/2, grows like 1/(p ln² p) as p → 0.
    """
    arr = _as_p(p)
    scalar = arr.ndim == 0
    arr = np.atleast_1d(arr)
    if method == "kappa":
        if not 0.0 < kappa < 1.0:
            raise CausalStatsInputError(f"kappa must lie in (0, 1) (got {kappa!r})")
        with np.errstate(divide="ignore"):
            e = kappa * np.power(arr, kappa - 1.0)
    elif method == "integral":
        e = np.empty_like(arr)
        eps = 1.0 - arr
        near_one = eps < 1e-4  # cancellation in 1 − p + p ln p: use the series 1/2 + ε/6 + O(ε²)
        e[near_one] = 0.5 + eps[near_one] / 6.0
        zero = arr == 0.0
        e[zero] = np.inf
        mid = ~near_one & ~zero
        q = arr[mid]
        lq = np.log(q)
        e[mid] = (1.0 - q + q * lq) / (q * lq * lq)
    else:
        raise CausalStatsInputError(f"method must be 'integral' or 'kappa' (got {method!r})")
    return float(e[0]) if scalar else e


def combine_e(
    e_values: Iterable[float] | np.ndarray,
    *,
    method: Literal["product", "mean"] = "product",
    weights: Iterable[float] | None = None,
) -> float:
    """Merge e-values into one.

    `product`: for tests run one after another, each an e-value given the previous data (sequential
    falsification); `mean` (optionally weighted, weights summing to 1): valid under arbitrary dependence.
    """
    e = np.asarray(list(e_values) if not isinstance(e_values, np.ndarray) else e_values, dtype=np.float64)
    if e.size == 0:
        return 1.0
    if np.any(np.isnan(e)) or np.any(e < 0):
        raise CausalStatsInputError("e_values must be non-negative numbers")
    if method == "product":
        with np.errstate(over="ignore"):
            return float(np.exp(np.sum(np.log(e)))) if np.all(e > 0) else 0.0
    if method == "mean":
        if weights is None:
            return float(e.mean())
        w = np.asarray(list(weights), dtype=np.float64)
        if w.shape != e.shape or np.any(w < 0) or abs(w.sum() - 1.0) > 1e-9:
            raise CausalStatsInputError("weights must be non-negative, one per e-value, summing to 1")
        return float(w @ e)
    raise CausalStatsInputError(f"method must be 'product' or 'mean' (got {method!r})")


def bh_adjust(p: Iterable[float] | np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values): reject H_i at level α iff q_i ≤ α."""
    arr = _as_p(np.asarray(list(p) if not isinstance(p, np.ndarray) else p))
    m = arr.size
    if m == 0:
        return arr.astype(np.float64)
    order = np.argsort(arr, kind="stable")
    scaled = arr[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    q = np.empty(m)
    q[order] = q_sorted
    return q


def benjamini_hochberg(p: Iterable[float] | np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """Boolean mask of hypotheses rejected by BH at FDR level α (independent or PRDS p-values)."""
    if not 0.0 < alpha < 1.0:
        raise CausalStatsInputError(f"alpha must lie in (0, 1) (got {alpha!r})")
    return bh_adjust(p) <= alpha


def e_bh(e: Iterable[float] | np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """Boolean mask rejected by e-BH (Wang & Ramdas 2022): the k* largest e-values, where
    k* = max{k : e_(k) ≥ m / (α k)}. Controls FDR ≤ α under arbitrary dependence."""
    if not 0.0 < alpha < 1.0:
        raise CausalStatsInputError(f"alpha must lie in (0, 1) (got {alpha!r})")
    arr = np.asarray(list(e) if not isinstance(e, np.ndarray) else e, dtype=np.float64)
    if np.any(np.isnan(arr)) or np.any(arr < 0):
        raise CausalStatsInputError("e-values must be non-negative numbers")
    m = arr.size
    out = np.zeros(m, dtype=bool)
    if m == 0:
        return out
    order = np.argsort(-arr, kind="stable")
    ks = np.arange(1, m + 1)
    ok = arr[order] >= m / (alpha * ks)
    if ok.any():
        k_star = int(ks[ok].max())
        out[order[:k_star]] = True
    return out
