"""AnnData / `.h5ad` reader, in memory or backed (rows streamed from disk for files larger than memory).

Why not `anndata.read_h5ad(backed="r")`: backed AnnData only streams X, while counts often live in
`layers['counts']`; reading the element through h5py + `anndata.io.sparse_dataset` streams either.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mechcell.datasets.cells import CellCounts
from mechcell.datasets.perturbation import PerturbationSchema, require_columns
from mechcell.datasets.readers.base import Dataset
from mechcell.datasets.schemas import Condition
from mechcell.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["AnnDataDataset", "COLUMN_ALIASES"]

#: Tahoe names the cell line `cell_line` in obs_metadata and `cell_line_id` in the expression shards.
COLUMN_ALIASES: dict[str, str] = {"cell_line": "cell_line_id", "cell_line_id": "cell_line"}
_COVARIATE_COLS = ("S_score", "G2M_score", "phase")
_BACKED_FRACTION = 0.25  # open backed when the file exceeds this share of physical memory


def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 << 30


class AnnDataDataset(Dataset):
    """Cells from an AnnData object or an `.h5ad` file.

    `counts_layer`: the layer holding raw counts (default: `layers['counts']` when present, else X).
    `backed`: stream rows from disk (default: when the file is larger than a quarter of physical memory).
    """

    layout = "h5ad"

    def __init__(
        self,
        source: str | Path | Any,
        schema: PerturbationSchema,
        *,
        counts_layer: str | None = None,
        backed: bool | None = None,
        chunk_size: int = 8192,
        require_controls: bool = True,
    ) -> None:
        import anndata as ad

        self._file: Any = None
        self.chunk_size = int(chunk_size)
        if isinstance(source, ad.AnnData):
            super().__init__("<AnnData>", schema, require_controls=require_controls)
            self.obs = source.obs
            self._genes = [str(g) for g in source.var_names]
            layer = counts_layer if counts_layer is not None else ("counts" if "counts" in source.layers else None)
            if layer is not None and layer not in source.layers:
                raise InputError(f"layer {layer!r} not in the AnnData (layers: {list(source.layers)})")
            self._mat = source.layers[layer] if layer is not None else source.X
            self.counts_element = f"layers/{layer}" if layer else "X"
            self.backed = False
        else:
            path = Path(source)
            super().__init__(str(path), schema, require_controls=require_controls)
            if not path.is_file():
                raise InputError(f"h5ad file {path} does not exist")
            self._open_file(path, counts_layer, backed)
        if self._mat is None or self._mat.shape != (len(self.obs), len(self._genes)):
            raise InputError(
                f"{self.where}: counts matrix shape {getattr(self._mat, 'shape', None)} does not match "
                f"obs × var ({len(self.obs)} × {len(self._genes)})"
            )
        if counts_layer is not None:
            self.options["counts_layer"] = counts_layer
        self._check_counts()
        self._codes: np.ndarray | None = None

    def _open_file(self, path: Path, counts_layer: str | None, backed: bool | None) -> None:
        import h5py
        from anndata.io import read_elem, sparse_dataset

        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise InputError(f"{path} is not a readable h5ad (HDF5) file: {exc}") from None
        self._file = f
        if "obs" not in f or "var" not in f:
            raise InputError(f"{path} is not an AnnData file (no obs/var groups)")
        self.obs = read_elem(f["obs"])
        self._genes = [str(g) for g in read_elem(f["var"]).index]
        if counts_layer is None:
            elem_name = "layers/counts" if "layers" in f and "counts" in f["layers"] else "X"
        else:
            elem_name = counts_layer if counts_layer == "X" else f"layers/{counts_layer}"
            if elem_name not in f:
                have = list(f["layers"].keys()) if "layers" in f else []
                raise InputError(f"layer {counts_layer!r} not in {path} (layers: {have}); pass counts_layer=")
        if elem_name not in f:
            raise InputError(f"{path} has no X matrix")
        self.counts_element = elem_name
        elem = f[elem_name]
        self.backed = (
            bool(backed) if backed is not None else path.stat().st_size > _BACKED_FRACTION * _physical_memory()
        )
        is_sparse = isinstance(elem, h5py.Group)
        if is_sparse and elem.attrs.get("encoding-type", "") not in ("csr_matrix", "csc_matrix"):
            raise InputError(f"{path}: {elem_name} has unsupported encoding {elem.attrs.get('encoding-type')!r}")
        if self.backed:
            self._mat = sparse_dataset(elem) if is_sparse else elem
            if is_sparse and elem.attrs.get("encoding-type") == "csc_matrix":
                log.warning("%s: %s is CSC; backed row access reads whole columns and will be slow", path, elem_name)
        else:
            self._mat = read_elem(elem)

    # ------------------------------------------------------------------ matrix access
    def _is_backed_dense(self) -> bool:
        import h5py

        return isinstance(self._mat, h5py.Dataset)

    def _read_block(self, start: int, stop: int) -> sp.csr_matrix:
        m = self._mat[start:stop]
        return m.tocsr().astype(np.float64) if sp.issparse(m) else sp.csr_matrix(np.asarray(m, dtype=np.float64))

    def _read_rows(self, rows: np.ndarray) -> sp.csr_matrix:
        """Rows (sorted, unique) as float64 CSR, reading contiguous blocks when backed."""
        if rows.size == 0:
            return sp.csr_matrix((0, len(self._genes)), dtype=np.float64)
        if not self.backed:
            m = self._mat[rows]
            return m.tocsr().astype(np.float64) if sp.issparse(m) else sp.csr_matrix(np.asarray(m, np.float64))
        parts = [blk for _, blk in self._iter_blocks(rows)]
        return sp.vstack(parts, format="csr")

    def _iter_blocks(self, rows: np.ndarray) -> Iterator[tuple[np.ndarray, sp.csr_matrix]]:
        """(selected rows in block, their counts) over contiguous blocks of `chunk_size` rows."""
        if rows.size == 0:
            return
        bounds = np.arange(0, len(self.obs) + self.chunk_size, self.chunk_size)
        which = np.searchsorted(bounds, rows, side="right") - 1
        for b in np.unique(which):
            sel = rows[which == b]
            lo, hi = int(sel[0]), int(sel[-1]) + 1
            if not self.backed:
                m = self._mat[sel]
                blk = m.tocsr().astype(np.float64) if sp.issparse(m) else sp.csr_matrix(np.asarray(m, np.float64))
            else:
                blk = self._read_block(lo, hi)[sel - lo]
            yield sel, blk

    def _check_counts(self) -> None:
        n = min(len(self.obs), 2000)
        if n == 0:
            raise InputError(f"{self.where} has no cells")
        blk = self._read_block(0, n) if self.backed else self._read_rows(np.arange(n))
        data = blk.data
        if data.size and data.min() < 0:
            raise InputError(
                f"{self.where}: {self.counts_element} holds negative values (e.g. {data.min():g}); it is "
                "not raw counts — pass counts_layer= naming the counts layer"
            )
        if data.size and not np.allclose(data, np.round(data)):
            bad = data[~np.isclose(data, np.round(data))][0]
            log.warning(
                "%s: %s holds non-integer values (e.g. %g); treating them as counts",
                self.where,
                self.counts_element,
                bad,
            )

    @property
    def genes(self) -> list[str]:
        return self._genes

    @property
    def where(self) -> str:
        return f"{self.path} obs"

    # ------------------------------------------------------------------ hooks
    def _columns(self) -> dict[str, str]:
        return require_columns(self.schema, [str(c) for c in self.obs.columns], self.where, COLUMN_ALIASES)

    def _scan(self) -> pd.DataFrame:
        cols = self._columns()
        roles = list(cols)
        raw = pd.DataFrame({f"raw_{r}": self.obs[cols[r]].astype(object).to_numpy() for r in roles})
        codes = raw.groupby(list(raw.columns), dropna=False, sort=False, observed=True).ngroup().to_numpy()
        self._codes = codes.astype(np.int64)
        uniq, first = np.unique(self._codes, return_index=True)
        combos = raw.iloc[first].reset_index(drop=True)
        combos["combo_id"] = uniq
        combos["n_cells"] = np.bincount(self._codes, minlength=len(uniq))[uniq]
        return combos

    @property
    def codes(self) -> np.ndarray:
        if self._codes is None:
            self.index  # noqa: B018 - builds the index and the per-cell codes
        assert self._codes is not None
        return self._codes

    def _load(self, condition: Condition, selection: pd.DataFrame) -> CellCounts:
        codes = self.codes
        treated_ids = selection.loc[selection["treated"], "combo_id"].to_numpy()
        all_ids = selection["combo_id"].to_numpy()
        rows = np.flatnonzero(np.isin(codes, all_ids))
        X = self._read_rows(rows)
        treated = np.isin(codes[rows], treated_ids)
        combos = self.index.combos.set_index("combo_id")
        cell_combo = combos.loc[codes[rows]]
        cov = pd.DataFrame(
            {
                "batch": cell_combo["batch"].to_numpy(),
                "sample": cell_combo["sample"].to_numpy(),
                "context": cell_combo["context"].to_numpy(),
                "condition_key": cell_combo["key"].to_numpy(),
                "library_size": np.asarray(X.sum(axis=1)).ravel(),
            },
            index=pd.Index(self.obs.index[rows].astype(str), name="cell"),
        )
        for c in _COVARIATE_COLS:
            if c in self.obs.columns:
                vals = self.obs[c].iloc[rows]
                cov[c] = vals.to_numpy(np.float64) if c != "phase" else vals.astype(str).to_numpy()
        return CellCounts(condition=condition, X=X, genes=self._genes, treated=treated, covariates=cov)

    def _aggregate(self, units: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame, np.ndarray]]:
        codes = self.codes
        pos = pd.Series(np.arange(len(units)), index=units["combo_id"].to_numpy())
        rows = np.flatnonzero(np.isin(codes, units["combo_id"].to_numpy()))
        acc = np.zeros((len(units), len(self._genes)), dtype=np.float64)
        for sel, blk in self._iter_blocks(rows):
            p = pos.loc[codes[sel]].to_numpy()
            ind = sp.csr_matrix((np.ones(len(sel)), (p, np.arange(len(sel)))), shape=(len(units), len(sel)))
            part = (ind @ blk).tocoo()  # (unit, gene) pairs are unique after the product
            acc[part.row, part.col] += part.data
        units = units.assign(library_size=acc.sum(axis=1))
        for group, idx in units.groupby("group", sort=True).indices.items():
            yield str(group), units.iloc[idx], acc[idx]

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None
