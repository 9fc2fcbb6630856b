"""The planted effects of a synthetic world are what the datasets code measures.

Signatures here are computed by the project's own readers and DE methods (plate-matched controls of the same
cell line), on a world generated from the starter KB with a fixed seed; the truth is `truth.json`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mechcell.datasets.cells import G2M_GENES, S_GENES
from mechcell.datasets.readers import open_dataset
from mechcell.datasets.signatures import compute_signature, compute_signatures
from mechcell.datasets.store import Store
from mechcell.datasets.synthetic import H5AD_FILE, TAHOE_DIR, SyntheticWorldConfig, Truth, generate_world, load_truth

CONFIG = SyntheticWorldConfig(seed=11, n_drugs=6, n_cell_lines=2, cells_per_condition=120, n_genes=800)
CELL_CYCLE = set(S_GENES) | set(G2M_GENES)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Truth]:
    out = tmp_path_factory.mktemp("recovery") / "world"
    generate_world(CONFIG, out, "both")
    return out, load_truth(out)


def _auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a planted gene outranks an unplanted one (Mann–Whitney U / n₁n₀, ties count half)."""
    r = stats.rankdata(scores)
    n1, n0 = int(positive.sum()), int((~positive).sum())
    return float((r[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def test_planted_genes_rank_at_the_top_of_the_wilcoxon_signature(world: tuple[Path, Truth]) -> None:
    """The three conditions with the largest planted effects, cell-level Wilcoxon vs plate-matched controls.

    Null for an unplanted gene: same distribution in treated and control cells (plate effects are shared by the
    plate-matched controls; the unit is the cell, with well effects kept small in this world). When the truth
    records a drug-induced G1 shift, the S/G2M genes moved too (a recorded side effect) and are left out of the
    ranking. Pass: AUROC of planted vs unplanted ≥ 0.9, ≥ 8 of the top 10 planted, and the observed direction
    matches the planted one for ≥ 90 % of the planted genes called at BH 5 %.
    """
    out, truth = world

    def strength(k: str) -> float:  # mean planted |log2fc|
        c = truth.conditions[k]
        return float(np.mean([abs(g.log2fc) for g in c.up + c.down]))

    keys = sorted(truth.active_keys(), key=lambda k: (-strength(k), k))[:3]
    assert len(keys) == 3
    with open_dataset(out / H5AD_FILE) as ds:
        for key in keys:
            c = truth.conditions[key]
            planted = {g.gene: g.log2fc for g in c.up + c.down}
            f = compute_signature(ds, key, "wilcoxon").to_frame()
            if c.g1_shift > 0:
                f = f[~f.index.isin(CELL_CYCLE - set(planted))]
            f = f.sort_values(["pvalue", "stat"], ascending=[True, False])
            pos = f.index.isin(list(planted))
            assert pos.sum() >= 0.9 * len(planted)  # planted genes are expressed enough to be tested
            auc = _auroc(-np.log10(f["pvalue"].clip(lower=1e-300)).to_numpy(), pos)
            assert auc >= 0.9, (key, auc)
            assert pos[:10].sum() >= 8, (key, f.head(10))
            called = f[pos & (f["padj"] < 0.05).to_numpy()]
            assert len(called) >= 5, key
            agree = np.sign(called["log2fc"]) == np.sign([planted[g] for g in called.index])
            assert agree.mean() >= 0.9, key


def test_pseudobulk_signatures_recover_planted_effect_sizes(world: tuple[Path, Truth], tmp_path: Path) -> None:
    """Every condition, pseudobulk log2 fold change (DuckDB aggregation of the Tahoe shards) into the store.

    Pooled over conditions, the observed log2fc of planted genes regressed on the planted log2fc (through the
    origin) has slope 0.75–1.25: the world delivers the effect sizes its truth claims. The per-condition effect
    (observed log2fc projected on the drug's full-effect direction) rises with the truth's effect scale — dose
    and cell-line sensitivity together (Spearman ≥ 0.8; 0.88–0.95 over seeds 0–9 in a simulation).
    Inactive drugs: null = treated and plate-matched control wells are exchangeable (unit: well); at BH 5 %
    fewer than 1 % of the tested genes are called across their conditions.
    """
    out, truth = world
    with open_dataset(out / TAHOE_DIR) as ds, Store(tmp_path / "s.duckdb") as st:
        report = compute_signatures(ds, None, "pseudobulk_lfc", store=st)
        assert report.n_ok == len(truth.conditions) and not report.failed
        planted_all, observed_all, scale, effect = [], [], [], []
        called = tested = 0
        for key, c in truth.conditions.items():
            f = st.signature(key, "pseudobulk_lfc", dataset_id=report.dataset_id).to_frame()
            if not truth.drug(c.drug).active:
                called += int((f["padj"] < 0.05).sum())
                tested += len(f)
                continue
            pl = {g.gene: g.log2fc for g in c.up + c.down if g.gene in f.index}
            obs = f.loc[list(pl), "log2fc"].to_numpy()
            planted_all.append(np.array(list(pl.values())))
            observed_all.append(obs)
            base = truth.drug(c.drug).base_log2fc  # the drug's log2fc at full effect
            b = np.array([base[g] for g in pl])
            scale.append(c.effect_scale)
            effect.append(float(b @ obs / (b @ b)))  # observed effect along the drug's planted direction
    x, y = np.concatenate(planted_all), np.concatenate(observed_all)
    slope = float(x @ y / (x @ x))
    assert 0.75 <= slope <= 1.25, slope
    rho = stats.spearmanr(scale, effect).statistic
    assert rho >= 0.8, rho
    assert tested > 0 and called / tested < 0.01, (called, tested)
