"""The reader contract: a `Dataset` lists its conditions, gives per-condition cells, and aggregates pseudobulk.

Readers implement three small hooks (`_scan`, `_load`, `_aggregate`); everything about conditions, control
matching and dense views lives here once, so the AnnData and Tahoe layouts behave identically.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from mechcell.datasets.cells import CellCounts, CellData, to_cell_data
from mechcell.datasets.perturbation import (
    ConditionIndex,
    ConditionSummary,
    PerturbationSchema,
    build_condition_index,
)
from mechcell.datasets.schemas import Condition, Signature
from mechcell.errors import InputError

__all__ = ["Dataset", "PseudobulkGroup"]


@dataclass
class PseudobulkGroup:
    """Summed raw counts of every unit (one raw key combination, i.e. one well of one context) in one
    context × batch group: the treated units of its conditions and the group's control units.

    `units` (rows aligned with `counts`): combo_id, key (condition key; None for controls), is_control, sample,
    n_cells, library_size (summed counts over all genes). `counts`: units × genes float64.
    """

    group: str
    units: pd.DataFrame
    counts: np.ndarray
    genes: list[str]

    def arms(self, key: str) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, pd.DataFrame]:
        """(treated units × genes, control units × genes, treated unit rows, control unit rows) for a condition."""
        t = (self.units["key"] == key).to_numpy()
        c = self.units["is_control"].to_numpy(dtype=bool)
        return self.counts[t], self.counts[c], self.units[t], self.units[c]

    @property
    def keys(self) -> list[str]:
        return [k for k in pd.unique(self.units["key"].dropna())]


class Dataset(ABC):
    """A perturbation dataset seen through a `PerturbationSchema`.

    Subclasses read one layout. Conditions are indexed lazily on first use (one pass over the key columns);
    `require_controls=False` keeps batches without control cells instead of raising `NoControlCellsError`.
    """

    layout: ClassVar[str] = "abstract"

    def __init__(self, path: str, schema: PerturbationSchema, *, require_controls: bool = True) -> None:
        self.path = str(path)
        self.schema = schema
        self.require_controls = require_controls
        #: reader options that reopen this dataset with `open_dataset(path, schema, layout=..., **options)`
        self.options: dict[str, Any] = {} if require_controls else {"require_controls": False}
        self._index: ConditionIndex | None = None

    # ------------------------------------------------------------------ hooks for readers
    @abstractmethod
    def _scan(self) -> pd.DataFrame:
        """Distinct raw key combinations: columns `raw_<role>` for the schema's roles, `n_cells` (+`combo_id`)."""

    @abstractmethod
    def _load(self, condition: Condition, selection: pd.DataFrame) -> CellCounts:
        """Counts of the cells in `selection` (index combos rows with `treated`), all genes, sparse."""

    @abstractmethod
    def _aggregate(self, units: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame, np.ndarray]]:
        """Sum counts per unit (`units`: combos rows with a `group` column); yield (group, unit rows, matrix)
        group by group, unit rows carrying `library_size`."""

    @property
    @abstractmethod
    def genes(self) -> list[str]:
        """Gene symbols, the column order of every matrix this dataset returns."""

    def _context_names(self) -> dict[str, str]:
        return {}

    # ------------------------------------------------------------------ conditions
    @property
    def index(self) -> ConditionIndex:
        if self._index is None:
            self._index = build_condition_index(
                self.schema,
                self._scan(),
                where=self.where,
                context_names=self._context_names(),
                require_controls=self.require_controls,
            )
        return self._index

    @property
    def where(self) -> str:
        return self.path

    def validate(self) -> ConditionIndex:
        """Index the conditions now, raising the typed schema errors (missing column, no controls, bad dose)."""
        return self.index

    def conditions(self) -> list[Condition]:
        return self.index.conditions

    def summaries(self) -> list[ConditionSummary]:
        return self.index.summaries

    def summary(self, condition: Condition | str) -> ConditionSummary:
        return self.index.summary(condition)

    def condition(self, key: str) -> Condition:
        """The dataset's own `Condition` for a key (carries context_name and control label)."""
        return self.index.summary(key).condition

    @property
    def n_cells(self) -> int:
        return int(self.index.combos["n_cells"].sum())

    def describe(self) -> dict[str, Any]:
        c = self.index.combos
        return {
            "path": self.path,
            "layout": self.layout,
            "n_cells": self.n_cells,
            "n_control_cells": int(c.loc[c["is_control"], "n_cells"].sum()),
            "n_conditions": len(self.index.summaries),
            "n_genes": len(self.genes),
            "perturbations": int(c.loc[~c["is_control"], "perturbation"].nunique()),
            "contexts": int(c["context"].nunique()) if c["context"].notna().any() else 0,
            "batches": int(c["batch"].nunique()) if c["batch"].notna().any() else 0,
            "schema": self.schema.model_dump(),
        }

    # ------------------------------------------------------------------ cells
    def load_cells(self, condition: Condition | str) -> CellCounts:
        """Sparse counts (all genes) of the condition's cells + plate-matched controls of the same context."""
        cond = self.condition(condition if isinstance(condition, str) else condition.key)
        return self._load(cond, self.index.selection(cond))

    def load_cells_many(self, conditions: Sequence[Condition | str]) -> CellCounts:
        """Cells of several conditions of one context × batch group plus the group's controls, read once.

        `covariates['condition_key']` tells which condition each treated cell belongs to (None for controls);
        batch DE uses this so a plate's controls are not re-read for every condition.
        """
        keys = [c if isinstance(c, str) else c.key for c in conditions]
        cond = self.condition(keys[0])
        return self._load(cond, self.index.selection(keys))

    def cells(
        self, condition: Condition | str, genes: Sequence[str] | None = None, *, cell_cycle: bool = True
    ) -> CellData:
        """Dense `CellData` over `genes` (None: every gene detected in these cells) with covariates."""
        return to_cell_data(self.load_cells(condition), genes, cell_cycle=cell_cycle)

    # ------------------------------------------------------------------ pseudobulk
    def pseudobulk(self, conditions: Iterable[Condition | str] | None = None) -> Iterator[PseudobulkGroup]:
        """Summed counts per well (raw key combination), streamed one context × batch group at a time.

        Memory holds one group (its units × genes), never the cells: readers aggregate out of core.
        """
        c = self.index.combos
        if conditions is None:
            keys = set(c["key"].dropna())
        else:
            keys = {k if isinstance(k, str) else k.key for k in conditions}
            for k in keys:
                self.index.summary(k)  # NotFoundError on an unknown key
        treated = c[c["key"].isin(keys)]
        groups = set(treated["group"])
        ctrl = c[c["is_control"] & c["group"].isin(groups)]
        units = pd.concat([treated, ctrl], ignore_index=True)
        units = units[
            ["combo_id", "key", "is_control", "sample", "n_cells", "group"]
            + [col for col in units.columns if col.startswith("raw_")]
        ]
        for group, rows, mat in self._aggregate(units):
            yield PseudobulkGroup(group=group, units=rows.reset_index(drop=True), counts=mat, genes=self.genes)

    # ------------------------------------------------------------------ precomputed DE (only that layout)
    def precomputed_signature(self, condition: Condition | str) -> Signature:
        raise InputError(
            f"{self.path} ({self.layout}) holds cells, not precomputed DE; use a DE method "
            "(wilcoxon, welch_t, pseudobulk_lfc, pydeseq2)"
        )

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files / connections."""

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"
