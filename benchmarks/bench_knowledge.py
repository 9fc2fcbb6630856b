"""Knowledge base: full build from ../shared/kb, retrieval latency over the Tahoe drug panel, path queries.

Figures (issue 4): build time and store size (goal: < 2 min), Tahoe coverage, retrieval latency per condition over
all Tahoe drugs with the full KB (median and p95; goal: median < 50 ms), path-query speed.
Baselines, in the same process: reading every source file with plain pandas (no validation, no store) for the
build; `networkx.all_simple_paths(cutoff=3)` on the same signed graph for path queries.
Usage: python benchmarks/bench_knowledge.py [KB_DIR]   (default ../shared/kb beside the checkout)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
from _machine import machine

from mechcell.datasets.schemas import Condition, Signature
from mechcell.knowledge import Retriever, load_kb
from mechcell.knowledge.build import build_store
from mechcell.knowledge.importers import found_sources


def baseline_read(kb_dir: Path) -> float:
    """Plain pandas reads of every source file the build reads (the floor of any importer)."""
    t0 = time.perf_counter()
    for spec in found_sources(kb_dir):
        for rel in spec.paths:
            p = kb_dir / rel
            if p.suffix == ".parquet":
                pd.read_parquet(p)
            elif p.suffix == ".gmt":
                p.read_text().splitlines()
            else:
                pd.read_csv(p, sep="," if p.suffix == ".csv" else "\t", dtype=str, header=None)
    return time.perf_counter() - t0


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def main() -> None:
    kb_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / ".." / "shared" / "kb"
    if not kb_dir.is_dir():
        print(f"no KB source directory at {kb_dir}; nothing to benchmark")
        return
    kb_dir = kb_dir.resolve()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "kb.duckdb"
        base = baseline_read(kb_dir)
        t0 = time.perf_counter()
        summary = build_store(kb_dir, out)
        build_s = time.perf_counter() - t0
        print(
            f"\nfull build: {build_s:.1f} s (goal < 120 s), store {out.stat().st_size / 1e6:.1f} MB, "
            f"{summary.n_relations:,} relations, {summary.n_entities:,} entities; baseline plain pandas read of "
            f"the same files {base:.1f} s (build / read = {build_s / base:.1f}×)"
        )
        cov = summary.coverage
        assert cov is not None
        print(
            f"coverage over {cov.n_drugs} Tahoe drug labels: targets {cov.drugs_with_targets} "
            f"({cov.share(cov.drugs_with_targets):.1%}); targets resolving to HGNC genes "
            f"{cov.drugs_with_resolved_targets} ({cov.share(cov.drugs_with_resolved_targets):.1%}); reaching a TF "
            f"with a regulon in ≤ 3 signed steps {cov.drugs_reaching_tf} ({cov.share(cov.drugs_reaching_tf):.1%}); "
            f"a TF or pathway {cov.drugs_reaching_tf_or_pathway} "
            f"({cov.share(cov.drugs_reaching_tf_or_pathway):.1%}); Tahoe target symbols resolved "
            f"{cov.tahoe_target_symbols_resolved}/{cov.tahoe_target_symbols}"
        )

        kb = load_kb(out)
        t0 = time.perf_counter()
        kb.adjacency()
        kb.regulons()
        kb.footprints()
        kb._aliases  # noqa: B018 — load the in-memory views once, as a long-lived process would
        print(f"\nloading the in-memory views: {time.perf_counter() - t0:.2f} s (once per process)")

        drugs = pd.read_parquet(kb_dir / "tahoe/drug_metadata.parquet")["drug"].tolist()
        rng = np.random.default_rng(0)
        genes = kb.genes()[:20000]
        retriever = Retriever(kb)
        for label, with_sig in (("no signature", False), ("20k-gene signature", True)):
            for phase in ("cold", "warm"):
                if phase == "cold":
                    retriever = Retriever(kb)
                times = []
                for d in drugs:
                    cond = Condition(perturbation=d, context="CVCL_0023", batch="plate1")
                    sig = None
                    if with_sig:
                        v = rng.standard_normal(len(genes)).tolist()
                        sig = Signature(
                            condition=cond,
                            method="synthetic",
                            n_treated=10,
                            n_control=10,
                            genes=genes,
                            log2fc=v,
                            pvalue=[0.5] * len(genes),
                            padj=[0.5] * len(genes),
                        )
                    t0 = time.perf_counter()
                    retriever.context(cond, sig, budget=2000)
                    times.append((time.perf_counter() - t0) * 1e3)
                print(
                    f"retrieval, {label}, {phase} caches, {len(drugs)} Tahoe drugs: median "
                    f"{statistics.median(times):.1f} ms, p95 {pct(times, 95):.1f} ms, max {max(times):.0f} ms "
                    f"(goal: median < 50 ms)"
                )

        # path queries vs networkx on the same protein-level signed graph
        adj = kb.adjacency()
        g = nx.DiGraph()
        for u, vs in adj.succ.items():
            for v, s in vs:
                g.add_edge(u, v, sign=s)
        tfs = {t for t in kb.regulon_tfs() if t in g}
        starts = sorted(n for n in g if g.out_degree(n) >= 3)
        pairs = []
        while len(pairs) < 60:  # (hub, TF) pairs joined by at least one path of ≤ 3 steps
            a = str(rng.choice(starts))
            reach = sorted(t for t in nx.single_source_shortest_path_length(g, a, cutoff=3) if t in tfs and t != a)
            if reach:
                pairs.append((a, str(rng.choice(reach))))
        t0 = time.perf_counter()
        ours = [len(kb.paths(a, b, max_len=3, k=10_000)) for a, b in pairs]
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = [sum(1 for _ in nx.all_simple_paths(g, a, b, cutoff=3)) for a, b in pairs]
        t_nx = time.perf_counter() - t0
        assert ours == ref, "path counts differ from networkx"
        print(
            f"\nall signed paths ≤ 3 steps, {len(pairs)} random (hub, TF) pairs, {sum(ref):,} paths: "
            f"kb.paths {t_ours * 1e3 / len(pairs):.1f} ms/pair, networkx all_simple_paths "
            f"{t_nx * 1e3 / len(pairs):.1f} ms/pair (speed-up {t_nx / t_ours:.1f}×)"
        )
        kb.close()


if __name__ == "__main__":
    main()
