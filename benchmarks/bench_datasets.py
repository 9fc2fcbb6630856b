"""Pseudobulk + DE throughput and peak memory on Tahoe-layout shards at 10^5 and 10^6 cells.

Ours: `open_dataset` (DuckDB scan) + `compute_signatures(method="pseudobulk_lfc")` over every condition —
aggregation streamed out of core by DuckDB. Baseline, in the same process: the in-memory AnnData/scanpy path —
read all shards into one CSR AnnData, `scanpy.get.aggregate(..., func="sum")` per well, the same fold-change
arithmetic. Both must give the same numbers (checked). A second figure compares cell-level Wilcoxon on a
fixed set of conditions: ours (cells read from shards per plate × line group) vs scanpy.rank_genes_groups on
the in-memory AnnData. Each phase runs in a fresh child process after its imports and warm-up; peak RSS is Linux VmHWM.

The shards come from a small streaming random writer below (negative-binomial counts in Tahoe's layout,
marker entry first) — a benchmark input, not the synthetic-world generator.

    .venv/bin/python benchmarks/bench_datasets.py [--sizes 100000 1000000] [--genes 2000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

N_PLATES, N_DRUGS, N_LINES = 4, 10, 10  # 4 × (10 drugs + 2 DMSO wells) × 10 lines = 400 conditions, 480 wells
DOSES = (0.05, 0.5, 5.0, 0.05)  # dose confounded with plate, as in Tahoe


# ------------------------------------------------------------------------------------------- memory


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------- the writer


def design() -> pd.DataFrame:
    rows = []
    s = 0
    for p in range(N_PLATES):
        for w in range(N_DRUGS + 2):
            drug = "DMSO_TF" if w < 2 else f"Drug{w - 1:02d}"
            dose = 0.0 if w < 2 else DOSES[p]
            rows.append((f"smp_{s:04d}", f"plate{p + 1}", drug, f"[('{drug}', {dose}, 'uM')]"))
            s += 1
    return pd.DataFrame(rows, columns=["sample", "plate", "drug", "drugname_drugconc"])


def write_shards(
    root: Path, n_cells: int, n_genes: int, *, seed: int = 0, cells_per_shard: int = 100_000, chunk: int = 5_000
) -> dict[str, float]:
    """Stream `n_cells` cells (NB counts) into Tahoe-layout shards + metadata; nothing holds all cells."""
    rng = np.random.default_rng(seed)
    (root / "data").mkdir(parents=True)
    (root / "metadata").mkdir()
    d = design()
    lines = [f"CVCL_{9000 + i:04d}" for i in range(N_LINES)]
    units = [(r.sample, r.plate, r.drug, line) for r in d.itertuples() for line in lines]  # sorted by plate
    per_unit = np.full(len(units), n_cells // len(units))
    per_unit[: n_cells - per_unit.sum()] += 1
    unit_of_cell = np.repeat(np.arange(len(units)), per_unit)
    mu = rng.lognormal(-2.2, 1.6, size=n_genes)  # ~10% of genes detected per cell, a few highly expressed
    effect = {u: np.ones(n_genes) for u in range(len(units))}
    for u, (_, _, drug, line) in enumerate(units):  # one drug acts in one line: 20 genes 3× up
        if drug == "Drug01" and line == lines[0]:
            effect[u][:20] = 3.0
    tokens = np.arange(3, 3 + n_genes, dtype=np.int64)
    t0 = time.perf_counter()
    writer: pq.ParquetWriter | None = None
    shard = -1
    nnz = 0
    bc = 0
    for start in range(0, n_cells, chunk):
        stop = min(start + chunk, n_cells)
        if start // cells_per_shard != shard:
            if writer is not None:
                writer.close()
            shard = start // cells_per_shard
            writer = None
        uc = unit_of_cell[start:stop]
        lib = rng.lognormal(0.0, 0.4, size=stop - start)
        uu, inv = np.unique(uc, return_inverse=True)
        lam = (lib[:, None] * mu[None, :] * np.stack([effect[u] for u in uu])[inv]).astype(np.float32)
        # negative binomial (dispersion 0.5) as a gamma–Poisson mixture
        counts = rng.poisson(lam * rng.standard_gamma(2.0, size=lam.shape, dtype=np.float32) * 0.5)
        counts = counts.astype(np.float32)
        r, c = np.nonzero(counts)
        vals = counts[r, c]
        per_row = np.bincount(r, minlength=stop - start)
        # prepend the marker entry (token 1, value -2) to every row
        offs = np.concatenate([[0], np.cumsum(per_row + 1)])
        gl = np.empty(offs[-1], dtype=np.int64)
        el = np.empty(offs[-1], dtype=np.float32)
        first = offs[:-1]
        gl[first] = 1
        el[first] = -2.0
        mask = np.ones(offs[-1], dtype=bool)
        mask[first] = False
        gl[mask] = tokens[c]
        el[mask] = vals
        nnz += len(vals)
        o = pa.array(offs.astype(np.int32))
        n = stop - start
        tbl = pa.table(
            {
                "genes": pa.ListArray.from_arrays(o, pa.array(gl)),
                "expressions": pa.ListArray.from_arrays(o, pa.array(el)),
                "drug": pa.array([units[u][2] for u in uc]),
                "sample": pa.array([units[u][0] for u in uc]),
                "BARCODE_SUB_LIB_ID": pa.array([f"bc{bc + i:09d}" for i in range(n)]),
                "cell_line_id": pa.array([units[u][3] for u in uc]),
                "moa-fine": pa.array(["unclear"] * n),
                "canonical_smiles": pa.array(["C"] * n),
                "pubchem_cid": pa.array(["1"] * n),
                "plate": pa.array([units[u][1] for u in uc]),
            }
        )
        bc += n
        if writer is None:
            writer = pq.ParquetWriter(root / "data" / f"train-{shard:05d}.parquet", tbl.schema)
        writer.write_table(tbl, row_group_size=chunk)
    if writer is not None:
        writer.close()
    seconds = time.perf_counter() - t0
    sm = d.assign(mean_gene_count=0.0, mean_tscp_count=0.0, mean_mread_count=0.0, mean_pcnt_mito=np.float32(0))
    sm[
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
    ].to_parquet(root / "metadata" / "sample_metadata.parquet", index=False)
    pd.DataFrame(
        {
            "gene_symbol": [f"GENE{i:05d}" for i in range(n_genes)],
            "ensembl_id": [f"ENSG{i:011d}" for i in range(n_genes)],
            "token_id": tokens,
        }
    ).to_parquet(root / "metadata" / "gene_metadata.parquet", index=False)
    return {"seconds": seconds, "cells_per_s": n_cells / seconds, "nnz_per_cell": nnz / n_cells}


# ------------------------------------------------------------------------------------------- the two paths


def ours_pseudobulk(root: Path) -> tuple[dict[str, np.ndarray], int]:
    from mechcell.datasets import compute_signatures, open_dataset
    from mechcell.datasets.signatures import signature_from_pseudobulk

    out: dict[str, np.ndarray] = {}
    with open_dataset(root, memory_limit="2GB") as ds:
        rep = compute_signatures(ds, method="pseudobulk_lfc", min_counts=0)
        assert not rep.failed, rep.failed[:3]
        # keep the fold changes of a few conditions to compare with the baseline
        keys = sorted(rep.keys)[:: max(1, len(rep.keys) // 8)]
        for g in ds.pseudobulk(keys):
            for k in g.keys:
                if k in keys:
                    out[k] = np.asarray(signature_from_pseudobulk(g, ds.summary(k), min_counts=0).log2fc)
        return out, rep.n_ok


def load_in_memory(root: Path):
    """All shards → one CSR AnnData (the marker entry dropped), obs with Tahoe's names + dose."""
    import anndata as ad
    import scipy.sparse as sp

    from mechcell.datasets.perturbation import parse_drugconc

    files = sorted((root / "data").glob("*.parquet"))
    gm = pd.read_parquet(root / "metadata" / "gene_metadata.parquet")
    sm = pd.read_parquet(root / "metadata" / "sample_metadata.parquet")
    tok2col = np.full(int(gm["token_id"].max()) + 1, -1)
    tok2col[gm["token_id"].to_numpy()] = np.arange(len(gm))
    mats, obs = [], []
    for f in files:
        t = pq.read_table(f, columns=["genes", "expressions", "drug", "sample", "cell_line_id", "plate"])
        g = t.column("genes").combine_chunks()
        e = t.column("expressions").combine_chunks()
        offs = np.asarray(g.offsets)
        col = tok2col[np.asarray(g.values)]  # the marker token (1) maps to -1
        keep = col >= 0
        cs = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
        mats.append(sp.csr_matrix((np.asarray(e.values)[keep], col[keep], cs[offs]), shape=(len(offs) - 1, len(gm))))
        obs.append(t.select(["drug", "sample", "cell_line_id", "plate"]).to_pandas())
    X = sp.vstack(mats, format="csr")
    o = pd.concat(obs, ignore_index=True)
    dose = dict(zip(sm["sample"], [parse_drugconc(s)[0][1] for s in sm["drugname_drugconc"]], strict=True))
    o["dose"] = o["sample"].map(dose)
    o.index = o.index.astype(str)
    return ad.AnnData(X=X, obs=o, var=pd.DataFrame(index=gm["gene_symbol"].to_numpy()))


def baseline_pseudobulk(root: Path, keys: list[str]) -> tuple[dict[str, np.ndarray], int]:
    import scanpy as sc

    from mechcell.datasets.de import pseudobulk_log2fc

    t0 = time.perf_counter()
    a = load_in_memory(root)
    LOAD_SECONDS.append(time.perf_counter() - t0)
    a.obs["unit"] = (a.obs["sample"] + "|" + a.obs["cell_line_id"]).astype("category")
    agg = sc.get.aggregate(a, by="unit", func="sum")
    sums = agg.layers["sum"]
    sums = np.asarray(sums.toarray() if hasattr(sums, "toarray") else sums, dtype=np.float64)
    units = agg.obs["unit"].astype(str).str.split("|", expand=True).reset_index(drop=True)
    units.columns = ["sample", "line"]
    meta = a.obs.drop_duplicates("sample").set_index("sample")
    units["drug"] = units["sample"].map(meta["drug"])
    units["plate"] = units["sample"].map(meta["plate"])
    units["dose"] = units["sample"].map(meta["dose"])
    out: dict[str, np.ndarray] = {}
    n = 0
    for (drug, dose, line, plate), idx in (
        units[units["drug"] != "DMSO_TF"].groupby(["drug", "dose", "line", "plate"]).indices.items()
    ):
        ctrl = np.flatnonzero(
            ((units["drug"] == "DMSO_TF") & (units["line"] == line) & (units["plate"] == plate)).to_numpy()
        )
        rows = np.flatnonzero((units["drug"] != "DMSO_TF").to_numpy())[idx]
        lfc, _, _ = pseudobulk_log2fc(sums[rows], sums[ctrl])
        key = f"{drug}|{dose:g}uM|{line}|{plate}"
        n += 1
        if key in keys:
            out[key] = lfc
    return out, n


def ours_wilcoxon(root: Path, keys: list[str]) -> int:
    from mechcell.datasets import compute_signatures, open_dataset

    with open_dataset(root, memory_limit="2GB") as ds:
        rep = compute_signatures(ds, keys, method="wilcoxon", tie_correct=False)
        assert not rep.failed, rep.failed[:3]
        return sum(ds.summary(k).n_cells + ds.summary(k).n_control_cells for k in keys)


def baseline_wilcoxon(root: Path, keys: list[str]) -> int:
    import scanpy as sc

    t0 = time.perf_counter()
    a = load_in_memory(root)
    LOAD_SECONDS.append(time.perf_counter() - t0)
    n = 0
    for k in keys:
        drug, dose, line, plate = k.split("|")
        at = a.obs["cell_line_id"].eq(line) & a.obs["plate"].eq(plate)
        m = at & (a.obs["drug"].eq("DMSO_TF") | (a.obs["drug"].eq(drug) & a.obs["dose"].eq(float(dose[:-2]))))
        sub = a[m.to_numpy()].copy()
        sub.obs["grp"] = np.where(sub.obs["drug"] == "DMSO_TF", "control", "treated")
        sc.pp.normalize_total(sub, target_sum=1e4)
        sc.pp.log1p(sub)
        sc.tl.rank_genes_groups(
            sub, "grp", groups=["treated"], reference="control", method="wilcoxon", n_genes=sub.n_vars
        )
        n += sub.n_obs
    return n


# ------------------------------------------------------------------------------------------- main


def _size_mb(root: Path) -> float:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 1e6


LOAD_SECONDS: list[float] = []  # the baseline's time to read every shard into memory
PHASES = ("ours_pseudobulk", "baseline_pseudobulk", "ours_wilcoxon", "baseline_wilcoxon")


def _warm_up(phase: str) -> None:
    """Imports and one-off compilation (numba in scanpy's Wilcoxon) happen before the clock starts."""
    import anndata as ad
    import scanpy as sc
    import scipy.sparse as sp

    import mechcell.datasets.signatures  # noqa: F401

    if phase == "baseline_wilcoxon":
        rng = np.random.default_rng(0)
        a = ad.AnnData(X=sp.csr_matrix(rng.poisson(1.0, size=(60, 30)).astype(np.float32)))
        a.obs["grp"] = pd.Categorical(["treated", "control"] * 30)
        sc.pp.normalize_total(a, target_sum=1e4)
        sc.pp.log1p(a)
        sc.tl.rank_genes_groups(a, "grp", groups=["treated"], reference="control", method="wilcoxon")


def run_phase(phase: str, root: Path, keys: list[str]) -> dict[str, object]:
    """One phase in this (fresh) process: wall time, peak RSS and the RSS floor it started from."""
    _warm_up(phase)
    gc.collect()
    _reset_peak()
    floor = _peak_mb()
    t0 = time.perf_counter()
    out: dict[str, object] = {}
    if phase == "ours_pseudobulk":
        lfc, n = ours_pseudobulk(root)
        out = {"n_conditions": n, "lfc": {k: v.tolist() for k, v in lfc.items()}}
    elif phase == "baseline_pseudobulk":
        lfc, n = baseline_pseudobulk(root, keys)
        out = {"n_conditions": n, "lfc": {k: v.tolist() for k, v in lfc.items()}}
    elif phase == "ours_wilcoxon":
        out = {"cells": ours_wilcoxon(root, keys)}
    elif phase == "baseline_wilcoxon":
        out = {"cells": baseline_wilcoxon(root, keys)}
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_mb": _peak_mb(), "floor_mb": floor, "load_s": sum(LOAD_SECONDS), **out}


def _child(phase: str, root: Path, keys: list[str]) -> dict:
    import json
    import subprocess

    kf = root / f"_keys_{phase}.json"
    kf.write_text(json.dumps(keys))
    p = subprocess.run(
        [sys.executable, __file__, "--phase", phase, "--root", str(root), "--keys-file", str(kf)],
        capture_output=True,
        text=True,
        check=False,
    )
    if p.returncode != 0:
        raise RuntimeError(f"phase {phase} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--genes", type=int, default=2000)
    ap.add_argument("--wilcoxon-conditions", type=int, default=12)
    ap.add_argument("--keep", type=Path, default=None, help="write shards here and keep them")
    ap.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--keys-file", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:  # child mode: one phase, one JSON line
        import json

        keys = json.loads(args.keys_file.read_text()) if args.keys_file else []
        print(json.dumps(run_phase(args.phase, args.root, keys)))
        return

    import duckdb
    import scanpy

    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}, duckdb {duckdb.__version__}, scanpy {scanpy.__version__}; "
        f"peak RSS per phase in a fresh child process (VmHWM; 'floor' = RSS after imports)"
    )
    print(
        f"design: {N_PLATES} plates × ({N_DRUGS} drugs + 2 DMSO_TF wells) × {N_LINES} lines = "
        f"{N_PLATES * N_DRUGS * N_LINES} conditions; {args.genes} genes"
    )
    base = args.keep or Path(tempfile.mkdtemp(prefix="mechcell-bench-"))
    results = {}
    try:
        for n in args.sizes:
            root = base / f"tahoe_{n}"
            if root.exists():
                shutil.rmtree(root)
            w = write_shards(root, n, args.genes)
            print(
                f"\n== {n:,} cells: shards written at {w['cells_per_s']:,.0f} cells/s by the bench writer "
                f"({w['nnz_per_cell']:.0f} non-zeros/cell, {_size_mb(root):,.0f} MB on disk)"
            )
            ours = _child("ours_pseudobulk", root, [])
            bl = _child("baseline_pseudobulk", root, sorted(ours["lfc"]))
            for name, r in (("ours    ", ours), ("baseline", bl)):
                print(
                    f"{name} pseudobulk+DE: {r['seconds']:7.1f} s  {n / r['seconds']:10,.0f} cells/s  "
                    f"peak RSS {r['peak_mb']:7,.0f} MB (floor {r['floor_mb']:,.0f})  {r['n_conditions']} conditions"
                    + (f"; {r['load_s']:.1f} s of it loading the shards into memory" if r["load_s"] else "")
                )
            diff = max(float(np.max(np.abs(np.array(ours["lfc"][k]) - np.array(bl["lfc"][k])))) for k in ours["lfc"])
            print(f"  same fold changes: max |Δlog2fc| = {diff:.2e} over {len(ours['lfc'])} checked conditions")
            print(
                f"  ours vs baseline: throughput ×{bl['seconds'] / ours['seconds']:.2f}, "
                f"peak memory ×{ours['peak_mb'] / bl['peak_mb']:.2f}"
            )
            from mechcell.datasets import open_dataset

            with open_dataset(root) as ds:
                allk = [s.key for s in ds.summaries()]
            keys = allk[:: max(1, len(allk) // args.wilcoxon_conditions)][: args.wilcoxon_conditions]
            ow = _child("ours_wilcoxon", root, keys)
            bw = _child("baseline_wilcoxon", root, keys)
            print(
                f"wilcoxon on {len(keys)} conditions ({ow['cells']:,} cells incl. controls): "
                f"ours {ow['seconds']:.1f} s ({ow['cells'] / ow['seconds']:,.0f} cells/s, peak {ow['peak_mb']:,.0f} MB)"
                f" vs scanpy in memory {bw['seconds']:.1f} s ({bw['cells'] / bw['seconds']:,.0f} cells/s incl. "
                f"loading all cells ({bw['load_s']:.1f} s), peak {bw['peak_mb']:,.0f} MB)"
            )
            results[n] = {"ours": ours, "base": bl, "nnz": w["nnz_per_cell"], "writer": w}
            if args.keep is None:
                shutil.rmtree(root)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    if len(results) >= 2:
        small, large = min(results), max(results)
        ro = results[large]["ours"]["peak_mb"] / results[small]["ours"]["peak_mb"]
        rb = results[large]["base"]["peak_mb"] / results[small]["base"]["peak_mb"]
        print(f"\npeak memory {large:,} vs {small:,} cells: ours ×{ro:.2f} (goal < 1.5), baseline ×{rb:.2f}")
        o = results[large]["ours"]
        rate_nnz = large * results[large]["nnz"] / o["seconds"]
        tahoe_cells, tahoe_nnz = 100_648_790, 1_350  # Tahoe's mean genes detected per cell ≈ 1,350
        est = tahoe_cells * tahoe_nnz / rate_nnz
        print(
            f"ours processes {rate_nnz / 1e6:,.1f} M non-zeros/s here; Tahoe-100M "
            f"(~{tahoe_cells * tahoe_nnz / 1e9:,.0f} G non-zeros) would take ≈ {est / 3600:,.1f} h of "
            "pseudobulk+DE on this machine"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
