"""The observations: conditions, signatures, readers, pseudobulk + DE, synthetic worlds, the trace store.

`Condition` and `Signature` import eagerly (they are light); the readers, DE and the DuckDB store load on first
attribute access so that `from mechcell.datasets import Condition` never pulls in DuckDB or AnnData.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mechcell.datasets.schemas import Condition, Signature

if TYPE_CHECKING:  # pragma: no cover
    from mechcell.datasets.cells import CellCounts, CellData
    from mechcell.datasets.perturbation import (
        ConditionSummary,
        DoseParseError,
        NoControlCellsError,
        PerturbationSchema,
        parse_drugconc,
    )
    from mechcell.datasets.readers import Dataset, PseudobulkGroup, detect_layout, open_dataset
    from mechcell.datasets.readers.tahoe import TahoeSource
    from mechcell.datasets.signatures import DE_METHODS, compute_signature, compute_signatures
    from mechcell.datasets.store import Store

_LAZY: dict[str, str] = {
    "PerturbationSchema": "mechcell.datasets.perturbation",
    "ConditionSummary": "mechcell.datasets.perturbation",
    "DoseParseError": "mechcell.datasets.perturbation",
    "NoControlCellsError": "mechcell.datasets.perturbation",
    "parse_drugconc": "mechcell.datasets.perturbation",
    "CellData": "mechcell.datasets.cells",
    "CellCounts": "mechcell.datasets.cells",
    "Dataset": "mechcell.datasets.readers",
    "PseudobulkGroup": "mechcell.datasets.readers",
    "open_dataset": "mechcell.datasets.readers",
    "detect_layout": "mechcell.datasets.readers",
    "TahoeSource": "mechcell.datasets.readers.tahoe",
    "DE_METHODS": "mechcell.datasets.signatures",
    "compute_signature": "mechcell.datasets.signatures",
    "compute_signatures": "mechcell.datasets.signatures",
    "Store": "mechcell.datasets.store",
}

__all__ = [
    "DE_METHODS",
    "CellCounts",
    "CellData",
    "Condition",
    "ConditionSummary",
    "Dataset",
    "DoseParseError",
    "NoControlCellsError",
    "PerturbationSchema",
    "PseudobulkGroup",
    "Signature",
    "Store",
    "TahoeSource",
    "compute_signature",
    "compute_signatures",
    "detect_layout",
    "open_dataset",
    "parse_drugconc",
]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'mechcell.datasets' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value
