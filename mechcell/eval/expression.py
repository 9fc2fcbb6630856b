"""Expression-prediction metrics as the field computes them, per condition, with bootstrap CIs over conditions.

Every metric compares a predicted and an observed *delta* per condition: the pseudobulk expression change of the
condition against its plate-matched controls (log1p-CP10k, conditions × genes). Definitions follow Arc Institute's
cell-eval (`cell_eval.metrics`, read at github.com/ArcInstitute/cell-eval, `metrics/_anndata.py`, `metrics/_de.py`,
`_types/_de.py`):

- `pearson_delta` — cell-eval `pearson_delta`: Pearson r over genes between the predicted and the real
  perturbation effect (perturbed mean − control mean). A constant prediction (e.g. the control mean, delta ≡ 0)
  has no defined correlation: NaN, as `scipy.stats.pearsonr` gives cell-eval.
- `mae` — cell-eval `mae_delta` (mean absolute error over genes of the deltas). When a predicted profile is the
  real control plus the predicted delta, this is also cell-eval's `mae` on the perturbed means.
- `de_overlap_at_n` — cell-eval `overlap_at_N` (`DEComparison.compute_overlap(k=N, metric="overlap")`): the real
  DE genes (FDR < `fdr`) ranked by |fold change| descending, the predicted DE genes ranked the same way, k_eff =
  min(N, number of real DE genes), score = |top-k_eff real ∩ top-k_eff predicted| / k_eff.
- `direction_accuracy` — cell-eval `DEDirectionMatch`: over the real DE genes (FDR < `fdr`), the share whose
  predicted change has the real sign (a zero prediction matches no sign).

Deviations, each forced by predicting pseudobulk means rather than cells, and stated where they apply:
a point prediction has no p-values, so every gene with a non-zero predicted change counts as predicted-DE (ranked
by |predicted delta|); genes rank by |delta| on the log1p-CP10k scale rather than by |log2 fold change| of a DE
test; when no real p-values are given, the real DE genes are the top-N by |real delta|. Where cell-eval returns
0.0 for a condition without real DE genes, these functions return NaN and the summaries count it (`n_nan`), so a
model is never scored on conditions where the metric is undefined.

Uncertainty: `bootstrap_ci` is a percentile bootstrap of the mean over conditions; pass `groups` (e.g. the drug
of each condition) to resample whole groups, because conditions of one drug are not independent. `paired_margin`
does the same for a per-condition difference between two models. Both are checked by simulation (coverage, size,
power) in tests/eval/test_expression_metrics.py.

Predictor comparison: `run_experiment` cross-validates the expression predictors of `mechcell.models.predictors`
(whole drugs or cell lines held out), averages each condition's metrics over repeats, and reports every model's
mean ± cluster-bootstrap CI (clusters = drugs) and each trace-conditioned model's paired margin over the best
baseline per metric; `evaluate_fitted` scores a saved checkpoint on new conditions; `write_training_report`
writes the table as markdown.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mechcell.errors import InputError, NotFoundError

if TYPE_CHECKING:
    from mechcell.models.predictors import ExpressionPredictor, PredictorCheckpoint, PredictorInputs

__all__ = [
    "LEAKAGE_NOTE",
    "METRICS",
    "ExperimentResult",
    "ExpressionEvaluation",
    "ExpressionMetric",
    "FittedEvaluation",
    "MarginSummary",
    "MetricSummary",
    "ModelResult",
    "bootstrap_ci",
    "de_overlap_at_n",
    "direction_accuracy",
    "evaluate_fitted",
    "evaluate_predictions",
    "fold_inputs",
    "mae",
    "paired_margin",
    "pearson_delta",
    "real_de_mask",
    "run_experiment",
    "write_training_report",
]

DEFAULT_N_DE = 20
DEFAULT_FDR = 0.05


def _pair(pred: Any, real: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    """Both as float64 conditions × genes (a 1-D input is one condition); `True` when the input was 1-D."""
    p = np.asarray(pred, dtype=np.float64)
    r = np.asarray(real, dtype=np.float64)
    one = p.ndim == 1
    if one:
        p = p[None, :]
        r = r[None, :] if r.ndim == 1 else r
    if p.ndim != 2 or p.shape != r.shape:
        raise InputError(f"predicted {np.shape(pred)} and real {np.shape(real)} deltas must have the same shape")
    if p.shape[1] == 0:
        raise InputError("deltas have no genes")
    if not np.isfinite(p).all():
        raise InputError("predicted deltas hold NaN or inf")
    if not np.isfinite(r).all():
        raise InputError("real deltas hold NaN or inf")
    return p, r, one


def _out(v: np.ndarray, one: bool) -> Any:
    return float(v[0]) if one else v


def pearson_delta(pred: Any, real: Any) -> Any:
    """Pearson r over genes of predicted vs real delta, per condition (cell-eval `pearson_delta`); NaN when
    either delta is constant. 2-D in → array per condition; 1-D in → float."""
    p, r, one = _pair(pred, real)
    pc = p - p.mean(axis=1, keepdims=True)
    rc = r - r.mean(axis=1, keepdims=True)
    num = (pc * rc).sum(axis=1)
    den = np.sqrt((pc * pc).sum(axis=1) * (rc * rc).sum(axis=1))
    constant = (np.ptp(p, axis=1) == 0) | (np.ptp(r, axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.where(constant, np.nan, num / np.where(constant, 1.0, den))
    return _out(np.clip(v, -1.0, 1.0), one)


def mae(pred: Any, real: Any) -> Any:
    """Mean absolute error over genes of the deltas, per condition (cell-eval `mae_delta`)."""
    p, r, one = _pair(pred, real)
    return _out(np.abs(p - r).mean(axis=1), one)


def real_de_mask(real: Any, real_padj: Any | None = None, *, fdr: float = DEFAULT_FDR, n: int = DEFAULT_N_DE) -> Any:
    """The real DE genes per condition: padj < fdr when p-values are given (NaN = untested = not DE), else the
    top-n genes by |real delta| (nonzero only)."""
    r = np.asarray(real, dtype=np.float64)
    one = r.ndim == 1
    r2 = r[None, :] if one else r
    if real_padj is not None:
        q = np.asarray(real_padj, dtype=np.float64)
        q = q[None, :] if q.ndim == 1 else q
        if q.shape != r2.shape:
            raise InputError(f"real padj {q.shape} must match the real deltas {r2.shape}")
        with np.errstate(invalid="ignore"):
            m = np.nan_to_num(q, nan=1.0) < fdr
    else:
        m = _top_mask(r2, n)
    return m[0] if one else m


def _top_mask(x: np.ndarray, n: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """Per row, the n entries of largest |x| (nonzero, within `allowed`); ties broken by gene index (stable)."""
    a = np.abs(x)
    if allowed is not None:
        a = np.where(allowed, a, 0.0)
    order = np.argsort(-a, axis=1, kind="stable")[:, :n]
    m = np.zeros(x.shape, dtype=bool)
    np.put_along_axis(m, order, True, axis=1)
    return m & (a > 0)


def de_overlap_at_n(
    pred: Any,
    real: Any,
    *,
    n: int = DEFAULT_N_DE,
    real_padj: Any | None = None,
    fdr: float = DEFAULT_FDR,
) -> Any:
    """cell-eval `overlap_at_N`: |top-k real DE ∩ top-k predicted| / k, k = min(n, #real DE genes); real DE =
    padj < fdr ranked by |real delta| (top-n by |real delta| without padj), predicted = nonzero predictions ranked
    by |predicted delta|. NaN for a condition without real DE genes."""
    if n < 1:
        raise InputError(f"n for DE overlap must be ≥ 1, got {n}")
    p, r, one = _pair(pred, real)
    sig = real_de_mask(r, None if real_padj is None else np.atleast_2d(real_padj), fdr=fdr, n=n)
    k = np.minimum(sig.sum(axis=1), n)
    real_top = np.zeros(r.shape, dtype=bool)
    pred_top = np.zeros(p.shape, dtype=bool)
    for i in range(r.shape[0]):  # k differs per condition
        if k[i] == 0:
            continue
        real_top[i] = _top_mask(r[i : i + 1], int(k[i]), sig[i : i + 1])[0]
        pred_top[i] = _top_mask(p[i : i + 1], int(k[i]))[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.where(k > 0, (real_top & pred_top).sum(axis=1) / np.maximum(k, 1), np.nan)
    return _out(v, one)


def direction_accuracy(
    pred: Any,
    real: Any,
    *,
    real_padj: Any | None = None,
    fdr: float = DEFAULT_FDR,
    n: int = DEFAULT_N_DE,
) -> Any:
    """cell-eval `DEDirectionMatch`: share of the real DE genes whose predicted change has the real sign; real DE
    as in `real_de_mask` (padj < fdr, else the top-n by |real delta|). NaN without real DE genes."""
    p, r, one = _pair(pred, real)
    sig = real_de_mask(r, None if real_padj is None else np.atleast_2d(real_padj), fdr=fdr, n=n)
    hit = (np.sign(p) == np.sign(r)) & (r != 0) & sig
    cnt = sig.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.where(cnt > 0, hit.sum(axis=1) / np.maximum(cnt, 1), np.nan)
    return _out(v, one)


# ------------------------------------------------------------------------------------------------ registry


@dataclass(frozen=True)
class ExpressionMetric:
    """One metric: its function (pred, real, **options) → per-condition values, its direction, its source."""

    name: str
    fn: Callable[..., Any]
    higher_is_better: bool
    description: str
    reference: str
    uses_de: bool = False


METRICS: dict[str, ExpressionMetric] = {
    m.name: m
    for m in (
        ExpressionMetric(
            "pearson_delta",
            pearson_delta,
            True,
            "Pearson r over genes, predicted vs real delta",
            "cell-eval metrics/_anndata.py pearson_delta",
        ),
        ExpressionMetric(
            "mae", mae, False, "mean |predicted − real delta| over genes", "cell-eval metrics/_anndata.py mae_delta"
        ),
        ExpressionMetric(
            "de_overlap_at_n",
            de_overlap_at_n,
            True,
            "top-N real DE genes recovered among the top-N predicted",
            "cell-eval _types/_de.py compute_overlap(metric='overlap')",
            uses_de=True,
        ),
        ExpressionMetric(
            "direction_accuracy",
            direction_accuracy,
            True,
            "share of real DE genes predicted in the right direction",
            "cell-eval metrics/_de.py DEDirectionMatch",
            uses_de=True,
        ),
    )
}


# ------------------------------------------------------------------------------------------------ uncertainty


def _group_codes(groups: Sequence[Any] | np.ndarray | None, n: int) -> np.ndarray:
    if groups is None:
        return np.arange(n)
    g = np.asarray(groups, dtype=object)
    if g.shape != (n,):
        raise InputError(f"groups has {g.shape[0] if g.ndim else 0} entries for {n} values")
    _, codes = np.unique(g.astype(str), return_inverse=True)
    return codes


def _bootstrap_means(values: np.ndarray, codes: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `n_boot` cluster-bootstrap resamples (clusters drawn with replacement; the mean pools every value
    of the drawn clusters, i.e. a ratio estimator weighting clusters by size)."""
    n_groups = int(codes.max()) + 1
    sums = np.bincount(codes, weights=values, minlength=n_groups)
    cnts = np.bincount(codes, minlength=n_groups).astype(np.float64)
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    return sums[draws].sum(axis=1) / cnts[draws].sum(axis=1)


def bootstrap_ci(
    values: Any,
    *,
    groups: Sequence[Any] | np.ndarray | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap CI of the mean over conditions, NaNs dropped. With `groups`, whole
    groups are resampled (unit of exchangeability: the group, e.g. the drug). (nan, nan, nan) when no value is
    finite; a single group gives a zero-width interval (no between-group information)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    codes = _group_codes(groups, v.size)
    ok = np.isfinite(v)
    if not ok.any():
        return (math.nan, math.nan, math.nan)
    if not 0 < level < 1:
        raise InputError(f"confidence level must be in (0, 1), got {level}")
    v, codes = v[ok], np.unique(codes[ok], return_inverse=True)[1]
    mean = float(v.mean())
    boots = _bootstrap_means(v, codes, n_boot, np.random.default_rng(seed))
    a = (1 - level) / 2
    lo, hi = np.quantile(boots, [a, 1 - a])
    return (mean, float(lo), float(hi))


class MetricSummary(BaseModel):
    """A metric over conditions: mean with its bootstrap CI, how many conditions had a value and how many not."""

    model_config = ConfigDict(frozen=True)

    metric: str
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n: int = Field(description="conditions with a defined value")
    n_nan: int = Field(description="conditions where the metric is undefined (no real DE genes, constant delta)")
    level: float = 0.95


class MarginSummary(BaseModel):
    """model − reference on one metric, paired per condition (signed so that > 0 means the model is better)."""

    model_config = ConfigDict(frozen=True)

    metric: str
    model: str
    reference: str
    margin: float | None = Field(description="mean per-condition improvement (for mae: reference − model)")
    ci_low: float | None
    ci_high: float | None
    n: int
    win_rate: float | None = Field(None, description="share of conditions where the model is strictly better")
    level: float = 0.95


def _none(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)


def summarise(
    metric: str,
    values: Any,
    *,
    groups: Sequence[Any] | np.ndarray | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> MetricSummary:
    v = np.asarray(values, dtype=np.float64).ravel()
    m, lo, hi = bootstrap_ci(v, groups=groups, n_boot=n_boot, level=level, seed=seed)
    ok = int(np.isfinite(v).sum())
    return MetricSummary(
        metric=metric, mean=_none(m), ci_low=_none(lo), ci_high=_none(hi), n=ok, n_nan=v.size - ok, level=level
    )


def paired_margin(
    metric: str,
    model_values: Any,
    reference_values: Any,
    *,
    model: str = "model",
    reference: str = "reference",
    groups: Sequence[Any] | np.ndarray | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> MarginSummary:
    """Per-condition improvement of `model` over `reference` (both defined), mean and (cluster-)bootstrap CI.
    The sign follows `METRICS[metric].higher_is_better` (unknown metrics: higher is better)."""
    a = np.asarray(model_values, dtype=np.float64).ravel()
    b = np.asarray(reference_values, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise InputError(f"{model} has {a.size} values and {reference} {b.size}: they must be paired")
    info = METRICS.get(metric)
    d = a - b if info is None or info.higher_is_better else b - a
    g = None if groups is None else np.asarray(groups, dtype=object)
    m, lo, hi = bootstrap_ci(d, groups=g, n_boot=n_boot, level=level, seed=seed)
    ok = np.isfinite(d)
    return MarginSummary(
        metric=metric,
        model=model,
        reference=reference,
        margin=_none(m),
        ci_low=_none(lo),
        ci_high=_none(hi),
        n=int(ok.sum()),
        win_rate=float((d[ok] > 0).mean()) if ok.any() else None,
        level=level,
    )


class ExpressionEvaluation(BaseModel):
    """Per-condition metric values of one prediction set and their summaries."""

    keys: list[str]
    values: dict[str, list[float | None]] = Field(description="metric → value per condition (None = undefined)")
    summaries: dict[str, MetricSummary]
    n_de: int
    fdr: float
    de_source: str = Field(description="'padj' (real DE = padj < fdr) or 'top-n' (top-N by |real delta|)")

    def array(self, metric: str) -> np.ndarray:
        return np.array([math.nan if x is None else x for x in self.values[metric]], dtype=np.float64)


def metric_values(
    pred: Any,
    real: Any,
    *,
    real_padj: Any | None = None,
    n_de: int = DEFAULT_N_DE,
    fdr: float = DEFAULT_FDR,
    metrics: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """metric → per-condition values (float64 arrays, NaN where undefined)."""
    names = list(metrics or METRICS)
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise InputError(f"unknown metric(s) {unknown} (have: {', '.join(METRICS)})")
    p = np.atleast_2d(np.asarray(pred, dtype=np.float64))
    r = np.atleast_2d(np.asarray(real, dtype=np.float64))
    out: dict[str, np.ndarray] = {}
    for name in names:
        m = METRICS[name]
        if name == "de_overlap_at_n":
            out[name] = np.asarray(m.fn(p, r, n=n_de, real_padj=real_padj, fdr=fdr), dtype=np.float64)
        elif m.uses_de:
            out[name] = np.asarray(m.fn(p, r, real_padj=real_padj, fdr=fdr, n=n_de), dtype=np.float64)
        else:
            out[name] = np.asarray(m.fn(p, r), dtype=np.float64)
    return out


def evaluate_predictions(
    pred: Any,
    real: Any,
    *,
    keys: Sequence[str] | None = None,
    real_padj: Any | None = None,
    groups: Sequence[Any] | np.ndarray | None = None,
    n_de: int = DEFAULT_N_DE,
    fdr: float = DEFAULT_FDR,
    metrics: Sequence[str] | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> ExpressionEvaluation:
    """Every metric per condition and its mean ± bootstrap CI over conditions (resampling `groups` if given)."""
    vals = metric_values(pred, real, real_padj=real_padj, n_de=n_de, fdr=fdr, metrics=metrics)
    n = next(iter(vals.values())).size
    ks = list(keys) if keys is not None else [str(i) for i in range(n)]
    if len(ks) != n:
        raise InputError(f"{len(ks)} keys for {n} conditions")
    return ExpressionEvaluation(
        keys=ks,
        values={k: [None if not math.isfinite(x) else float(x) for x in v] for k, v in vals.items()},
        summaries={k: summarise(k, v, groups=groups, n_boot=n_boot, level=level, seed=seed) for k, v in vals.items()},
        n_de=n_de,
        fdr=fdr,
        de_source="padj" if real_padj is not None else "top-n",
    )


# ------------------------------------------------------------------------------------------------ predictor comparison
# Cross-validated comparison of the expression predictors (mechcell.models.predictors) against the baselines.
# It lives here, above the models layer, because it is evaluation: models never import eval.


class ModelResult(BaseModel):
    name: str
    kind: str
    uses_mechanism: bool
    description: str
    summaries: dict[str, MetricSummary]
    seconds: float


class ExperimentResult(BaseModel):
    """Cross-validated scores of every model on one dataset and split, with margins against the best baseline."""

    schema_version: int = 1
    split: Literal["drug", "cell_line"]
    n_folds: int
    n_repeats: int
    seed: int
    n_conditions: int
    n_genes: int
    n_groups: int
    n_de: int
    fdr: float
    de_source: str
    ci: str = Field(description="how the CIs were computed")
    mechanism_source: str = Field(description="'traces', 'oracle' (planted truth: an oracle mechanism), 'none'…")
    n_with_mechanism: int
    dataset_id: str | None = None
    models: list[ModelResult]
    best_baseline: dict[str, str | None] = Field(description="metric → best baseline by mean")
    margins: dict[str, dict[str, MarginSummary]] = Field(description="model → metric → margin vs best baseline")
    keys: list[str]
    values: dict[str, dict[str, list[float | None]]] = Field(description="model → metric → per condition")
    seconds: float

    def model(self, name: str) -> ModelResult:
        for m in self.models:
            if m.name == name:
                return m
        raise NotFoundError(f"model {name!r} not in this result (have: {', '.join(m.name for m in self.models)})")


def _best(models: list[ModelResult], metric: str) -> str | None:
    hib = METRICS[metric].higher_is_better
    cands = [
        (m.summaries[metric].mean, m.name)
        for m in models
        if m.kind == "baseline" and m.summaries[metric].mean is not None
    ]
    if not cands:
        return None
    return (max if hib else min)(cands, key=lambda c: c[0])[1]


def fold_inputs(
    inputs: PredictorInputs, train: Sequence[int], test: Sequence[int]
) -> tuple[PredictorInputs, PredictorInputs]:
    """One fold's (training, test) inputs. With a `mechanism_prior` the mechanisms are rebuilt from the training
    rows' traces only — the held-out rows' own traces are never read (the leakage guard, tested)."""
    tr, te = inputs.subset(train), inputs.subset(test)
    if inputs.mechanism_prior is not None:
        held = set(te.table.keys)
        tr.mechanisms = {k: v for k, v in inputs.mechanisms.items() if k not in held}
        te.mechanisms = {}
        tr, te = inputs.mechanism_prior.fold(tr, te)
    return tr, te


def run_experiment(
    inputs: PredictorInputs,
    *,
    by: Literal["drug", "cell_line"] = "drug",
    models: Sequence[str] | str | None = None,
    n_folds: int = 5,
    n_repeats: int = 1,
    seed: int = 0,
    n_de: int = DEFAULT_N_DE,
    fdr: float = DEFAULT_FDR,
    use_padj: bool = True,
    n_boot: int = 2000,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ExperimentResult:
    """Grouped CV of every model; per-condition metrics averaged over repeats, then mean ± cluster-bootstrap CI
    (clusters = drugs) and paired margins of every non-baseline model against the best baseline per metric.
    With `inputs.mechanism_prior` set, every fold's mechanisms come from the prior fitted on that fold's training
    rows (`fold_inputs`)."""
    from mechcell.models.predictors import PREDICTORS, make_folds, make_predictor, resolve_models

    t0 = time.perf_counter()
    names = resolve_models(models)
    folds = make_folds(inputs.table, by, n_folds=n_folds, n_repeats=n_repeats, seed=seed)
    t = inputs.table
    groups = t.groups(by)
    n, G = len(t), len(t.genes)
    padj = t.padj if use_padj else None
    if padj is not None and np.isnan(padj).all():
        padj = None
    sums = {m: {k: np.zeros(n) for k in METRICS} for m in names}
    counts = {m: {k: np.zeros(n) for k in METRICS} for m in names}
    secs = dict.fromkeys(names, 0.0)
    for r in range(n_repeats):
        preds = {m: np.zeros((n, G)) for m in names}
        for f in (f for f in folds if f.repeat == r):
            tr, te = fold_inputs(inputs, f.train, f.test)
            for m in names:
                s = time.perf_counter()
                p = make_predictor(m, seed=seed + 1000 * r + f.fold, **dict((params or {}).get(m, {})))
                p.fit(tr, groups[f.train])
                preds[m][f.test] = p.predict(te)
                secs[m] += time.perf_counter() - s
                if on_progress is not None:
                    on_progress(1)
        for m in names:
            vals = metric_values(preds[m], t.delta, real_padj=padj, n_de=n_de, fdr=fdr)
            for k, v in vals.items():
                ok = np.isfinite(v)
                sums[m][k][ok] += v[ok]
                counts[m][k][ok] += 1
    drug_groups = t.groups("drug")
    per: dict[str, dict[str, np.ndarray]] = {
        m: {k: np.where(counts[m][k] > 0, sums[m][k] / np.maximum(counts[m][k], 1), np.nan) for k in METRICS}
        for m in names
    }
    results = [
        ModelResult(
            name=m,
            kind=PREDICTORS[m].kind,
            uses_mechanism=PREDICTORS[m].uses_mechanism,
            description=PREDICTORS[m].description,
            summaries={k: summarise(k, per[m][k], groups=drug_groups, n_boot=n_boot, seed=seed) for k in METRICS},
            seconds=secs[m],
        )
        for m in names
    ]
    best = {k: _best(results, k) for k in METRICS}
    margins: dict[str, dict[str, MarginSummary]] = {}
    for m in names:
        if PREDICTORS[m].kind == "baseline":
            continue
        margins[m] = {}
        for k in METRICS:
            b = best[k]
            if b is None:
                continue
            margins[m][k] = paired_margin(
                k, per[m][k], per[b][k], model=m, reference=b, groups=drug_groups, n_boot=n_boot, seed=seed
            )
    return ExperimentResult(
        split=by,
        n_folds=len({f.fold for f in folds}),
        n_repeats=n_repeats,
        seed=seed,
        n_conditions=n,
        n_genes=G,
        n_groups=int(np.unique(groups.astype(str)).size),
        n_de=n_de,
        fdr=fdr,
        de_source="padj" if padj is not None else "top-n",
        ci=f"95% percentile bootstrap over drugs (clusters), {n_boot} resamples",
        mechanism_source=inputs.mechanism_label,
        n_with_mechanism=inputs.n_with_mechanism,
        dataset_id=t.dataset_id,
        models=results,
        best_baseline=best,
        margins=margins,
        keys=list(t.keys),
        values={
            m: {k: [None if not math.isfinite(x) else float(x) for x in v] for k, v in per[m].items()} for m in names
        },
        seconds=time.perf_counter() - t0,
    )


class FittedEvaluation(BaseModel):
    """Saved models scored on conditions they were (ideally) not trained on."""

    n_conditions: int
    n_in_training: int
    mechanism_source: str
    n_with_mechanism: int
    de_source: str
    n_de: int
    fdr: float
    ci: str
    models: list[ModelResult]
    best_baseline: dict[str, str | None]
    margins: dict[str, dict[str, MarginSummary]]
    keys: list[str]


def evaluate_fitted(
    checkpoint: PredictorCheckpoint,
    fitted: Mapping[str, ExpressionPredictor],
    inputs: PredictorInputs,
    *,
    include_train: bool = False,
    n_de: int = DEFAULT_N_DE,
    fdr: float = DEFAULT_FDR,
    n_boot: int = 2000,
    seed: int = 0,
) -> FittedEvaluation:
    """Score saved models on `inputs`' conditions; conditions seen in training are left out unless asked for."""
    from mechcell.models.predictors import align_genes

    inputs = align_genes(inputs, checkpoint.genes)
    seen = set(checkpoint.train_keys)
    keep = [i for i, k in enumerate(inputs.table.keys) if include_train or k not in seen]
    if not keep:
        raise InputError(
            f"every one of the {len(inputs.table)} conditions was in the checkpoint's training set; "
            "evaluate on new conditions, pass --include-train (in-sample, optimistic), or use cross-validation "
            "(omit --checkpoint)"
        )
    sub = inputs.subset(keep)
    t = sub.table
    padj = None if np.isnan(t.padj).all() else t.padj
    drugs = t.groups("drug")
    results: list[ModelResult] = []
    per: dict[str, dict[str, np.ndarray]] = {}
    for name, m in fitted.items():
        s = time.perf_counter()
        per[name] = metric_values(m.predict(sub), t.delta, real_padj=padj, n_de=n_de, fdr=fdr)
        results.append(
            ModelResult(
                name=name,
                kind=m.kind,
                uses_mechanism=m.uses_mechanism,
                description=m.description,
                summaries={k: summarise(k, v, groups=drugs, n_boot=n_boot, seed=seed) for k, v in per[name].items()},
                seconds=time.perf_counter() - s,
            )
        )
    best = {k: _best(results, k) for k in METRICS}
    margins = {
        r.name: {
            k: paired_margin(k, per[r.name][k], per[b][k], model=r.name, reference=b, groups=drugs, n_boot=n_boot)
            for k in METRICS
            if (b := best[k]) is not None
        }
        for r in results
        if r.kind != "baseline"
    }
    return FittedEvaluation(
        n_conditions=len(t),
        n_in_training=sum(k in seen for k in t.keys),
        mechanism_source=sub.mechanism_label,
        n_with_mechanism=sub.n_with_mechanism,
        de_source="padj" if padj is not None else "top-n",
        n_de=n_de,
        fdr=fdr,
        ci=f"95% percentile bootstrap over drugs (clusters), {n_boot} resamples",
        models=results,
        best_baseline=best,
        margins=margins,
        keys=list(t.keys),
    )


def result_json(result: BaseModel) -> dict[str, Any]:
    """A JSON-safe dict (NaN never appears: undefined values are None)."""
    return json.loads(result.model_dump_json())


# ------------------------------------------------------------------------------------------------ reporting

LEAKAGE_NOTE = (
    "Mechanism inputs: a verified trace of a held-out condition was built and verified against that condition's "
    "own signature, so trace-conditioned scores with trace inputs are transductive (an upper bound on what a "
    "mechanism-first pipeline gains); '_aux' models use mechanisms only as a training target; an 'oracle' "
    "mechanism is the synthetic world's planted graph; 'trace-prior' mechanisms are rebuilt per fold from the "
    "training drugs' traces only (KB paths weighted by what those traces verified), and a checkpoint's prior was "
    "fitted on its training conditions' traces only: leakage-free."
)


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def table_rows(
    models: Sequence[ModelResult], margins: Mapping[str, Mapping[str, MarginSummary]], best: Mapping[str, str | None]
) -> tuple[list[str], list[list[str]]]:
    """(header, rows): per model, each metric as `mean [low, high]`, and for non-baselines the margin over the
    best baseline of the first metric (pearson_delta) with its CI. Best baselines are marked with *."""
    metrics = list(METRICS)
    header = ["model", "kind", *metrics, f"margin ({metrics[0]}) vs best baseline"]
    rows = []
    for m in models:
        cells = [m.name, m.kind]
        for k in metrics:
            s = m.summaries[k]
            star = "*" if best.get(k) == m.name else ""
            cells.append(f"{_fmt(s.mean)}{star} [{_fmt(s.ci_low)}, {_fmt(s.ci_high)}]")
        mg = margins.get(m.name, {}).get(metrics[0])
        cells.append(
            "—"
            if mg is None
            else f"{mg.margin:+.3f} [{mg.ci_low:+.3f}, {mg.ci_high:+.3f}] vs {mg.reference}"
            if mg.margin is not None and mg.ci_low is not None and mg.ci_high is not None
            else "n/a"
        )
        rows.append(cells)
    return header, rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def write_training_report(out_dir: str | Path, result: ExperimentResult, info: Mapping[str, Any]) -> Path:
    """`report.md` (the CV table against the baselines, margins per metric, settings, leakage note) and
    `cv.json` (the full `ExperimentResult`) under `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cv.json").write_text(result.model_dump_json(indent=1) + "\n")
    header, rows = table_rows(result.models, result.margins, result.best_baseline)
    margin_lines = []
    for m, per in result.margins.items():
        for k, mg in per.items():
            margin_lines.append(
                f"| {m} | {k} | {mg.reference} | {_fmt(mg.margin)} | [{_fmt(mg.ci_low)}, {_fmt(mg.ci_high)}] | "
                f"{_fmt(mg.win_rate, 2)} | {mg.n} |"
            )
    label = result.mechanism_source + (
        " (oracle mechanism: planted truth graphs)" if result.mechanism_source == "oracle" else ""
    )
    de_text = (
        f"padj < {result.fdr} (Welch t over wells, BH)"
        if result.de_source == "padj"
        else f"top-{result.n_de} by |delta| (no p-values)"
    )
    text = f"""# Expression predictors — cross-validated, split by {result.split}

Dataset {result.dataset_id or info.get("dataset_path")}: {result.n_conditions} conditions × {result.n_genes} genes,
{result.n_groups} {result.split} groups, {result.n_folds} folds × {result.n_repeats} repeat(s), seed {result.seed}.
Mechanisms: {label}; {result.n_with_mechanism} of {result.n_conditions} conditions have one.
Real DE genes: {de_text}; DE overlap at N = {result.n_de}.
CIs: {result.ci}. Metric definitions: `mechcell.eval.expression` (cell-eval's).

{markdown_table(header, rows)}

## Margins against the best baseline (per metric; > 0 = better; mae as baseline − model)

| model | metric | best baseline | margin | 95% CI | win rate | n |
|---|---|---|---|---|---|---|
{chr(10).join(margin_lines)}

{LEAKAGE_NOTE}
"""
    (out / "report.md").write_text(text)
    return out / "report.md"
