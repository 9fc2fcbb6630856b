"""Expression predictors on real components: a synthetic world read by the project's readers, the starter KB,
traces in a real DuckDB store, checkpoints on disk, the CLI through typer's runner."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from mechcell.datasets.readers import open_dataset
from mechcell.datasets.schemas import Condition
from mechcell.datasets.store import Store
from mechcell.datasets.synthetic import SyntheticWorldConfig, Truth, generate_world, load_truth
from mechcell.datasets.traces import Provenance, Trace, TraceConfig, TraceMetrics, TraceStore
from mechcell.errors import InputError
from mechcell.eval.expression import fold_inputs, run_experiment
from mechcell.graphs import parse_text
from mechcell.models.features import (
    DeltaTable,
    Mechanism,
    TracePrior,
    kb_reach,
    mechanism_from_graph,
    mechanisms_from_traces,
    mechanisms_from_truth,
    pseudobulk_deltas,
)
from mechcell.models.predictors import (
    PREDICTORS,
    PredictorInputs,
    fit_predictors,
    load_predictors,
    make_folds,
    make_predictor,
    prepare_inputs,
    resolve_models,
    save_predictors,
)

# 8 drugs × 2 doses × 2 cell lines = 32 conditions, 260 genes, ~3,400 cells: generated in a few seconds.
CONFIG = SyntheticWorldConfig(
    seed=3, n_drugs=8, n_cell_lines=2, doses=[0.5, 5.0], n_genes=260, cells_per_condition=90, mean_library_size=2000
)
FAST_MLP = {"epochs": 40, "hidden": 32}
FAST = {"mlp_drug": FAST_MLP, "trace_mlp": FAST_MLP, "trace_mlp_aux": FAST_MLP}


@pytest.fixture(autouse=True)
def _one_blas_thread() -> Iterator[None]:
    """The ridge models are SVDs of small matrices; a multi-threaded BLAS competing with other processes for two
    cores made them ~20× slower (measured), so these tests run BLAS single-threaded (when threadpoolctl, a
    scikit-learn dependency, is importable)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Truth]:
    out = tmp_path_factory.mktemp("predictors") / "world"
    generate_world(CONFIG, out, "h5ad")
    return out, load_truth(out)


@pytest.fixture(scope="module")
def inputs(world: tuple[Path, Truth]) -> PredictorInputs:
    out, _ = world
    inp, info = prepare_inputs(None, out / "world.h5ad", mechanisms="oracle")
    assert info["mechanism_source"] == "oracle" and inp.mechanism_label == "oracle"
    return inp


def _trace(key: str, graph_text: str | None, *, accepted: bool, n: int = 0) -> Trace:
    graph = parse_text(graph_text).graph if graph_text else None
    return Trace(
        id=f"tr_test{n:04d}",
        condition=Condition.from_key(key),
        config=TraceConfig(proposer="local", kb_version="test"),
        status="accepted" if accepted else "unverified",
        final_graph=graph,
        metrics=TraceMetrics(accepted=accepted, reward=1.0 if accepted else 0.2),
        provenance=Provenance(proposer="local", kb_version="test", code_version="test", seed=0),
    )


def _store_with_traces(world: tuple[Path, Truth], path: Path) -> Path:
    """A real project store: the world's dataset registered and every active condition's planted graph stored as
    an accepted trace (what `mechcell demo` would write, with a perfect proposer)."""
    out, truth = world
    with Store(path) as st:
        st.register(open_dataset(out / "world.h5ad"))
        ts = TraceStore(st)
        ts.put_many(
            [
                _trace(k, c.graph, accepted=True, n=i)
                for i, (k, c) in enumerate(sorted(truth.conditions.items()))
                if c.graph
            ]
        )
    return path


# ------------------------------------------------------------------------------------------------ data


def test_pseudobulk_deltas_match_a_cell_level_computation(world: tuple[Path, Truth]) -> None:
    """The delta table (pseudobulk aggregation of the reader) equals log1p-CP10k of summed counts computed here
    from the condition's cells (a separate reader path), and its p-values equal a Welch t over wells (scipy) with
    BH — for three conditions."""
    from scipy import stats

    from mechcell.datasets.de import bh_adjust

    out, truth = world
    with open_dataset(out / "world.h5ad") as ds:
        table = pseudobulk_deltas(ds)
        assert table.keys == sorted(truth.conditions) and len(table.genes) == len(truth.genes)
        for key in table.keys[::11]:
            cc = ds.load_cells(key)
            X = cc.X.toarray()
            i = table.keys.index(key)
            np.testing.assert_allclose(
                table.delta[i], _pooled(X[cc.treated]) - _pooled(X[~cc.treated]), rtol=0, atol=1e-10
            )
            np.testing.assert_allclose(table.control[i], _pooled(X[~cc.treated]), rtol=0, atol=1e-10)
            wells = cc.covariates["sample"].to_numpy()
            a = np.vstack([_pooled(X[cc.treated & (wells == w)]) for w in np.unique(wells[cc.treated])])
            b = np.vstack([_pooled(X[~cc.treated & (wells == w)]) for w in np.unique(wells[~cc.treated])])
            p = stats.ttest_ind(a, b, axis=0, equal_var=False).pvalue
            want = bh_adjust(np.where(np.isnan(p), 1.0, p))
            np.testing.assert_allclose(table.padj[i], want, rtol=1e-9, atol=1e-12)
            assert table.n_treated_wells[i] == a.shape[0] and table.n_control_wells[i] == b.shape[0]


def _pooled(cells: np.ndarray) -> np.ndarray:
    """log1p(CP10k) of the summed counts of a set of cells (cells × genes)."""
    tot = cells.sum(axis=0)
    return np.log1p(tot / tot.sum() * 1e4)


def test_delta_table_round_trips_and_subsets(inputs: PredictorInputs, tmp_path: Path) -> None:
    t = inputs.table
    back = DeltaTable.load(t.save(tmp_path / "d.npz"))
    assert back.keys == t.keys and back.genes == t.genes and back.perturbations == t.perturbations
    np.testing.assert_array_equal(back.delta, t.delta)
    np.testing.assert_array_equal(back.padj, t.padj)
    sub = t.subset([3, 1])
    assert sub.keys == [t.keys[3], t.keys[1]] and np.array_equal(sub.delta[0], t.delta[3])
    flags = t.de_flags()
    assert set(np.unique(flags)) <= {-1, 0, 1} and (flags != 0).sum() == (np.nan_to_num(t.padj, nan=1) < 0.05).sum()


def test_mechanism_from_graph_reads_targets_activities_tfs_pathways_and_net_gene_signs() -> None:
    text = """<explain>
set_context(id="n0", cell_type="A549")
binds_to(id="n1", actor="Trametinib", target="MAP2K1")
modulates_molecule_activity(id="n2", target="MAP2K1", direction="down")
modulates_molecule_activity(id="n3", target="ELK1", direction="down")
regulates_expression(id="n4", regulator="ELK1", gene_list=["FOS", "EGR1", "DUSP6"], direction="down")
modulates_pathway_activity(id="n5", pathway="MAPK", direction="down")
regulates_expression(id="n6", regulator="MAPK", gene_list=["DUSP6", "SPRY2"], direction="up")
regulates_expression(id="n7", regulator="MAPK", gene_list=["FOS"], direction="down")
</explain>
<dag>
edge("n1", "n2", relation="causal")
edge("n2", "n3", relation="causal")
edge("n3", "n4", relation="causal")
edge("n2", "n5", relation="causal")
edge("n5", "n6", relation="causal")
edge("n5", "n7", relation="causal")
</dag>"""
    m = mechanism_from_graph(parse_text(text).graph, source="test")
    assert m.targets == ["MAP2K1"]
    assert m.activities == {"MAP2K1": -1, "ELK1": -1}
    assert m.tfs == {"ELK1": -1} and m.pathways == {"MAPK": -1}
    # DUSP6 is listed down by ELK1 and up by MAPK: a tie drops it; FOS is down twice
    assert m.genes == {"FOS": -1, "EGR1": -1, "SPRY2": 1}
    f = m.features()
    assert f["mtarget:MAP2K1"] == 1.0 and f["tf:ELK1"] == -1.0 and f["pathway:MAPK"] == -1.0


def test_mechanisms_come_from_the_newest_accepted_trace_in_a_real_store(
    world: tuple[Path, Truth], tmp_path: Path
) -> None:
    out, truth = world
    keys = sorted(k for k, c in truth.conditions.items() if c.graph)[:2]
    oracle = mechanisms_from_truth(truth, keys)
    with TraceStore(tmp_path / "s.duckdb") as ts:
        ts.put(_trace(keys[0], truth.conditions[keys[0]].graph, accepted=True, n=1))
        ts.put(_trace(keys[1], truth.conditions[keys[1]].graph, accepted=False, n=2))
    got = mechanisms_from_traces(tmp_path / "s.duckdb")
    assert set(got) == {keys[0]} and got[keys[0]].source == "trace:tr_test0001"
    assert got[keys[0]].model_dump(exclude={"source"}) == oracle[keys[0]].model_dump(exclude={"source"})
    both = mechanisms_from_traces(tmp_path / "s.duckdb", accepted_only=False)
    assert set(both) == set(keys) and both[keys[1]].accepted is False
    assert mechanisms_from_traces(tmp_path / "s.duckdb", keys=[keys[1]]) == {}


# ------------------------------------------------------------------------------------------------ models


def test_folds_hold_out_whole_groups_and_cover_every_condition_once(inputs: PredictorInputs) -> None:
    t = inputs.table
    for by in ("drug", "cell_line"):
        folds = make_folds(t, by, n_folds=4, n_repeats=2, seed=7)
        g = t.groups(by)
        for r in (0, 1):
            tests = [i for f in folds if f.repeat == r for i in f.test]
            assert sorted(tests) == list(range(len(t)))
        for f in folds:
            assert not set(g[f.train]) & set(g[f.test]) and set(g[f.test]) == set(f.held_out)
        assert make_folds(t, by, n_folds=4, n_repeats=2, seed=7) == folds
    assert len({f.fold for f in make_folds(t, "cell_line", n_folds=5)}) == 2  # 2 lines: leave-one-line-out
    assert make_folds(t, "drug", n_folds=4, seed=1) != make_folds(t, "drug", n_folds=4, seed=2)
    with pytest.raises(InputError):
        make_folds(t, "plate")  # type: ignore[arg-type]


def _synthetic_table(rng: np.random.Generator, n_drugs: int = 6, n_lines: int = 3, n_genes: int = 30) -> DeltaTable:
    drugs = [f"D{i}" for i in range(n_drugs)]
    lines = [f"L{i}" for i in range(n_lines)]
    keys, ps, cs = [], [], []
    for d in drugs:
        for c in lines:
            keys.append(f"{d}|1uM|{c}|p1")
            ps.append(d)
            cs.append(c)
    n = len(keys)
    return DeltaTable(
        keys=keys,
        perturbations=ps,
        contexts=cs,
        doses=np.ones(n),
        dose_units=["uM"] * n,
        batches=["p1"] * n,
        genes=[f"G{i}" for i in range(n_genes)],
        delta=np.zeros((n, n_genes)),
        padj=np.full((n, n_genes), np.nan),
        control=np.zeros((n, n_genes)),
        n_treated_wells=np.full(n, 3),
        n_control_wells=np.full(n, 4),
    )


def test_baselines_recover_what_they_model() -> None:
    """Simulation with known structure (unit: the condition; noise SD 0.05 per gene).
    additive: delta = μ + a_drug + b_line + noise; a drug × line combination left out is predicted from the
    drug's and the line's other conditions with RMS error < 0.07 (≈ 1.7 × its expected 0.04), and an unseen drug
    gets μ + b_line.
    ridge_drug: drug effects are a linear function of KB-style target features (effect SD 1); an unseen drug
    sharing its target with a training drug is predicted with RMS error < 0.15, where mean_effect's is > 0.5."""
    rng = np.random.default_rng(0)
    t = _synthetic_table(rng)
    n, G = len(t), len(t.genes)
    mu, a, b = rng.normal(size=G), rng.normal(size=(6, G)), rng.normal(scale=0.5, size=(3, G))
    di = np.array([int(p[1:]) for p in t.perturbations])
    li = np.array([int(c[1:]) for c in t.contexts])
    t.delta = mu + a[di] + b[li] + rng.normal(scale=0.05, size=(n, G))
    inp = PredictorInputs(t, {}, {})
    held = 4  # D1 in L1
    train = [i for i in range(n) if i != held]
    add = make_predictor("additive").fit(inp.subset(train))
    err = add.predict(inp.subset([held]))[0] - (mu + a[1] + b[1])
    # least squares from 2 drug and 5 line observations: prediction SD ≈ 0.05·√(1/2 + 1/5) ≈ 0.04 per gene
    assert np.sqrt((err**2).mean()) < 0.07, np.sqrt((err**2).mean())
    unseen = make_predictor("additive").fit(inp.subset([i for i in range(n) if di[i] != 1]))
    pred = unseen.predict(inp.subset([held]))[0]
    # an unseen drug contributes nothing: what is left is μ + line effect (+ the shrunken mean drug effect)
    assert np.corrcoef(pred - mu - a[[0, 2, 3, 4, 5]].mean(axis=0), b[1])[0, 1] > 0.9

    # ridge on drug features: D0 and D1 share target T0, D2/D3 share T1, D4/D5 share T2
    feats = {f"D{i}": {f"target:T{i // 2}": 1.0} for i in range(6)}
    effects = rng.normal(size=(3, G))
    t.delta = effects[di // 2] + b[li] + rng.normal(scale=0.05, size=(n, G))
    inp = PredictorInputs(t, feats, {})
    train = [i for i in range(n) if di[i] != 1]
    test = [i for i in range(n) if di[i] == 1]
    ridge = make_predictor("ridge_drug").fit(inp.subset(train), t.groups("drug")[train])
    mean = make_predictor("mean_effect").fit(inp.subset(train))
    truth = effects[0] + b[li[test]]
    rmse = lambda m: float(np.sqrt(((m.predict(inp.subset(test)) - truth) ** 2).mean()))  # noqa: E731
    assert rmse(ridge) < 0.15 and rmse(mean) > 0.5, (rmse(ridge), rmse(mean))


def test_oracle_mechanism_beats_the_best_baseline_on_unseen_drugs_and_shuffled_ones_do_not(
    inputs: PredictorInputs,
) -> None:
    """Grouped 4-fold CV by drug on the world (32 conditions, 8 drugs), pearson delta. Null for the margin:
    trace_ridge and the best baseline score alike per condition; unit: the drug (cluster bootstrap). With the
    planted (oracle) mechanisms the 95% CI of the margin over the best baseline lies above 0. Negative control:
    the same model given another drug's mechanism (a derangement over drugs, same dose and line) does worse
    than with the right one by ≥ 0.1 and does not beat the best baseline (CI high < 0.05): the gain is the
    mechanism's content, not the extra parameters."""
    res = run_experiment(inputs, by="drug", models="baselines,trace_ridge", n_folds=4, seed=0, n_boot=1000, params=FAST)
    assert res.mechanism_source == "oracle" and res.n_with_mechanism == len(inputs.mechanisms)
    best = res.best_baseline["pearson_delta"]
    assert best in ("additive", "ridge_drug", "mlp_drug", "mean_effect")
    right = res.margins["trace_ridge"]["pearson_delta"]
    assert right.ci_low is not None and right.ci_low > 0.0, right

    t = inputs.table
    drugs = sorted(set(t.perturbations))
    other = {d: drugs[(i + 1) % len(drugs)] for i, d in enumerate(drugs)}
    shuffled = {}
    for k in t.keys:
        parts = k.split("|")
        m = inputs.mechanisms.get("|".join([other[parts[0]], *parts[1:]]))
        if m is not None:
            shuffled[k] = m
    wrong_in = PredictorInputs(t, inputs.drug_features, shuffled, "shuffled")
    res2 = run_experiment(
        wrong_in, by="drug", models="baselines,trace_ridge", n_folds=4, seed=0, n_boot=1000, params=FAST
    )
    wrong = res2.margins["trace_ridge"]["pearson_delta"]
    assert wrong.margin is not None and right.margin is not None
    assert right.margin - wrong.margin >= 0.1, (right.margin, wrong.margin)
    assert wrong.ci_high is not None and wrong.ci_high < 0.05, wrong


def test_every_predictor_fits_predicts_and_round_trips_through_a_checkpoint(
    inputs: PredictorInputs, tmp_path: Path
) -> None:
    """All registered models, fitted on 24 conditions and saved; the reloaded models predict the other 8
    conditions exactly as the fitted ones (MLPs: same float32 weights)."""
    t = inputs.table
    train, test = list(range(0, len(t), 4)), []
    train = [i for i in range(len(t)) if i % 4]
    test = [i for i in range(len(t)) if i % 4 == 0]
    tr, te = inputs.subset(train), inputs.subset(test)
    fitted = fit_predictors(tr, list(PREDICTORS), seed=5, params=FAST)
    assert set(fitted) == set(PREDICTORS)
    save_predictors(tmp_path / "ck", fitted, tr, seed=5, params=FAST, kb_version="x")
    ck, loaded = load_predictors(tmp_path / "ck")
    assert ck.train_keys == tr.table.keys and ck.genes == t.genes and ck.mechanism_source == "oracle"
    for name, m in fitted.items():
        a, b = m.predict(te), loaded[name].predict(te)
        assert a.shape == (len(test), len(t.genes)) and np.isfinite(a).all()
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-9, err_msg=name)
    assert np.all(fitted["control_mean"].predict(te) == 0)
    aux = fitted["trace_ridge"].predict_mechanism(te)  # type: ignore[attr-defined]
    assert aux.shape == (len(test), len(t.genes)) and np.abs(aux).max() <= 1.0
    # same seed, same model
    again = make_predictor("trace_mlp", seed=5, **FAST_MLP).fit(tr, tr.table.groups("drug")).predict(te)
    np.testing.assert_array_equal(again, fitted["trace_mlp"].predict(te))


def test_model_selection_always_brings_its_baselines() -> None:
    assert resolve_models("trace_ridge")[:4] == ["control_mean", "mean_effect", "additive", "ridge_drug"]
    assert "mlp_drug" not in resolve_models("trace_ridge") and "mlp_drug" in resolve_models("trace_mlp_aux")
    assert set(resolve_models("all")) == set(PREDICTORS)
    with pytest.raises(InputError, match="unknown predictor"):
        resolve_models("gpt5")


# ------------------------------------------------------------------------------------------------ CLI


def _app() -> typer.Typer:
    """The real CLI (its `train` group and the `eval predictor` command registered on the `eval` group)."""
    from mechcell.cli import app

    return app


def test_cli_train_then_eval_predictor_with_traces_from_the_store(world: tuple[Path, Truth], tmp_path: Path) -> None:
    store = _store_with_traces(world, tmp_path / "mechcell.duckdb")
    runner = CliRunner()
    ck = tmp_path / "ck"
    res = runner.invoke(
        _app(),
        ["train", "predictor", "--store", str(store), "--model", "trace_ridge", "--folds", "3", "--out", str(ck)]
        + ["--json"],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    cv = doc["cv"]
    assert cv["mechanism_source"] == "traces" and cv["n_with_mechanism"] > 0 and cv["split"] == "drug"
    assert {m["name"] for m in cv["models"]} == {"control_mean", "mean_effect", "additive", "ridge_drug", "trace_ridge"}
    assert "trace_ridge" in cv["margins"] and (ck / "predictor.json").is_file() and (ck / "report.md").is_file()
    assert "transductive" in (ck / "report.md").read_text()

    ev = runner.invoke(
        _app(), ["eval", "predictor", "--store", str(store), "--checkpoint", str(ck), "--include-train", "--json"]
    )
    assert ev.exit_code == 0, ev.output
    edoc = json.loads(ev.stdout)
    assert edoc["mode"] == "checkpoint" and edoc["result"]["n_in_training"] == edoc["result"]["n_conditions"]
    # without --include-train every condition was seen in training: a clear error, not a silent in-sample score
    bad = runner.invoke(_app(), ["eval", "predictor", "--store", str(store), "--checkpoint", str(ck)])
    assert bad.exit_code == 2 and "training set" in bad.output
    # human table
    human = runner.invoke(
        _app(), ["eval", "predictor", "--store", str(store), "--model", "trace_ridge", "--folds", "2"]
    )
    assert human.exit_code == 0, human.output
    assert "trace_ridge" in human.stdout and "ridge_drug" in human.stdout and "transductive" in human.stdout


def test_cli_errors_are_one_line_messages(world: tuple[Path, Truth], tmp_path: Path) -> None:
    out, _ = world
    runner = CliRunner()
    empty = tmp_path / "empty.duckdb"
    with Store(empty) as st:
        st.register(open_dataset(out / "world.h5ad"))
    cases = [
        (
            ["train", "predictor", "--store", str(empty), "--mechanisms", "traces", "--out", str(tmp_path / "x")],
            "traces",
        ),
        (["train", "predictor", "--store", str(empty), "--split", "plate", "--out", str(tmp_path / "x")], "--split"),
        (["train", "predictor", "--store", str(empty), "--model", "nope", "--out", str(tmp_path / "x")], "nope"),
        (["eval", "predictor", "--store", str(empty), "--checkpoint", str(tmp_path / "none")], "checkpoint"),
        (["train", "predictor", "--store", str(tmp_path / "missing.duckdb")], "no store"),
    ]
    for args, needle in cases:
        r = runner.invoke(_app(), args)
        assert r.exit_code == 2, (args, r.output)
        assert needle in r.output and "Traceback" not in r.output, r.output


def test_oracle_mechanisms_are_labelled_as_such(world: tuple[Path, Truth], tmp_path: Path) -> None:
    """No traces in the store: `auto` falls back to the world's truth.json and says so."""
    out, _ = world
    store = tmp_path / "s.duckdb"
    with Store(store) as st:
        st.register(open_dataset(out / "world.h5ad"))
    r = CliRunner().invoke(
        _app(),
        ["eval", "predictor", "--store", str(store), "--model", "trace_ridge", "--folds", "2", "--json"],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["result"]["mechanism_source"] == "oracle" and doc["inputs"]["truth"].endswith("truth.json")


def test_mechanism_type_is_frozen() -> None:
    m = Mechanism(source="oracle", genes={"A": 1})
    with pytest.raises(ValueError):
        m.genes = {}  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------ trace prior


@pytest.fixture(scope="module")
def reach(inputs: PredictorInputs) -> object:
    from mechcell.knowledge import load_kb

    kb = load_kb(None)
    try:
        return kb_reach(kb, set(inputs.table.perturbations))
    finally:
        kb.close()


def test_kb_reach_contains_the_planted_ends_with_their_signs(world: tuple[Path, Truth], reach: object) -> None:
    """The world plants every mechanism along signed KB paths, so the data-free KB reach of a drug must contain
    its planted TFs and pathways with the planted direction (an end reached by disagreeing shortest paths may
    be missed: ≥ 90 % required), and it must not be everything (a reach that lists every end is useless)."""
    _, truth = world
    hit = total = 0
    for d in truth.drugs:
        if not d.active:
            continue
        got = {(f"{e.kind}:{e.end}", e.sign) for e in reach.ends[d.drug]}  # type: ignore[attr-defined]
        want = {(f"tf:{k}", 1 if v == "up" else -1) for k, v in d.tfs.items()}
        want |= {(f"pathway:{k}", 1 if v == "up" else -1) for k, v in d.pathways.items()}
        hit += len(want & got)
        total += len(want)
    assert total > 0 and hit / total >= 0.9, (hit, total)
    all_ends = set(reach.end_genes)  # type: ignore[attr-defined]
    assert any(len({f"{e.kind}:{e.end}" for e in es}) < len(all_ends) for es in reach.ends.values())  # type: ignore[attr-defined]


def _garbage(reach: object, drugs: list[str], keys: list[str]) -> dict[str, Mechanism]:
    """A mechanism per condition naming every KB end with the opposite of its KB sign and flipped genes: what a
    leaky prior would pick up if it read these conditions' traces."""
    out = {}
    for k, d in zip(keys, drugs, strict=True):
        ends = reach.ends.get(d, [])  # type: ignore[attr-defined]
        tfs = {e.end: -e.sign for e in ends if e.kind == "tf"}
        pws = {e.end: -e.sign for e in ends if e.kind == "pathway"}
        reg = {e.end: {f"GENE{i}": 1 for i in range(5)} for e in ends}
        out[k] = Mechanism(source="garbage", tfs=tfs, pathways=pws, regulated=reg, genes={"GENE0": 1})
    return out


def test_trace_prior_per_fold_never_reads_the_held_out_drugs_traces(inputs: PredictorInputs, reach: object) -> None:
    """Leakage guard. Corpus: the planted mechanisms (a perfect pipeline's traces). For every fold of a CV by drug,
    the held-out rows' prior mechanisms must be identical whether the held-out drugs' traces are right, garbage
    or absent; and so must each training drug's cross-fit mechanism when only its own traces change. Control
    (the check can fail): garbage in the *training* drugs' traces does change the held-out mechanisms."""
    t = inputs.table
    for cross_fit in (True, False):
        base = PredictorInputs(
            t, inputs.drug_features, inputs.mechanisms, "oracle", TracePrior(reach, cross_fit=cross_fit)
        )  # type: ignore[arg-type]
        for f in make_folds(t, "drug", n_folds=4, seed=0):
            tr, te = fold_inputs(base, f.train, f.test)
            assert te.mechanisms and all(m.source == "trace-prior" for m in te.mechanisms.values())
            assert not set(te.mechanisms) & set(tr.mechanisms)
            test_keys = [t.keys[i] for i in f.test]
            test_drugs = [t.perturbations[i] for i in f.test]
            for corrupt in (_garbage(reach, test_drugs, test_keys), None):
                mech = dict(inputs.mechanisms)
                for k in test_keys:
                    mech.pop(k, None)
                if corrupt is not None:
                    mech.update(corrupt)
                other = PredictorInputs(t, inputs.drug_features, mech, "oracle", base.mechanism_prior)
                tr2, te2 = fold_inputs(other, f.train, f.test)
                assert te2.mechanisms == te.mechanisms
                assert tr2.mechanisms == tr.mechanisms
            train_keys = [t.keys[i] for i in f.train]
            train_drugs = [t.perturbations[i] for i in f.train]
            mech = {**inputs.mechanisms, **_garbage(reach, train_drugs, train_keys)}
            _, te3 = fold_inputs(
                PredictorInputs(t, inputs.drug_features, mech, "oracle", base.mechanism_prior), f.train, f.test
            )
            assert te3.mechanisms != te.mechanisms
            if cross_fit:  # one training drug's own traces never shape its own training-row mechanism
                d = train_drugs[0]
                mine = [k for k, x in zip(train_keys, train_drugs, strict=True) if x == d]
                mech = {**inputs.mechanisms, **_garbage(reach, [d] * len(mine), mine)}
                tr4, _ = fold_inputs(
                    PredictorInputs(t, inputs.drug_features, mech, "oracle", base.mechanism_prior), f.train, f.test
                )
                assert {k: tr4.mechanisms.get(k) for k in mine} == {k: tr.mechanisms.get(k) for k in mine}
    fitted = TracePrior(reach).fit(inputs.mechanisms, t.keys[:4], t.perturbations[:4])  # type: ignore[arg-type]
    with pytest.raises(InputError, match="fitted on"):
        fitted.mechanisms(t.keys[:1], t.perturbations[:1])


def _ends(m: Mechanism) -> set[str]:
    return {f"tf:{k}" for k in m.tfs} | {f"pathway:{k}" for k in m.pathways}


def test_trace_prior_carries_verified_ends_to_a_drug_with_other_targets(
    world: tuple[Path, Truth], inputs: PredictorInputs, reach: object
) -> None:
    """Where the world lets one drug borrow from another (a planted end shared without a shared KB target), the
    prior fitted on the other drugs' planted mechanisms gives the held-out drug that end with its planted sign,
    weighted above every end no training trace verified, and gene directions that mostly match the planted ones."""
    _, truth = world
    info = {d.drug: d for d in truth.drugs}
    t = inputs.table
    checked = 0
    for d in sorted(x for x in info if info[x].active):
        ends = {f"tf:{k}": 1 if v == "up" else -1 for k, v in info[d].tfs.items()}
        ends |= {f"pathway:{k}": 1 if v == "up" else -1 for k, v in info[d].pathways.items()}
        train = [i for i, x in enumerate(t.perturbations) if x != d]
        donors = [
            o for o in info.values() if o.active and o.drug != d and not set(o.kb_targets) & set(info[d].kb_targets)
        ]
        shared = {e for o in donors for e in ends if e.split(":", 1)[1] in set(o.tfs) | set(o.pathways)}
        if not shared:
            continue
        prior = TracePrior(reach).fit(  # type: ignore[arg-type]
            inputs.mechanisms, [t.keys[i] for i in train], [t.perturbations[i] for i in train]
        )
        m = prior.mechanism(d)
        assert m is not None
        seen = {e for i in train if (x := inputs.mechanisms.get(t.keys[i])) is not None for e in _ends(x)}
        unverified = max((w for e, w in m.weights.items() if not e.startswith("gene:") and e not in seen), default=0.0)
        got = {f"tf:{k}": v for k, v in m.tfs.items()} | {f"pathway:{k}": v for k, v in m.pathways.items()}
        for e in shared:
            assert got.get(e) == ends[e], (d, e, got)
            assert m.weights[e] > unverified, (d, e, m.weights[e], unverified)
        planted = {g: int(np.sign(v)) for g, v in info[d].base_log2fc.items()}
        both = [g for g in planted if g in m.genes]
        assert both and np.mean([m.genes[g] == planted[g] for g in both]) >= 0.8, d
        checked += 1
    assert checked >= 1


def test_trace_prior_source_runs_every_trace_model_from_a_real_store(world: tuple[Path, Truth], tmp_path: Path) -> None:
    """`prepare_inputs(mechanisms="trace-prior")` reads the store's traces as the corpus and the KB paths; CV
    swaps in the per-fold prior (weighted gene directions reach the MLP's flag head as signs) and labels it."""
    out, _ = world
    store = _store_with_traces(world, tmp_path / "p.duckdb")
    inp, info = prepare_inputs(store, None, mechanisms="trace-prior")
    assert inp.mechanism_prior is not None and info["mechanism_source"] == "trace-prior"
    res = run_experiment(inp, by="drug", models="trace_ridge,trace_mlp", n_folds=3, seed=0, n_boot=200, params=FAST)
    assert res.mechanism_source == "trace-prior"
    for m in ("trace_ridge", "trace_mlp"):
        v = np.array([x for x in res.values[m]["pearson_delta"] if x is not None])
        assert v.size > 0 and np.isfinite(v).all()
    # a final fit trains on leave-one-drug-out priors, as the CV did, and saves under the prior's label
    fitted = fit_predictors(inp, "trace_ridge", seed=0)
    assert np.isfinite(fitted["trace_ridge"].predict(inp)).all()
    save_predictors(tmp_path / "ck", fitted, inp, seed=0)
    ck, _ = load_predictors(tmp_path / "ck")
    assert ck.mechanism_source == "trace-prior"


def test_fractional_logistic_fit_by_simulation() -> None:
    """The end and activity models' fitter (`features._fit_logistic`). Null: y independent of x (slope 0); unit:
    the simulated row. Size: under the null, |fitted slope| > 0.3 (standardised scale) in ≤ 10 % of 200 simulated
    sets of 200 rows. Power: with a true slope of 1 per sd, the fitted slope is > 0.3 in ≥ 95 % and within 0.35 of
    the truth on average (λ = 1 shrinks little at n = 200). Fractional responses (shares) are accepted as is."""
    from mechcell.models.features import _fit_logistic

    rng = np.random.default_rng(7)
    null_hits = power_hits = 0
    slopes = []
    for _ in range(200):
        x = rng.normal(size=(200, 1))
        y0 = rng.binomial(4, 0.3, size=200) / 4.0  # shares of 4 conditions, no dependence on x
        b0, _, _ = _fit_logistic(x, y0, 1.0)
        null_hits += abs(b0[1]) > 0.3
        p = 1 / (1 + np.exp(-(0.2 + 1.0 * x[:, 0])))
        y1 = rng.binomial(4, p) / 4.0
        b1, _, sd = _fit_logistic(x, y1, 1.0)
        power_hits += b1[1] > 0.3
        slopes.append(b1[1] / sd[0])
    assert null_hits / 200 <= 0.10, null_hits
    assert power_hits / 200 >= 0.95, power_hits
    assert abs(float(np.mean(slopes)) - 1.0) < 0.35, np.mean(slopes)
    # every response 1 (a corpus where every training drug was active): finite, and predicts high
    b, _, _ = _fit_logistic(rng.normal(size=(20, 2)), np.ones(20), 1.0)
    assert np.isfinite(b).all() and b[0] > 2


def test_trace_prior_end_model_normalises_ends_and_scales_by_activity(inputs: PredictorInputs, reach: object) -> None:
    """Per drug and kind, the end probabilities never sum above the training drugs' mean count of verified KB
    ends; every end weight is P(active) × P(end | active); a prior where only some drugs have traces predicts a
    lower P(active) than one where all have; the round-1 mode (`ends_model="rate"`, no activity) still works; the
    fitted prior survives a JSON round trip with identical mechanisms (it travels in checkpoints)."""
    from mechcell.models.features import FittedTracePrior

    t = inputs.table
    drugs = sorted(set(t.perturbations))
    train = [i for i, d in enumerate(t.perturbations) if d != drugs[0]]
    keys, ds = [t.keys[i] for i in train], [t.perturbations[i] for i in train]
    prior = TracePrior(reach).fit(inputs.mechanisms, keys, ds)  # type: ignore[arg-type]
    assert prior.end_coef and prior.act_coef and prior.expected_ends
    for d in drugs:
        probs = prior.end_probabilities(d)
        for kind, k in prior.expected_ends.items():
            assert sum(p for _, p, e in probs.values() if e.kind == kind) <= max(k, 0.0) + 1e-9 or not any(
                e.kind == kind for _, _, e in probs.values()
            )
        m = prior.mechanism(d)
        if m is None:
            continue
        a = prior.p_active(d)
        for name, (_, p, _) in probs.items():
            if name in m.weights:
                assert m.weights[name] == pytest.approx(a * p)
    # fewer drugs with traces → lower P(active) for everyone
    half = {k: v for k, v in inputs.mechanisms.items() if k.split("|")[0] in set(drugs[: len(drugs) // 2])}
    sparse = TracePrior(reach).fit(half, keys, ds)  # type: ignore[arg-type]
    assert np.mean([sparse.p_active(d) for d in drugs]) < np.mean([prior.p_active(d) for d in drugs])
    r1 = TracePrior(reach, ends_model="rate", activity=False).fit(inputs.mechanisms, keys, ds)  # type: ignore[arg-type]
    assert not r1.end_coef and r1.p_active(drugs[0]) == 1.0 and r1.mechanism(drugs[0]) is not None
    back = FittedTracePrior.model_validate_json(prior.model_dump_json())
    held = [t.keys[i] for i in range(len(t)) if t.perturbations[i] == drugs[0]]
    assert back.mechanisms(held, [drugs[0]] * len(held)) == prior.mechanisms(held, [drugs[0]] * len(held))
