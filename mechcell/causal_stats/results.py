"""Result types of the causal statistics: what crosses the wall to the verifiers.

Why pydantic: verifiers put these into JSON reports, so every field is coerced to plain Python
(floats, ints, lists) on the way in; numpy scalars and arrays never leak into a report.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, field_validator


class CausalStatsInputError(ValueError):
    """Bad input to a causal-statistics function; the message names the argument, column or value.

    A `ValueError` (like `mechcell.errors.InputError`) because `causal_stats` imports nothing else of
    mechcell: callers that catch `ValueError` or re-raise as `InputError` handle it without a traceback.
    """


def jsonable(value: Any) -> Any:
    """Recursively turn numpy scalars/arrays, tuples and non-str keys into JSON-ready Python objects."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return float(value)
    return str(value)


class TestResult(BaseModel):
    """One statistical test: statistic, p-value, e-value (calibrated from p), its null and diagnostics."""

    __test__: ClassVar[bool] = False  # not a pytest test class despite the name
    model_config = ConfigDict(frozen=True)

    statistic: float
    p_value: float
    e_value: float
    null: str
    n: int
    diagnostics: dict[str, Any] = {}

    @field_validator("statistic", "p_value", "e_value", mode="before")
    @classmethod
    def _as_float(cls, v: Any) -> float:
        return float(v)

    @field_validator("n", mode="before")
    @classmethod
    def _as_int(cls, v: Any) -> int:
        return int(v)

    @field_validator("diagnostics", mode="before")
    @classmethod
    def _as_json(cls, v: Any) -> dict[str, Any]:
        return jsonable(dict(v))


class Bounds(BaseModel):
    """Sharp bounds on a metric of the true distribution over all models a bias of size D allows.

    `certified` is True only when the bounds are exact (closed form, vertex enumeration or one LP);
    a local optimiser may return bounds that are too narrow and then says False.
    """

    model_config = ConfigDict(frozen=True)

    lower: float
    upper: float
    certified: bool
    method: str
    observed: float = math.nan
    metric: str = ""
    bias: str = ""
    D: float = 0.0
    group: int | None = None


FloatArray = Annotated[
    np.ndarray,
    BeforeValidator(lambda v: np.asarray(v, dtype=np.float64)),
    PlainSerializer(lambda a: [float(x) for x in np.asarray(a).ravel()], return_type=list),
]
BoolArray = Annotated[
    np.ndarray,
    BeforeValidator(lambda v: np.asarray(v, dtype=bool)),
    PlainSerializer(lambda a: [bool(x) for x in np.asarray(a).ravel()], return_type=list),
]


class GapIntervals(BaseModel):
    """GP posterior of the gap Δ = τ − ω at query points (arrays of length n_query).

    `lower`/`upper` bound Δ at the requested level; `in_support` flags query points near the trial data —
    outside it the interval is prior-driven, so Δ ≈ 0 there is *never* evidence that ω is valid.
    `tau_*` give τ = ω + Δ with ω's own standard deviation added in quadrature.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    mean: FloatArray
    lower: FloatArray
    upper: FloatArray
    in_support: BoolArray
    sd: FloatArray
    prior_sd: FloatArray
    tau_mean: FloatArray
    tau_lower: FloatArray
    tau_upper: FloatArray
    level: float = 0.95
    hyperparameters: dict[str, Any] = {}

    @field_validator("hyperparameters", mode="before")
    @classmethod
    def _as_json(cls, v: Any) -> dict[str, Any]:
        return jsonable(dict(v))
