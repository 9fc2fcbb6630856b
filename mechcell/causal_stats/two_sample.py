"""Kernel two-sample test (MMD, Gretton et al. 2012) with permutations at the unit of assignment.

Why this shape: the pooled Gram matrix is built once (O(n²)); a permutation only changes which rows are
"arm 1", and the unbiased MMD² is a function of u'K̃u and u'K̃1 for the arm-1 indicator u, so a batch of
permutations is one matrix product K̃ U — BLAS speed, no Python loop over pairs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mechcell.causal_stats._common import group_codes, group_treatment, perm_p_value, random_subsets
from mechcell.causal_stats.evalues import p_to_e
from mechcell.causal_stats.kernels import KernelFn, as_2d, make_kernel, resolve_bandwidth
from mechcell.causal_stats.results import CausalStatsInputError, TestResult

_CHUNK = 128  # permutations per matrix product: (n × 128) float64 blocks stay in cache-friendly sizes
MAX_ROWS = 25_000  # the pooled Gram matrix is n² float64: 25,000 rows = 5 GB


def _mmd2_unbiased(Kt: np.ndarray, rowsum: np.ndarray, total: float, U: np.ndarray) -> np.ndarray:
    """Unbiased MMD² for each column u of U (arm-1 indicators); Kt is K with a zero diagonal."""
    KU = Kt @ U
    q = np.einsum("ij,ij->j", U, KU)  # Σ_{i≠j ∈ arm 1} k
    r = rowsum @ U  # Σ_{i ∈ arm 1, j ≠ i} k
    n1 = U.sum(axis=0)
    n0 = Kt.shape[0] - n1
    within1 = q / (n1 * (n1 - 1.0))
    within0 = (total - 2.0 * r + q) / (n0 * (n0 - 1.0))
    between = (r - q) / (n0 * n1)
    return within1 + within0 - 2.0 * between


def _split_groups(groups: Any, n0: int, n1: int) -> np.ndarray:
    """Accept one label vector over [Y0; Y1] or a pair (groups of Y0, groups of Y1)."""
    if isinstance(groups, tuple | list) and len(groups) == 2 and not np.isscalar(groups[0]):
        g0, g1 = (np.asarray(g) for g in groups)
        if g0.shape != (n0,) or g1.shape != (n1,):
            raise CausalStatsInputError(f"groups as a pair must have lengths ({n0}, {n1}) (got {g0.shape}, {g1.shape})")
        return np.concatenate([g0.astype(object), g1.astype(object)]).astype(str)
    return np.asarray(groups)


def kernel_two_sample_test(
    Y0: Any,
    Y1: Any,
    *,
    kernel: str | KernelFn = "rbf",
    bandwidth: float | str = "median",
    n_permutations: int = 1000,
    groups: Any = None,
    seed: int = 0,
) -> TestResult:
    """Test H0: Y0 and Y1 come from one distribution, by the unbiased MMD² and a permutation null.

    Y0 (n0, d), Y1 (n1, d): outcomes of the two arms (1-D arrays are one feature).
    groups: the unit treatment was assigned to (well, plate) for every row of [Y0; Y1] (or a pair of
    label arrays); permutations then move whole groups, which keeps size when cells of a well share a
    well effect. Bandwidth "median" = median pairwise distance of the pooled sample.
    """
    A = as_2d(Y0, "Y0")
    B = as_2d(Y1, "Y1")
    if A.shape[1] != B.shape[1]:
        raise CausalStatsInputError(f"Y0 and Y1 must have the same number of features ({A.shape[1]} vs {B.shape[1]})")
    n0, n1 = A.shape[0], B.shape[0]
    if n0 < 2 or n1 < 2:
        raise CausalStatsInputError(f"each arm needs at least 2 rows (got n0={n0}, n1={n1})")
    if int(n_permutations) < 1:
        raise CausalStatsInputError(f"n_permutations must be ≥ 1 (got {n_permutations!r})")
    B_perm = int(n_permutations)
    Z = np.vstack([A, B])
    n = n0 + n1
    if n > MAX_ROWS:
        raise CausalStatsInputError(
            f"{n} rows need a {n}² Gram matrix; subsample to ≤ {MAX_ROWS} rows or aggregate cells per well first"
        )
    h = resolve_bandwidth(bandwidth, Z, seed=seed) if not callable(kernel) else float("nan")
    K = make_kernel(kernel, h)(Z, Z)
    if K.shape != (n, n):
        raise CausalStatsInputError(f"kernel returned shape {K.shape}, expected ({n}, {n})")
    np.fill_diagonal(K, 0.0)
    rowsum = K.sum(axis=1)
    total = float(rowsum.sum())
    u_obs = np.concatenate([np.zeros(n0), np.ones(n1)])[:, None]
    observed = float(_mmd2_unbiased(K, rowsum, total, u_obs)[0])

    rng = np.random.default_rng(seed)
    diagnostics: dict[str, Any] = {"n0": n0, "n1": n1, "kernel": kernel if isinstance(kernel, str) else "callable"}
    diagnostics["bandwidth"] = h
    if groups is None:
        unit = "cell"

        def draw(size: int) -> np.ndarray:
            return random_subsets(rng, n, n1, size).T

    else:
        unit = "group"
        labels_all = _split_groups(groups, n0, n1)
        codes, labels = group_codes(labels_all, n, "groups")
        g_arm = group_treatment(u_obs[:, 0], codes, labels)
        G, G1 = labels.size, int(g_arm.sum())
        if G1 < 1 or G - G1 < 1:
            raise CausalStatsInputError("groups: each arm needs at least one group")
        diagnostics.update(n_groups=G, n_groups1=G1, n_distinct_assignments=float(math.comb(G, G1)))
        if math.comb(G, G1) < 20:
            diagnostics["warning"] = (
                f"only {math.comb(G, G1)} distinct group assignments: the smallest attainable p-value is large"
            )

        def draw(size: int) -> np.ndarray:
            return random_subsets(rng, G, G1, size)[:, codes].T

    null = np.empty(B_perm)
    for start in range(0, B_perm, _CHUNK):
        stop = min(B_perm, start + _CHUNK)
        U = draw(stop - start)
        n1s = U.sum(axis=0)
        if np.any(n1s < 2) or np.any(n - n1s < 2):
            raise CausalStatsInputError("groups: a permutation left an arm with fewer than 2 rows; use more groups")
        null[start:stop] = _mmd2_unbiased(K, rowsum, total, U)
    p = perm_p_value(observed, null)
    diagnostics.update(n_permutations=B_perm, unit=unit, null_mean=float(null.mean()), null_sd=float(null.std()))
    return TestResult(
        statistic=observed,
        p_value=p,
        e_value=p_to_e(p),
        null=f"Y0 and Y1 have the same distribution (unbiased MMD², permutation of whole {unit}s)",
        n=n,
        diagnostics=diagnostics,
    )
