"""Tahoe-100M layout: expression parquet shards + sample / gene / obs / cell-line metadata, read with DuckDB.

Shards hold one row per cell: `genes` (list<int64> token ids), `expressions` (list<float>), `drug`, `sample`,
`cell_line_id`, `plate`, `BARCODE_SUB_LIB_ID`, ... Each row starts with a marker entry (token 1, value −2)
that is not a gene: entries whose token is not in `gene_metadata` (tokens 0–2 are pad/cls/eoc) are dropped,
which removes the marker wherever it sits. Dose lives in `sample_metadata` (`drugname_drugconc` per sample),
joined on `sample`. The same code reads `hf://datasets/tahoebio/Tahoe-100M/...` paths when DuckDB's httpfs
extension and a network are available: nothing here assumes local files except directory discovery.

Why DuckDB: pseudobulk aggregation unnests the token lists and sums per (well, gene) in a streaming hash
aggregate that spills to `temp_directory`, so memory stays flat in the number of cells.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from mechcell.datasets.cells import CellCounts
from mechcell.datasets.perturbation import ROLE_FLAGS, PerturbationSchema
from mechcell.datasets.readers.base import Dataset
from mechcell.datasets.readers.h5ad import COLUMN_ALIASES
from mechcell.datasets.schemas import Condition
from mechcell.errors import InputError, MissingColumnError

log = logging.getLogger(__name__)

__all__ = ["TahoeDataset", "TahoeSource", "is_tahoe_shard"]

METADATA_NAMES = ("sample_metadata", "gene_metadata", "obs_metadata", "cell_line_metadata", "drug_metadata")
_COVARIATE_COLS = ("S_score", "G2M_score", "phase")
_BARCODE = "BARCODE_SUB_LIB_ID"


def _q(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def is_tahoe_shard(path: str | Path) -> bool:
    """True when a parquet file has Tahoe's `genes` and `expressions` list columns."""
    import pyarrow.parquet as pq

    try:
        names = set(pq.read_schema(path).names)
    except (OSError, pa.ArrowException):
        return False
    return {"genes", "expressions"} <= names


class TahoeSource(BaseModel):
    """Where the pieces of a Tahoe-layout dataset are: expression shards (files or globs, local or `hf://`)
    and the metadata tables (`gene_metadata` is required for gene symbols; the others are optional)."""

    model_config = ConfigDict(frozen=True)

    expression: list[str] = Field(min_length=1)
    root: str | None = Field(None, description="the path the shards were discovered from (reopens the dataset)")
    gene_metadata: str | None = None
    sample_metadata: str | None = None
    obs_metadata: str | None = None
    cell_line_metadata: str | None = None

    @classmethod
    def discover(cls, path: str | Path, **overrides: str | None) -> TahoeSource:
        """Find shards and metadata under a directory (HF layout `data/*.parquet` + `metadata/*.parquet`, or all
        in one folder), or take a glob / `hf://` pattern as the shards; `overrides` name metadata files."""
        p = str(path)
        found: dict[str, str | None] = dict.fromkeys(METADATA_NAMES[:4])
        if "://" in p or any(ch in p for ch in "*?["):
            expression = [p]
        else:
            root = Path(p)
            if root.is_file():
                expression = [str(root)]
                search = [root.parent, root.parent / "metadata", root.parent.parent / "metadata"]
            elif root.is_dir():
                search = [root / "metadata", root]
                data = root / "data"
                candidates = sorted((data if data.is_dir() else root).rglob("*.parquet"))
                expression = [
                    str(f)
                    for f in candidates
                    if f.stem not in METADATA_NAMES and f.parent.name != "metadata" and is_tahoe_shard(f)
                ]
                if not expression:
                    raise InputError(
                        f"no Tahoe expression shards (parquet with 'genes' and 'expressions' columns) under {root}"
                    )
            else:
                raise InputError(f"Tahoe path {root} does not exist")
            for name in found:
                for d in search:
                    f = d / f"{name}.parquet"
                    if f.is_file():
                        found[name] = str(f)
                        break
        for k, v in overrides.items():
            if v is not None:
                found[k] = str(v)
        return cls(expression=expression, root=p, **found)


class TahoeDataset(Dataset):
    """Cells in Tahoe-100M's parquet layout.

    `memory_limit` / `threads` / `temp_dir` go to DuckDB (spill directory for out-of-core aggregation).
    """

    layout = "tahoe"

    def __init__(
        self,
        source: TahoeSource | str | Path,
        schema: PerturbationSchema | None = None,
        *,
        memory_limit: str | None = None,
        threads: int | None = None,
        temp_dir: str | Path | None = None,
        require_controls: bool = True,
        batch_rows: int = 65536,
    ) -> None:
        src = source if isinstance(source, TahoeSource) else TahoeSource.discover(source)
        label = src.root or src.expression[0]
        super().__init__(label, schema or PerturbationSchema.tahoe(), require_controls=require_controls)
        self.source = src
        # Enough to reopen the same dataset from the store: the metadata files found (or given).
        self.options.update(
            {
                k: getattr(src, k)
                for k in ("gene_metadata", "sample_metadata", "obs_metadata", "cell_line_metadata")
                if getattr(src, k)
            }
        )
        if src.root is None:
            self.options["expression"] = list(src.expression)
        self.batch_rows = batch_rows
        self.con = duckdb.connect(":memory:")
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if temp_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mechcell-duckdb-")
            temp_dir = self._tmp.name
        self.con.execute(f"SET temp_directory = '{str(temp_dir).replace(chr(39), chr(39) * 2)}'")
        self.con.execute("SET preserve_insertion_order = false")
        if memory_limit:
            self.con.execute(f"SET memory_limit = '{memory_limit}'")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        if any("://" in f for f in src.expression):
            try:  # remote shards (hf://, s3://, https://) need DuckDB's httpfs extension and a network
                self.con.execute("INSTALL httpfs")
                self.con.execute("LOAD httpfs")
            except duckdb.Error as exc:
                raise InputError(f"reading {src.expression[0]} needs DuckDB's httpfs extension: {exc}") from None
        self._expr_types = self._describe(src.expression)
        for c in ("genes", "expressions"):
            if c not in self._expr_types:
                raise MissingColumnError(
                    f"column {c!r} not in Tahoe shards {label} (have: {', '.join(self._expr_types)})"
                )
        self._load_genes()
        self._sample_meta = self._read_table(src.sample_metadata) if src.sample_metadata else None
        self._files_by_batch: dict[Any, list[str]] | None = None
        self._obs_types: dict[str, str] | None = None
        self._resolve_roles()

    # ------------------------------------------------------------------ setup
    def _describe(self, files: Sequence[str]) -> dict[str, str]:
        try:
            rows = self.con.execute("DESCRIBE SELECT * FROM read_parquet($f)", {"f": [files[0]]}).fetchall()
        except duckdb.Error as exc:
            raise InputError(f"cannot read Tahoe shard {files[0]}: {exc}") from None
        return {r[0]: r[1] for r in rows}

    def _read_table(self, path: str) -> pd.DataFrame:
        try:
            return self.con.execute("SELECT * FROM read_parquet($f)", {"f": [path]}).df()
        except duckdb.Error as exc:
            raise InputError(f"cannot read metadata table {path}: {exc}") from None

    def _load_genes(self) -> None:
        if not self.source.gene_metadata:
            raise InputError(
                f"no gene_metadata.parquet for {self.path}: it maps token ids to gene symbols; put it "
                "in the dataset's metadata/ folder or pass gene_metadata="
            )
        gm = self._read_table(self.source.gene_metadata)
        for c in ("token_id", "gene_symbol"):
            if c not in gm.columns:
                raise MissingColumnError(
                    f"column {c!r} not in {self.source.gene_metadata} (have: {', '.join(map(str, gm.columns))})"
                )
        tok = gm["token_id"].to_numpy(np.int64)
        if tok.min() < 0 or pd.Series(tok).duplicated().any():
            raise InputError(f"{self.source.gene_metadata}: token_id must be unique and ≥ 0")
        names = gm["gene_symbol"].astype(object).where(gm["gene_symbol"].notna(), None)
        ens = gm["ensembl_id"] if "ensembl_id" in gm.columns else pd.Series([None] * len(gm))
        # A missing or repeated symbol falls back to the Ensembl id so columns stay unique.
        seen: set[str] = set()
        genes: list[str] = []
        for s, e, t in zip(names, ens, tok, strict=True):
            g = str(s).strip() if s is not None and str(s).strip() else (str(e) if e is not None else f"token_{t}")
            if g in seen:
                g = str(e) if e is not None and str(e) not in seen else f"{g}_token_{t}"
            seen.add(g)
            genes.append(g)
        self._genes = genes
        self._tok2col = np.full(int(tok.max()) + 1, -1, dtype=np.int64)
        self._tok2col[tok] = np.arange(len(tok))

    def _resolve_roles(self) -> None:
        """role → ('expr', column) or ('sample', column) (looked up in sample_metadata via the sample column)."""
        expr_cols = list(self._expr_types)
        sm_cols = [str(c) for c in self._sample_meta.columns] if self._sample_meta is not None else []
        self._roles: dict[str, tuple[str, str]] = {}
        for role, col in self.schema.roles().items():
            alias = COLUMN_ALIASES.get(col)
            if col in expr_cols:
                self._roles[role] = ("expr", col)
            elif alias in expr_cols:
                self._roles[role] = ("expr", alias)  # type: ignore[assignment]
            elif col in sm_cols or alias in sm_cols:
                self._roles[role] = ("sample", col if col in sm_cols else alias)  # type: ignore[arg-type]
            else:
                where = f"Tahoe shards (have: {', '.join(expr_cols)})"
                if self._sample_meta is not None:
                    where += f" or {self.source.sample_metadata} (have: {', '.join(sm_cols)})"
                hint = (
                    " — the dose is read from sample_metadata.parquet, which was not found"
                    if role == "dose" and self._sample_meta is None
                    else ""
                )
                raise MissingColumnError(f"column {col!r} ({role}) not in {where}; pass {ROLE_FLAGS[role]}{hint}")
        if any(kind == "sample" for kind, _ in self._roles.values()):
            if "sample" not in self._roles or self._roles["sample"][0] != "expr":
                raise MissingColumnError(
                    f"columns from {self.source.sample_metadata} need a sample column in the "
                    f"shards to join on; pass {ROLE_FLAGS['sample']}"
                )
            sc = self._roles["sample"][1]
            if sc not in sm_cols:
                raise MissingColumnError(
                    f"column {sc!r} not in {self.source.sample_metadata} (have: "
                    f"{', '.join(sm_cols)}); cannot join the dose per sample"
                )
        self._join_roles = [r for r, (kind, _) in self._roles.items() if kind == "expr"]

    @property
    def genes(self) -> list[str]:
        return self._genes

    @property
    def where(self) -> str:
        return f"Tahoe shards {self.path} ({len(self.source.expression)} files)"

    def _expr_sql(self, files: Sequence[str]) -> str:
        return "read_parquet($files, filename = true, file_row_number = true)"

    # ------------------------------------------------------------------ hooks
    def _scan(self) -> pd.DataFrame:
        sel = ", ".join(f"{_q(self._roles[r][1])} AS raw_{r}" for r in self._join_roles)
        raw = ", ".join(f"raw_{r}" for r in self._join_roles)
        has_batch = "batch" in self._join_roles
        sets = f"({raw})" + (", (filename, raw_batch)" if has_batch else "")
        sql = (
            f"SELECT GROUPING(filename) AS gf, filename, {raw}, count(*) AS n_cells "
            f"FROM (SELECT filename, {sel} FROM {self._expr_sql(self.source.expression)}) "
            f"GROUP BY GROUPING SETS ({sets})"
        )
        try:
            df = self.con.execute(sql, {"files": self.source.expression}).df()
        except duckdb.Error as exc:
            raise InputError(f"cannot scan {self.where}: {exc}") from None
        combos = df[df["gf"] == 1].drop(columns=["gf", "filename"]).reset_index(drop=True)
        if has_batch:
            fb = df[df["gf"] == 0]
            self._files_by_batch = {}
            for b, f in zip(fb["raw_batch"], fb["filename"], strict=True):
                self._files_by_batch.setdefault(b, []).append(f)
        # Sort so combo ids (row order) are deterministic whatever order DuckDB's threads finished in.
        combos = combos.sort_values([f"raw_{r}" for r in self._join_roles], na_position="first", kind="stable")
        combos = combos.reset_index(drop=True)
        for role, (kind, col) in self._roles.items():
            if kind != "sample":
                continue
            sc = self._roles["sample"][1]
            sm = self._sample_meta[[sc, col]].drop_duplicates()  # type: ignore[index]
            dup = sm[sm[sc].duplicated(keep=False)]
            if not dup.empty:
                raise InputError(
                    f"{self.source.sample_metadata}: sample {dup[sc].iloc[0]!r} has several values in "
                    f"column {col!r} ({dup[col].tolist()[:3]})"
                )
            mapping = dict(zip(sm[sc], sm[col], strict=True))
            vals = [mapping.get(s) for s in combos["raw_sample"]]
            missing = [s for s, v in zip(combos["raw_sample"], vals, strict=True) if s not in mapping]
            if missing:
                raise InputError(
                    f"sample {missing[0]!r} of the shards is not in {self.source.sample_metadata} "
                    f"({len(set(missing))} samples missing), so its {role} ({col!r}) is unknown"
                )
            combos[f"raw_{role}"] = vals
        return combos

    def _context_names(self) -> dict[str, str]:
        if not self.source.cell_line_metadata:
            return {}
        cl = self._read_table(self.source.cell_line_metadata)
        if {"Cell_ID_Cellosaur", "cell_name"} <= set(cl.columns):
            return {
                str(k).strip(): str(v).strip()
                for k, v in zip(cl["Cell_ID_Cellosaur"], cl["cell_name"], strict=True)
                if k is not None and v is not None
            }
        return {}

    def _files_for(self, units: pd.DataFrame) -> list[str]:
        if self._files_by_batch is None or "raw_batch" not in units.columns:
            return list(self.source.expression)
        files: list[str] = []
        for b in pd.unique(units["raw_batch"]):
            files.extend(self._files_by_batch.get(b, []))
        return sorted(set(files)) or list(self.source.expression)

    def _join_sql(self) -> str:
        conds = []
        for r in self._join_roles:
            col = self._roles[r][1]
            conds.append(f"e.{_q(col)} IS NOT DISTINCT FROM CAST(u.raw_{r} AS {self._expr_types[col]})")
        return " AND ".join(conds) if conds else "TRUE"

    def _lists_to_csr(self, genes: pa.ChunkedArray, values: pa.ChunkedArray) -> sp.csr_matrix:
        """Arrow list columns (token ids, values) → CSR over `self.genes`, dropping markers / unknown tokens."""
        g = genes.combine_chunks() if isinstance(genes, pa.ChunkedArray) else genes
        v = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        n = len(g)
        if n == 0:
            return sp.csr_matrix((0, len(self._genes)), dtype=np.float64)
        offsets = np.asarray(g.offsets, dtype=np.int64)
        if not np.array_equal(offsets, np.asarray(v.offsets, dtype=np.int64)):
            raise InputError(f"{self.where}: a row's 'genes' and 'expressions' lists differ in length")
        tok = np.asarray(g.values, dtype=np.int64)[offsets[0] : offsets[-1]]
        val = np.asarray(v.values, dtype=np.float64)[offsets[0] : offsets[-1]]
        offsets = offsets - offsets[0]
        inrange = (tok >= 0) & (tok < len(self._tok2col))
        col = np.full(tok.shape, -1, dtype=np.int64)
        col[inrange] = self._tok2col[tok[inrange]]
        keep = col >= 0
        cs = np.concatenate([[0], np.cumsum(keep)])
        indptr = cs[offsets]
        m = sp.csr_matrix((val[keep], col[keep], indptr), shape=(n, len(self._genes)))
        m.sum_duplicates()
        return m

    def _load(self, condition: Condition, selection: pd.DataFrame) -> CellCounts:
        u = selection[[f"raw_{r}" for r in self._join_roles] + ["treated"]].reset_index(drop=True)
        name = f"_sel_{uuid.uuid4().hex[:8]}"
        self.con.register(name, u)
        extra = []
        sample_col = self._roles.get("sample", ("", ""))
        batch_col = self._roles.get("batch", ("", ""))
        if _BARCODE in self._expr_types:
            extra.append(f"e.{_q(_BARCODE)} AS cell_id")
        sql = (
            f"SELECT e.filename, e.file_row_number, e.genes, e.expressions, u.treated, "
            f"{', '.join(f'u.raw_{r} AS raw_{r}' for r in self._join_roles)}"
            f"{', ' if extra else ''}{', '.join(extra)} "
            f"FROM {self._expr_sql([])} e JOIN {name} u ON {self._join_sql()} "
            f"ORDER BY e.filename, e.file_row_number"
        )
        try:
            tbl = self.con.sql(sql, params={"files": self._files_for(selection)}).to_arrow_table()
        finally:
            self.con.unregister(name)
        X = self._lists_to_csr(tbl.column("genes"), tbl.column("expressions"))
        treated = np.asarray(tbl.column("treated").to_numpy(zero_copy_only=False), dtype=bool)
        meta = tbl.drop_columns(["genes", "expressions"]).to_pandas()
        if "cell_id" in meta.columns:
            ids = meta["cell_id"].astype(str)
        else:
            ids = meta["filename"].map(lambda f: Path(f).name) + ":" + meta["file_row_number"].astype(str)
        # Normalised batch / sample / context per cell from the condition index (join on the raw values).
        norm = self.index.combos[[f"raw_{r}" for r in self._join_roles] + ["batch", "sample", "context", "key"]]
        merged = meta[[f"raw_{r}" for r in self._join_roles]].merge(
            norm.drop_duplicates([f"raw_{r}" for r in self._join_roles]),
            how="left",
            on=[f"raw_{r}" for r in self._join_roles],
        )
        cov = pd.DataFrame(
            {
                "batch": merged["batch"].to_numpy(),
                "sample": merged["sample"].to_numpy(),
                "context": merged["context"].to_numpy(),
                "condition_key": merged["key"].to_numpy(),
                "library_size": np.asarray(X.sum(axis=1)).ravel(),
            },
            index=pd.Index(ids.to_numpy(), name="cell"),
        )
        if self.source.obs_metadata and "cell_id" in meta.columns:
            cov = self._add_obs_covariates(cov, meta, sample_col[1], batch_col[1])
        return CellCounts(condition=condition, X=X, genes=self._genes, treated=treated, covariates=cov)

    def _add_obs_covariates(
        self, cov: pd.DataFrame, meta: pd.DataFrame, sample_col: str, batch_col: str
    ) -> pd.DataFrame:
        """S/G2M scores and phase from Tahoe's obs_metadata, matched on barcode (and plate, and sample)."""
        if self._obs_types is None:
            self._obs_types = self._describe([self.source.obs_metadata])  # type: ignore[list-item]
        obs_types = self._obs_types
        want = [c for c in _COVARIATE_COLS if c in obs_types]
        if not want or _BARCODE not in obs_types:
            return cov
        keys = [_BARCODE] + [
            c for c in (batch_col, sample_col) if c and c in obs_types and f"raw_{self._role_of(c)}" in meta.columns
        ]
        flt = ""
        params: dict[str, Any] = {"f": [self.source.obs_metadata]}
        if sample_col and sample_col in keys:
            params["s"] = [str(s) for s in pd.unique(meta[f"raw_{self._role_of(sample_col)}"].dropna())]
            flt = f"WHERE {_q(sample_col)} IN (SELECT unnest($s))"
        cols = ", ".join(_q(c) for c in dict.fromkeys(keys + want))
        try:
            obs = self.con.execute(f"SELECT {cols} FROM read_parquet($f) {flt}", params).df()
        except duckdb.Error as exc:
            log.warning("cannot read covariates from %s: %s", self.source.obs_metadata, exc)
            return cov
        left = pd.DataFrame({_BARCODE: meta["cell_id"].astype(str).to_numpy()})
        for c in keys[1:]:
            left[c] = meta[f"raw_{self._role_of(c)}"].astype(str).to_numpy()
        obs = obs.astype({c: str for c in keys}).drop_duplicates(keys)
        merged = left.merge(obs, how="left", on=keys)
        for c in want:
            cov[c] = merged[c].to_numpy(np.float64) if c != "phase" else merged[c].astype(object).to_numpy()
        return cov

    def _role_of(self, col: str) -> str:
        for r, (_, c) in self._roles.items():
            if c == col:
                return r
        return ""

    def _aggregate(self, units: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame, np.ndarray]]:
        units = units.reset_index(drop=True)
        groups = sorted(pd.unique(units["group"]))
        part_of = {g: i for i, g in enumerate(groups)}
        u = units[[f"raw_{r}" for r in self._join_roles]].copy()
        u["part"] = units["group"].map(part_of).astype(np.int64)
        u["upos"] = np.arange(len(units), dtype=np.int64)
        # A cursor of its own: the caller may read cells (e.g. pydeseq2 pseudo-replicates) while this streams.
        con = self.con.cursor()
        name = f"_units_{uuid.uuid4().hex[:8]}"
        con.register(name, u)
        sql = (
            f"WITH c AS (SELECT u.part, u.upos, e.genes, e.expressions FROM {self._expr_sql([])} e "
            f"JOIN {name} u ON {self._join_sql()}), "
            f"t AS (SELECT part, upos, unnest(genes) AS tok, unnest(expressions) AS val FROM c) "
            f"SELECT part, upos, tok, sum(CAST(val AS DOUBLE)) AS total FROM t GROUP BY part, upos, tok "
            f"ORDER BY part"
        )
        n_genes = len(self._genes)
        try:
            reader = con.sql(sql, params={"files": self._files_for(units)}).to_arrow_reader(self.batch_rows)
            cur: int | None = None
            rows_of_part = {p: np.flatnonzero(u["part"].to_numpy() == p) for p in range(len(groups))}
            acc: np.ndarray | None = None
            pos: np.ndarray | None = None
            done: set[int] = set()

            def finish(p: int, a: np.ndarray) -> tuple[str, pd.DataFrame, np.ndarray]:
                rows = units.iloc[rows_of_part[p]].assign(library_size=a.sum(axis=1))
                return groups[p], rows, a

            for batch in reader:
                part = batch.column("part").to_numpy()
                upos = batch.column("upos").to_numpy()
                tok = batch.column("tok").to_numpy()
                tot = batch.column("total").to_numpy()
                for p in np.unique(part):  # batches arrive ordered by part
                    m = part == p
                    if cur is not None and p != cur:
                        assert acc is not None
                        yield finish(cur, acc)
                        done.add(cur)
                    if p != cur:
                        cur = int(p)
                        acc = np.zeros((len(rows_of_part[cur]), n_genes), dtype=np.float64)
                        pos = np.full(len(units), -1, dtype=np.int64)
                        pos[rows_of_part[cur]] = np.arange(len(rows_of_part[cur]))
                    t = tok[m]
                    ok = (t >= 0) & (t < len(self._tok2col))
                    col = np.full(t.shape, -1, dtype=np.int64)
                    col[ok] = self._tok2col[t[ok]]
                    keep = col >= 0
                    assert acc is not None and pos is not None
                    # (unit, token) pairs are unique in the aggregate, so plain fancy-index addition is exact.
                    acc[pos[upos[m][keep]], col[keep]] += tot[m][keep]
            if cur is not None and acc is not None:
                yield finish(cur, acc)
                done.add(cur)
            for p in range(len(groups)):  # groups whose units hold no cells in the shards
                if p not in done:
                    yield finish(p, np.zeros((len(rows_of_part[p]), n_genes)))
        except duckdb.Error as exc:
            raise InputError(f"pseudobulk aggregation over {self.where} failed: {exc}") from None
        finally:
            con.unregister(name)
            con.close()

    def close(self) -> None:
        try:
            self.con.close()
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None
