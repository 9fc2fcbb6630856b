"""How a dataset's columns map onto perturbation, dose, context, batch and control — and the condition index.

Why one place: every reader (AnnData, Tahoe shards, precomputed DE tables) sees the same raw per-cell key
columns, so they all hand a small table of *distinct raw key combinations* to `build_condition_index`, which
normalises names (stray whitespace), parses doses (Tahoe's `[('Trametinib', 0.05, 'uM')]` strings), matches the
control label exactly (`DMSO_TF` is not `Trametinib (DMSO_TF solvate)`) and pairs every condition with the
control cells of the same context on the same plate. Readers then select cells by joining on those raw values,
so nothing per cell is ever normalised in Python.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mechcell.datasets.schemas import Condition
from mechcell.errors import InputError, MissingColumnError

__all__ = [
    "ConditionIndex",
    "ConditionSummary",
    "DoseParseError",
    "NoControlCellsError",
    "PerturbationSchema",
    "ROLE_FLAGS",
    "build_condition_index",
    "parse_dose",
    "parse_drugconc",
]

#: CLI flag that sets each schema role, named in error messages so the user knows what to pass.
ROLE_FLAGS: dict[str, str] = {
    "perturbation": "--perturbation-col",
    "dose": "--dose-col",
    "context": "--context-col",
    "batch": "--batch-col",
    "sample": "--sample-col",
    "context_name": "--context-name-col",
}


class NoControlCellsError(InputError):
    """No control cells where a comparison needs them (a whole batch, or a condition's context in its batch)."""


class DoseParseError(InputError):
    """A dose value that is neither a number nor a Tahoe `[('drug', conc, 'unit')]` string."""


class PerturbationSchema(BaseModel):
    """Which columns of a dataset hold perturbation, dose, context (cell line), batch (plate) and well.

    Only `perturbation_col` and `control_label` are required: a dataset without dose, context or batch columns
    compares every perturbation against all control cells. `sample_col` names the well (the unit at which
    treatment was assigned): pseudobulk replicates and well-level permutation tests use it.
    """

    model_config = ConfigDict(frozen=True)

    perturbation_col: str = Field(min_length=1)
    control_label: str = Field(min_length=1)
    dose_col: str | None = None
    dose_unit: str | None = Field(None, description="unit for numeric doses (Tahoe strings carry their own)")
    context_col: str | None = None
    batch_col: str | None = None
    sample_col: str | None = None
    context_name_col: str | None = Field(None, description="optional human-readable name of the context")

    @field_validator("control_label", "dose_unit", mode="before")
    @classmethod
    def _strip(cls, v: Any) -> Any:
        return v.strip() if isinstance(v, str) else v

    @classmethod
    def tahoe(cls, *, context_col: str = "cell_line", control_label: str = "DMSO_TF") -> PerturbationSchema:
        """Tahoe-100M's names: drug / drugname_drugconc / cell_line (`cell_line_id` in the shards) / plate / sample.

        The Tahoe reader resolves `cell_line` ⇄ `cell_line_id`, so this one preset reads both the expression
        shards and an h5ad that uses Tahoe's obs names.
        """
        return cls(
            perturbation_col="drug",
            dose_col="drugname_drugconc",
            dose_unit="uM",
            context_col=context_col,
            batch_col="plate",
            sample_col="sample",
            control_label=control_label,
        )

    @classmethod
    def tahoe_de(cls, *, control_label: str = "DMSO_TF") -> PerturbationSchema:
        """Tahoe's `pseudobulk_differential_expression` table: drug / concentration (µM) / Cell_ID_Cellosaur / plate."""
        return cls(
            perturbation_col="drug",
            dose_col="concentration",
            dose_unit="uM",
            context_col="Cell_ID_Cellosaur",
            batch_col="plate",
            control_label=control_label,
        )

    def roles(self) -> dict[str, str]:
        """role → column for every role that is set (perturbation, dose, context, batch, sample, context_name)."""
        pairs = {
            "perturbation": self.perturbation_col,
            "dose": self.dose_col,
            "context": self.context_col,
            "batch": self.batch_col,
            "sample": self.sample_col,
            "context_name": self.context_name_col,
        }
        return {r: c for r, c in pairs.items() if c}


class ConditionSummary(BaseModel):
    """A condition with its cell counts: what `data conditions` lists and the store's `conditions` table holds."""

    model_config = ConfigDict(frozen=True)

    condition: Condition
    n_cells: int = Field(ge=0)
    n_control_cells: int = Field(ge=0)
    n_samples: int = Field(0, ge=0, description="wells holding the treated cells (0 when no sample column)")
    n_control_samples: int = Field(0, ge=0)

    @property
    def key(self) -> str:
        return self.condition.key


# --------------------------------------------------------------------------------------------------- parsing


def parse_drugconc(s: str) -> list[tuple[str, float, str]]:
    """Parse Tahoe's `drugname_drugconc`, e.g. `[('Trametinib', 0.05, 'uM')]` → `[('Trametinib', 0.05, 'uM')]`.

    Names are stripped (Tahoe has `'Erdafitinib '`); a combination yields several tuples. Raises
    `DoseParseError` (naming the value) on anything else.
    """
    if not isinstance(s, str):
        raise DoseParseError(f"drugname_drugconc value {s!r} is not a string like \"[('Trametinib', 0.05, 'uM')]\"")
    try:
        val = ast.literal_eval(s.strip())
    except (ValueError, SyntaxError) as exc:
        raise DoseParseError(
            f"cannot parse drugname_drugconc value {s!r}; expected \"[('Trametinib', 0.05, 'uM')]\""
        ) from exc
    if isinstance(val, tuple):
        val = [val]
    if not isinstance(val, list) or not val:
        raise DoseParseError(f"drugname_drugconc value {s!r} is not a non-empty list of (name, conc, unit) tuples")
    out: list[tuple[str, float, str]] = []
    for item in val:
        if not (
            isinstance(item, tuple | list)
            and len(item) == 3
            and isinstance(item[0], str)
            and isinstance(item[1], int | float)
            and not isinstance(item[1], bool)
            and isinstance(item[2], str)
        ):
            raise DoseParseError(f"drugname_drugconc value {s!r}: entry {item!r} is not (name, conc, unit)")
        conc = float(item[1])
        if not math.isfinite(conc) or conc < 0:
            raise DoseParseError(f"drugname_drugconc value {s!r}: concentration {item[1]!r} is not a finite dose ≥ 0")
        out.append((item[0].strip(), conc, item[2].strip()))
    return out


def parse_dose(
    value: Any, *, perturbation: str | None, column: str, default_unit: str | None
) -> tuple[float | None, str | None]:
    """One raw dose value → (dose, unit). Numbers, numeric strings and Tahoe drugconc strings are understood.

    Missing values (None/NaN/empty) give (None, None). For a drugconc string with several drugs, the entry whose
    name equals the perturbation is used.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None, None
    if isinstance(value, bool):
        raise DoseParseError(f"dose column {column!r}: value {value!r} is not a dose")
    if isinstance(value, int | float | np.integer | np.floating):
        v = float(value)
        if not math.isfinite(v) or v < 0:
            raise DoseParseError(f"dose column {column!r}: value {value!r} is not a finite dose ≥ 0")
        return v, default_unit
    s = str(value).strip()
    if not s or s.lower() in {"nan", "none", "na"}:
        return None, None
    try:
        v = float(s)
    except ValueError:
        pass
    else:
        return parse_dose(v, perturbation=perturbation, column=column, default_unit=default_unit)
    if s.startswith(("[", "(")):
        try:
            entries = parse_drugconc(s)
        except DoseParseError as exc:
            raise DoseParseError(f"dose column {column!r}: {exc}") from None
        if len(entries) == 1:
            return entries[0][1], entries[0][2] or default_unit
        for name, conc, unit in entries:
            if perturbation is not None and name == perturbation.strip():
                return conc, unit or default_unit
        raise DoseParseError(
            f"dose column {column!r}: value {s!r} lists several drugs and none is "
            f"{perturbation!r}; combinations need one dose per perturbation"
        )
    raise DoseParseError(
        f"dose column {column!r}: cannot parse value {s!r} as a dose (expected a number or "
        f"\"[('Trametinib', 0.05, 'uM')]\")"
    )


def require_columns(
    schema: PerturbationSchema, available: Iterable[str], where: str, aliases: dict[str, str] | None = None
) -> dict[str, str]:
    """role → actual column name, or `MissingColumnError` naming the column, where it was looked for and the flag."""
    have = list(dict.fromkeys(available))
    out: dict[str, str] = {}
    for role, col in schema.roles().items():
        if col in have:
            out[role] = col
        elif aliases and aliases.get(col) in have:
            out[role] = aliases[col]
        else:
            shown = ", ".join(have[:25]) + (", ..." if len(have) > 25 else "")
            raise MissingColumnError(f"column {col!r} ({role}) not in {where} (have: {shown}); pass {ROLE_FLAGS[role]}")
    return out


# ------------------------------------------------------------------------------------------ condition index


def _name(v: Any) -> str | None:
    """A raw key value as a stripped string (None for missing); integers print without a decimal point."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return None
    if isinstance(v, float | np.floating) and float(v).is_integer():
        v = int(v)
    s = str(v).strip()
    return s or None


@dataclass
class ConditionIndex:
    """Distinct raw key combinations of a dataset, normalised, with their condition / control group.

    `combos` has one row per distinct raw combination with the raw columns (named `raw_<role>`), `combo_id`
    (the reader's own id of the combination), `n_cells`, and normalised `perturbation`, `dose`, `dose_unit`,
    `context`, `batch`, `sample`, `is_control`, `key` (condition key; None for control rows) and `group`
    (context|batch: where controls are matched).
    """

    schema: PerturbationSchema
    combos: pd.DataFrame
    summaries: list[ConditionSummary]
    raw_roles: list[str]

    def __post_init__(self) -> None:
        self._by_key = {s.key: s for s in self.summaries}

    @property
    def conditions(self) -> list[Condition]:
        return [s.condition for s in self.summaries]

    def summary(self, condition: Condition | str) -> ConditionSummary:
        """The summary of a condition (by object or key); `NotFoundError`-style `InputError` when absent."""
        from mechcell.errors import NotFoundError

        key = condition if isinstance(condition, str) else condition.key
        try:
            return self._by_key[key]
        except KeyError:
            near = [k for k in self._by_key if k.split("|")[0] == key.split("|")[0]][:5]
            hint = f" (same perturbation: {', '.join(near)})" if near else ""
            raise NotFoundError(f"condition {key!r} is not in this dataset{hint}") from None

    def selection(
        self, condition: Condition | str | Sequence[Condition | str], *, require_controls: bool = True
    ) -> pd.DataFrame:
        """Raw combinations holding the condition's cells (treated=True) and its matched controls (treated=False).

        Several conditions of one context × batch group may be given at once: their cells share the controls.
        """
        conds = [condition] if isinstance(condition, str | Condition) else list(condition)
        keys = [self.summary(c).key for c in conds]
        c = self.combos
        treated = c[c["key"].isin(keys)]
        groups = pd.unique(treated["group"])
        if len(groups) != 1:
            raise InputError(f"conditions {keys[:3]} are not in one context × batch group (groups: {list(groups)})")
        ctrl = c[c["is_control"] & (c["group"] == groups[0])]
        if require_controls and ctrl.empty:
            cond = self.summary(keys[0]).condition
            raise NoControlCellsError(
                f"condition {keys[0]!r}: no control cells ({self.schema.control_label!r} in column "
                f"{self.schema.perturbation_col!r}) with context {cond.context!r} in batch {cond.batch!r}"
            )
        return pd.concat([treated.assign(treated=True), ctrl.assign(treated=False)], ignore_index=True)


def build_condition_index(
    schema: PerturbationSchema,
    combos: pd.DataFrame,
    *,
    where: str,
    context_names: dict[str, str] | None = None,
    require_controls: bool = True,
) -> ConditionIndex:
    """Normalise a table of distinct raw key combinations into conditions with plate-matched control counts.

    `combos` has columns `raw_<role>` for the roles the schema sets (dose may be absent when the dose comes
    from a per-sample table: then pass it already resolved as `raw_dose`) and `n_cells`. Raises
    `NoControlCellsError` when the data hold no control cells at all or a batch has none (when
    `require_controls`); a condition whose own context lacks controls in its batch is kept with 0 controls.
    """
    raw_roles = [
        r
        for r in ("perturbation", "dose", "context", "batch", "sample", "context_name")
        if f"raw_{r}" in combos.columns
    ]
    c = combos.reset_index(drop=True).copy()
    if "combo_id" not in c.columns:  # the row position in the reader's table: readers select cells by it
        c["combo_id"] = np.arange(len(c), dtype=np.int64)
    pert_col = schema.perturbation_col
    perts = [_name(v) for v in c["raw_perturbation"]]
    if any(p is None for p in perts):
        bad = c.loc[[i for i, p in enumerate(perts) if p is None]].head(1).to_dict("records")
        raise InputError(f"{where}: column {pert_col!r} has missing/empty perturbation values (e.g. row {bad})")
    c["perturbation"] = perts
    control = schema.control_label
    c["is_control"] = c["perturbation"] == control  # exact match after stripping, never a substring test
    # Doses: parse each distinct (raw dose, perturbation) once.
    doses: list[float | None] = []
    units: list[str | None] = []
    dose_col = schema.dose_col or "dose"
    cache: dict[tuple[Any, str], tuple[float | None, str | None]] = {}
    for raw, pert, is_ctrl in zip(c.get("raw_dose", [None] * len(c)), c["perturbation"], c["is_control"], strict=True):
        k = (raw if not (isinstance(raw, float) and math.isnan(raw)) else None, pert)
        if k not in cache:
            try:
                cache[k] = parse_dose(raw, perturbation=pert, column=dose_col, default_unit=schema.dose_unit)
            except DoseParseError as exc:
                raise DoseParseError(f"{where}: {exc} (perturbation {pert!r})") from None
        d, u = cache[k]
        doses.append(None if is_ctrl else d)
        units.append(None if is_ctrl or d is None else u)
    c["dose"] = doses
    c["dose_unit"] = units
    c["context"] = [_name(v) for v in c["raw_context"]] if "raw_context" in c else None
    c["batch"] = [_name(v) for v in c["raw_batch"]] if "raw_batch" in c else None
    c["sample"] = [_name(v) for v in c["raw_sample"]] if "raw_sample" in c else None
    if "raw_context_name" in c:
        names = {ctx: _name(n) for ctx, n in zip(c["context"], c["raw_context_name"], strict=True) if ctx}
    else:
        names = dict(context_names or {})
    c["group"] = [f"{x or '-'}|{b or '-'}" for x, b in zip(c["context"], c["batch"], strict=True)]
    c["n_cells"] = c["n_cells"].astype(np.int64)

    if not c["is_control"].any():
        examples = ", ".join(repr(p) for p in pd.unique(c["perturbation"])[:8])
        raise NoControlCellsError(
            f"{where}: no cells with control label {control!r} in column {pert_col!r} "
            f"(values include {examples}); pass --control-label"
        )
    if require_controls and "raw_batch" in c:
        ctrl_batches = set(c.loc[c["is_control"], "batch"])
        missing = [b for b in pd.unique(c.loc[~c["is_control"], "batch"]) if b not in ctrl_batches]
        if missing:
            raise NoControlCellsError(
                f"{where}: batch {missing[0]!r} of column {schema.batch_col!r} has no control "
                f"cells ({control!r} in column {pert_col!r}); {len(missing)} batch(es) lack "
                "controls, so their conditions cannot be compared with plate-matched controls"
            )

    # Keys: built through Condition so they are exactly Condition.key.
    trt = c[~c["is_control"]]
    keys: dict[tuple[Any, ...], Condition] = {}
    key_col: list[str | None] = [None] * len(c)
    for i, row in trt.iterrows():
        t = (row["perturbation"], row["dose"], row["dose_unit"], row["context"], row["batch"])
        cond = keys.get(t)
        if cond is None:
            cond = Condition(
                perturbation=t[0],
                dose=t[1],
                dose_unit=t[2],
                context=t[3],
                batch=t[4],
                context_name=names.get(t[3]) if t[3] else None,
                control=control,
            )
            keys[t] = cond
        key_col[i] = cond.key
    c["key"] = key_col
    by_key = {cond.key: cond for cond in keys.values()}
    if len(by_key) != len(keys):  # e.g. doses 0.05 and 0.0500000001 print the same: refuse to merge silently
        raise InputError(f"{where}: two different conditions print the same key; check the dose column {dose_col!r}")

    ctrl = c[c["is_control"]]
    ctrl_cells = ctrl.groupby("group")["n_cells"].sum().to_dict()
    ctrl_samples = ctrl.groupby("group")["sample"].nunique().to_dict() if "raw_sample" in c else {}
    g = c[~c["is_control"]].groupby("key", sort=True)
    n_cells = g["n_cells"].sum()
    n_samples = g["sample"].nunique() if "raw_sample" in c else None
    group_of = g["group"].first()
    summaries = [
        ConditionSummary(
            condition=by_key[k],
            n_cells=int(n_cells[k]),
            n_control_cells=int(ctrl_cells.get(group_of[k], 0)),
            n_samples=int(n_samples[k]) if n_samples is not None else 0,
            n_control_samples=int(ctrl_samples.get(group_of[k], 0)),
        )
        for k in n_cells.index
    ]
    return ConditionIndex(schema=schema, combos=c, summaries=summaries, raw_roles=raw_roles)
