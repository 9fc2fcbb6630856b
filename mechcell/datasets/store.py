"""The project store: one DuckDB file holding registered datasets, their conditions and computed signatures.

One writer per file (DuckDB's own lock keeps other processes out; inside a process, hold one `Store`). Tables
are created idempotently through numbered migrations recorded in `schema_version`, so a later issue adds its
tables (traces) as migration 2 without touching these. Every write is one transaction: a crash never leaves a
half-written signature or a dataset with half its conditions.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from mechcell.datasets.perturbation import ConditionSummary, PerturbationSchema
from mechcell.datasets.schemas import Condition, Signature
from mechcell.errors import InputError, MechcellError, NotFoundError

log = logging.getLogger(__name__)

__all__ = ["DatasetRecord", "STORE_SCHEMA_VERSION", "Store", "StoreError", "StoredCondition", "dataset_id_for"]


class StoreError(MechcellError):
    """The store file cannot be opened or written (locked by another process, corrupt, read-only)."""


#: Numbered migrations; version N is applied once when the store's recorded version is below N.
#: Leave room: the trace store arrives as migration 2 in a later issue.
_MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "datasets, conditions, signatures",
        [
            """CREATE TABLE IF NOT EXISTS datasets (
            id VARCHAR PRIMARY KEY, path VARCHAR NOT NULL, layout VARCHAR NOT NULL, schema_json VARCHAR NOT NULL,
            options_json VARCHAR NOT NULL, n_cells BIGINT, n_genes BIGINT, registered_at TIMESTAMP NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS conditions (
            dataset_id VARCHAR NOT NULL, key VARCHAR NOT NULL, perturbation VARCHAR NOT NULL, dose DOUBLE,
            unit VARCHAR, context VARCHAR, context_name VARCHAR, batch VARCHAR, control VARCHAR NOT NULL,
            n_cells BIGINT NOT NULL, n_control_cells BIGINT NOT NULL, n_samples BIGINT, n_control_samples BIGINT,
            PRIMARY KEY (dataset_id, key))""",
            """CREATE TABLE IF NOT EXISTS signatures (
            dataset_id VARCHAR NOT NULL, condition_key VARCHAR NOT NULL, method VARCHAR NOT NULL,
            params_json VARCHAR NOT NULL, gene VARCHAR NOT NULL, log2fc DOUBLE, pvalue DOUBLE, padj DOUBLE,
            stat DOUBLE, n_treated BIGINT NOT NULL, n_control BIGINT NOT NULL, created_at TIMESTAMP NOT NULL)""",
        ],
    ),
]
STORE_SCHEMA_VERSION = _MIGRATIONS[-1][0]


def dataset_id_for(path: str, layout: str, schema: PerturbationSchema | None) -> str:
    """Stable id: the same data read with the same schema registers once."""
    resolved = path if ("://" in path or path.startswith("<")) else str(Path(path).resolve())
    raw = f"{layout}|{resolved}|{schema.model_dump_json() if schema else ''}"
    return "ds_" + hashlib.sha1(raw.encode()).hexdigest()[:12]


class DatasetRecord(BaseModel):
    """A registered dataset: where it is, how it is laid out and read."""

    model_config = ConfigDict(frozen=True)

    id: str
    path: str
    layout: str
    perturbation_schema: PerturbationSchema | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="reader options that reopen the dataset")
    n_cells: int | None = None
    n_genes: int | None = None
    registered_at: datetime


class StoredCondition(BaseModel):
    """A condition row of the store: which dataset it belongs to, plus its counts."""

    model_config = ConfigDict(frozen=True)

    dataset_id: str
    summary: ConditionSummary

    @property
    def condition(self) -> Condition:
        return self.summary.condition


def _none(v: Any) -> Any:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT:
        return None
    return v


class Store:
    """The project DuckDB store. Use as a context manager; `read_only=True` for commands that only report."""

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        if read_only and not self.path.is_file():
            raise NotFoundError(
                f"store {self.path} does not exist; create it with `mechcell data ingest ... --store {self.path}`"
            )
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            raise StoreError(
                f"cannot open store {self.path}: {exc} (another mechcell process may be writing it)"
            ) from None
        except duckdb.Error as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from None
        if read_only:
            if self.schema_version == 0:
                raise StoreError(f"{self.path} is not a mechcell store (no schema_version table)")
        else:
            self._migrate()

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if getattr(self, "con", None) is not None:
            self.con.close()
            self.con = None  # type: ignore[assignment]

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def _tx(self) -> _Transaction:
        if self.read_only:
            raise StoreError(f"store {self.path} was opened read-only")
        return _Transaction(self.con)

    # ------------------------------------------------------------------ schema
    @property
    def schema_version(self) -> int:
        try:
            row = self.con.execute("SELECT max(version) FROM schema_version").fetchone()
        except duckdb.CatalogException:
            return 0
        return int(row[0]) if row and row[0] is not None else 0

    def _migrate(self) -> None:
        with self._tx() as con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                "applied_at TIMESTAMP NOT NULL, note VARCHAR)"
            )
        current = self.schema_version
        for version, note, ddl in _MIGRATIONS:
            if version <= current:
                continue
            with self._tx() as con:
                for stmt in ddl:
                    con.execute(stmt)
                con.execute("INSERT INTO schema_version VALUES (?, ?, ?)", [version, _now(), note])

    def tables(self) -> list[str]:
        return [
            r[0]
            for r in self.con.execute("SELECT table_name FROM information_schema.tables ORDER BY table_name").fetchall()
        ]

    # ------------------------------------------------------------------ datasets + conditions
    def register_dataset(
        self,
        path: str,
        layout: str,
        schema: PerturbationSchema | None = None,
        *,
        summaries: Sequence[ConditionSummary] | None = None,
        n_cells: int | None = None,
        n_genes: int | None = None,
        options: dict[str, Any] | None = None,
        dataset_id: str | None = None,
    ) -> str:
        """Record a dataset (and its conditions, replacing earlier ones) in one transaction; returns its id."""
        did = dataset_id or dataset_id_for(path, layout, schema)
        schema_json = schema.model_dump_json() if schema else "{}"
        with self._tx() as con:
            con.execute("DELETE FROM datasets WHERE id = ?", [did])
            con.execute(
                "INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    did,
                    path,
                    layout,
                    schema_json,
                    json.dumps(options or {}, sort_keys=True, default=str),
                    n_cells,
                    n_genes,
                    _now(),
                ],
            )
            if summaries is not None:
                con.execute("DELETE FROM conditions WHERE dataset_id = ?", [did])
                self._insert_conditions(con, did, summaries)
        return did

    def register(self, dataset: Any) -> str:
        """Register an opened `Dataset` with all its conditions (indexes it if not done yet)."""
        summaries = dataset.summaries()
        return self.register_dataset(
            dataset.path,
            dataset.layout,
            dataset.schema,
            summaries=summaries,
            n_cells=int(sum(s.n_cells for s in summaries)) if dataset.layout == "de" else dataset.n_cells,
            n_genes=len(dataset.genes),
            options=dict(getattr(dataset, "options", {})),
        )

    def open(self, dataset_id: str) -> Any:
        """Reopen a registered dataset with the schema and reader options it was registered with."""
        from mechcell.datasets.readers import open_dataset

        rec = self.dataset(dataset_id)
        return open_dataset(rec.path, rec.perturbation_schema, layout=rec.layout, **rec.options)

    @staticmethod
    def _insert_conditions(con: duckdb.DuckDBPyConnection, did: str, summaries: Sequence[ConditionSummary]) -> None:
        if not summaries:
            return
        rows = pd.DataFrame(
            [
                {
                    "dataset_id": did,
                    "key": s.key,
                    "perturbation": s.condition.perturbation,
                    "dose": s.condition.dose,
                    "unit": s.condition.dose_unit,
                    "context": s.condition.context,
                    "context_name": s.condition.context_name,
                    "batch": s.condition.batch,
                    "control": s.condition.control,
                    "n_cells": s.n_cells,
                    "n_control_cells": s.n_control_cells,
                    "n_samples": s.n_samples,
                    "n_control_samples": s.n_control_samples,
                }
                for s in summaries
            ]
        )
        rows["dose"] = rows["dose"].astype("float64")
        con.register("_cond_rows", rows)
        try:
            con.execute(
                "INSERT INTO conditions SELECT dataset_id, key, perturbation, dose, unit, context, "
                "context_name, batch, control, n_cells, n_control_cells, n_samples, n_control_samples "
                "FROM _cond_rows"
            )
        finally:
            con.unregister("_cond_rows")

    def datasets(self) -> list[DatasetRecord]:
        rows = self.con.execute(
            "SELECT id, path, layout, schema_json, options_json, n_cells, n_genes, "
            "registered_at FROM datasets ORDER BY registered_at, id"
        ).fetchall()
        return [self._dataset_record(r) for r in rows]

    def dataset(self, dataset_id: str) -> DatasetRecord:
        row = self.con.execute(
            "SELECT id, path, layout, schema_json, options_json, n_cells, n_genes, "
            "registered_at FROM datasets WHERE id = ?",
            [dataset_id],
        ).fetchone()
        if row is None:
            have = ", ".join(d.id for d in self.datasets()) or "none"
            raise NotFoundError(f"dataset {dataset_id!r} is not registered in {self.path} (have: {have})")
        return self._dataset_record(row)

    @staticmethod
    def _dataset_record(r: tuple[Any, ...]) -> DatasetRecord:
        sj = json.loads(r[3]) if r[3] else {}
        return DatasetRecord(
            id=r[0],
            path=r[1],
            layout=r[2],
            perturbation_schema=PerturbationSchema(**sj) if sj else None,
            options=json.loads(r[4]) if r[4] else {},
            n_cells=r[5],
            n_genes=r[6],
            registered_at=r[7],
        )

    def condition_summaries(
        self,
        *,
        dataset_id: str | None = None,
        perturbation: str | None = None,
        context: str | None = None,
        batch: str | None = None,
        dose: float | None = None,
        key: str | None = None,
    ) -> list[StoredCondition]:
        """Stored conditions matching every given filter (names compared after stripping), ordered by key."""
        where, params = [], []
        for col, val in (
            ("dataset_id", dataset_id),
            ("perturbation", perturbation),
            ("context", context),
            ("batch", batch),
            ("key", key),
        ):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val.strip() if isinstance(val, str) and col != "dataset_id" else val)
        if dose is not None:
            where.append("abs(dose - ?) <= 1e-12 * greatest(abs(dose), 1)")
            params.append(float(dose))
        sql = (
            "SELECT dataset_id, key, perturbation, dose, unit, context, context_name, batch, control, n_cells, "
            "n_control_cells, n_samples, n_control_samples FROM conditions"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY dataset_id, key"
        )
        out = []
        for r in self.con.execute(sql, params).fetchall():
            cond = Condition(
                perturbation=r[2],
                dose=_none(r[3]),
                dose_unit=r[4],
                context=r[5],
                context_name=r[6],
                batch=r[7],
                control=r[8],
            )
            out.append(
                StoredCondition(
                    dataset_id=r[0],
                    summary=ConditionSummary(
                        condition=cond,
                        n_cells=r[9],
                        n_control_cells=r[10],
                        n_samples=r[11] or 0,
                        n_control_samples=r[12] or 0,
                    ),
                )
            )
        return out

    def conditions(self, **filters: Any) -> list[Condition]:
        """Stored conditions (see `condition_summaries` for the filters)."""
        return [c.condition for c in self.condition_summaries(**filters)]

    def find_condition(self, key: str, dataset_id: str | None = None) -> StoredCondition:
        """The one stored condition with this key (in `dataset_id` when given)."""
        rows = self.condition_summaries(key=key, dataset_id=dataset_id)
        if not rows:
            pert = key.split("|")[0]
            near = [c.summary.key for c in self.condition_summaries(perturbation=pert, dataset_id=dataset_id)][:5]
            hint = f"; same perturbation: {', '.join(near)}" if near else ""
            raise NotFoundError(f"condition {key!r} not in store {self.path}{hint}")
        if len(rows) > 1:
            raise InputError(
                f"condition {key!r} is in several datasets ({', '.join(r.dataset_id for r in rows)}); pass --dataset"
            )
        return rows[0]

    # ------------------------------------------------------------------ signatures
    def put_signature(self, sig: Signature, dataset_id: str | None = None) -> None:
        """Store a signature, replacing an earlier one of the same dataset, condition and method (atomic)."""
        self.put_signatures([sig], dataset_id=dataset_id)

    def put_signatures(self, sigs: Iterable[Signature], dataset_id: str | None = None) -> int:
        """Store several signatures in one transaction; returns the number of gene rows written."""
        did = dataset_id or ""
        frames = []
        replace = []
        now = _now()
        for sig in sigs:
            n = len(sig.genes)
            frames.append(
                pd.DataFrame(
                    {
                        "dataset_id": [did] * n,
                        "condition_key": [sig.condition.key] * n,
                        "method": [sig.method] * n,
                        "params_json": [json.dumps(sig.params, sort_keys=True, default=str)] * n,
                        "gene": sig.genes,
                        "log2fc": np.asarray(sig.log2fc, np.float64),
                        "pvalue": np.asarray(sig.pvalue, np.float64),
                        "padj": np.asarray(sig.padj, np.float64),
                        "stat": np.asarray(sig.stat, np.float64) if sig.stat is not None else np.full(n, np.nan),
                        "n_treated": np.full(n, sig.n_treated, np.int64),
                        "n_control": np.full(n, sig.n_control, np.int64),
                        "created_at": [now] * n,
                    }
                )
            )
            replace.append((did, sig.condition.key, sig.method))
        if not frames:
            return 0
        rows = pd.concat(frames, ignore_index=True)
        # NaN statistics (e.g. a pseudobulk p-value with one well per arm) are stored as NULL.
        for c in ("log2fc", "pvalue", "padj", "stat"):
            rows[c] = rows[c].astype("Float64")
        with self._tx() as con:
            for r in replace:
                con.execute("DELETE FROM signatures WHERE dataset_id = ? AND condition_key = ? AND method = ?", list(r))
            con.register("_sig_rows", rows)
            try:
                con.execute(
                    "INSERT INTO signatures SELECT dataset_id, condition_key, method, params_json, gene, "
                    "log2fc, pvalue, padj, stat, n_treated, n_control, created_at FROM _sig_rows"
                )
            finally:
                con.unregister("_sig_rows")
        return len(rows)

    def signature_methods(self, key: str, dataset_id: str | None = None) -> list[tuple[str, str]]:
        """(dataset_id, method) pairs stored for a condition key, most recent first."""
        sql = "SELECT dataset_id, method, max(created_at) t FROM signatures WHERE condition_key = ?"
        params: list[Any] = [key]
        if dataset_id is not None:
            sql += " AND dataset_id = ?"
            params.append(dataset_id)
        sql += " GROUP BY dataset_id, method ORDER BY t DESC, method"
        return [(r[0], r[1]) for r in self.con.execute(sql, params).fetchall()]

    def signature(self, key: str, method: str | None = None, *, dataset_id: str | None = None) -> Signature:
        """A stored signature. Without `method`, the most recently computed one for the key."""
        avail = self.signature_methods(key, dataset_id)
        if method is not None:
            avail = [a for a in avail if a[1] == method]
        if not avail:
            have = ", ".join(m for _, m in self.signature_methods(key, dataset_id)) or "none"
            raise NotFoundError(
                f"no {method + ' ' if method else ''}signature for {key!r} in {self.path} "
                f"(stored methods: {have}); compute it with `mechcell data signature {key}`"
            )
        dids = {a[0] for a in avail}
        if dataset_id is None and len(dids) > 1:
            raise InputError(
                f"signatures for {key!r} exist in several datasets ({', '.join(sorted(dids))}); pass --dataset"
            )
        did, meth = avail[0]
        df = self.con.execute(
            "SELECT gene, log2fc, pvalue, padj, stat, params_json, n_treated, n_control "
            "FROM signatures WHERE dataset_id = ? AND condition_key = ? AND method = ?",
            [did, key, meth],
        ).df()
        try:
            cond = self.find_condition(key, did or None).condition if did else Condition.from_key(key)
        except NotFoundError:
            cond = Condition.from_key(key)
        stat = df["stat"].astype("float64")
        return Signature(
            condition=cond,
            method=meth,
            params=json.loads(df["params_json"].iloc[0]),
            n_treated=int(df["n_treated"].iloc[0]),
            n_control=int(df["n_control"].iloc[0]),
            genes=df["gene"].astype(str).tolist(),
            log2fc=_floats(df["log2fc"]),
            pvalue=_floats(df["pvalue"]),
            padj=_floats(df["padj"]),
            stat=None if stat.isna().all() else _floats(stat),
        )

    def signature_keys(self, *, dataset_id: str | None = None, method: str | None = None) -> list[str]:
        sql, params = "SELECT DISTINCT condition_key FROM signatures WHERE TRUE", []
        if dataset_id is not None:
            sql += " AND dataset_id = ?"
            params.append(dataset_id)
        if method is not None:
            sql += " AND method = ?"
            params.append(method)
        return [r[0] for r in self.con.execute(sql + " ORDER BY 1", params).fetchall()]


def _floats(s: pd.Series) -> list[float]:
    return pd.to_numeric(s, errors="coerce").astype("float64").fillna(np.nan).tolist()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class _Transaction:
    """BEGIN … COMMIT, ROLLBACK on any exception (so no partial rows survive a failure)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        self.con.execute("BEGIN TRANSACTION")
        return self.con

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            try:
                self.con.execute("COMMIT")
            except duckdb.Error as e:
                self.con.execute("ROLLBACK")
                raise StoreError(f"store write failed: {e}") from None
        else:
            self.con.execute("ROLLBACK")
