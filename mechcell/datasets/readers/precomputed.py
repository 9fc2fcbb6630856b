"""Precomputed differential-expression tables in Tahoe's `pseudobulk_differential_expression` schema.

Columns: gene_name, log2FoldChange, lfcSE, pvalue, padj, drug, concentration, Cell_ID_Cellosaur, plate,
n_cells_trt, n_cells_ctrl (baseMean / stat used when present). Parquet or CSV/TSV, one file or a glob. Such a
table has conditions and signatures but no cells: per-cell access and recomputation raise a clear error.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from mechcell.datasets.cells import CellCounts
from mechcell.datasets.perturbation import (
    ConditionIndex,
    ConditionSummary,
    PerturbationSchema,
    _name,
    parse_dose,
    require_columns,
)
from mechcell.datasets.readers.base import Dataset
from mechcell.datasets.schemas import Condition, Signature
from mechcell.errors import InputError, MissingColumnError

__all__ = ["DE_COLUMNS", "PrecomputedDEDataset", "is_de_table"]

DE_COLUMNS = ("gene_name", "log2FoldChange", "pvalue", "padj")
_OPTIONAL = ("lfcSE", "stat", "baseMean", "n_cells_trt", "n_cells_ctrl")


def _reader_sql(path: str) -> str:
    low = path.lower()
    if low.endswith((".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")):
        return "read_csv($f, auto_detect = true, header = true)"
    return "read_parquet($f)"


def is_de_table(path: str, con: duckdb.DuckDBPyConnection | None = None) -> bool:
    """True when a parquet/CSV file has Tahoe's DE columns (gene_name, log2FoldChange, pvalue, padj)."""
    con = con or duckdb.connect(":memory:")
    try:
        cols = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {_reader_sql(path)}", {"f": [path]}).fetchall()}
    except duckdb.Error:
        return False
    return set(DE_COLUMNS) <= cols


class PrecomputedDEDataset(Dataset):
    """Conditions and signatures read from a precomputed DE table (no cells)."""

    layout = "de"

    def __init__(
        self, path: str | Path, schema: PerturbationSchema | None = None, *, require_controls: bool = True
    ) -> None:
        self.con = duckdb.connect(":memory:")
        p = str(path)
        self._sql = _reader_sql(p)
        self._params = {"f": [p]}
        try:
            types = {
                r[0]: r[1] for r in self.con.execute(f"DESCRIBE SELECT * FROM {self._sql}", self._params).fetchall()
            }
        except duckdb.Error as exc:
            raise InputError(f"cannot read DE table {p}: {exc}") from None
        for c in DE_COLUMNS:
            if c not in types:
                raise MissingColumnError(
                    f"column {c!r} not in DE table {p} (have: {', '.join(types)}); expected "
                    "Tahoe's pseudobulk_differential_expression schema"
                )
        if schema is None or schema.perturbation_col not in types:
            base = PerturbationSchema.tahoe_de(control_label=schema.control_label if schema else "DMSO_TF")
            keep = {
                k: v
                for k, v in base.model_dump().items()
                if not (k.endswith("_col") and k != "perturbation_col" and v not in types)
            }
            schema = PerturbationSchema(**keep)
        super().__init__(p, schema, require_controls=require_controls)
        self._types = types
        self._cols = require_columns(schema, list(types), f"DE table {p}")
        self._genes: list[str] | None = None

    def _scan(self) -> pd.DataFrame:
        roles = [r for r in ("perturbation", "dose", "context", "batch") if r in self._cols]
        sel = ", ".join(f'"{self._cols[r]}" AS raw_{r}' for r in roles)
        n_t = "max(n_cells_trt)" if "n_cells_trt" in self._types else "0"
        n_c = "max(n_cells_ctrl)" if "n_cells_ctrl" in self._types else "0"
        df = self.con.execute(
            f"SELECT {sel}, {n_t} AS n_cells, {n_c} AS n_control_cells, count(*) AS n_genes "
            f"FROM {self._sql} GROUP BY ALL",
            self._params,
        ).df()
        return df.sort_values([f"raw_{r}" for r in roles], kind="stable").reset_index(drop=True)

    @property
    def index(self) -> ConditionIndex:
        if self._index is None:
            self._index = self._build_index()
        return self._index

    def _build_index(self) -> ConditionIndex:
        c = self._scan()
        c["combo_id"] = np.arange(len(c))
        roles = [r for r in ("perturbation", "dose", "context", "batch") if f"raw_{r}" in c.columns]
        summaries: list[ConditionSummary] = []
        keys: list[str | None] = []
        seen: dict[str, int] = {}
        for row in c.itertuples(index=False):
            pert = _name(row.raw_perturbation)
            if pert is None:
                raise InputError(f"DE table {self.path}: empty {self.schema.perturbation_col!r} value")
            dose, unit = parse_dose(
                getattr(row, "raw_dose", None),
                perturbation=pert,
                column=self.schema.dose_col or "dose",
                default_unit=self.schema.dose_unit,
            )
            cond = Condition(
                perturbation=pert,
                dose=dose,
                dose_unit=unit if dose is not None else None,
                context=_name(getattr(row, "raw_context", None)),
                batch=_name(getattr(row, "raw_batch", None)),
                control=self.schema.control_label,
            )
            if cond.key in seen:
                raise InputError(f"DE table {self.path}: condition {cond.key!r} appears under two raw spellings")
            seen[cond.key] = len(summaries)
            keys.append(cond.key)
            summaries.append(
                ConditionSummary(
                    condition=cond, n_cells=int(_nz(row.n_cells)), n_control_cells=int(_nz(row.n_control_cells))
                )
            )
        c["key"] = keys
        c["is_control"] = False
        c["group"] = None
        return ConditionIndex(schema=self.schema, combos=c, summaries=summaries, raw_roles=[r for r in roles])

    @property
    def genes(self) -> list[str]:
        if self._genes is None:
            rows = self.con.execute(
                f"SELECT DISTINCT gene_name FROM {self._sql} ORDER BY gene_name", self._params
            ).fetchall()
            self._genes = [str(r[0]) for r in rows]
        return self._genes

    @property
    def where(self) -> str:
        return f"DE table {self.path}"

    def describe(self) -> dict[str, Any]:
        s = self.index.summaries
        return {
            "path": self.path,
            "layout": self.layout,
            "n_conditions": len(s),
            "n_cells": int(sum(x.n_cells for x in s)),
            "n_genes": len(self.genes),
            "perturbations": len({x.condition.perturbation for x in s}),
            "schema": self.schema.model_dump(),
        }

    def precomputed_signature(self, condition: Condition | str) -> Signature:
        key = condition if isinstance(condition, str) else condition.key
        summ = self.index.summary(key)
        row = self.index.combos[self.index.combos["key"] == key].iloc[0]
        where = []
        params: dict[str, Any] = dict(self._params)
        for i, r in enumerate(self.index.raw_roles):
            where.append(f'"{self._cols[r]}" IS NOT DISTINCT FROM $v{i}')
            v = row[f"raw_{r}"]
            params[f"v{i}"] = (
                None if (isinstance(v, float) and math.isnan(v)) else (v.item() if isinstance(v, np.generic) else v)
            )
        stat = (
            "stat"
            if "stat" in self._types
            else ("log2FoldChange / NULLIF(lfcSE, 0)" if "lfcSE" in self._types else "NULL")
        )
        df = self.con.execute(
            f"SELECT gene_name, log2FoldChange AS log2fc, pvalue, padj, {stat} AS stat FROM {self._sql} "
            f"WHERE {' AND '.join(where)} ORDER BY gene_name",
            params,
        ).df()
        df = df.drop_duplicates("gene_name").set_index("gene_name")
        has_stat = df["stat"].notna().any()
        frame = df if has_stat else df.drop(columns=["stat"])
        return Signature.from_frame(
            summ.condition,
            frame.astype(np.float64),
            method="precomputed",
            n_treated=summ.n_cells,
            n_control=summ.n_control_cells,
            params={"source": self.path, "schema": "tahoe_pseudobulk_differential_expression"},
        )

    def _load(self, condition: Condition, selection: pd.DataFrame) -> CellCounts:
        raise InputError(
            f"{self.where} holds precomputed DE results, not cells: per-cell access needs the "
            "expression data (h5ad or Tahoe shards)"
        )

    def load_cells(self, condition: Condition | str) -> CellCounts:
        return self._load(None, None)  # type: ignore[arg-type]

    def pseudobulk(self, conditions: Any = None) -> Iterator[Any]:
        raise InputError(f"{self.where} holds precomputed DE results, not counts: no pseudobulk")

    def _aggregate(self, units: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame, np.ndarray]]:
        raise InputError(f"{self.where} holds precomputed DE results, not counts: no pseudobulk")

    def close(self) -> None:
        self.con.close()


def _nz(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(f) else f
