"""`mechcell train predictor --mechanisms trace-prior` → `mechcell eval predictor --checkpoint` on drugs the
checkpoint never saw, end to end through the real CLI, a real DuckDB store, the starter KB and a synthetic world
split into two datasets by drug (training drugs / held-out drugs, each with the plate's control wells)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anndata as ad
import pytest
from typer.testing import CliRunner

from mechcell.cli import app
from mechcell.datasets.readers import open_dataset
from mechcell.datasets.schemas import Condition
from mechcell.datasets.store import Store
from mechcell.datasets.synthetic import SyntheticWorldConfig, Truth, generate_world, load_truth
from mechcell.datasets.traces import Provenance, Trace, TraceConfig, TraceMetrics, TraceStore
from mechcell.graphs import parse_text
from mechcell.knowledge import load_kb
from mechcell.models.features import FittedTracePrior, TracePrior, kb_reach, mechanisms_from_traces
from mechcell.models.predictors import prepare_inputs

CONFIG = SyntheticWorldConfig(
    seed=3, n_drugs=8, n_cell_lines=2, doses=[0.5, 5.0], n_genes=260, cells_per_condition=90, mean_library_size=2000
)
HELD_OUT = ("Trametinib", "Rucaparib")


@pytest.fixture(autouse=True)
def _one_blas_thread() -> Iterator[None]:
    """Small SVDs: a multi-threaded BLAS on two shared cores only slows them down."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def split_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Truth]:
    """The world's h5ad cut in two by drug: train.h5ad (every drug but HELD_OUT) and test.h5ad (HELD_OUT)."""
    root = tmp_path_factory.mktemp("predictor_cli")
    generate_world(CONFIG, root / "world", "h5ad")
    truth = load_truth(root / "world")
    assert set(HELD_OUT) <= {d.drug for d in truth.drugs}
    full = ad.read_h5ad(root / "world" / "world.h5ad")
    drug = full.obs["drug"].astype(str)
    control = drug.str.startswith("DMSO")
    out = []
    for name, keep in (("train", ~drug.isin(HELD_OUT) | control), ("test", drug.isin(HELD_OUT) | control)):
        path = root / f"{name}.h5ad"
        full[keep.to_numpy()].copy().write_h5ad(path)
        out.append(path)
    return out[0], out[1], truth


def _trace(key: str, text: str | None, *, n: int) -> Trace:
    return Trace(
        id=f"tr_cli{n:04d}",
        condition=Condition.from_key(key),
        config=TraceConfig(proposer="local", kb_version="test"),
        status="accepted",
        final_graph=parse_text(text).graph if text else None,
        metrics=TraceMetrics(accepted=True, reward=1.0),
        provenance=Provenance(proposer="local", kb_version="test", code_version="test", seed=0),
    )


def _store(path: Path, train: Path, test: Path, truth: Truth, *, test_traces: str) -> Path:
    """Both datasets registered; every active training condition's planted graph stored as an accepted trace (a
    perfect pipeline); the held-out conditions get their planted graphs too (`planted`), a graph of another drug
    (`wrong`) or nothing (`none`) — what the checkpoint's prior must never read."""
    held = {k for k in truth.conditions if k.split("|")[0] in HELD_OUT}
    graphs = {k: c.graph for k, c in sorted(truth.conditions.items()) if c.graph}
    donor = next(g for k, g in graphs.items() if k not in held)
    traces = [_trace(k, g, n=i) for i, (k, g) in enumerate(graphs.items()) if k not in held]
    for i, k in enumerate(sorted(held)):
        if test_traces == "planted" and k in graphs:
            traces.append(_trace(k, graphs[k], n=900 + i))
        elif test_traces == "wrong":
            traces.append(_trace(k, donor, n=900 + i))
    with Store(path) as st:
        st.register(open_dataset(train))
        st.register(open_dataset(test))
        TraceStore(st).put_many(traces)
    return path


def _train(store: Path, train: Path, out: Path) -> dict:
    r = CliRunner().invoke(
        app,
        ["train", "predictor", "--store", str(store), "--dataset", str(train), "--mechanisms", "trace-prior"]
        + ["--model", "trace_ridge", "--no-cv", "--out", str(out), "--json"],
    )
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_trace_prior_checkpoint_predicts_unseen_drugs_with_the_prior_fitted_on_training_drugs_only(
    split_world: tuple[Path, Path, Truth], tmp_path: Path
) -> None:
    """Null being guarded: the held-out drugs' own traces shape nothing. The checkpoint's prior is fitted on the
    training conditions' traces (its drugs = the training drugs), it is identical whether the store holds the
    held-out conditions' right traces, wrong ones or none, and `eval predictor --checkpoint` gives every held-out
    condition the mechanism that prior (fitted independently here) gives it, labelled trace-prior."""
    train, test, truth = split_world
    priors = {}
    for mode in ("planted", "wrong", "none"):
        store = _store(tmp_path / f"{mode}.duckdb", train, test, truth, test_traces=mode)
        doc = _train(store, train, tmp_path / f"ck_{mode}")
        assert doc["prior"] and Path(doc["prior"]).is_file()
        priors[mode] = Path(doc["prior"]).read_text()
    assert priors["planted"] == priors["wrong"] == priors["none"]
    prior = FittedTracePrior.model_validate_json(priors["planted"])
    train_drugs = {d.drug for d in truth.drugs} - set(HELD_OUT)
    assert set(prior.seen_drugs) == train_drugs and not set(prior.seen_drugs) & set(HELD_OUT)

    store, ck = tmp_path / "wrong.duckdb", tmp_path / "ck_wrong"
    r = CliRunner().invoke(
        app, ["eval", "predictor", "--store", str(store), "--dataset", str(test), "--checkpoint", str(ck), "--json"]
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    res = doc["result"]
    assert doc["mode"] == "checkpoint" and res["mechanism_source"] == "trace-prior"
    assert res["n_in_training"] == 0 and res["n_conditions"] == len(res["keys"]) > 0
    assert doc["inputs"]["prior_unseen_drugs"] == len(HELD_OUT)
    assert res["n_with_mechanism"] > 0 and {m["name"] for m in res["models"]} >= {"ridge_drug", "trace_ridge"}

    # the same mechanisms from an independent fit on the training conditions' traces, and the library path agrees
    inp_train, _ = prepare_inputs(store, train, mechanisms="traces")
    kb = load_kb(None)
    try:
        reach = kb_reach(kb, set(inp_train.table.perturbations) | set(HELD_OUT))
    finally:
        kb.close()
    t = inp_train.table
    own = mechanisms_from_traces(store, t.keys)
    mine = TracePrior(reach).fit(own, t.keys, t.perturbations)
    inp_test, info = prepare_inputs(store, test, mechanisms="none", checkpoint_prior=prior)
    tt = inp_test.table
    want = mine.mechanisms(tt.keys, tt.perturbations)
    assert want and inp_test.mechanisms == want and info["mechanism_source"] == "trace-prior"
    assert res["n_with_mechanism"] == len(want)


def test_a_checkpoint_without_a_prior_keeps_the_stores_mechanisms(
    split_world: tuple[Path, Path, Truth], tmp_path: Path
) -> None:
    """A checkpoint trained on traces (no prior) writes no prior.json, evaluating it reads the store's traces as
    before (labelled traces), and asking it for a trace prior is a clear error."""
    train, test, truth = split_world
    store = _store(tmp_path / "s.duckdb", train, test, truth, test_traces="planted")
    r = CliRunner().invoke(
        app,
        ["train", "predictor", "--store", str(store), "--dataset", str(train), "--mechanisms", "traces"]
        + ["--model", "trace_ridge", "--no-cv", "--out", str(tmp_path / "ck"), "--json"],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["prior"] is None and not (tmp_path / "ck" / "prior.json").exists()
    ev = CliRunner().invoke(
        app,
        ["eval", "predictor", "--store", str(store), "--dataset", str(test), "--checkpoint", str(tmp_path / "ck")]
        + ["--json"],
    )
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout)["result"]["mechanism_source"] == "traces"
    # asking it for the prior it does not hold: a one-line error, never the store's traces relabelled as a prior
    bad = CliRunner().invoke(
        app,
        ["eval", "predictor", "--store", str(store), "--dataset", str(test), "--checkpoint", str(tmp_path / "ck")]
        + ["--mechanisms", "trace-prior"],
    )
    assert bad.exit_code == 2 and "no trace prior" in bad.output and "Traceback" not in bad.output
