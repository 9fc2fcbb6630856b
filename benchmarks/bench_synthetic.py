"""Synthetic-world generator: cells written per second (h5ad and Tahoe layouts) and peak RSS at 10⁵ and 10⁶ cells.

Each measurement runs in a fresh child process (so its peak RSS is its own); all of them belong to this one run.
Baseline, in the same run: the in-memory AnnData path — draw the same counts with the same sampler, hold every cell
in one CSR matrix + obs DataFrame, then `AnnData.write_h5ad` — at 10⁵ cells (at 10⁶ it would need ~10× the memory;
it is run there only with --baseline-1m).
Goal: the streaming writers keep peak memory flat in the number of cells (10⁶-cell peak < 1.5 × the 10⁵-cell peak).

    python benchmarks/bench_synthetic.py            # 10⁵ and 10⁶ cells (several minutes on 2 cores)
    python benchmarks/bench_synthetic.py --quick    # 10⁴ and 10⁵ cells
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import machine

#: cells of the default world (12 drugs × 3 doses × 3 wells + 3 plates × 4 control wells, 3 cell lines) per unit of
#: cells_per_condition: 120 wells × 3 lines × cells_per_condition / 3 wells
CELLS_PER_UNIT = 120


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def child(mode: str, n_cells: int, out: str) -> dict:
    """One measurement: mode = h5ad | tahoe | both (streaming writers) or memory (the in-memory baseline)."""
    from mechcell.datasets.synthetic import SyntheticWorldConfig, generate_world, plan_world
    from mechcell.knowledge import load_kb

    cfg = SyntheticWorldConfig(seed=0, cells_per_condition=max(1, round(n_cells / CELLS_PER_UNIT)))
    kb = load_kb()
    rss0 = _peak_rss()
    t0 = time.perf_counter()
    if mode != "memory":
        s = generate_world(cfg, out, mode, kb=kb)  # type: ignore[arg-type]
        n, zero = s.n_cells, s.zero_fraction
    else:
        import anndata as ad
        import numpy as np
        import pandas as pd
        import scipy.sparse as sp

        world = plan_world(cfg, kb)
        rows: list[dict] = []
        parts, cols, data = [], [], []
        for w, b in world.blocks(min(4, os.cpu_count() or 1)):  # the same threaded sampler as the writers
            parts.append(b.nnz)
            cols.append(b.cols)
            data.append(b.data)
            line = world.lines[b.line]
            rows += [
                {
                    "drug": w.drug,
                    "drugname_drugconc": w.drugconc,
                    "cell_line": line.context,
                    "cell_name": line.name,
                    "plate": w.plate,
                    "sample": w.sample,
                }
            ] * b.n
        nnz = np.concatenate(parts)
        X = sp.csr_matrix(
            (np.concatenate(data), np.concatenate(cols), np.concatenate([[0], np.cumsum(nnz)])),
            shape=(len(nnz), len(world.universe.genes)),
        )
        obs = pd.DataFrame(rows).astype("category")
        obs.index = [f"c{i}" for i in range(len(obs))]
        Path(out).mkdir(parents=True, exist_ok=True)
        ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=world.universe.genes)).write_h5ad(Path(out) / "world.h5ad")
        n, zero = X.shape[0], 1 - X.nnz / (X.shape[0] * X.shape[1])
    secs = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file())
    return {
        "mode": mode,
        "n_cells": n,
        "seconds": secs,
        "cells_per_s": n / secs,
        "peak_rss": _peak_rss(),
        "rss_before": rss0,
        "bytes_written": size,
        "zero_fraction": zero,
    }


def run(mode: str, n_cells: int) -> dict:
    out = tempfile.mkdtemp(prefix=f"mechcell-bench-synth-{mode}-")
    try:
        p = subprocess.run(
            [sys.executable, __file__, "--child", mode, str(n_cells), out], check=True, capture_output=True, text=True
        )
        return json.loads(p.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=3, metavar=("MODE", "N", "OUT"))
    ap.add_argument("--quick", action="store_true", help="10⁴ and 10⁵ cells instead of 10⁵ and 10⁶")
    ap.add_argument("--baseline-1m", action="store_true", help="also run the in-memory baseline at the large size")
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child[0], int(a.child[1]), a.child[2])))
        return
    small, large = (10_000, 100_000) if a.quick else (100_000, 1_000_000)
    print(f"machine: {machine()}")
    print(
        "generator: default world (12 drugs × 3 doses × 3 cell lines, 2,000 genes, starter KB); each row a fresh "
        "process"
    )
    res: dict[tuple[str, int], dict] = {}
    plan = [("memory", small), ("h5ad", small), ("tahoe", small), ("both", small), ("h5ad", large), ("tahoe", large)]
    if a.baseline_1m:
        plan.append(("memory", large))
    print(
        f"{'mode':>8} {'cells':>10} {'seconds':>9} {'cells/s':>9} {'peak RSS MB':>12} {'written MB':>11} {'zeros':>6}"
    )
    for mode, n in plan:
        r = run(mode, n)
        res[(mode, n)] = r
        print(
            f"{mode:>8} {r['n_cells']:>10,} {r['seconds']:>9.1f} {r['cells_per_s']:>9,.0f} "
            f"{r['peak_rss'] / 2**20:>12,.0f} {r['bytes_written'] / 2**20:>11,.0f} {r['zero_fraction']:>6.2f}",
            flush=True,
        )
    base = res[("memory", small)]
    print()
    for mode in ("h5ad", "tahoe", "both"):
        r = res[(mode, small)]
        print(
            f"{mode} streaming vs in-memory AnnData at {small:,} cells: throughput × "
            f"{r['cells_per_s'] / base['cells_per_s']:.2f}, peak RSS × {r['peak_rss'] / base['peak_rss']:.2f}"
        )
    for mode in ("h5ad", "tahoe"):
        lo, hi = res[(mode, small)], res[(mode, large)]
        ratio = hi["peak_rss"] / lo["peak_rss"]
        print(
            f"{mode}: peak RSS at {large:,} / at {small:,} cells = {ratio:.2f} "
            f"({'flat: < 1.5, goal met' if ratio < 1.5 else 'NOT flat: goal missed'}); "
            f"throughput {hi['cells_per_s']:,.0f} vs {lo['cells_per_s']:,.0f} cells/s"
        )
    if ("memory", large) in res:
        m = res[("memory", large)]
        print(f"in-memory baseline peak RSS at {large:,} / at {small:,} = {m['peak_rss'] / base['peak_rss']:.2f}")


if __name__ == "__main__":
    main()
