"""Build a KnowledgeBase store (DuckDB) from a directory of source tables and/or the shipped starter tables.

Steps: find the registered sources present, read each with its importer (a malformed or truncated file is reported
with its path and line and left out whole), map gene names to current HGNC symbols, merge drug names that differ
only by salt / solvate form, write the tables, compute the Tahoe coverage summary. A build to a file is atomic: it
is written to a temporary file beside the target and renamed, so the old store stays usable until the new one is
complete. The store's version is a content hash of the source files it was built from.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd

import mechcell
from mechcell.errors import InputError, NotFoundError
from mechcell.knowledge.importers import SOURCES, BuildContext, SourceSpec, entrez_to_symbol, found_sources
from mechcell.knowledge.models import BuildSummary, SourceInfo
from mechcell.knowledge.records import (
    ALIAS_COLUMNS,
    ENTITY_COLUMNS,
    RELATION_COLUMNS,
    ROLE_COLUMNS,
    SourceFormatError,
    SourceTables,
)
from mechcell.knowledge.resolve import (
    display_drug_name,
    drug_base_key,
    normalize_drug_key,
    normalize_gene_key,
)
from mechcell.knowledge.starter import STARTER_SOURCE, STARTER_VERSION, read_starter, starter_dir, starter_hash

STORE_SCHEMA_VERSION = 1
#: Drug display names are taken from the first of these sources that names the drug.
_DRUG_NAME_PRIORITY = ("tahoe_drugs", STARTER_SOURCE, "drugcentral")

ProgressFn = Callable[[str, int, int], None]


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def content_hash(source_dir: Path | None, *, include_starter: bool = True) -> str:
    """16 hex digits identifying the build inputs: every present source file's bytes, the starter tables, the
    store schema. Two directories with the same files give the same hash (paths are relative)."""
    h = hashlib.sha256(f"mechcell-kb-schema-{STORE_SCHEMA_VERSION}".encode())
    if source_dir is not None:
        for spec in found_sources(source_dir):
            for rel in spec.paths:
                h.update(f"{spec.name}:{rel}:{_file_sha256(source_dir / rel)}".encode())
    if include_starter:
        h.update(f"starter:{starter_hash()}".encode())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ normalisation


def _gene_canon_map(hgnc: SourceTables | None) -> Callable[[pd.Series], pd.Series]:
    """symbol → current HGNC symbol: approved symbols and case variants of them kept, a previous symbol that
    names exactly one current gene renamed, anything else left as written."""
    if hgnc is None:
        return lambda s: s
    approved = set(hgnc.entities["id"])
    upper = {a.upper(): a for a in approved}
    prev = hgnc.aliases[hgnc.aliases["kind"] == "previous"]
    counts = prev.groupby("key")["entity_id"].nunique()
    unique_prev = prev[prev["key"].isin(counts[counts == 1].index)].drop_duplicates("key")
    prev_map = {k: v for k, v in zip(unique_prev["key"], unique_prev["entity_id"], strict=True) if k not in approved}

    def canon(names: pd.Series) -> pd.Series:
        uniq = pd.unique(names.dropna())
        m = {}
        for n in uniq:
            if n in approved:
                continue
            if n in prev_map:
                m[n] = prev_map[n]
            elif isinstance(n, str) and n.upper() in upper:
                m[n] = upper[n.upper()]
        return names.map(lambda x: m.get(x, x)) if m else names

    return canon


def _merge(tables: list[tuple[str, str, SourceTables]], hgnc: SourceTables | None) -> dict[str, pd.DataFrame]:
    """Concatenate every source's tables and canonicalise gene symbols, entity types and drug names."""

    def cat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
        return pd.concat(frames, ignore_index=True)

    ents = cat([t.entities.assign(source=name) for name, _, t in tables], ENTITY_COLUMNS + ["source"])
    rels = cat(
        [t.relations.assign(source=name, version=ver) for name, ver, t in tables],
        RELATION_COLUMNS + ["source", "version"],
    )
    als = cat([t.aliases.assign(source=name) for name, _, t in tables], ALIAS_COLUMNS + ["source"])
    roles = cat([t.roles.assign(source=name) for name, _, t in tables], ROLE_COLUMNS + ["source"])
    for df in (ents, rels, als, roles):
        for c in df.columns:
            if df[c].dtype == object and c not in ("evidence", "attrs"):
                df[c] = df[c].astype(object)

    canon = _gene_canon_map(hgnc)
    for col, tcol in (("subject", "subject_type"), ("object", "object_type")):
        g = rels[tcol] == "gene"
        rels.loc[g, col] = canon(rels.loc[g, col])
    g = ents["type"] == "gene"
    ents.loc[g, "id"] = canon(ents.loc[g, "id"])
    g = als["entity_type"] == "gene"
    als.loc[g, "entity_id"] = canon(als.loc[g, "entity_id"])
    roles["entity_id"] = canon(roles["entity_id"])

    # A "gene" that is no gene but a known family/complex id (CollecTRI's NFKB, AP1) takes that type.
    known_genes = set(ents.loc[ents["type"] == "gene", "id"])
    fam = ents[ents["type"].isin(["family", "complex"])].drop_duplicates("id")
    fam_type = {i: t for i, t in zip(fam["id"], fam["type"], strict=True) if i not in known_genes}
    for col, tcol in (("subject", "subject_type"), ("object", "object_type")):
        m = (rels[tcol] == "gene") & rels[col].isin(fam_type)
        rels.loc[m, tcol] = rels.loc[m, col].map(fam_type)

    # Drugs: one entity per salt-stripped base name; every written form stays an alias.
    order = {s: i for i, s in enumerate(_DRUG_NAME_PRIORITY)}
    names = pd.concat(
        [
            ents.loc[ents["type"] == "drug", ["id", "source"]].rename(columns={"id": "name"}),
            rels.loc[rels["subject_type"] == "drug", ["subject", "source"]].rename(columns={"subject": "name"}),
            als.loc[als["entity_type"] == "drug", ["entity_id", "source"]].rename(columns={"entity_id": "name"}),
        ]
    ).drop_duplicates("name")
    names["base"] = names["name"].map(drug_base_key)
    # synonyms (starter: "Sirolimus" is Rapamycin) join the groups of the names they stand for
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.get(x, x) != x:
            parent[x] = parent.get(parent[x], parent[x])
            x = parent[x]
        return x

    syn = als[(als["entity_type"] == "drug") & (als["kind"] == "synonym")]
    for key, eid in zip(syn["key"], syn["entity_id"], strict=True):
        a, b = find(drug_base_key(eid)), find(drug_base_key(key))
        if a != b:
            parent[b] = a
    names["base"] = names["base"].map(find)
    names["prio"] = names["source"].map(lambda s: order.get(s, len(order)))
    first = names.sort_values(["prio"], kind="stable").drop_duplicates("base")
    display = {b: display_drug_name(n) for b, n in zip(first["base"], first["name"], strict=True)}
    to_canon = {n: display[b] for n, b in zip(names["name"], names["base"], strict=True)}
    d = ents["type"] == "drug"
    labels = ents.loc[d].groupby(ents.loc[d, "id"].map(to_canon))["id"].apply(lambda s: sorted(set(s)))
    ents.loc[d, "id"] = ents.loc[d, "id"].map(to_canon)
    ents.loc[d, "name"] = ents.loc[d, "id"]
    d = rels["subject_type"] == "drug"
    rels.loc[d, "subject"] = rels.loc[d, "subject"].map(to_canon)
    d = als["entity_type"] == "drug"
    als.loc[d, "entity_id"] = als.loc[d, "entity_id"].map(to_canon)
    extra = pd.DataFrame(
        [
            {"key": n, "entity_type": "drug", "entity_id": c, "kind": "label", "source": "build"}
            for n, c in to_canon.items()
        ]
        + [
            {"key": c, "entity_type": "drug", "entity_id": c, "kind": "canonical", "source": "build"}
            for c in set(to_canon.values())
        ]
    )
    als = pd.concat([als, extra], ignore_index=True)

    # Entities: explicit rows first (in source order), then every relation endpoint not yet described.
    ends = pd.concat(
        [
            rels[["subject", "subject_type", "source"]].set_axis(["id", "type", "source"], axis=1),
            rels[["object", "object_type", "source"]].set_axis(["id", "type", "source"], axis=1),
        ]
    ).drop_duplicates(["id", "type"])
    ents = pd.concat([ents, ends.assign(name=None, attrs=None)], ignore_index=True)
    drug_rows = ents["type"] == "drug"
    if drug_rows.any():
        ents.loc[drug_rows, "attrs"] = [
            json.dumps({**(json.loads(a) if isinstance(a, str) else {}), "labels": labels.get(i, [i])})
            for i, a in zip(ents.loc[drug_rows, "id"], ents.loc[drug_rows, "attrs"], strict=True)
        ]
    ents = ents.dropna(subset=["id"]).drop_duplicates(["id", "type"]).reset_index(drop=True)
    # entity names known from a later source fill gaps left by an earlier one
    nn = ents.dropna(subset=["name"]).drop_duplicates(["id", "type"])
    named = dict(zip(zip(nn["id"], nn["type"], strict=True), nn["name"], strict=True))
    ents["name"] = [
        n if isinstance(n, str) else named.get((i, t))
        for i, t, n in zip(ents["id"], ents["type"], ents["name"], strict=True)
    ]

    # Gene aliases: every gene entity is a symbol of itself (covers genes known only from a relation).
    gene_ids = ents.loc[ents["type"] == "gene", "id"]
    als = pd.concat(
        [
            als,
            pd.DataFrame(
                {"key": gene_ids, "entity_type": "gene", "entity_id": gene_ids, "kind": "symbol", "source": "build"}
            ),
        ],
        ignore_index=True,
    )
    other = ents.loc[~ents["type"].isin(["gene", "drug"]), ["id", "type"]]
    als = pd.concat(
        [
            als,
            pd.DataFrame(
                {
                    "key": other["id"],
                    "entity_type": other["type"],
                    "entity_id": other["id"],
                    "kind": "id",
                    "source": "build",
                }
            ),
        ],
        ignore_index=True,
    )
    als = als.dropna(subset=["key", "entity_id"])
    als["key"] = _normalize_alias_keys(als["key"].astype(str), als["entity_type"])
    # "symbol" aliases of genes HGNC knows only as aliases of another gene would shadow the alias tier: keep
    # symbol rows for approved symbols and for genes HGNC does not know at all.
    if hgnc is not None:
        approved = set(hgnc.entities["id"])
        hgnc_keys = set(hgnc.aliases["key"].map(normalize_gene_key))
        bad = (
            (als["entity_type"] == "gene")
            & (als["kind"] == "symbol")
            & ~als["entity_id"].isin(approved)
            & als["key"].isin(hgnc_keys)
        )
        als.loc[bad, "kind"] = "alias"
    als = als.drop_duplicates(["key", "entity_type", "entity_id", "kind"]).reset_index(drop=True)
    roles = roles.dropna().drop_duplicates(["entity_id", "role"]).reset_index(drop=True)
    return {"entities": ents, "relations": rels, "aliases": als, "roles": roles}


def _normalize_alias_keys(keys: pd.Series, types: pd.Series) -> pd.Series:
    """Vectorised `normalize_gene_key` / `normalize_drug_key` / `normalize_key` (each unique key once)."""
    out = pd.Series(index=keys.index, dtype=object)
    for is_gene in (True, False):
        m = (types == "gene") if is_gene else (types != "gene")
        sub = keys[m]
        if sub.empty:
            continue
        uniq = pd.Series(pd.unique(sub))
        fn = normalize_gene_key if is_gene else (lambda k: normalize_drug_key(k))
        ascii_simple = uniq.str.fullmatch(r"[\x21-\x7e]+") if is_gene else uniq.str.fullmatch(r"[\x21-\x7e ]+")
        fast = (
            uniq.str.upper().str.replace(r"^(ENS[A-Z]*G\d+)\.\d+$", r"\1", regex=True)
            if is_gene
            else uniq.str.strip().str.replace(r"\s+", " ", regex=True).str.strip("'\"").str.casefold()
        )
        slow = uniq[~ascii_simple.fillna(False)].map(fn)
        res = fast.where(ascii_simple.fillna(False), slow)
        if is_gene:
            res = res.str.strip("'\"")
        out[m] = sub.map(dict(zip(uniq, res, strict=True)))
    return out


# ------------------------------------------------------------------------------------------------ writing


def _write(
    con: duckdb.DuckDBPyConnection, merged: dict[str, pd.DataFrame], infos: list[SourceInfo], meta: dict[str, str]
) -> None:
    rel = merged["relations"]
    rel = rel.assign(
        sign=pd.to_numeric(rel["sign"], errors="coerce").fillna(0).astype("int8"),
        weight=pd.to_numeric(rel["weight"], errors="coerce").astype("float64"),
        evidence=rel["evidence"].where(rel["evidence"].notna(), "").astype(str),
        model_generated=rel["model_generated"].astype(bool),
    )
    con.register("_rel", rel[RELATION_COLUMNS + ["source", "version"]])
    con.execute("""
        CREATE TABLE relations AS SELECT subject, subject_type, predicate, object, object_type,
            CAST(sign AS TINYINT) AS sign, weight, action, source, version, record_id,
            CASE WHEN evidence = '' THEN CAST([] AS VARCHAR[]) ELSE string_split(evidence, chr(9)) END AS evidence,
            model_generated, attrs
        FROM _rel""")
    con.unregister("_rel")
    con.register("_ent", merged["entities"][ENTITY_COLUMNS + ["source"]])
    con.execute("CREATE TABLE entities AS SELECT id, type, name, source, attrs FROM _ent")
    con.unregister("_ent")
    con.register("_al", merged["aliases"][ALIAS_COLUMNS + ["source"]])
    con.execute("CREATE TABLE aliases AS SELECT key, entity_type, entity_id, kind, source FROM _al")
    con.unregister("_al")
    con.register("_ro", merged["roles"][ROLE_COLUMNS + ["source"]])
    con.execute("CREATE TABLE roles AS SELECT entity_id, role, source FROM _ro")
    con.unregister("_ro")
    src = pd.DataFrame([i.model_dump() for i in infos])
    con.register("_src", src)
    con.execute("CREATE TABLE sources AS SELECT * FROM _src")
    con.unregister("_src")
    con.execute("CREATE TABLE meta (key VARCHAR, value VARCHAR)")
    con.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
    con.execute("CREATE INDEX rel_subject ON relations(subject)")
    con.execute("CREATE INDEX rel_object ON relations(object)")


def populate(
    con: duckdb.DuckDBPyConnection,
    source_dir: Path | None,
    *,
    include_starter: bool = True,
    progress: ProgressFn | None = None,
    version: str | None = None,
    only: tuple[str, ...] | None = None,
) -> BuildSummary:
    """Read every source found under `source_dir` (and the starter), write the store into `con`, return a summary
    (coverage is filled in by the caller once a `KnowledgeBase` can read the store)."""
    t0 = time.perf_counter()
    if source_dir is not None and not source_dir.is_dir():
        raise NotFoundError(f"KB source directory {source_dir} does not exist")
    specs = found_sources(source_dir) if source_dir is not None else []
    if only is not None:
        specs = [s for s in specs if s.name in only]
    if source_dir is not None and not specs and not include_starter:
        raise InputError(
            f"no known KB source files under {source_dir} (expected e.g. "
            f"{', '.join(SOURCES[i].paths[0] for i in range(3))})"
        )
    total = len(specs) + (1 if include_starter else 0) + 2
    step = 0

    def tick(label: str) -> None:
        nonlocal step
        step += 1
        if progress is not None:
            progress(label, step, total)

    con.execute("SET enable_progress_bar = false")  # progress is ours to report, on stderr
    ctx = BuildContext()
    tables: list[tuple[str, str, SourceTables]] = []
    infos: list[SourceInfo] = []
    hgnc: SourceTables | None = None
    for spec in specs:
        info = _read_one(spec, source_dir, ctx)  # type: ignore[arg-type]
        infos.append(info[0])
        if info[1] is not None:
            tables.append((spec.name, spec.version, info[1]))
            if spec.name == "hgnc":
                hgnc = info[1]
                ctx.entrez_to_symbol = entrez_to_symbol(hgnc)
        tick(spec.name)
    if include_starter:
        st = read_starter()
        tables.append((STARTER_SOURCE, STARTER_VERSION, st))
        infos.append(
            SourceInfo(
                source=STARTER_SOURCE,
                version=STARTER_VERSION,
                path=str(starter_dir()),
                sha256=starter_hash(),
                n_entities=len(st.entities),
                n_relations=len(st.relations),
                n_aliases=len(st.aliases),
                n_roles=len(st.roles),
                licence="Apache-2.0 (mechcell)",
            )
        )
        tick("starter")
    if not tables:
        raise InputError(
            f"nothing to build: every source under {source_dir} failed to import "
            f"({'; '.join(i.message or '' for i in infos)})"
        )
    merged = _merge(tables, hgnc)
    tick("merge")
    meta = {
        "version": version or content_hash(source_dir, include_starter=include_starter),
        "schema_version": str(STORE_SCHEMA_VERSION),
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source_dir": str(source_dir) if source_dir else "",
        "include_starter": str(include_starter).lower(),
        "mechcell_version": mechcell.__version__,
    }
    _write(con, merged, infos, meta)
    tick("write")
    return BuildSummary(
        version=meta["version"],
        path=None,
        seconds=time.perf_counter() - t0,
        sources=infos,
        n_entities=len(merged["entities"]),
        n_relations=len(merged["relations"]),
    )


def _read_one(spec: SourceSpec, source_dir: Path, ctx: BuildContext) -> tuple[SourceInfo, SourceTables | None]:
    paths = [source_dir / p for p in spec.paths]
    info = SourceInfo(
        source=spec.name,
        version=spec.version,
        path=";".join(str(p) for p in paths),
        sha256=";".join(_file_sha256(p)[:16] for p in paths),
        model_generated=spec.model_generated,
        licence=spec.licence,
    )
    try:
        t = spec.reader(paths, ctx)
    except SourceFormatError as exc:
        return info.model_copy(update={"status": "error", "message": str(exc)}), None
    except Exception as exc:  # a damaged file can raise anything; it is reported and left out whole
        return info.model_copy(update={"status": "error", "message": f"{paths[0]}: {type(exc).__name__}: {exc}"}), None
    return info.model_copy(
        update={
            "n_entities": len(t.entities),
            "n_relations": len(t.relations),
            "n_aliases": len(t.aliases),
            "n_roles": len(t.roles),
            "message": "; ".join(t.notes) or None,
        }
    ), t


def build_store(
    source_dir: Path | None,
    out: Path,
    *,
    include_starter: bool = True,
    progress: ProgressFn | None = None,
    coverage: bool = True,
) -> BuildSummary:
    """Build into `out` atomically (temp file in the same folder, then rename) and return the summary."""
    t0 = time.perf_counter()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.stem}-", suffix=".duckdb.tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # DuckDB must create the file itself
    try:
        con = duckdb.connect(str(tmp))
        try:
            summary = populate(con, source_dir, include_starter=include_starter, progress=progress)
            if coverage:
                from mechcell.knowledge.store import KnowledgeBase

                cov = KnowledgeBase(con, path=out).coverage()
                summary = summary.model_copy(update={"coverage": cov})
                con.execute("INSERT INTO meta VALUES ('coverage', ?)", [cov.model_dump_json()])
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, out)
    except BaseException:
        for p in (tmp, Path(str(tmp) + ".wal")):
            p.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - t0
    return summary.model_copy(update={"path": str(out), "size_bytes": out.stat().st_size, "seconds": seconds})
