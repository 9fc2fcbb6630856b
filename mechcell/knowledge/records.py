"""The record tables every importer returns, and the error a malformed source raises.

Why DataFrames rather than one pydantic object per record: a full build holds ~10⁶ records, and the importers
must stay pure functions (files in, tables out) that a test can call on one file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mechcell.errors import InputError

ENTITY_COLUMNS = ["id", "type", "name", "attrs"]
RELATION_COLUMNS = [
    "subject",
    "subject_type",
    "predicate",
    "object",
    "object_type",
    "sign",
    "weight",
    "action",
    "record_id",
    "evidence",
    "model_generated",
    "attrs",
]
ALIAS_COLUMNS = ["key", "entity_type", "entity_id", "kind"]
ROLE_COLUMNS = ["entity_id", "role"]

#: Evidence items are joined with a tab in the record tables (tabs never occur inside a TSV field).
EVIDENCE_SEP = "\t"


class SourceFormatError(InputError):
    """A source file is malformed or truncated. Names the file and, where known, the line."""

    def __init__(self, path: Path | str, message: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        where = f"{path}, line {line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")


def _frame(rows: Any, columns: list[str]) -> pd.DataFrame:
    if rows is None:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    for c in columns:
        if c not in df.columns:
            df[c] = None
    return df[columns].reset_index(drop=True)


@dataclass
class SourceTables:
    """Entities, relations, aliases and roles read from one source (columns: the *_COLUMNS lists above)."""

    entities: pd.DataFrame = field(default_factory=lambda: _frame(None, ENTITY_COLUMNS))
    relations: pd.DataFrame = field(default_factory=lambda: _frame(None, RELATION_COLUMNS))
    aliases: pd.DataFrame = field(default_factory=lambda: _frame(None, ALIAS_COLUMNS))
    roles: pd.DataFrame = field(default_factory=lambda: _frame(None, ROLE_COLUMNS))
    notes: list[str] = field(default_factory=list)

    @classmethod
    def make(
        cls,
        entities: Any = None,
        relations: Any = None,
        aliases: Any = None,
        roles: Any = None,
        notes: list[str] | None = None,
    ) -> SourceTables:
        rel = _frame(relations, RELATION_COLUMNS)
        if len(rel):
            rel["sign"] = rel["sign"].fillna(0).astype("int8")
            rel["weight"] = pd.to_numeric(rel["weight"], errors="coerce").astype("float64")
            rel["model_generated"] = rel["model_generated"].fillna(False).astype(bool)
            rel["evidence"] = rel["evidence"].fillna("").astype(str)
            rel["record_id"] = rel["record_id"].fillna("").astype(str)
        return cls(
            entities=_frame(entities, ENTITY_COLUMNS),
            relations=rel,
            aliases=_frame(aliases, ALIAS_COLUMNS),
            roles=_frame(roles, ROLE_COLUMNS),
            notes=list(notes or []),
        )

    @property
    def n_records(self) -> int:
        return len(self.entities) + len(self.relations) + len(self.aliases) + len(self.roles)


def require_columns(df: pd.DataFrame, path: Path, columns: list[str]) -> None:
    """Raise a `SourceFormatError` naming the missing header columns."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SourceFormatError(path, f"missing column(s) {missing} (have: {list(df.columns)})", line=1)


def require_values(df: pd.DataFrame, path: Path, columns: list[str], *, header_lines: int = 1) -> None:
    """Every row must have a non-empty value in `columns`; a short (truncated) row is reported by its line."""
    for c in columns:
        col = df[c]
        bad = col.isna() | (col.astype(str).str.strip() == "")
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise SourceFormatError(
                path, f"empty or missing value in column {c!r} (row truncated?)", line=i + 1 + header_lines
            )


def check_ends_with_newline(path: Path, data: bytes | None = None) -> None:
    """A text table whose last line has no line ending was most likely cut off while copying."""
    if data is None:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            if size == 0:
                raise SourceFormatError(path, "file is empty")
            fh.seek(size - 1)
            last = fh.read(1)
    else:
        if not data:
            raise SourceFormatError(path, "file is empty")
        last = data[-1:]
    if last not in (b"\n", b"\r"):
        n = (data.count(b"\n") + 1) if data is not None else _count_lines(path)
        raise SourceFormatError(path, "file is truncated: the last line has no line ending", line=n)


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b"")) + 1


def read_table(
    path: Path,
    sep: str,
    *,
    compression: str | None = None,
    columns: list[str] | None = None,
    required: list[str] | None = None,
    names: list[str] | None = None,
) -> pd.DataFrame:
    """Read a delimited text table as strings, strictly: wrong field counts, truncation and empty required
    values raise `SourceFormatError` with the line."""
    import gzip

    try:
        if compression == "gzip":
            with gzip.open(path, "rb") as fh:
                data = fh.read()
            check_ends_with_newline(path, data)
            import io

            buf: Any = io.BytesIO(data)
        else:
            check_ends_with_newline(path)
            buf = path
        df = pd.read_csv(
            buf,
            sep=sep,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            on_bad_lines="error",
            quoting=3 if sep == "\t" else 0,
            engine="c",
            header=None if names else "infer",
            names=names,
        )
    except SourceFormatError:
        raise
    except (EOFError, OSError) as exc:
        raise SourceFormatError(
            path, f"cannot read ({type(exc).__name__}: {exc}); truncated or not {compression or 'text'}?"
        ) from exc
    except pd.errors.ParserError as exc:
        import re

        m = re.search(r"line (\d+)", str(exc))
        raise SourceFormatError(path, f"malformed row: {exc}", line=int(m.group(1)) if m else None) from exc
    except (UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise SourceFormatError(path, f"not a readable table: {exc}") from exc
    if columns:
        require_columns(df, path, columns)
    if required:
        require_values(df, path, required, header_lines=0 if names else 1)
    return df


def read_parquet(path: Path, columns: list[str]) -> pd.DataFrame:
    """Read a Parquet table; a damaged file or missing column is a `SourceFormatError`."""
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for damaged files
        raise SourceFormatError(path, f"not a readable Parquet file ({type(exc).__name__}: {exc})") from exc
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SourceFormatError(path, f"missing column(s) {missing} (have: {list(df.columns)})")
    return df


def join_evidence(items: Any) -> str:
    return EVIDENCE_SEP.join(str(x) for x in items if x is not None and str(x) != "")
