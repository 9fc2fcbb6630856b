"""Shared fixtures of the causal-statistics tests.

The matrices here are small (≤ 300 × 300): one BLAS thread is faster than two fighting over a busy CI
machine, so the simulation-heavy tests pin BLAS to one thread when threadpoolctl is available.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - threadpoolctl arrives with the dev extras (scikit-learn)
    threadpool_limits = None


@pytest.fixture(autouse=True)
def _one_blas_thread() -> Iterator[None]:
    if threadpool_limits is None:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
