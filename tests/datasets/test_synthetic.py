"""Synthetic worlds: configuration errors, the two layouts, determinism, and that the planted truth follows the KB.

The planted-effect recovery (signatures computed by the datasets code find the planted genes) lives in
test_synthetic_recovery.py.
"""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import anndata as ad
import numpy as np
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from mechcell.datasets.readers import open_dataset
from mechcell.datasets.synthetic import (
    H5AD_FILE,
    TAHOE_DIR,
    SyntheticWorldConfig,
    Truth,
    generate_world,
    hill,
    load_truth,
)
from mechcell.datasets.synthetic.writers import MARKER_TOKEN, MARKER_VALUE, SHARD_COLUMNS
from mechcell.errors import InputError, NotFoundError

SHARED_KB = Path(__file__).resolve().parents[2] / ".." / "shared" / "kb"

#: explicit panel and lines so the world is known to hold what the tests look for: BRAF-mutant HT-29 (a GoF
#: upstream of MEK for Trametinib / Dabrafenib), KRAS-mutant A549, and multi-target drugs that can carry decoys
SMALL = SyntheticWorldConfig(
    seed=7,
    drugs=["Trametinib", "Dabrafenib", "Erlotinib", "Alpelisib", "Bortezomib", "Tofacitinib"],
    cell_lines=["HT-29", "A549"],
    cells_per_condition=90,
    n_genes=600,
    cells_per_shard=1000,
    frac_inactive=0.17,
    frac_decoy=0.34,
)


@pytest.fixture(scope="module")
def kb():
    from mechcell.knowledge import load_kb

    k = load_kb()
    yield k
    k.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, kb) -> tuple[Path, Truth]:
    out = tmp_path_factory.mktemp("synth") / "world"
    generate_world(SMALL, out, "both", kb=kb)
    return out, load_truth(out)


def _hashes(d: Path) -> dict[str, str]:
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()
    }


# ------------------------------------------------------------------------------------------------ config


def test_config_rejects_bad_settings() -> None:
    with pytest.raises(ValidationError, match="doses"):
        SyntheticWorldConfig(doses=[0.5, -1.0])
    with pytest.raises(ValidationError, match="distinct"):
        SyntheticWorldConfig(doses=[0.5, 0.5])
    with pytest.raises(ValidationError, match="n_plates"):
        SyntheticWorldConfig(n_plates=2)  # three doses need three plates
    with pytest.raises(ValidationError, match="low"):
        SyntheticWorldConfig(ec50=(2.0, 1.0))
    with pytest.raises(ValidationError):
        SyntheticWorldConfig(n_drugs=0)
    with pytest.raises(ValidationError):
        SyntheticWorldConfig(unknown_field=1)


def test_generate_world_typed_errors(tmp_path: Path, kb) -> None:
    with pytest.raises(InputError, match="layout"):
        generate_world(SyntheticWorldConfig(), tmp_path / "a", "zarr", kb=kb)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="n_genes=60"):
        generate_world(SyntheticWorldConfig(n_genes=60, n_drugs=2), tmp_path / "b", kb=kb)
    with pytest.raises(InputError, match="'Notadrug'"):
        generate_world(SyntheticWorldConfig(drugs=["Trametinib", "Notadrug"]), tmp_path / "c", kb=kb)
    with pytest.raises(InputError, match="'Nowhere-1'"):
        generate_world(SyntheticWorldConfig(n_drugs=2, cell_lines=["Nowhere-1"]), tmp_path / "d", kb=kb)
    with pytest.raises(InputError, match="only .* drugs"):
        generate_world(SyntheticWorldConfig(n_drugs=500), tmp_path / "e", kb=kb)
    foreign = tmp_path / "f" / TAHOE_DIR
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a world written by mechcell"):
        generate_world(SyntheticWorldConfig(n_drugs=2), tmp_path / "f", kb=kb)
    assert (foreign / "notes.txt").read_text() == "mine"
    with pytest.raises(NotFoundError):
        load_truth(tmp_path / "nothing")


# ------------------------------------------------------------------------------------------------ layouts


def test_both_layouts_give_the_same_conditions_and_counts(world: tuple[Path, Truth]) -> None:
    out, truth = world
    with open_dataset(out / H5AD_FILE) as a, open_dataset(out / TAHOE_DIR) as b:
        sa = {s.key: (s.n_cells, s.n_control_cells, s.n_samples, s.n_control_samples) for s in a.summaries()}
        sb = {s.key: (s.n_cells, s.n_control_cells, s.n_samples, s.n_control_samples) for s in b.summaries()}
        assert sa == sb
        assert set(sa) == set(truth.conditions)
        assert a.genes == b.genes == truth.genes
        assert a.n_cells == b.n_cells == truth.n_cells
        for key, (n, n_ctrl, n_wells, n_ctrl_wells) in sa.items():
            assert n == truth.conditions[key].n_cells
            assert n_wells == SMALL.wells_per_condition
            assert n_ctrl > 0 and n_ctrl_wells == SMALL.control_wells_per_plate  # controls on every plate
        key = max(truth.active_keys(), key=lambda k: truth.conditions[k].effect_scale)
        ca, cb = a.load_cells(key), b.load_cells(key)
        ia, ib = np.argsort(ca.covariates.index.to_numpy()), np.argsort(cb.covariates.index.to_numpy())
        assert ca.covariates.index.to_numpy()[ia].tolist() == cb.covariates.index.to_numpy()[ib].tolist()
        assert (ca.X[ia] != cb.X[ib]).nnz == 0
        assert np.array_equal(ca.treated[ia], cb.treated[ib])
        assert set(ca.covariates["sample"]) == set(truth.conditions[key].samples) | {
            s.sample for s in truth.samples if s.plate == truth.conditions[key].plate and s.drug == "DMSO_TF"
        }


def test_h5ad_follows_the_anndata_spec_and_tahoe_obs_names(world: tuple[Path, Truth]) -> None:
    out, truth = world
    a = ad.read_h5ad(out / H5AD_FILE)
    assert a.shape == (truth.n_cells, len(truth.genes))
    assert list(a.var_names) == truth.genes
    for col in ("drug", "drugname_drugconc", "cell_line", "cell_name", "plate", "sample"):
        assert a.obs[col].dtype == "category"
    assert a.obs_names.is_unique
    assert "DMSO_TF" in set(a.obs["drug"])
    X = a.X
    assert X.format == "csr" and X.dtype == np.float32
    assert np.array_equal(X.data, np.round(X.data)) and X.data.min() >= 1
    assert np.array_equal(np.asarray(X.sum(axis=1)).ravel().astype(np.int64), a.obs["tscp_count"].to_numpy())
    zero = 1 - X.nnz / (X.shape[0] * X.shape[1])
    assert 0.5 < zero < 0.95  # most entries zero, as in single-cell counts
    conc = {ast.literal_eval(s)[0][1] for s in a.obs.loc[a.obs["drug"] != "DMSO_TF", "drugname_drugconc"]}
    assert conc == set(SMALL.doses)


def test_tahoe_shards_match_the_real_layout(world: tuple[Path, Truth]) -> None:
    out, truth = world
    shards = sorted((out / TAHOE_DIR / "data").glob("train-*.parquet"))
    assert len(shards) == -(-truth.n_cells // SMALL.cells_per_shard)
    assert all(s.name.endswith(f"-of-{len(shards):05d}.parquet") for s in shards)
    gm = pq.read_table(out / TAHOE_DIR / "metadata" / "gene_metadata.parquet").to_pandas()
    assert gm["gene_symbol"].tolist() == truth.genes and gm["token_id"].min() > 2
    plates, n = [], 0
    for s in shards:
        t = pq.read_table(s)
        assert t.column_names == SHARD_COLUMNS
        genes = t.column("genes").to_pylist()
        vals = t.column("expressions").to_pylist()
        assert all(g[0] == MARKER_TOKEN and v[0] == MARKER_VALUE for g, v in zip(genes, vals, strict=True))
        assert all(set(g[1:]) <= set(gm["token_id"]) for g in genes[:50])
        plates += t.column("plate").to_pylist()
        n += t.num_rows
    assert n == truth.n_cells
    order = [int(p.removeprefix("plate")) for p in plates]
    assert order == sorted(order)  # shards sorted by plate, as Tahoe's
    sm = pq.read_table(out / TAHOE_DIR / "metadata" / "sample_metadata.parquet").to_pandas()
    assert sm["sample"].is_unique and len(sm) == len(truth.samples)
    # dose confounded with plate: one dose per plate, and every plate holds controls
    for _, grp in sm.groupby("plate"):
        doses = {
            ast.literal_eval(x)[0][1]
            for x, d in zip(grp["drugname_drugconc"], grp["drug"], strict=True)
            if d != "DMSO_TF"
        }
        assert len(doses) == 1
        assert (grp["drug"] == "DMSO_TF").sum() == SMALL.control_wells_per_plate
    dm = pq.read_table(out / TAHOE_DIR / "metadata" / "drug_metadata.parquet").to_pandas()
    for d in truth.drugs:  # the annotation lists every KB target — decoys included, as a real annotation would
        assert set(dm.loc[dm["drug"] == d.drug, "targets"].iloc[0].split(", ")) == set(d.kb_targets)


def test_same_seed_same_bytes_other_seed_other_world(tmp_path: Path, kb) -> None:
    cfg = SyntheticWorldConfig(seed=3, n_drugs=3, n_cell_lines=2, cells_per_condition=24, n_genes=300)
    generate_world(cfg, tmp_path / "a", "both", kb=kb, workers=2)
    generate_world(cfg, tmp_path / "b", "both", kb=kb, workers=1)  # threads draw blocks; the bytes do not change
    generate_world(cfg.model_copy(update={"seed": 4}), tmp_path / "c", "both", kb=kb)
    ha, hb, hc = _hashes(tmp_path / "a"), _hashes(tmp_path / "b"), _hashes(tmp_path / "c")
    assert ha == hb and len(ha) >= 8
    for f in ("truth.json", H5AD_FILE, f"{TAHOE_DIR}/data/train-00000-of-00001.parquet"):
        assert ha[f] != hc[f]
    # a rerun in the same folder with another layout leaves one consistent world behind
    generate_world(cfg, tmp_path / "a", "h5ad", kb=kb)
    assert not (tmp_path / "a" / TAHOE_DIR).exists() and (tmp_path / "a" / H5AD_FILE).is_file()
    assert _hashes(tmp_path / "a")[H5AD_FILE] == ha[H5AD_FILE]


# ------------------------------------------------------------------------------------------------ the truth


def _check_graph(truth: Truth, key: str, kb) -> None:
    """Every step of a planted graph is a real KB record with the right signs."""
    c = truth.conditions[key]
    parsed = truth.graph(key)
    assert parsed is not None and parsed.is_valid(), [p.message for p in parsed.problems()] if parsed else None
    nodes = parsed.node_map
    assert parsed.nodes[0].primitive == "set_context" and parsed.nodes[0].cell_type == c.cell_line
    direction = {}
    for n in parsed.nodes:
        if n.primitive in ("modulates_molecule_activity", "modulates_pathway_activity"):
            direction[n.id] = 1 if n.direction == "up" else -1
    kb_targets = {r.object: r.sign for r in kb.drug_targets(c.drug) if r.sign}
    activity = ("modulates_molecule_activity", "modulates_pathway_activity")

    def name(n) -> str:  # noqa: ANN001
        return n.target if n.primitive == "modulates_molecule_activity" else n.pathway

    in_graph_up, in_graph_down = set(), set()
    for e in parsed.edges:
        a, b = nodes[e.src], nodes[e.tgt]
        if a.primitive == "binds_to":  # drug → listed target with the listed action
            assert a.actor == c.drug and b.target == a.target and kb_targets[a.target] == direction[b.id]
        elif a.primitive in activity and b.primitive in activity:
            rels = kb.edge_relations(name(a), name(b))
            if rels:  # a signalling edge: its sign carries the direction
                assert {r.sign for r in rels} == {direction[a.id] * direction[b.id]}
            else:  # a pathway activity anchor
                assert any(r.subject == name(a) for r in kb.pathway_anchors(name(b)))
        elif b.primitive == "regulates_expression":
            d = 1 if b.direction == "up" else -1
            (in_graph_up if d > 0 else in_graph_down).update(b.gene_list)
            if a.primitive == "modulates_molecule_activity":  # TF → regulon genes with the regulon's signs
                reg = kb.regulon(a.target)
                assert b.regulator == a.target and all(reg[g] * direction[a.id] == d for g in b.gene_list)
            else:  # pathway → footprint genes with the footprint's signs
                fp = kb.footprint(a.pathway)
                assert all(np.sign(fp[g]) * direction[a.id] == d for g in b.gene_list)
    assert in_graph_up == {g.gene for g in c.up} and in_graph_down == {g.gene for g in c.down}
    assert all(g.log2fc > 0 for g in c.up) and all(g.log2fc < 0 for g in c.down)


def test_planted_graphs_follow_real_kb_edges(world: tuple[Path, Truth], kb) -> None:
    _, truth = world
    active = truth.active_keys()
    assert active
    for key in active:
        _check_graph(truth, key, kb)
    for c in truth.conditions.values():
        if not c.active:
            assert c.graph is None


def test_decoys_are_real_annotations_the_world_ignores(world: tuple[Path, Truth], kb) -> None:
    _, truth = world
    kinds = {d.kind for d in truth.decoys}
    assert kinds == {"other_target", "inactive_drug"}
    assert sum(not d.active for d in truth.drugs) == round(SMALL.frac_inactive * len(SMALL.drugs or []))
    assert (
        1
        <= len({d.drug for d in truth.decoys if d.kind == "other_target"})
        <= round(SMALL.frac_decoy * len(SMALL.drugs or []))
    )
    for dec in truth.decoys:
        rels = [r for r in kb.drug_targets(dec.drug) if r.object == dec.target and r.sign == dec.sign]
        assert rels and set(dec.sources) <= {r.source for r in rels}
        drug = truth.drug(dec.drug)
        assert dec.target not in drug.engaged_targets
        conds = [c for c in truth.conditions.values() if c.drug == dec.drug]
        if dec.kind == "inactive_drug":
            assert not drug.active and not drug.base_log2fc
            assert all(not c.active and not c.up and not c.down and c.effect_scale == 0 for c in conds)
        else:
            assert drug.active and dec.predicted_tfs
            assert not set(dec.predicted_tfs) & set(drug.tfs)  # what the decoy predicts stays unmoved
            assert all(dec.target not in p.split() for p in drug.paths)


def test_dose_response_and_cell_line_dependence(world: tuple[Path, Truth]) -> None:
    _, truth = world
    by: dict[tuple[str, str], list] = {}
    for c in truth.conditions.values():
        by.setdefault((c.drug, c.context), []).append(c)
    sensitised = 0
    for (drug, _), cs in by.items():
        d = truth.drug(drug)
        cs.sort(key=lambda c: c.dose)
        scales = [c.effect_scale for c in cs]
        assert scales == sorted(scales)  # Hill curve: monotone in dose
        for c in cs:
            if d.active:
                expect = hill(c.dose, d.ec50 / c.sensitivity, d.hill)
                assert c.activity == pytest.approx(expect, abs=1e-6)
                assert {g.gene for g in c.up + c.down} == set(d.base_log2fc)
            if c.sensitivity > 1:
                assert any("GoF" in r for r in c.sensitivity_reasons)
                sensitised += 1
    assert sensitised > 0  # HT-29's BRAF V600E sits upstream of MEK / on the BRAF path
    hits = [
        c
        for c in truth.conditions.values()
        if c.context == "CVCL_0320" and c.drug in ("Trametinib", "Dabrafenib") and truth.drug(c.drug).active
    ]
    assert all(c.sensitivity > 1 for c in hits)


def test_cli_synth_writes_a_world_the_readers_ingest(tmp_path: Path) -> None:
    from mechcell.cli import app

    runner = CliRunner()
    out = tmp_path / "cli_world"
    r = runner.invoke(
        app,
        [
            "data",
            "synth",
            "--out",
            str(out),
            "--seed",
            "5",
            "--drugs",
            "3",
            "--cell-lines",
            "2",
            "--cells-per-condition",
            "24",
            "--genes",
            "300",
            "--layout",
            "tahoe",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["n_drugs"] == 3 and doc["layout"] == "tahoe" and doc["seed"] == 5
    truth = load_truth(out)
    assert doc["n_conditions"] == len(truth.conditions) == 3 * 2 * 3
    store = tmp_path / "s.duckdb"
    r = runner.invoke(
        app, ["data", "ingest", str(out / TAHOE_DIR), "--layout", "tahoe", "--store", str(store), "--json"]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n_conditions"] == len(truth.conditions)
    r = runner.invoke(app, ["data", "synth", "--out", str(out), "--layout", "nope"])
    assert r.exit_code == 2 and "layout" in r.output


def test_real_kb_world(tmp_path: Path) -> None:
    """A world from the real tables: Tahoe's drugs, lines, gene tokens; every step a real record."""
    if not (SHARED_KB / "tahoe" / "gene_metadata.parquet").is_file():
        pytest.skip(f"real KB tables not available at {SHARED_KB}")
    import tempfile

    from mechcell.config import Settings
    from mechcell.knowledge import load_kb

    # built once per machine (content-hashed file name), then reused by later runs
    settings = Settings(cache_dir=Path(tempfile.gettempdir()) / "mechcell-test-kb-cache")
    cfg = SyntheticWorldConfig(
        seed=2,
        kb=str(SHARED_KB.resolve()),
        n_drugs=4,
        n_cell_lines=2,
        cells_per_condition=20,
        n_genes=800,
        frac_decoy=0.5,
        frac_inactive=0.25,
    )
    with load_kb(cfg.kb, settings=settings) as real:
        generate_world(cfg, tmp_path, "tahoe", kb=real)
        truth = load_truth(tmp_path)
        for d in truth.drugs:  # Tahoe's panel first (drug ids are the KB's canonical names, salts resolved)
            assert any(r.source == "tahoe_drugs" for r in real.drug_targets(d.drug))
        assert any(d.kind == "other_target" for d in truth.decoys)
        for key in truth.active_keys():
            _check_graph(truth, key, real)
    import pandas as pd

    gm = pd.read_parquet(tmp_path / TAHOE_DIR / "metadata" / "gene_metadata.parquet")
    real_gm = pd.read_parquet(SHARED_KB / "tahoe" / "gene_metadata.parquet").set_index("gene_symbol")
    assert (gm["token_id"].to_numpy() == real_gm.loc[gm["gene_symbol"], "token_id"].to_numpy()).all()
