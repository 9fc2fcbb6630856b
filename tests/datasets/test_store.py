"""The project DuckDB store: idempotent schema, dataset + condition registration, signature round trips,
atomic writes (a failed write leaves what was there), and one writer per file."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest

from mechcell.datasets import Condition, Signature, Store, open_dataset
from mechcell.datasets.perturbation import ConditionSummary
from mechcell.datasets.store import STORE_SCHEMA_VERSION, StoreError
from mechcell.errors import InputError, NotFoundError


def _sig(key: str = "A|1uM|L1|p1", method: str = "wilcoxon", n: int = 5, seed: int = 0) -> Signature:
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=n)
    p[1] = np.nan
    return Signature(
        condition=Condition.from_key(key),
        method=method,
        params={"tie_correct": True, "x": [1, 2]},
        n_treated=12,
        n_control=30,
        genes=[f"g{i}" for i in range(n)],
        log2fc=rng.normal(size=n).tolist(),
        pvalue=p.tolist(),
        padj=np.minimum(p * 2, 1).tolist(),
        stat=rng.normal(size=n).tolist(),
    )


def test_schema_is_created_once_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "m.duckdb"
    with Store(path) as st:
        assert st.schema_version == STORE_SCHEMA_VERSION
        assert {"schema_version", "datasets", "conditions", "signatures"} <= set(st.tables())
    with Store(path) as st:  # reopening applies nothing twice
        n = st.con.execute("SELECT count(*) FROM schema_version").fetchone()[0]
        assert n == STORE_SCHEMA_VERSION
    with Store(path, read_only=True) as ro:
        assert ro.schema_version == STORE_SCHEMA_VERSION
        with pytest.raises(StoreError, match="read-only"):
            ro.put_signature(_sig())
    with pytest.raises(NotFoundError, match="does not exist"):
        Store(tmp_path / "nope.duckdb", read_only=True)


def test_signature_round_trip_replace_and_nan(tmp_path: Path) -> None:
    with Store(tmp_path / "m.duckdb") as st:
        s = _sig()
        st.put_signature(s, dataset_id="ds1")
        got = st.signature(s.condition.key, "wilcoxon")
        assert got.genes == s.genes and got.params == s.params and got.method == "wilcoxon"
        np.testing.assert_allclose(got.log2fc, s.log2fc)
        assert math.isnan(got.pvalue[1]) and math.isnan(got.padj[1])
        assert (got.n_treated, got.n_control) == (12, 30)
        # same dataset, condition and method: replaced, not duplicated
        st.put_signature(_sig(seed=1), dataset_id="ds1")
        rows = st.con.execute("SELECT count(*) FROM signatures").fetchone()[0]
        assert rows == 5
        np.testing.assert_allclose(st.signature(s.condition.key).log2fc, _sig(seed=1).log2fc)
        with pytest.raises(NotFoundError, match="stored methods: wilcoxon"):
            st.signature(s.condition.key, "welch_t")
        st.put_signature(_sig(), dataset_id="ds2")
        with pytest.raises(InputError, match="several datasets"):
            st.signature(s.condition.key)
        assert st.signature(s.condition.key, dataset_id="ds2").genes == s.genes


def test_register_dataset_and_filter_conditions(toy_world, tmp_path: Path) -> None:
    with open_dataset(toy_world.root) as ds, Store(tmp_path / "m.duckdb") as st:
        did = st.register(ds)
        assert st.register(ds) == did  # idempotent: same data + schema → same id, conditions replaced
        rec = st.dataset(did)
        assert rec.layout == "tahoe" and rec.perturbation_schema == ds.schema and rec.n_cells == ds.n_cells
        assert len(st.conditions()) == 12
        c = st.conditions(perturbation="Trametinib ", batch="plate1")  # names compared stripped
        assert {x.key for x in c} == {"Trametinib|0.05uM|CVCL_0023|plate1", "Trametinib|0.05uM|CVCL_1055|plate1"}
        assert st.conditions(dose=5.0, context="CVCL_0023")[0].dose == 5.0
        s = st.find_condition("Trametinib|0.05uM|CVCL_0023|plate1")
        assert s.summary == ds.summary("Trametinib|0.05uM|CVCL_0023|plate1") and s.condition.context_name == "A549"
        with pytest.raises(NotFoundError, match="same perturbation"):
            st.find_condition("Trametinib|1uM|CVCL_0023|plate1")
        reopened = st.open(did)  # the stored path, schema and reader options reopen the same dataset
        assert [x.key for x in reopened.summaries()] == [x.key for x in ds.summaries()]
        reopened.close()


def test_a_failed_write_leaves_the_previous_state(tmp_path: Path) -> None:
    """Re-registering with a duplicate condition key violates the primary key inside the transaction: the
    earlier dataset row and its conditions must survive untouched (no partial rows)."""
    cond = Condition(perturbation="A", dose=1.0, dose_unit="uM", context="L1", batch="p1")
    ok = [ConditionSummary(condition=cond, n_cells=5, n_control_cells=9)]
    with Store(tmp_path / "m.duckdb") as st:
        did = st.register_dataset("x.h5ad", "h5ad", summaries=ok, n_cells=14)
        with pytest.raises((StoreError, duckdb.Error)):
            st.register_dataset("x.h5ad", "h5ad", summaries=ok * 2, n_cells=99)
        assert st.dataset(did).n_cells == 14
        assert [c.summary for c in st.condition_summaries()] == ok


_CRASH = """
import sys, time
from mechcell.datasets import Store
st = Store(sys.argv[1])
with st._tx() as con:  # what put_signature does: delete the old rows, insert the new ones...
    con.execute("DELETE FROM signatures")
    con.execute("INSERT INTO signatures SELECT 'd', 'A|-|-|-', 'wilcoxon', '{}', 'g' || i, 0, 1, 1, NULL, 1, 1, "
                "now()::TIMESTAMP FROM range(100000) t(i)")
    print("inside", flush=True)
    time.sleep(120)  # ...and is killed before COMMIT
"""


def test_a_writer_killed_inside_a_transaction_loses_nothing(tmp_path: Path) -> None:
    """SIGKILL a process in the middle of a store transaction: the reopened store holds exactly what was
    committed before (the old signature), none of the half-written rows."""
    path = tmp_path / "m.duckdb"
    with Store(path) as st:
        st.put_signature(_sig(), dataset_id="d")
    proc = subprocess.Popen([sys.executable, "-c", _CRASH, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "inside"
    finally:
        proc.kill()
        proc.wait()
    with Store(path) as st:
        assert st.con.execute("SELECT count(*) FROM signatures").fetchone()[0] == 5
        np.testing.assert_allclose(st.signature(_sig().condition.key).log2fc, _sig().log2fc)


def test_one_writer_per_file(tmp_path: Path) -> None:
    path = tmp_path / "m.duckdb"
    with Store(path):
        code = (
            "import sys\nfrom mechcell.datasets import Store\ntry:\n    Store(sys.argv[1])\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n"
        )
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("StoreError") and "another mechcell process" in out.stdout
