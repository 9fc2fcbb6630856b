"""How sure we are: kernel two-sample and doubly robust kernel tests, sensitivity bounds,
obs/exp falsification with GP gap intervals, and p → e-values with their aggregation.

Imports nothing else of mechcell and works on plain numpy arrays / pandas tables, so it is useful on its
own. Method notes: ../shared/methods/causal_stats.md. Every test returns a `TestResult` (statistic,
p-value, e-value, its null in words, n, JSON-ready diagnostics).
"""

from mechcell.causal_stats.dr import dr_kernel_test
from mechcell.causal_stats.evalues import benjamini_hochberg, combine_e, e_bh, p_to_e
from mechcell.causal_stats.gap import falsify_gap, gap_intervals
from mechcell.causal_stats.results import Bounds, CausalStatsInputError, GapIntervals, TestResult
from mechcell.causal_stats.sensitivity import breaking_point, sensitivity_bounds
from mechcell.causal_stats.two_sample import kernel_two_sample_test

__all__ = [
    "TestResult",
    "kernel_two_sample_test",
    "dr_kernel_test",
    "sensitivity_bounds",
    "breaking_point",
    "gap_intervals",
    "falsify_gap",
    "p_to_e",
    "combine_e",
    "benjamini_hochberg",
    "e_bh",
    # the result and error types the functions above return or raise
    "Bounds",
    "GapIntervals",
    "CausalStatsInputError",
]
