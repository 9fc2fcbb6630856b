"""The enrichment score used to rank TFs and pathways, checked by simulation (size and power).

Null: gene labels are exchangeable — a regulon / footprint is a random set of genes with its signs and weights, and
the signature does not depend on it. Unit of exchangeability: genes. Under that null the score should be ≈ N(0,1),
so a two-sided test at α = 0.05 rejects ≈ 5% of the time, also for heavy-tailed signatures (the rank transform)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mechcell.knowledge.enrich import SetScorer, signature_z

ALPHA = 0.05


def _random_sets(rng: np.random.Generator, genes: list[str], n_sets: int, size: int, weighted: bool) -> dict:
    sets = {}
    for i in range(n_sets):
        members = rng.choice(len(genes), size=size, replace=False)
        w = rng.choice([-1.0, 1.0], size=size)
        if weighted:
            w = w * rng.uniform(0.5, 3.0, size=size)
        sets[f"S{i}"] = {genes[j]: float(x) for j, x in zip(members, w, strict=True)}
    return sets


@pytest.mark.parametrize("noise,weighted", [("normal", False), ("t2", False), ("t2", True)])
def test_size_under_the_null(noise: str, weighted: bool) -> None:
    rng = np.random.default_rng(20240611)
    genes = [f"G{i}" for i in range(3000)]
    rejections = trials = 0
    scores = []
    for _ in range(10):
        x = rng.standard_normal(len(genes)) if noise == "normal" else rng.standard_t(2, len(genes))
        z = signature_z(genes, x)
        res = SetScorer(_random_sets(rng, genes, 300, 15, weighted)).score(z)
        rejections += int((res["pvalue"] < ALPHA).sum())
        trials += len(res)
        scores.append(res["score"].to_numpy())
    rate = rejections / trials
    # 3000 tests: the 99.9% binomial band around 0.05 is ±0.013
    assert abs(rate - ALPHA) < 0.013, rate
    s = np.concatenate(scores)
    assert abs(s.mean()) < 0.06 and abs(s.std() - 1.0) < 0.06


def test_power_and_direction() -> None:
    """Alternative: the 15 regulon genes move by δ = 1 (noise sd 1) in the direction of their sign."""
    rng = np.random.default_rng(7)
    genes = [f"G{i}" for i in range(3000)]
    hits = same_sign = 0
    reps = 300
    for _ in range(reps):
        reg = _random_sets(rng, genes, 1, 15, False)["S0"]
        x = pd.Series(rng.standard_normal(len(genes)), index=genes)
        direction = rng.choice([-1, 1])
        for g, s in reg.items():
            x[g] += direction * s * 1.0
        res = SetScorer({"TF": reg}).score(signature_z(genes, x.to_numpy()))
        hits += bool(res.loc["TF", "pvalue"] < ALPHA)
        same_sign += bool(np.sign(res.loc["TF", "score"]) == direction)
    assert hits / reps > 0.9
    assert same_sign / reps > 0.98


def test_absent_genes_and_small_sets() -> None:
    genes = ["A", "B", "C", "D", "E"]
    z = signature_z(genes, [1.0, 2.0, 3.0, 4.0, np.nan])
    assert list(z.index) == ["A", "B", "C", "D"] and z.dtype == np.float64
    res = SetScorer({"big": {"A": 1, "B": 1, "C": -1, "X": 1}, "small": {"A": 1, "Y": 1}}).score(z)
    assert res.loc["big", "n_genes"] == 3 and np.isfinite(res.loc["big", "score"])
    assert res.loc["small", "n_genes"] == 1 and np.isnan(res.loc["small", "score"])


def test_duplicate_genes_are_averaged() -> None:
    z = signature_z(["A", "A", "B", "C"], [1.0, 3.0, 0.0, -1.0])
    assert list(z.index) == ["A", "B", "C"] and z["A"] > z["B"] > z["C"]
