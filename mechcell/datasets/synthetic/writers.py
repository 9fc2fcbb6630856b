"""Streaming writers: an `.h5ad` built with h5py (CSR appended batch by batch) and Tahoe-100M parquet shards.

Why h5py rather than `AnnData.write_h5ad`: the latter needs the whole matrix (and obs) in memory. Here the file
follows the AnnData on-disk spec (encoding-type / encoding-version attributes; X as csr_matrix; obs columns as
categoricals with codes), its per-cell datasets are sized up front (the design fixes the number of cells) and the
CSR arrays grow by appending, so memory holds one batch of cells whatever the size of the world.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mechcell.datasets.synthetic.design import Design
from mechcell.datasets.synthetic.expression import Block, GeneUniverse
from mechcell.datasets.synthetic.mechanisms import CellLine

#: Tahoe-100M's expression-shard columns, in order (the marker entry token 1 / value −2 starts every row)
SHARD_COLUMNS = [
    "genes",
    "expressions",
    "drug",
    "sample",
    "BARCODE_SUB_LIB_ID",
    "cell_line_id",
    "moa-fine",
    "canonical_smiles",
    "pubchem_cid",
    "plate",
]
MARKER_TOKEN, MARKER_VALUE = 1, -2.0
_H5_CHUNK = 1 << 16


@dataclass
class Batch:
    """Several blocks concatenated: rows are cells in write order."""

    well: np.ndarray  # well index per cell
    line: np.ndarray  # cell-line index per cell
    nnz: np.ndarray
    cols: np.ndarray
    data: np.ndarray
    library: np.ndarray
    barcodes: list[str]

    @classmethod
    def of(cls, blocks: list[Block]) -> Batch:
        return cls(
            well=np.concatenate([np.full(b.n, b.sample, np.int64) for b in blocks]),
            line=np.concatenate([np.full(b.n, b.line, np.int64) for b in blocks]),
            nnz=np.concatenate([b.nnz for b in blocks]),
            cols=np.concatenate([b.cols for b in blocks]),
            data=np.concatenate([b.data for b in blocks]),
            library=np.concatenate([b.library for b in blocks]),
            barcodes=[c for b in blocks for c in b.barcodes],
        )

    @property
    def n(self) -> int:
        return len(self.nnz)


def _codes_dtype(n: int) -> type:
    return np.int8 if n < 127 else np.int16 if n < 32_767 else np.int32


class H5adWriter:
    """An AnnData `.h5ad` with Tahoe's obs names (drug, drugname_drugconc, cell_line, cell_name, plate, sample,
    gene_count, tscp_count; index = BARCODE_SUB_LIB_ID), var index = gene symbols, X = CSR float32 counts."""

    def __init__(
        self, path: Path, universe: GeneUniverse, design: Design, lines: list[CellLine], uns: dict[str, Any]
    ) -> None:
        import h5py
        from anndata.io import write_elem

        self.path = path
        self.n_total = design.n_cells
        self.n_genes = len(universe.genes)
        wells = design.wells
        self.f = f = h5py.File(path, "w")
        f.attrs["encoding-type"] = "anndata"
        f.attrs["encoding-version"] = "0.1.0"
        var = pd.DataFrame(
            {
                "gene_ids": pd.array([e or "" for e in universe.ensembl], dtype=object),
                "token_id": universe.tokens.astype(np.int64),
            },
            index=pd.Index(universe.genes),
        )
        write_elem(f, "var", var)
        for k in ("layers", "obsm", "obsp", "varm", "varp"):
            write_elem(f, k, {})
        write_elem(f, "uns", uns)
        x = f.create_group("X")
        x.attrs["encoding-type"] = "csr_matrix"
        x.attrs["encoding-version"] = "0.1.0"
        x.attrs["shape"] = np.array([self.n_total, self.n_genes], dtype=np.int64)
        self.data = x.create_dataset("data", shape=(0,), maxshape=(None,), dtype=np.float32, chunks=(_H5_CHUNK,))
        self.indices = x.create_dataset("indices", shape=(0,), maxshape=(None,), dtype=np.int32, chunks=(_H5_CHUNK,))
        self.indptr = x.create_dataset("indptr", shape=(self.n_total + 1,), dtype=np.int64)
        self.indptr[0] = 0
        obs = f.create_group("obs")
        cols = ["drug", "drugname_drugconc", "cell_line", "cell_name", "plate", "sample", "gene_count", "tscp_count"]
        obs.attrs["encoding-type"] = "dataframe"
        obs.attrs["encoding-version"] = "0.2.0"
        obs.attrs["_index"] = "_index"
        obs.attrs["column-order"] = cols
        str_dt = h5py.string_dtype("utf-8")
        self.index = obs.create_dataset(
            "_index", shape=(self.n_total,), dtype=str_dt, chunks=(min(_H5_CHUNK, max(self.n_total, 1)),)
        )
        self._string_attrs(self.index)
        # categorical columns: categories fixed by the design, codes per cell mapped from well / line
        per_well = {
            "drug": [w.drug for w in wells],
            "drugname_drugconc": [w.drugconc for w in wells],
            "plate": [w.plate for w in wells],
            "sample": [w.sample for w in wells],
        }
        per_line = {"cell_line": [c.context for c in lines], "cell_name": [c.name for c in lines]}
        self.codes: dict[str, tuple[str, np.ndarray, Any]] = {}
        for name, values in [*per_well.items(), *per_line.items()]:
            cats = sorted(set(values))
            pos = {c: i for i, c in enumerate(cats)}
            g = obs.create_group(name)
            g.attrs["encoding-type"] = "categorical"
            g.attrs["encoding-version"] = "0.2.0"
            g.attrs["ordered"] = False
            ds = g.create_dataset("categories", data=np.array(cats, dtype=object), dtype=str_dt)
            self._string_attrs(ds)
            dt = _codes_dtype(len(cats))
            codes = g.create_dataset(
                "codes", shape=(self.n_total,), dtype=dt, chunks=(min(_H5_CHUNK, max(self.n_total, 1)),)
            )
            codes.attrs["encoding-type"] = "array"
            codes.attrs["encoding-version"] = "0.2.0"
            lookup = np.array([pos[v] for v in values], dtype=dt)
            self.codes[name] = ("well" if name in per_well else "line", lookup, codes)
        self.numeric = {}
        for name in ("gene_count", "tscp_count"):
            ds = obs.create_dataset(
                name, shape=(self.n_total,), dtype=np.int32, chunks=(min(_H5_CHUNK, max(self.n_total, 1)),)
            )
            ds.attrs["encoding-type"] = "array"
            ds.attrs["encoding-version"] = "0.2.0"
            self.numeric[name] = ds
        self.row = 0
        self.nnz = 0

    @staticmethod
    def _string_attrs(ds: Any) -> None:
        ds.attrs["encoding-type"] = "string-array"
        ds.attrs["encoding-version"] = "0.2.0"

    def append(self, b: Batch) -> None:
        r0, r1 = self.row, self.row + b.n
        z0, z1 = self.nnz, self.nnz + len(b.data)
        self.data.resize((z1,))
        self.indices.resize((z1,))
        self.data[z0:z1] = b.data
        self.indices[z0:z1] = b.cols
        self.indptr[r0 + 1 : r1 + 1] = z0 + np.cumsum(b.nnz, dtype=np.int64)
        self.index[r0:r1] = np.array(b.barcodes, dtype=object)
        for kind, lookup, ds in self.codes.values():
            ds[r0:r1] = lookup[b.well if kind == "well" else b.line]
        self.numeric["gene_count"][r0:r1] = b.nnz
        self.numeric["tscp_count"][r0:r1] = b.library.astype(np.int32)
        self.row, self.nnz = r1, z1

    def close(self) -> None:
        if self.row != self.n_total:  # pragma: no cover - a bug in the generator, not bad input
            raise RuntimeError(f"h5ad writer got {self.row} cells, expected {self.n_total}")
        self.f.close()


class TahoeWriter:
    """Tahoe-100M layout under `root`: data/train-XXXXX-of-YYYYY.parquet + metadata/*.parquet."""

    def __init__(
        self,
        root: Path,
        universe: GeneUniverse,
        design: Design,
        lines: list[CellLine],
        cells_per_shard: int,
        rows_per_group: int = 8192,
    ) -> None:
        self.root = root
        (root / "data").mkdir(parents=True, exist_ok=True)
        (root / "metadata").mkdir(parents=True, exist_ok=True)
        self.tokens = universe.tokens.astype(np.int64)
        self.design = design
        self.lines = lines
        self.per_shard = cells_per_shard
        self.rows_per_group = rows_per_group
        self.n_shards = max(1, math.ceil(design.n_cells / cells_per_shard))
        self.schema = pa.schema(
            [
                ("genes", pa.list_(pa.int64())),
                ("expressions", pa.list_(pa.float32())),
                ("drug", pa.string()),
                ("sample", pa.string()),
                ("BARCODE_SUB_LIB_ID", pa.string()),
                ("cell_line_id", pa.string()),
                ("moa-fine", pa.string()),
                ("canonical_smiles", pa.string()),
                ("pubchem_cid", pa.string()),
                ("plate", pa.string()),
            ]
        )
        w = design.wells
        self.well_cols = {
            "drug": np.array([x.drug for x in w], dtype=object),
            "sample": np.array([x.sample for x in w], dtype=object),
            "moa-fine": np.array([x.moa for x in w], dtype=object),
            "plate": np.array([x.plate for x in w], dtype=object),
        }
        self.line_ids = np.array([c.context for c in lines], dtype=object)
        self.shard = -1
        self.in_shard = 0
        self.writer: pq.ParquetWriter | None = None
        self.files: list[Path] = []

    def _next_shard(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.shard += 1
        p = self.root / "data" / f"train-{self.shard:05d}-of-{self.n_shards:05d}.parquet"
        self.files.append(p)
        self.writer = pq.ParquetWriter(p, self.schema, compression="snappy")
        self.in_shard = 0

    def append(self, b: Batch) -> None:
        start = 0
        offs = np.concatenate([[0], np.cumsum(b.nnz, dtype=np.int64)])
        while start < b.n:
            if self.writer is None or self.in_shard >= self.per_shard:
                self._next_shard()
            stop = min(b.n, start + self.per_shard - self.in_shard)
            self._write(b, offs, start, stop)
            self.in_shard += stop - start
            start = stop

    def _write(self, b: Batch, offs: np.ndarray, r0: int, r1: int) -> None:
        n = r1 - r0
        z0, z1 = offs[r0], offs[r1]
        # every row: the marker entry first, then the cell's non-zero (token, count) pairs
        row_len = b.nnz[r0:r1].astype(np.int64) + 1
        list_off = np.concatenate([[0], np.cumsum(row_len)])
        total = int(list_off[-1])
        is_marker = np.zeros(total, dtype=bool)
        is_marker[list_off[:-1]] = True
        tok = np.empty(total, dtype=np.int64)
        val = np.empty(total, dtype=np.float32)
        tok[is_marker] = MARKER_TOKEN
        val[is_marker] = MARKER_VALUE
        tok[~is_marker] = self.tokens[b.cols[z0:z1]]
        val[~is_marker] = b.data[z0:z1]
        offsets = pa.array(list_off.astype(np.int32))
        well = b.well[r0:r1]
        empty = pa.nulls(n, pa.string())
        tbl = pa.Table.from_arrays(
            [
                pa.ListArray.from_arrays(offsets, pa.array(tok)),
                pa.ListArray.from_arrays(offsets, pa.array(val)),
                pa.array(self.well_cols["drug"][well], pa.string()),
                pa.array(self.well_cols["sample"][well], pa.string()),
                pa.array(b.barcodes[r0:r1], pa.string()),
                pa.array(self.line_ids[b.line[r0:r1]], pa.string()),
                pa.array(self.well_cols["moa-fine"][well], pa.string()),
                empty,
                empty,
                pa.array(self.well_cols["plate"][well], pa.string()),
            ],
            schema=self.schema,
        )
        assert self.writer is not None
        self.writer.write_table(tbl, row_group_size=self.rows_per_group)

    def close(
        self,
        sample_stats: dict[int, tuple[int, float, float]],
        drug_meta: pd.DataFrame,
        genes: pd.DataFrame,
        line_meta: pd.DataFrame,
    ) -> None:
        """Close the last shard and write sample / gene / cell-line / drug metadata."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        meta = self.root / "metadata"
        rows = []
        for w in self.design.wells:
            n, genes_sum, tscp_sum = sample_stats.get(w.index, (0, 0.0, 0.0))
            rows.append(
                {
                    "sample": w.sample,
                    "plate": w.plate,
                    "mean_gene_count": genes_sum / n if n else float("nan"),
                    "mean_tscp_count": tscp_sum / n if n else float("nan"),
                    "mean_mread_count": 1.2 * tscp_sum / n if n else float("nan"),
                    "mean_pcnt_mito": np.float32("nan"),
                    "drug": w.drug,
                    "drugname_drugconc": w.drugconc,
                }
            )
        pd.DataFrame(rows).to_parquet(meta / "sample_metadata.parquet", index=False)
        genes.to_parquet(meta / "gene_metadata.parquet", index=False)
        line_meta.to_parquet(meta / "cell_line_metadata.parquet", index=False)
        drug_meta.to_parquet(meta / "drug_metadata.parquet", index=False)
