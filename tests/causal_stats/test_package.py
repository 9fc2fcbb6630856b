"""The package contract: the public names, and that it imports nothing else of mechcell."""

from __future__ import annotations

import subprocess
import sys

import mechcell.causal_stats as cs

REQUIRED = {
    "TestResult", "kernel_two_sample_test", "dr_kernel_test", "sensitivity_bounds", "breaking_point",
    "gap_intervals", "falsify_gap", "p_to_e", "combine_e", "benjamini_hochberg", "e_bh",
}  # fmt: skip


def test_public_api_is_exported() -> None:
    assert set(cs.__all__) >= REQUIRED
    for name in cs.__all__:
        assert hasattr(cs, name)


def test_imports_nothing_else_of_mechcell() -> None:
    code = (
        "import sys, mechcell.causal_stats, mechcell.causal_stats.simulate; "
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('mechcell'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    others = [m for m in out if m != "mechcell" and not m.startswith("mechcell.causal_stats")]
    assert others == [], others


def test_test_result_is_json_ready_even_from_numpy_values() -> None:
    import json

    import numpy as np

    res = cs.TestResult(statistic=np.float64(1.5), p_value=np.float32(0.25), e_value=1.0, null="x", n=np.int64(7),
                        diagnostics={"a": np.arange(3), "b": {"c": np.bool_(True)}, 4: (np.float64(2.0),)})  # fmt: skip
    assert type(res.statistic) is float and type(res.n) is int
    assert json.loads(json.dumps(res.model_dump())) == {
        "statistic": 1.5, "p_value": 0.25, "e_value": 1.0, "null": "x", "n": 7,
        "diagnostics": {"a": [0, 1, 2], "b": {"c": True}, "4": [2.0]},
    }  # fmt: skip
