"""Dose pooling: borrow strength from the sibling doses of the same drug × cell line.

Why: a weak but true effect (a low dose on the shallow part of a Hill curve) is inconclusive gene by gene, while the
same mechanism shows plainly at the higher doses of the same drug in the same line. A true mechanism gives a
monotone dose response (larger effects at higher doses); a decoy target or an inactive drug moves nothing at any
dose; a random gene list moves nothing anywhere. So a claim about condition (drug, dose d, line) is judged on

1. a dose-response test: a weighted Stouffer combination of the claim's signed normal scores over every dose of the
   drug in that line, weights increasing with dose (the dose's rank: 1, 2, 3, …). Null: the claimed genes do not
   move in the claimed direction at any dose. Each dose sits on its own plate and is compared with that plate's
   own control wells, so the per-dose statistics are independent under the null and the combination is N(0, 1)
   when each per-dose score is; the unit of exchangeability is the per-dose test's own (the signature's test for a
   gene, genes for the competitive list and footprint tests, which permute one gene draw across all doses);
2. this dose carries the effect: the claim's own test at d goes the claimed way at the lenient `dose_own_level` (for
   a gene inside a list, the list's own test stands in — docs/verifiers.md); and a contradiction at d itself (the
   own-dose test significant the other way) still wins.

Under a monotone dose response, (1) + (2) says "the mechanism acts in this line and this dose moves the claimed
way" — the verdict's evidence says `dose-pooled` so a reader sees it borrowed strength. Switch: `PanelSettings.
dose_pooling` (default on). Without sibling doses (a single-dose dataset, no store) nothing changes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mechcell.datasets.schemas import Signature

if TYPE_CHECKING:
    from mechcell.datasets.schemas import Condition
    from mechcell.datasets.store import Store


class DosePoint(BaseModel):
    """One sibling condition of a dose series: its key, dose and signature."""

    model_config = ConfigDict(frozen=True)

    key: str
    dose: float
    dose_unit: str | None = None
    batch: str | None = None
    signature: Signature


class DoseSeries(BaseModel):
    """The other doses (and replicate plates) of one drug × cell line, beside the condition being explained."""

    model_config = ConfigDict(frozen=True)

    condition_key: str
    dose: float = Field(description="the condition's own dose")
    dose_unit: str | None = None
    siblings: list[DosePoint] = Field(default_factory=list)
    same_plate: list[DosePoint] = Field(
        default_factory=list,
        description="other doses that share a plate (controls) with the condition or a sibling, or have no plate: "
        "not independent, so never pooled; the silent-drug gate still reads them (does the drug move anything here?)",
    )

    def weights(self) -> tuple[float, list[float]]:
        """(own weight, sibling weights): the rank of each dose among the series' distinct doses (1 = lowest),
        fixed before looking at any data. Replicate plates of a dose share its rank."""
        distinct = sorted({self.dose, *(s.dose for s in self.siblings)})
        rank = {d: float(i + 1) for i, d in enumerate(distinct)}
        return rank[self.dose], [rank[s.dose] for s in self.siblings]

    def label(self) -> str:
        unit = self.dose_unit or ""
        doses = sorted({self.dose, *(s.dose for s in self.siblings)})
        return "/".join(f"{d:g}" for d in doses) + (f" {unit}" if unit else "")


def dose_series(
    store: Store,
    condition: Condition,
    *,
    dataset_id: str | None = None,
    method: str | None = None,
    max_siblings: int = 8,
) -> DoseSeries | None:
    """The sibling doses of `condition` in the store (same dataset, perturbation and cell line; another dose or
    another plate), each with its stored signature of `method` (the newest when None). Siblings without a stored
    signature are left out (nothing is computed here). Only one condition per plate (batch) and none on the
    condition's own plate: signatures against the same plate's controls are correlated under the null, and the
    Stouffer combination assumes independence; the others go to `same_plate` (read by the silent-drug gate only).
    None when the condition has no dose or no other dose with a stored signature."""
    from mechcell.errors import NotFoundError

    if condition.dose is None:
        return None
    rows = store.condition_summaries(
        dataset_id=dataset_id, perturbation=condition.perturbation, context=condition.context
    )
    sibs: list[DosePoint] = []
    shared: list[DosePoint] = []
    # without its own plate we cannot tell whether two doses share control wells (correlated nulls): nothing pools
    plates = {condition.batch}
    for r in rows:
        c = r.condition
        if c.key == condition.key or c.dose is None or c.dose_unit != condition.dose_unit:
            continue
        independent = condition.batch is not None and c.batch is not None and c.batch not in plates
        if not independent and len(shared) >= max_siblings:
            continue
        if independent and len(sibs) >= max_siblings:
            continue
        try:
            sig = store.signature(c.key, method, dataset_id=r.dataset_id)
        except NotFoundError:
            continue
        point = DosePoint(key=c.key, dose=float(c.dose), dose_unit=c.dose_unit, batch=c.batch, signature=sig)
        if independent:  # shared plate = shared controls: its z would not be independent of ours under the null
            plates.add(c.batch)
            sibs.append(point)
        else:
            shared.append(point)
    if not sibs and not shared:
        return None
    return DoseSeries(
        condition_key=condition.key,
        dose=float(condition.dose),
        dose_unit=condition.dose_unit,
        siblings=sibs,
        same_plate=shared,
    )


class PooledView:
    """The dose-pooled signature of a condition, on the condition's own gene order.

    Z[k], LFC[k], floor[k]: signed normal scores, log2 fold changes and effect floors of dose k (row 0 = the
    condition itself; NaN where a sibling does not measure a gene). `z`: per gene, the weighted Stouffer
    combination Σ_k w_k z_k / sqrt(Σ_k w_k²) over the doses that measure it — N(0, 1) under the null of no effect
    at any dose. Quacks like a SignatureView (`z`, `pos`, `genes`, `memo`, `index_of`) for the list and footprint
    tests, which then test the pooled statistic with their own nulls.
    """

    def __init__(self, own: Any, siblings: list[Any], own_weight: float, weights: list[float], label: str) -> None:
        self.own = own
        self.genes = own.genes
        self.pos = own.pos
        self.frame = own.frame
        self.memo: dict[str, Any] = {}
        self.label = label
        n = len(own.genes)
        k = 1 + len(siblings)
        self.Z = np.full((k, n), np.nan)
        self.LFC = np.full((k, n), np.nan)
        self.Z[0], self.LFC[0] = own.z, own.lfc
        self.floor = np.array([own.floor, *(s.floor for s in siblings)], dtype=np.float64)
        for j, s in enumerate(siblings, start=1):
            src = np.array([s.pos.get(g, -1) for g in own.genes], dtype=np.int64)
            ok = src >= 0
            self.Z[j, ok] = s.z[src[ok]]
            self.LFC[j, ok] = s.lfc[src[ok]]
        self.w = np.array([own_weight, *weights], dtype=np.float64)
        present = np.isfinite(self.Z)
        num = np.where(present, self.Z, 0.0).T @ self.w
        den = np.sqrt((present * self.w[:, None] ** 2).sum(axis=0))
        self.z = num / np.where(den > 0, den, 1.0)
        self.n_doses = k

    def index_of(self, gene: str, ctx: Any) -> int | None:
        return self.own.index_of(gene, ctx)

    def material(self, i: int, d: int) -> tuple[bool, float, int]:
        """Does some dose move gene i the claimed way (d = ±1) by at least that dose's effect floor? Returns
        (yes, the largest claimed-direction log2FC over doses, its row)."""
        signed = d * self.LFC[:, i]
        signed = np.where(np.isfinite(signed), signed, -np.inf)
        j = int(np.argmax(signed))
        return bool(signed[j] >= self.floor[j]), float(self.LFC[j, i]), j


_POOLED: OrderedDict[tuple, PooledView] = OrderedDict()
_POOLED_LOCK = threading.Lock()


def pooled_view(ctx: Any) -> PooledView | None:
    """The dose-pooled view for the verification context (None: pooling off or no sibling doses). Shared across
    graphs verified against the same condition (small LRU)."""
    from mechcell.verifiers.expression import SignatureView, signature_view

    series: DoseSeries | None = getattr(ctx, "doses", None)
    if series is None or not ctx.settings.dose_pooling or not series.siblings:
        return None
    if "pooled" in ctx.cache:
        return ctx.cache["pooled"]
    own = signature_view(ctx)
    if own is None:
        return None
    sig = ctx.signature
    key = (
        sig.condition.key,
        sig.method,
        len(sig.genes),
        hash(tuple(sig.log2fc[:32])),
        tuple(
            (s.key, s.signature.method, len(s.signature.genes), hash(tuple(s.signature.log2fc[:32])))
            for s in series.siblings
        ),
    )
    with _POOLED_LOCK:  # panels run in worker threads: get / evict / move must not interleave
        view = _POOLED.get(key)
        if view is not None:
            _POOLED.move_to_end(key)
    if view is None:
        sibs = [SignatureView(s.signature.to_frame()) for s in series.siblings]
        ow, ws = series.weights()
        view = PooledView(own, sibs, ow, ws, series.label())
        with _POOLED_LOCK:
            _POOLED[key] = view
            while len(_POOLED) > 16:
                _POOLED.popitem(last=False)
    ctx.cache["pooled"] = view
    return view


__all__ = ["DosePoint", "DoseSeries", "PooledView", "dose_series", "pooled_view"]
