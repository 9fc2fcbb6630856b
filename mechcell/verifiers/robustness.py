"""Robustness: how much selection or label noise would overturn a supported expression claim.

For a supported gene-list claim the 2×2 table is genes: A = in the claimed list, Y = called responsive in the
claimed direction (q < α by the signature, past the effect floor), P ≡ 1; the metric is the difference of
response rates between listed and other genes (`ppv` with P ≡ 1). For a supported single-gene claim with cells:
cells, A = treated, Y = the cell's expression on the claimed side of the control median. `breaking_point` gives the
smallest bias D* (selection: QC filtering / dropout; proxy_label: mis-called responses) that brings the difference
to 0; D* below `fragile_below` marks the claim fragile.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pandas as pd

from mechcell.causal_stats import breaking_point
from mechcell.verifiers.base import VerificationContext
from mechcell.verifiers.types import Robustness, Verdict

_DIR = {"up": 1, "down": -1}


def _table(a: np.ndarray, y: np.ndarray) -> pd.DataFrame | None:
    rows = []
    for av in (0, 1):
        for yv in (0, 1):
            rows.append({"A": av, "Y": yv, "P": 1, "prob": float(np.sum((a == av) & (y == yv)))})
    t = pd.DataFrame(rows)
    if t.loc[t.A == 1, "prob"].sum() == 0 or t.loc[t.A == 0, "prob"].sum() == 0:
        return None
    t["prob"] /= t["prob"].sum()
    return t


def _bp(t: pd.DataFrame, bias: str) -> float | None:
    return _bp_cached(tuple(float(x) for x in t["prob"]), bias)


@lru_cache(maxsize=4096)
def _bp_cached(probs: tuple[float, ...], bias: str) -> float | None:
    """Memoised on the table's cell probabilities (rows A×Y in `_table`'s fixed order): the pipeline verifies many
    candidates of one condition that share claims, and the bisection is most of a panel's time."""
    t = pd.DataFrame({"A": [0, 0, 1, 1], "Y": [0, 1, 0, 1], "P": [1, 1, 1, 1], "prob": list(probs)})
    try:
        d = breaking_point(t, "ppv", bias, 0.0, tol=1e-3)  # type: ignore[arg-type]  # D* to 3 decimals
    except Exception:
        return None
    return None if math.isinf(d) else float(d)


def gene_table(v: Verdict, ctx: VerificationContext) -> pd.DataFrame | None:
    from mechcell.verifiers.expression import signature_view

    sv = signature_view(ctx)
    if sv is None:
        return None
    d = _DIR.get(v.claim.direction or "up", 1)
    listed = {i for g in v.claim.genes if (i := sv.index_of(g, ctx)) is not None}
    a = np.zeros(len(sv.genes), dtype=int)
    a[list(listed)] = 1
    if v.diagnostics.get("dose_pooled"):
        # a list supported by the dose-pooled test: "responsive" is read on the same pooled scale (BH on the
        # one-sided pooled z), not at this dose alone, where a weak dose has few responsive genes by design
        from scipy import stats

        from mechcell.causal_stats.evalues import bh_adjust
        from mechcell.verifiers.doses import pooled_view

        pv = pooled_view(ctx)
        if pv is not None:
            z = np.nan_to_num(np.asarray(pv.z, dtype=np.float64), nan=0.0)
            q = bh_adjust(stats.norm.sf(d * z))
            return _table(a, (q < ctx.settings.alpha).astype(int))
    q = sv.frame["padj"].to_numpy(np.float64)
    y = ((q < ctx.settings.alpha) & (np.sign(sv.lfc) == d) & (np.abs(sv.lfc) >= sv.floor)).astype(int)
    return _table(a, y)


def cell_table(v: Verdict, ctx: VerificationContext) -> pd.DataFrame | None:
    if ctx.cells is None:
        return None
    cells = ctx.cells(v.claim.genes)
    if cells is None or cells.n_treated == 0 or cells.n_control == 0:
        return None
    lib = np.maximum(np.asarray(cells.covariates["library_size"], dtype=np.float64), 1.0)
    x = cells.X[:, 0] / lib
    med = np.median(x[~cells.treated])
    d = _DIR.get(v.claim.direction or "up", 1)
    y = (x > med) if d > 0 else (x < med)
    return _table(cells.treated.astype(int), y.astype(int))


def assess_robustness(verdicts: list[Verdict], ctx: VerificationContext) -> list[Verdict]:
    """Attach a `Robustness` to each supported expression verdict (from the signature-based verifier)."""
    out = []
    for v in verdicts:
        if v.verifier == "expression" and v.status == "supported" and v.claim.kind in ("expression", "expression_set"):
            t = gene_table(v, ctx) if v.claim.kind == "expression_set" else cell_table(v, ctx)
            if t is not None:
                sel, lab = _bp(t, "selection"), _bp(t, "proxy_label")
                known = [x for x in (sel, lab) if x is not None]
                fragile = bool(known) and min(known) < ctx.settings.fragile_below
                unit = "genes" if v.claim.kind == "expression_set" else "cells"
                rob = Robustness(
                    selection_breaking_point=sel,
                    label_noise_breaking_point=lab,
                    fragile=fragile,
                    threshold=ctx.settings.fragile_below,
                    detail=f"2x2 over {unit}: D* selection {sel if sel is not None else 'none ≤ 1'}, "
                    f"label noise {lab if lab is not None else 'none ≤ 1'}",
                )
                v = v.model_copy(update={"robustness": rob})
        out.append(v)
    return out
