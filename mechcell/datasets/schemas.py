"""The observation contracts: `Condition` (what was done, where) and `Signature` (what changed).

These are plain pydantic types with no I/O so that every room (knowledge retrieval, verifiers, agents, web)
can import them without pulling in readers or DuckDB.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mechcell.errors import InputError

SCHEMA_VERSION = 1
_KEY_SEP = "|"
_MISSING = "-"


def _fmt_dose(dose: float | None, unit: str | None) -> str:
    if dose is None:
        return _MISSING
    return f"{dose:g}{unit or ''}"


class Condition(BaseModel):
    """One perturbation condition: perturbation × dose × context (cell line) × batch (plate).

    `key` is stable and human-readable: `perturbation|dose+unit|context|batch`, with `-` for an absent part,
    e.g. `Trametinib|0.05uM|CVCL_0023|plate1`. Drug names never contain `|`; `Condition.from_key` inverts it.
    """

    model_config = ConfigDict(frozen=True)

    schema_version: int = SCHEMA_VERSION
    perturbation: str = Field(min_length=1)
    dose: float | None = None
    dose_unit: str | None = None
    context: str | None = Field(None, description="cell line id (Cellosaurus) or name; None when not recorded")
    context_name: str | None = Field(None, description="human-readable cell line name when context is an id")
    batch: str | None = Field(None, description="plate / batch; controls are matched within it")
    control: str = "DMSO_TF"

    @field_validator("perturbation", "context", "context_name", "batch", "control", "dose_unit", mode="before")
    @classmethod
    def _strip(cls, v: Any) -> Any:
        # Tahoe's drug names carry stray spaces; "Trametinib " and "Trametinib" are one drug.
        if isinstance(v, str):
            v = v.strip()
            if _KEY_SEP in v:
                raise InputError(f"{v!r}: names may not contain {_KEY_SEP!r}")
        return v

    @field_validator("dose")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and (not math.isfinite(v) or v < 0):
            raise InputError(f"dose must be a finite non-negative number, got {v!r}")
        return v

    @property
    def key(self) -> str:
        parts = [
            self.perturbation,
            _fmt_dose(self.dose, self.dose_unit),
            self.context or _MISSING,
            self.batch or _MISSING,
        ]
        return _KEY_SEP.join(parts)

    @classmethod
    def from_key(cls, key: str, control: str = "DMSO_TF") -> Condition:
        """Parse a key made by `.key` (dose unit = the trailing letters of the dose part)."""
        parts = key.split(_KEY_SEP)
        if len(parts) != 4:
            raise InputError(
                f"condition key {key!r} must have 4 parts separated by '|' (perturbation|dose|context|batch)"
            )
        pert, dose_s, ctx, batch = parts
        dose: float | None = None
        unit: str | None = None
        if dose_s != _MISSING:
            i = len(dose_s)
            while i > 0 and not (dose_s[i - 1].isdigit() or dose_s[i - 1] == "."):
                i -= 1
            try:
                dose = float(dose_s[:i])
            except ValueError as exc:
                raise InputError(f"condition key {key!r}: dose part {dose_s!r} is not a number+unit") from exc
            unit = dose_s[i:] or None
        return cls(
            perturbation=pert,
            dose=dose,
            dose_unit=unit,
            context=None if ctx == _MISSING else ctx,
            batch=None if batch == _MISSING else batch,
            control=control,
        )


class Signature(BaseModel):
    """A condition's differential-expression result, columnar (one entry per gene; log2 fold changes).

    Columnar rather than a list of per-gene objects: 20k genes × many conditions must stay cheap.
    """

    model_config = ConfigDict(frozen=True)

    schema_version: int = SCHEMA_VERSION
    condition: Condition
    method: str = Field(description="e.g. wilcoxon, welch_t, pseudobulk_lfc, pydeseq2, precomputed")
    params: dict[str, Any] = Field(default_factory=dict)
    n_treated: int = Field(ge=0)
    n_control: int = Field(ge=0)
    genes: list[str]
    log2fc: list[float]
    pvalue: list[float]
    padj: list[float]
    stat: list[float] | None = None

    def model_post_init(self, __context: Any) -> None:
        n = len(self.genes)
        for name in ("log2fc", "pvalue", "padj"):
            if len(getattr(self, name)) != n:
                raise InputError(
                    f"signature for {self.condition.key}: column {name} has "
                    f"{len(getattr(self, name))} entries, genes has {n}"
                )
        if self.stat is not None and len(self.stat) != n:
            raise InputError(
                f"signature for {self.condition.key}: column stat has {len(self.stat)} entries, genes has {n}"
            )

    def to_frame(self) -> pd.DataFrame:
        """gene-indexed DataFrame with columns log2fc, pvalue, padj (and stat when present)."""
        cols: dict[str, Any] = {"log2fc": self.log2fc, "pvalue": self.pvalue, "padj": self.padj}
        if self.stat is not None:
            cols["stat"] = self.stat
        return pd.DataFrame(cols, index=pd.Index(self.genes, name="gene"))

    @classmethod
    def from_frame(
        cls,
        condition: Condition,
        frame: pd.DataFrame,
        *,
        method: str,
        n_treated: int,
        n_control: int,
        params: dict[str, Any] | None = None,
    ) -> Signature:
        """Build from a gene-indexed frame with log2fc, pvalue, padj (and optional stat) columns."""
        missing = [c for c in ("log2fc", "pvalue", "padj") if c not in frame.columns]
        if missing:
            raise InputError(f"signature frame lacks column(s) {missing} (have: {list(frame.columns)})")
        f64 = lambda c: np.asarray(frame[c], dtype=np.float64).tolist()  # noqa: E731
        return cls(
            condition=condition,
            method=method,
            params=params or {},
            n_treated=n_treated,
            n_control=n_control,
            genes=[str(g) for g in frame.index],
            log2fc=f64("log2fc"),
            pvalue=f64("pvalue"),
            padj=f64("padj"),
            stat=f64("stat") if "stat" in frame.columns else None,
        )
