"""Fixtures in the real layouts: Tahoe-100M expression shards + metadata, and the same cells as an h5ad.

The design (samples → drug, drugname_drugconc, plate; cell lines; gene tokens) comes from the real Tahoe
metadata in ../shared/kb/tahoe when present (tests that need it skip cleanly otherwise); a toy design that
mimics it serves the tests that only need *a* dataset. Counts are negative-binomial with a planted effect,
so tests know the truth: which genes go up / down in which condition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

KB = Path(__file__).resolve().parents[2] / ".." / "shared" / "kb"
TAHOE_KB = KB / "tahoe"

#: the exact column order of Tahoe's expression shards and of its 17-column obs_metadata
SHARD_COLUMNS = [
    "genes",
    "expressions",
    "drug",
    "sample",
    "BARCODE_SUB_LIB_ID",
    "cell_line_id",
    "moa-fine",
    "canonical_smiles",
    "pubchem_cid",
    "plate",
]
OBS_COLUMNS = [
    "plate",
    "BARCODE_SUB_LIB_ID",
    "sample",
    "gene_count",
    "tscp_count",
    "mread_count",
    "drugname_drugconc",
    "drug",
    "cell_line",
    "sublibrary",
    "BARCODE",
    "pcnt_mito",
    "S_score",
    "G2M_score",
    "phase",
    "pass_filter",
    "cell_name",
]


def real_kb_table(name: str) -> pd.DataFrame:
    path = TAHOE_KB / f"{name}.parquet"
    if not path.is_file():
        pytest.skip(f"real Tahoe metadata not available at {path}")
    return pd.read_parquet(path)


@dataclass
class World:
    """A small dataset written in both layouts, with its ground truth."""

    root: Path
    h5ad: Path
    obs: pd.DataFrame
    counts: sp.csr_matrix
    genes: list[str]
    tokens: np.ndarray
    samples: pd.DataFrame
    up: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    down: dict[tuple[str, str], list[str]] = field(default_factory=dict)


def toy_design() -> tuple[pd.DataFrame, list[tuple[str, str]], pd.DataFrame]:
    """Two plates (dose confounded with plate as in Tahoe), two control wells per plate, the solvate trap and a
    drug name with a trailing space."""
    rows = []
    for plate, dose in (("plate1", 0.05), ("plate2", 5.0)):
        rows.append(("DMSO_TF", "[('DMSO_TF', 0.0, 'uM')]", plate))
        rows.append(("DMSO_TF", "[('DMSO_TF', 0.0, 'uM')]", plate))
        rows.append(("Trametinib", f"[('Trametinib', {dose}, 'uM')]", plate))
        rows.append(("Trametinib (DMSO_TF solvate)", f"[('Trametinib (DMSO_TF solvate)', {dose}, 'uM')]", plate))
        rows.append(("Erdafitinib ", f"[('Erdafitinib ', {dose}, 'uM')]", plate))
    samples = pd.DataFrame(rows, columns=["drug", "drugname_drugconc", "plate"])
    samples.insert(0, "sample", [f"smp_{1495 + i}" for i in range(len(samples))])
    lines = [("CVCL_0023", "A549"), ("CVCL_1055", "A-427")]
    genes = pd.DataFrame(
        {
            "gene_symbol": [f"G{i:03d}" for i in range(196)] + ["MCM5", "PCNA", "TOP2A", "MKI67"],
            "ensembl_id": [f"ENSG{i:011d}" for i in range(200)],
            "token_id": np.arange(3, 3 + 200),
        }
    )
    return samples, lines, genes


def real_design(
    plates: tuple[str, ...] | None,
    drugs: tuple[str, ...] | None,
    n_lines: int,
    n_genes: int,
) -> tuple[pd.DataFrame, list[tuple[str, str]], pd.DataFrame]:
    """Samples, cell lines and genes from the real Tahoe metadata (skip when absent)."""
    sm = real_kb_table("sample_metadata")
    cl = real_kb_table("cell_line_metadata")
    gm = real_kb_table("gene_metadata")
    grid = real_kb_table("obs_cell_grid")
    if plates is not None:
        sm = sm[sm["plate"].isin(plates)]
    if drugs is not None:
        sm = sm[sm["drug"].isin(drugs)]
    assayed = sorted(grid["cell_name"].unique())
    lines_df = cl[cl["cell_name"].isin(assayed)][["Cell_ID_Cellosaur", "cell_name"]].drop_duplicates()
    lines = list(lines_df.itertuples(index=False, name=None))[:n_lines]
    from mechcell.datasets.cells import G2M_GENES, S_GENES

    cc = gm[gm["gene_symbol"].isin(S_GENES[:12] + G2M_GENES[:12])]
    rest = gm[~gm.index.isin(cc.index)].iloc[::997].head(max(n_genes - len(cc), 0))
    genes = pd.concat([rest, cc]).sort_values("token_id").reset_index(drop=True)
    return sm[["sample", "drug", "drugname_drugconc", "plate"]].reset_index(drop=True), lines, genes


def build_world(
    root: Path,
    samples: pd.DataFrame,
    lines: list[tuple[str, str]],
    genes: pd.DataFrame,
    *,
    cells_per_well: int | tuple[int, int] = 30,
    effects: dict[tuple[str, str], float] | None = None,
    n_effect_genes: int = 6,
    seed: int = 0,
    n_shards: int = 3,
    write_obs: bool = True,
) -> World:
    """Negative-binomial counts for every (sample, cell line) with planted up/down genes, written as Tahoe
    shards (data/) + metadata (metadata/) and as an h5ad with Tahoe's obs names."""
    rng = np.random.default_rng(seed)
    G = len(genes)
    symbols = genes["gene_symbol"].tolist()
    base = rng.lognormal(mean=0.0, sigma=1.2, size=G) * 0.8
    plate_eff = {p: rng.lognormal(0.0, 0.1, size=G) for p in pd.unique(samples["plate"])}
    effects = effects or {}
    up: dict[tuple[str, str], list[str]] = {}
    down: dict[tuple[str, str], list[str]] = {}
    eff_vec: dict[tuple[str, str], np.ndarray] = {}
    # Plant effects in well-expressed genes but not the very top ones, whose change would shift every cell's
    # library size (a compositional effect that makes untouched genes look changed after normalisation).
    ranked = np.argsort(-base)
    skip = max(G // 20, 2)
    candidates = ranked[skip : skip + max(4 * n_effect_genes, 10)]
    for (drug, line), fold in effects.items():
        pick = rng.choice(candidates, size=2 * n_effect_genes, replace=False)
        v = np.ones(G)
        v[pick[:n_effect_genes]] = fold
        v[pick[n_effect_genes:]] = 1.0 / fold
        up[(drug, line)] = [symbols[i] for i in pick[:n_effect_genes]]
        down[(drug, line)] = [symbols[i] for i in pick[n_effect_genes:]]
        eff_vec[(drug, line)] = v
    obs_rows = []
    mats = []
    bc = 0
    lo, hi = (cells_per_well, cells_per_well) if isinstance(cells_per_well, int) else cells_per_well
    for s in samples.itertuples(index=False):
        for line, name in lines:
            n = int(rng.integers(lo, hi + 1))
            if n == 0:
                continue
            lib = rng.lognormal(0.0, 0.35, size=n)
            mu = np.outer(lib, base * plate_eff[s.plate] * eff_vec.get((s.drug.strip(), line), 1.0))
            phi = 0.4
            lam = rng.gamma(shape=1.0 / phi, scale=mu * phi)
            x = rng.poisson(lam).astype(np.float64)
            mats.append(sp.csr_matrix(x))
            for _ in range(n):
                bc += 1
                obs_rows.append(
                    {
                        "drug": s.drug,
                        "drugname_drugconc": s.drugname_drugconc,
                        "plate": s.plate,
                        "sample": s.sample,
                        "cell_line": line,
                        "cell_name": name,
                        "BARCODE_SUB_LIB_ID": f"{bc:02d}_{bc % 97:03d}_{bc:03d}-lib_{1100 + bc % 9}",
                        "S_score": float(rng.normal()),
                        "G2M_score": float(rng.normal()),
                    }
                )
    X = sp.vstack(mats, format="csr")
    obs = pd.DataFrame(obs_rows)
    obs["phase"] = np.where(
        (obs["S_score"] < 0) & (obs["G2M_score"] < 0), "G1", np.where(obs["S_score"] > obs["G2M_score"], "S", "G2M")
    )
    tokens = genes["token_id"].to_numpy(np.int64)
    # ---- Tahoe layout: shards sorted by plate (as the real ones are), then metadata
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    order = np.argsort(obs["plate"].to_numpy(), kind="stable")
    for i, part in enumerate(np.array_split(order, n_shards)):
        gl, el = [], []
        for r in part:
            row = X.getrow(r)
            gl.append([1] + tokens[row.indices].tolist())  # the marker entry first: token 1, value -2
            el.append([-2.0] + row.data.tolist())
        o = obs.iloc[part]
        tbl = pa.table(
            {
                "genes": pa.array(gl, type=pa.list_(pa.int64())),
                "expressions": pa.array(el, type=pa.list_(pa.float32())),
                "drug": pa.array(o["drug"].tolist(), pa.string()),
                "sample": pa.array(o["sample"].tolist(), pa.string()),
                "BARCODE_SUB_LIB_ID": pa.array(o["BARCODE_SUB_LIB_ID"].tolist(), pa.string()),
                "cell_line_id": pa.array(o["cell_line"].tolist(), pa.string()),
                "moa-fine": pa.array(["unclear"] * len(o), pa.string()),
                "canonical_smiles": pa.array(["C"] * len(o), pa.string()),
                "pubchem_cid": pa.array(["1"] * len(o), pa.string()),
                "plate": pa.array(o["plate"].tolist(), pa.string()),
            }
        )
        assert tbl.column_names == SHARD_COLUMNS
        pq.write_table(tbl, root / "data" / f"train-{i:05d}-of-{n_shards:05d}.parquet", row_group_size=64)
    sm = samples.copy()
    for c, v in (("mean_gene_count", 1300.0), ("mean_tscp_count", 2000.0), ("mean_mread_count", 2400.0)):
        sm[c] = v
    sm["mean_pcnt_mito"] = np.float32(0.05)
    sm = sm[
        [
            "sample",
            "plate",
            "mean_gene_count",
            "mean_tscp_count",
            "mean_mread_count",
            "mean_pcnt_mito",
            "drug",
            "drugname_drugconc",
        ]
    ]
    sm.to_parquet(root / "metadata" / "sample_metadata.parquet", index=False)
    genes[["gene_symbol", "ensembl_id", "token_id"]].to_parquet(
        root / "metadata" / "gene_metadata.parquet", index=False
    )
    pd.DataFrame({"cell_name": [n for _, n in lines], "Cell_ID_Cellosaur": [c for c, _ in lines]}).to_parquet(
        root / "metadata" / "cell_line_metadata.parquet", index=False
    )
    if write_obs:
        lib = np.asarray(X.sum(axis=1)).ravel()
        om = pd.DataFrame(
            {
                "plate": obs["plate"],
                "BARCODE_SUB_LIB_ID": obs["BARCODE_SUB_LIB_ID"],
                "sample": obs["sample"],
                "gene_count": np.diff(X.indptr).astype(np.int32),
                "tscp_count": lib.astype(np.int32),
                "mread_count": (lib * 1.2).astype(np.int32),
                "drugname_drugconc": obs["drugname_drugconc"],
                "drug": obs["drug"],
                "cell_line": obs["cell_line"],
                "sublibrary": "sublib_A",
                "BARCODE": [f"AAAC{i:08d}" for i in range(len(obs))],
                "pcnt_mito": 0.05,
                "S_score": obs["S_score"],
                "G2M_score": obs["G2M_score"],
                "phase": obs["phase"],
                "pass_filter": "full",
                "cell_name": obs["cell_name"],
            }
        )[OBS_COLUMNS]
        om.to_parquet(root / "metadata" / "obs_metadata.parquet", index=False)
    # ---- h5ad with Tahoe's obs names
    h5 = root.parent / f"{root.name}.h5ad"
    a = ad.AnnData(
        X=X.astype(np.float32),
        obs=obs[
            ["drug", "drugname_drugconc", "cell_line", "plate", "sample", "S_score", "G2M_score", "phase"]
        ].set_index(obs["BARCODE_SUB_LIB_ID"].to_numpy()),
        var=pd.DataFrame(index=pd.Index(symbols)),
    )
    a.write_h5ad(h5)
    return World(root=root, h5ad=h5, obs=obs, counts=X, genes=symbols, tokens=tokens, samples=samples, up=up, down=down)


@pytest.fixture(scope="session")
def toy_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Toy Tahoe-like design; Trametinib has a 4× planted effect in A549 (CVCL_0023)."""
    samples, lines, genes = toy_design()
    root = tmp_path_factory.mktemp("toy") / "tahoe"
    return build_world(
        root, samples, lines, genes, cells_per_well=(40, 60), effects={("Trametinib", "CVCL_0023"): 4.0}, seed=7
    )


@pytest.fixture(scope="session")
def world_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., World]:
    def make(
        name: str, samples: pd.DataFrame, lines: list[tuple[str, str]], genes: pd.DataFrame, **kw: object
    ) -> World:
        root = tmp_path_factory.mktemp(name) / "tahoe"
        return build_world(root, samples, lines, genes, **kw)  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="session")
def real_design_fn() -> Callable[..., tuple[pd.DataFrame, list[tuple[str, str]], pd.DataFrame]]:
    """`real_design(plates, drugs, n_lines, n_genes)` (skips when ../shared/kb is absent)."""
    return real_design


REAL_DRUGS = ("DMSO_TF", "Trametinib", "Infigratinib", "Erdafitinib ", "Everolimus")


@pytest.fixture(scope="session")
def real_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Real Tahoe design on three plates (doses 0.05 / 0.5 / 5 µM), three real cell lines, 200 real genes
    including cell-cycle genes; Trametinib has a planted 4× effect in the first cell line."""
    samples, lines, genes = real_design(("plate1", "plate2", "plate3"), REAL_DRUGS, n_lines=3, n_genes=200)
    root = tmp_path_factory.mktemp("real") / "tahoe"
    return build_world(
        root,
        samples,
        lines,
        genes,
        cells_per_well=(40, 60),
        effects={("Trametinib", lines[0][0]): 4.0},
        n_effect_genes=8,
        seed=11,
    )


@pytest.fixture(scope="session")
def toy_design_fn() -> Callable[[], tuple[pd.DataFrame, list[tuple[str, str]], pd.DataFrame]]:
    return toy_design
