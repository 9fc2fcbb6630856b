"""Expression predictors on synthetic worlds: does a verified mechanism help predict unseen drugs?

Per world (seeds 0..W-1; default 24 drugs × 3 doses × 3 cell lines, 600 genes): generate it, register it in a
fresh project store, compute signatures (Wilcoxon), then build two trace sets with the local proposer —
`verified` (the full pipeline: proposals verified against each condition's own signature; only accepted traces
count) and `kb-prior` (the pipeline with no data: the KB's mechanism for the drug, nothing verified) — and take
the planted graphs as `oracle` (and `oracle-drug`: the drug's planted mechanism at all its conditions, the
ceiling of a drug-level mechanism). `trace-prior` / `trace-prior-v` are leakage-free: per CV fold a
`TracePrior` fitted on the training drugs' verified traces only gives the held-out drugs their KB-path mechanism
weighted by what those traces verified (training rows: leave-one-drug-out priors / their verified traces);
`trace-prior-r1` / `trace-prior-v-r1` are round 1's prior (pooled end rates, no end or activity model), and
`oracle-ends` (diagnostic, uses the truth) gives held-out drugs their planted ends with the prior's genes.
`--cache DIR` keeps each world's CV inputs (deltas, traces as mechanisms, KB reach) for re-runs.
Each mechanism source feeds the same grouped 5-fold CV by drug
(`mechcell.eval.expression.run_experiment`): baselines (control mean, mean effect, additive, ridge on KB drug
features, and an MLP of the trace model's size without mechanism) against the trace-conditioned models.
A secondary table holds the split by cell line (verified traces).

Honesty notes, printed with the figures:
- `verified` is transductive: a held-out condition's trace was verified on that condition's own signature;
- `kb-prior` and the `_aux` models need no data of the held-out condition (leakage-free);
- `oracle` is the planted truth: what a correct mechanism is worth, not what the pipeline delivers.

Figures: per source, the margin of each trace model over the best baseline (chosen per metric on the pooled
means, i.e. in the baselines' favour) with a 95% cluster-bootstrap CI over (world, drug) clusters, pooled over
worlds, plus the per-world margins (seeds), and the ratio model ÷ best baseline; the machine it ran on.

Usage: .venv/bin/python benchmarks/bench_predictors.py [--worlds 3] [--drugs 24] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _machine import machine

OUT = Path(__file__).resolve().parent / "_out" / "predictors.md"
SOURCES = (
    "oracle",
    "oracle-drug",
    "oracle-ends",
    "oracle-activity",
    "verified",
    "kb-prior",
    "trace-prior",
    "trace-prior-v",
    "trace-prior-r1",
    "trace-prior-v-r1",
)


def _world(job: dict[str, Any]) -> dict[str, Any]:
    """Worker: one world, every mechanism source, CV by drug (+ by cell line for verified traces)."""
    # one BLAS / OpenMP thread per worker, set before numpy loads: two workers share two cores, and a
    # multi-threaded BLAS on a busy machine made the ridge SVDs ~20× slower (measured)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import torch

    torch.set_num_threads(1)
    from mechcell.eval.expression import result_json, run_experiment
    from mechcell.models.features import TracePrior, mechanisms_from_truth
    from mechcell.models.predictors import PredictorInputs, make_folds

    seed = job["seed"]
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix=f"bench_pred_{seed}_") as tmp:
        cache = _cache_dir(job)
        if cache is not None and (cache / "done").is_file():
            arte = _load_artefacts(cache)
            timings["cached_inputs"] = 0.0
        else:
            arte = _build_artefacts(job, Path(tmp), timings)
            if cache is not None:
                _save_artefacts(cache, arte)
        truth, tab, feats = arte["truth"], arte["table"], arte["drug_features"]
        reach, statuses = arte["reach"], arte["statuses"]
        verified = PredictorInputs(tab, feats, arte["verified"], "traces")
        tab = verified.table
        oracle = mechanisms_from_truth(truth, tab.keys)
        richest: dict[str, Any] = {}
        for k in sorted(oracle):
            d = k.split("|")[0]
            if d not in richest or len(oracle[k].genes) > len(richest[d].genes):
                richest[d] = oracle[k]
        sources = {
            "oracle": oracle,
            # the planted mechanism of the drug at every one of its conditions, active at that dose or not: the
            # ceiling of any drug-level mechanism (a leakage-free prior cannot know a condition's activity)
            "oracle-drug": {k: richest[d] for k, d in zip(tab.keys, tab.perturbations, strict=True) if d in richest},
            "verified": verified.mechanisms,
            "kb-prior": arte["kb-prior"],
        }
        r1 = {"ends_model": "rate", "activity": False}  # round 1: pooled end rates, no end or activity model
        priors: dict[str, Any] = {
            "trace-prior": TracePrior(reach, cross_fit=True),
            "trace-prior-v": TracePrior(reach, cross_fit=False),
            "trace-prior-r1": TracePrior(reach, cross_fit=True, **r1),  # type: ignore[arg-type]
            "trace-prior-v-r1": TracePrior(reach, cross_fit=False, **r1),  # type: ignore[arg-type]
            "oracle-ends": _OracleEnds(TracePrior(reach, cross_fit=False), truth),
            "oracle-activity": _OracleActivity(TracePrior(reach, cross_fit=False, activity=False), truth),
        }
        results: dict[str, Any] = {}
        for name in job["sources"]:
            if name in priors:  # per-fold prior from the training drugs' verified traces (run_experiment)
                inp = PredictorInputs(tab, verified.drug_features, verified.mechanisms, name, priors[name])
            else:
                inp = PredictorInputs(tab, verified.drug_features, sources[name], name)
            t = time.perf_counter()
            res = run_experiment(inp, by="drug", models=job["models"], n_folds=job["folds"], seed=seed, n_boot=200)
            timings[f"cv_{name}"] = time.perf_counter() - t
            results[name] = result_json(res)
        line_res = None
        if job["cell_line"]:
            inp = PredictorInputs(tab, verified.drug_features, sources["verified"], "verified")
            t = time.perf_counter()
            line_res = result_json(
                run_experiment(inp, by="cell_line", models=job["models"], n_folds=job["folds"], seed=seed, n_boot=200)
            )
            timings["cv_cell_line"] = time.perf_counter() - t
        folds = make_folds(tab, "drug", n_folds=job["folds"], seed=seed)
        return {
            "seed": seed,
            "convergence": _convergence(truth, folds, tab.perturbations),
            "n_conditions": len(tab),
            "n_genes": len(tab.genes),
            "n_drugs": len(set(tab.perturbations)),
            "n_active": len(truth.active_keys()),
            "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
            "n_mechanisms": {k: len(v) for k, v in sources.items()},
            "drugs": tab.perturbations,
            "results": results,
            "cell_line": line_res,
            "timings": timings,
        }


class _OracleEnds:
    """Diagnostic source (uses the truth): the held-out drug's *planted* ends (weight 1, planted signs) with the
    genes the training drugs' traces listed under them, as the trace prior would give them. Training rows keep
    their verified traces (as `trace-prior-v`). The ceiling of any better choice of ends by the prior: what is
    left between it and `oracle-drug` is which genes a drug moves under an end, which no prior can know."""

    def __init__(self, prior: Any, truth: Any) -> None:
        self.prior = prior
        self.planted = {
            d.drug: (
                {k: 1 if v == "up" else -1 for k, v in d.tfs.items()},
                {k: 1 if v == "up" else -1 for k, v in d.pathways.items()},
            )
            for d in truth.drugs
            if d.active
        }

    def fold(self, train: Any, test: Any) -> tuple[Any, Any]:
        from dataclasses import replace

        from mechcell.models.features import Mechanism

        tr_keys, tr_drugs = list(train.table.keys), list(train.table.perturbations)
        own = {k: train.mechanisms[k] for k in tr_keys if k in train.mechanisms}
        fitted = self.prior.fit(own, tr_keys, tr_drugs)
        out: dict[str, Any] = {}
        for k, d in zip(test.table.keys, test.table.perturbations, strict=True):
            if d not in self.planted:
                continue
            tfs, pws = self.planted[d]
            val: dict[str, float] = {}
            for name, sign in [
                *(("tf:" + x, s) for x, s in tfs.items()),
                *(("pathway:" + x, s) for x, s in pws.items()),
            ]:
                ev = fitted.gene_evidence.get(name)
                if not ev:
                    kg = fitted.reach.end_genes.get(name, {})
                    top = max((abs(x) for x in kg.values()), default=1.0)
                    ev = {g: fitted.kb_gene_scale * x / top for g, x in kg.items()}
                for g, x in ev.items():
                    val[g] = val.get(g, 0.0) + sign * x
            out[k] = Mechanism(
                source="oracle-ends",
                accepted=False,
                tfs=tfs,
                pathways=pws,
                genes={g: int(v > 0) - int(v < 0) for g, v in val.items() if v},
                weights={f"gene:{g}": min(abs(v), 1.0) for g, v in val.items() if v},
            )
        return replace(train, mechanisms=own, mechanism_label="oracle-ends"), replace(
            test, mechanisms=out, mechanism_label="oracle-ends"
        )


class _OracleActivity:
    """Diagnostic source (uses the truth): the round-2 prior's ends without its activity model, given only to
    held-out drugs the world made active (inactive ones get no mechanism); training rows keep their verified
    traces. Against `trace-prior-v`: what knowing which drugs are inactive would add to the prior."""

    def __init__(self, prior: Any, truth: Any) -> None:
        self.prior = prior
        self.active = {d.drug for d in truth.drugs if d.active}

    def fold(self, train: Any, test: Any) -> tuple[Any, Any]:
        from dataclasses import replace

        tr_keys, tr_drugs = list(train.table.keys), list(train.table.perturbations)
        own = {k: train.mechanisms[k] for k in tr_keys if k in train.mechanisms}
        fitted = self.prior.fit(own, tr_keys, tr_drugs)
        keep = [(k, d) for k, d in zip(test.table.keys, test.table.perturbations, strict=True) if d in self.active]
        out = fitted.mechanisms([k for k, _ in keep], [d for _, d in keep])
        return (
            replace(train, mechanisms=own, mechanism_label="oracle-activity"),
            replace(test, mechanisms=out, mechanism_label="oracle-activity"),
        )


def _diagnose(args: argparse.Namespace) -> str:
    """What the prior says about held-out drugs, against the planted truth (diagnostic: the truth is read here and
    nowhere else), per cached world and prior variant, over the same CV folds as the benchmark: weight share on
    planted ends with the planted sign (weighted precision), share of planted ends given (recall), ends per active
    drug, mean P(active) of held-out active vs inactive drugs, and the total end weight given to inactive drugs."""
    import numpy as np

    from mechcell.models.features import TracePrior
    from mechcell.models.predictors import make_folds

    head = (
        "| world | prior | weighted precision | recall | ends / active drug | P(active): active | inactive "
        "| end weight on inactive drugs |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for seed in range(args.worlds):
        job = {"seed": seed, "drugs": args.drugs, "genes": args.genes, "cells": args.cells, "library": args.library}
        cache = _cache_dir({**job, "cache": str(args.cache)})
        if cache is None or not (cache / "done").is_file():
            raise SystemExit(f"--diagnose reads cached worlds: run with --cache {args.cache} first (missing {cache})")
        a = _load_artefacts(cache)
        tab, truth, reach, mech = a["table"], a["truth"], a["reach"], a["verified"]
        info = {d.drug: d for d in truth.drugs}
        folds = make_folds(tab, "drug", n_folds=args.folds, seed=seed)
        variants = {
            "round 1 (rates)": TracePrior(reach, ends_model="rate", activity=False),
            "round 2, no activity": TracePrior(reach, activity=False),
            "round 2": TracePrior(reach),
        }
        for label, tp in variants.items():
            prec: list[float] = []
            rec: list[float] = []
            n_ends: list[int] = []
            pa: dict[bool, list[float]] = {True: [], False: []}
            mass_in: list[float] = []
            for f in folds:
                tk = [tab.keys[i] for i in f.train]
                td = [tab.perturbations[i] for i in f.train]
                fitted = tp.fit({k: mech[k] for k in tk if k in mech}, tk, td)
                for d in f.held_out:
                    m, t = fitted.mechanism(d), info[d]
                    got = {} if m is None else {**{f"tf:{k}": v for k, v in m.tfs.items()}}
                    got.update({} if m is None else {f"pathway:{k}": v for k, v in m.pathways.items()})
                    w = {e: m.weights[e] for e in got} if m is not None else {}
                    pa[t.active].append(fitted.p_active(d))
                    if not t.active:
                        mass_in.append(sum(w.values()))
                        continue
                    want = {f"tf:{k}": 1 if v == "up" else -1 for k, v in t.tfs.items()}
                    want.update({f"pathway:{k}": 1 if v == "up" else -1 for k, v in t.pathways.items()})
                    if w:
                        prec.append(sum(x for e, x in w.items() if want.get(e) == got[e]) / sum(w.values()))
                    if want:
                        rec.append(float(np.mean([got.get(e) == s for e, s in want.items()])))
                    n_ends.append(len(got))
            lines.append(
                f"| {seed} | {label} | {np.mean(prec):.2f} | {np.mean(rec):.2f} | {np.mean(n_ends):.1f} | "
                f"{np.mean(pa[True]):.2f} | {np.mean(pa[False]) if pa[False] else float('nan'):.2f} | "
                f"{np.mean(mass_in) if mass_in else float('nan'):.2f} |"
            )
    return "\n".join(lines) + "\n"


def _cache_dir(job: dict[str, Any]) -> Path | None:
    """Where one world's CV inputs are kept between runs (`--cache`): keyed by every setting that makes them."""
    if not job.get("cache"):
        return None
    name = f"seed{job['seed']}_d{job['drugs']}_g{job['genes']}_c{job['cells']}_l{job['library']:g}"
    return Path(job["cache"]) / name


def _build_artefacts(job: dict[str, Any], root: Path, timings: dict[str, float]) -> dict[str, Any]:
    """One world, its signatures, both trace sets and the CV inputs (deltas, KB features, mechanisms, KB reach)."""
    from mechcell.agents.pipeline import Pipeline, PipelineConfig
    from mechcell.datasets.readers import open_dataset
    from mechcell.datasets.signatures import compute_signatures
    from mechcell.datasets.store import Store
    from mechcell.datasets.synthetic import SyntheticWorldConfig, generate_world, load_truth
    from mechcell.datasets.traces import TraceStore
    from mechcell.knowledge import load_kb
    from mechcell.models.features import kb_reach, mechanisms_from_traces
    from mechcell.models.predictors import prepare_inputs

    seed = job["seed"]
    t = time.perf_counter()
    cfg = SyntheticWorldConfig(
        seed=seed,
        n_drugs=job["drugs"],
        n_genes=job["genes"],
        cells_per_condition=job["cells"],
        mean_library_size=job["library"],
    )
    generate_world(cfg, root / "world", layout="h5ad")
    truth = load_truth(root / "world")
    timings["world"] = time.perf_counter() - t
    store = root / "mechcell.duckdb"
    t = time.perf_counter()
    with Store(store) as st:
        ds = open_dataset(root / "world" / "world.h5ad")
        did = st.register(ds)
        compute_signatures(ds, None, store=st, dataset_id=did)
        keys = [c.key for c in st.conditions()]
    timings["signatures"] = time.perf_counter() - t
    kb = load_kb(None)
    pcfg = PipelineConfig(n_candidates=3, max_rounds=1, use_cells=False, seed=seed)
    t = time.perf_counter()
    with Pipeline(kb=kb, store=store, proposer="local", config=pcfg) as pipe:
        statuses = [pipe.run(k).status for k in keys]
    timings["verified_traces"] = time.perf_counter() - t
    t = time.perf_counter()
    with Pipeline(kb=kb, store=None, proposer="local", config=pcfg, save=False) as pipe:
        prior = [pipe.run(k) for k in keys]
    with TraceStore(root / "kbprior.duckdb") as ts:
        ts.put_many(prior)
    timings["kb_prior_traces"] = time.perf_counter() - t
    reach = kb_reach(kb, [d.drug for d in truth.drugs])
    kb.close()
    t = time.perf_counter()
    verified, _ = prepare_inputs(store, None, mechanisms="traces")
    timings["deltas"] = time.perf_counter() - t
    return {
        "truth": truth,
        "table": verified.table,
        "drug_features": verified.drug_features,
        "verified": verified.mechanisms,
        "kb-prior": mechanisms_from_traces(root / "kbprior.duckdb", verified.table.keys, accepted_only=False),
        "reach": reach,
        "statuses": statuses,
    }


def _save_artefacts(cache: Path, a: dict[str, Any]) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    a["table"].save(cache / "deltas.npz")
    (cache / "truth.json").write_text(a["truth"].model_dump_json())
    (cache / "reach.json").write_text(a["reach"].model_dump_json())
    doc = {
        "drug_features": a["drug_features"],
        "statuses": a["statuses"],
        "verified": {k: m.model_dump(mode="json") for k, m in a["verified"].items()},
        "kb-prior": {k: m.model_dump(mode="json") for k, m in a["kb-prior"].items()},
    }
    (cache / "inputs.json").write_text(json.dumps(doc))
    (cache / "done").write_text("ok\n")


def _load_artefacts(cache: Path) -> dict[str, Any]:
    from mechcell.datasets.synthetic import Truth
    from mechcell.models.features import DeltaTable, KbReach, Mechanism

    doc = json.loads((cache / "inputs.json").read_text())
    return {
        "truth": Truth.model_validate_json((cache / "truth.json").read_text()),
        "table": DeltaTable.load(cache / "deltas.npz"),
        "drug_features": doc["drug_features"],
        "verified": {k: Mechanism.model_validate(v) for k, v in doc["verified"].items()},
        "kb-prior": {k: Mechanism.model_validate(v) for k, v in doc["kb-prior"].items()},
        "reach": KbReach.model_validate_json((cache / "reach.json").read_text()),
        "statuses": doc["statuses"],
    }


def _convergence(truth: Any, folds: list[Any], drugs: list[str]) -> dict[str, int]:
    """How often the world lets an unseen drug borrow from a training drug through a shared end (planted TF or
    pathway) without a shared KB target — the only place a KB-path prior can add to ridge on KB target features.
    Counted per held-out active drug over the CV folds of the run (truth used for this diagnostic only)."""
    info = {d.drug: d for d in truth.drugs}

    def ends(d: Any) -> set[str]:
        return {f"tf:{x}" for x in d.tfs} | {f"pathway:{x}" for x in d.pathways}

    out = {"held_out_active": 0, "share_end": 0, "share_end_not_target": 0, "share_end_no_target_at_all": 0}
    for f in folds:
        train = {drugs[i] for i in f.train}
        act = [info[x] for x in sorted(train) if info[x].active]
        for d in f.held_out:
            t = info[d]
            if not t.active:
                continue
            out["held_out_active"] += 1
            same = [o for o in act if ends(o) & ends(t)]
            out["share_end"] += bool(same)
            out["share_end_not_target"] += any(not set(o.kb_targets) & set(t.kb_targets) for o in same)
            shared_target = any(set(info[x].kb_targets) & set(t.kb_targets) for x in train)
            out["share_end_no_target_at_all"] += bool(same) and not shared_target
    return out


def _pooled(worlds: list[dict[str, Any]], source: str, split_key: str = "results") -> dict[str, Any]:
    """Per-condition values of every world concatenated; best baseline per metric on the pooled means; margins
    with a cluster bootstrap over (world, drug)."""
    import numpy as np

    from mechcell.eval.expression import METRICS, paired_margin, summarise

    docs = [(w, w[split_key][source] if split_key == "results" else w[split_key]) for w in worlds]
    models = [m["name"] for m in docs[0][1]["models"]]
    kinds = {m["name"]: m["kind"] for m in docs[0][1]["models"]}
    groups = np.concatenate([[f"{w['seed']}:{d}" for d in w["drugs"]] for w, _ in docs])
    vals = {
        m: {
            k: np.concatenate([[np.nan if x is None else x for x in doc["values"][m][k]] for _, doc in docs])
            for k in METRICS
        }
        for m in models
    }
    summ = {m: {k: summarise(k, vals[m][k], groups=groups, n_boot=2000) for k in METRICS} for m in models}
    best: dict[str, str] = {}
    for k in METRICS:
        cands = [(summ[m][k].mean, m) for m in models if kinds[m] == "baseline" and summ[m][k].mean is not None]
        best[k] = (max if METRICS[k].higher_is_better else min)(cands)[1]
    margins = {
        m: {
            k: paired_margin(k, vals[m][k], vals[best[k]][k], model=m, reference=best[k], groups=groups, n_boot=2000)
            for k in METRICS
        }
        for m in models
        if kinds[m] != "baseline"
    }
    per_world = {
        m: {k: [doc["margins"].get(m, {}).get(k, {}).get("margin") for _, doc in docs] for k in METRICS}
        for m in models
        if kinds[m] != "baseline"
    }
    return {"models": models, "kinds": kinds, "summ": summ, "best": best, "margins": margins, "per_world": per_world}


def _round_pairs(worlds: list[dict[str, Any]], sources: list[str]) -> list[str]:
    """Round 2 − round 1 of the trace prior, paired per condition (same folds, same models), cluster bootstrap
    over (world, drug): did the new end and activity models change anything?"""
    import numpy as np

    from mechcell.eval.expression import METRICS, paired_margin

    pairs = [(a, f"{a}-r1") for a in ("trace-prior", "trace-prior-v") if a in sources and f"{a}-r1" in sources]
    if not pairs:
        return []
    groups = np.concatenate([[f"{w['seed']}:{d}" for d in w["drugs"]] for w in worlds])

    def vals(src: str, m: str, k: str) -> np.ndarray:
        return np.concatenate([[np.nan if x is None else x for x in w["results"][src]["values"][m][k]] for w in worlds])

    lines = ["### Round 2 − round 1 prior, paired per condition (> 0 = round 2 better; mae: r1 − r2)", ""]
    head = "| sources | model | " + " | ".join(f"{k} [95% CI]" for k in METRICS) + " |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for a, b in pairs:
        for m in ("trace_ridge", "trace_mlp"):
            if m not in worlds[0]["results"][a]["values"]:
                continue
            cells = []
            for k in METRICS:
                mg = paired_margin(k, vals(a, m, k), vals(b, m, k), groups=groups, n_boot=2000)
                cells.append(f"{_f(mg.margin, 3, True)} [{_f(mg.ci_low, 3, True)}, {_f(mg.ci_high, 3, True)}]")
            lines.append(f"| {a} − {b} | {m} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _f(x: float | None, d: int = 3, sign: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.{d}f}" if sign else f"{x:.{d}f}"


def _tables(pool: dict[str, Any], title: str) -> list[str]:
    from mechcell.eval.expression import METRICS

    lines = [f"### {title}", ""]
    head = "| model | kind | " + " | ".join(f"{k} [95% CI]" for k in METRICS) + " |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for m in pool["models"]:
        cells = []
        for k in METRICS:
            s = pool["summ"][m][k]
            star = "*" if pool["best"][k] == m else ""
            cells.append(f"{_f(s.mean)}{star} [{_f(s.ci_low)}, {_f(s.ci_high)}]")
        lines.append(f"| {m} | {pool['kinds'][m]} | " + " | ".join(cells) + " |")
    lines += ["", "Margins over the best baseline (* above; mae: baseline − model; > 0 = better):", ""]
    head = (
        "| model | metric | best baseline | margin [95% CI] | ratio model ÷ baseline | win rate "
        "| per world (vs its own best baseline) |"
    )
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for m, per in pool["margins"].items():
        for k, mg in per.items():
            base = pool["summ"][mg.reference][k].mean
            mine = pool["summ"][m][k].mean
            ratio = "n/a" if not base or mine is None else f"{mine / base:.2f}"
            worlds = ", ".join(_f(x, 3, True) for x in pool["per_world"][m][k])
            lines.append(
                f"| {m} | {k} | {mg.reference} | {_f(mg.margin, 3, True)} [{_f(mg.ci_low, 3, True)}, "
                f"{_f(mg.ci_high, 3, True)}] | {ratio} | {_f(mg.win_rate, 2)} | {worlds} |"
            )
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worlds", type=int, default=3)
    ap.add_argument("--drugs", type=int, default=24)
    ap.add_argument("--genes", type=int, default=600)
    ap.add_argument("--cells", type=int, default=300, help="cells per drug × dose × cell line")
    ap.add_argument("--library", type=float, default=3000.0, help="mean counts per cell")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--models", default="all")
    ap.add_argument("--sources", default=",".join(SOURCES))
    ap.add_argument("--no-cell-line", dest="cell_line", action="store_false")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--cache", type=Path, default=None, help="keep each world's CV inputs here and reuse them")
    ap.add_argument("--render", type=Path, default=None, help="re-render --out from a finished run's JSON")
    ap.add_argument("--merge", type=Path, nargs="*", help="with --render: add the sources of these run JSONs")
    ap.add_argument("--diagnose", action="store_true", help="with --cache: the prior's ends vs the planted truth")
    args = ap.parse_args()
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    jobs = [
        {
            "seed": s,
            "drugs": args.drugs,
            "genes": args.genes,
            "cells": args.cells,
            "library": args.library,
            "folds": args.folds,
            "models": args.models,
            "sources": sources,
            "cell_line": args.cell_line,
            "cache": None if args.cache is None else str(args.cache),
        }
        for s in range(args.worlds)
    ]
    if args.diagnose:
        print(_diagnose(args))
        return
    if args.render is not None:  # re-render a finished run's markdown from its JSON (no recomputation)
        doc = json.loads(args.render.read_text())
        worlds, wall = (doc, math.nan) if isinstance(doc, list) else (doc["worlds"], doc["wall"])
        for extra in args.merge or []:  # results of other sources on the same worlds (e.g. a later diagnostic run)
            more = json.loads(extra.read_text())
            for w, m in zip(worlds, more if isinstance(more, list) else more["worlds"], strict=True):
                w["results"].update(m["results"])
                w["timings"].update(m["timings"])
        sources = [s for s in sources if all(s in w["results"] for w in worlds)]
        _render(worlds, sources, args, wall)
        return
    worlds: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    print(f"{len(jobs)} worlds on {args.workers} worker(s)…", file=sys.stderr, flush=True)
    with mp.get_context("spawn").Pool(args.workers) as pool:
        for w in pool.imap(_world, jobs):
            worlds.append(w)
            tm = ", ".join(f"{k} {v:.0f}s" for k, v in w["timings"].items())
            print(f"  world {w['seed']}: {w['n_conditions']} conditions, traces {w['statuses']}; {tm}", file=sys.stderr)
    wall = time.perf_counter() - t0
    worlds.sort(key=lambda w: w["seed"])
    (args.out.parent).mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"worlds": worlds, "wall": wall}, indent=1))
    _render(worlds, sources, args, wall)


def _render(worlds: list[dict[str, Any]], sources: list[str], args: argparse.Namespace, wall: float) -> None:
    """The markdown report of a run: settings, source notes, the per-source tables, timings, the machine."""

    w0 = worlds[0]
    lines = [
        "# Expression predictors on synthetic worlds: unseen drugs",
        "",
        f"{len(worlds)} worlds (seeds 0..{len(worlds) - 1}), each {w0['n_drugs']} drugs × 3 doses × 3 cell lines ="
        f" {w0['n_conditions']} conditions × {w0['n_genes']} genes, {args.cells} cells per condition, mean library"
        f" {args.library:g}. Target: pseudobulk delta (log1p-CP10k, treated − plate-matched control); real DE ="
        " BH padj < 0.05 of a Welch t over wells; DE overlap at N = 20. Grouped 5-fold CV by drug; per-condition"
        " metrics pooled over worlds; CIs resample (world, drug) clusters (2000 resamples); the best baseline is"
        " chosen per metric on the pooled means (in the baselines' favour).",
        "",
        "Mechanisms per world (conditions with one): "
        + "; ".join(f"seed {w['seed']}: " + ", ".join(f"{k} {v}" for k, v in w["n_mechanisms"].items()) for w in worlds)
        + ". Verified-pipeline statuses: "
        + "; ".join(f"seed {w['seed']}: {w['statuses']}" for w in worlds)
        + ".",
        "",
        "- **oracle**: the planted truth graphs — what a correct mechanism is worth (labelled: oracle mechanism).",
        "- **oracle-drug**: the drug's planted mechanism at all its conditions (also where the dose or line leaves"
        " it inactive): the ceiling for a drug-level mechanism, which is all a leakage-free source can give.",
        "- **verified**: accepted traces of the local pipeline; transductive — each held-out condition's trace was"
        " verified on that condition's own signature (an upper bound for a mechanism-first pipeline).",
        "- **kb-prior**: the pipeline with no data (the KB's mechanism for the drug, unverified): leakage-free.",
        "- **trace-prior**: leakage-free. Per CV fold, a `TracePrior` is fitted on the *training* drugs' verified"
        " traces only: every KB end (TF / pathway) a drug's KB targets reach along signed paths (≤ 3 steps) gets"
        " the rate at which training traces verified it when the KB predicted it, and the genes those traces"
        " listed under it; held-out drugs get their KB ends weighted so. Training rows get leave-one-drug-out"
        " priors of the training fold (cross-fit), so train and test mechanisms are alike.",
        "- **trace-prior-v**: the same prior for held-out drugs, but training rows keep their verified traces.",
        "- **trace-prior-r1 / trace-prior-v-r1**: round 1's prior (ends weighted by pooled verification rates only).",
        "- **trace-prior / -v (round 2)**: P(active) × P(end | active): a logistic end model (distance from the"
        " drug's nearest end, primary target, the end's and target's leave-one-drug-out verification rates) with"
        " per-drug normalisation to the training drugs' mean number of verified ends, times a logistic activity"
        " model on KB drug features. Settings fixed in advance (λ = 1, 1 pseudo-drug, min weight 0.1).",
        "- **oracle-ends** (diagnostic, uses the truth): the held-out drug's planted ends with the prior's genes"
        " (training rows keep their verified traces; inactive drugs get none): perfect ends and drug activity.",
        "- **oracle-activity** (diagnostic, uses the truth): the round-2 prior's ends (no activity model) for the"
        " drugs the world made active only: perfect drug activity, the prior's own ends.",
        "- `_aux` models never take a mechanism as input (training target only): leakage-free with any source.",
        "",
        "Convergence (per held-out active drug over the CV folds: shares a planted end with a training drug; with"
        " one that shares no KB target; shares no KB target with any training drug): "
        + "; ".join(
            f"seed {w['seed']}: {w['convergence']['share_end']}/{w['convergence']['held_out_active']}, "
            f"{w['convergence']['share_end_not_target']}, {w['convergence']['share_end_no_target_at_all']}"
            for w in worlds
        )
        + ".",
        "",
    ]
    for s in sources:
        lines += _tables(_pooled(worlds, s), f"Split by drug — mechanisms: {s}")
    lines += _round_pairs(worlds, sources)
    if args.cell_line and all(w["cell_line"] for w in worlds):
        lines += _tables(_pooled(worlds, "verified", "cell_line"), "Split by cell line — mechanisms: verified")
    lines += [
        f"Wall time {wall:.0f}s on {args.workers} worker(s); per world: "
        + "; ".join(
            f"seed {w['seed']}: " + ", ".join(f"{k} {v:.0f}s" for k, v in w["timings"].items()) for w in worlds
        ),
        "",
        f"Machine: {machine()}",
    ]
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
