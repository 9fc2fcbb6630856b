"""GMT gene-set collections: MSigDB Hallmark, Reactome, GO Biological Process (Enrichr), WikiPathways.

WikiPathways lists Entrez ids; they are mapped to symbols with HGNC (`id_to_symbol`), unmapped ids are counted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from mechcell.knowledge.records import SourceFormatError, SourceTables, check_ends_with_newline

COLLECTIONS = ("hallmark", "reactome", "go_bp", "wikipathways")
_GO_ID = re.compile(r"\s*\((GO:\d+)\)\s*$")


def _ident(collection: str, name: str, desc: str) -> tuple[str, str, str | None]:
    """(id, display name, url) of one set line, by the collection's own conventions."""
    if collection == "reactome":
        return (desc if desc.startswith("R-") else name), name.replace("-", " "), None
    if collection == "go_bp":
        m = _GO_ID.search(name)
        return (m.group(1), name[: m.start()], None) if m else (name, name, None)
    if collection == "wikipathways":
        parts = name.split("%")
        wp = next((p for p in parts if re.fullmatch(r"WP\d+", p)), name)
        return wp, parts[0], desc or None
    return name, name, desc or None


def read_gmt(path: Path, collection: str, id_to_symbol: Mapping[str, str] | None = None) -> SourceTables:
    """One gene set per line: `name<TAB>description<TAB>gene<TAB>gene...`; members become gene → member_of → set."""
    if collection not in COLLECTIONS:
        raise ValueError(f"unknown GMT collection {collection!r} (have: {COLLECTIONS})")
    check_ends_with_newline(path)
    etype = "process" if collection == "go_bp" else "gene_set"
    ents, aliases = [], []
    subj: list[str] = []
    obj: list[str] = []
    unmapped = 0
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SourceFormatError(path, f"not UTF-8 text: {exc}") from exc
    seen: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        genes = [g.strip() for g in fields[2:] if g.strip()]
        if len(fields) < 3 or not fields[0].strip() or not genes:
            raise SourceFormatError(
                path,
                f"a GMT line needs a name, a description and at least one gene (got {len(fields)} field(s))",
                line=lineno,
            )
        sid, name, url = _ident(collection, fields[0].strip(), fields[1].strip())
        if sid in seen:
            continue
        seen.add(sid)
        if id_to_symbol is not None:
            mapped = [id_to_symbol.get(g) for g in genes]
            unmapped += sum(m is None for m in mapped)
            genes = [m for m in mapped if m]
        genes = list(dict.fromkeys(genes))
        ents.append(
            {
                "id": sid,
                "type": etype,
                "name": name,
                "attrs": json.dumps({"collection": collection, "url": url, "size": len(genes)}),
            }
        )
        aliases.append({"key": sid, "entity_type": etype, "entity_id": sid, "kind": "id"})
        if name != sid:
            aliases.append({"key": name, "entity_type": etype, "entity_id": sid, "kind": "name"})
        subj.extend(genes)
        obj.extend([sid] * len(genes))
    rel = pd.DataFrame(
        {
            "subject": subj,
            "subject_type": "gene",
            "predicate": "member_of",
            "object": obj,
            "object_type": etype,
            "sign": 0,
            "weight": None,
            "action": None,
            "record_id": obj,
            "evidence": "",
            "model_generated": False,
        }
    )
    notes = [f"{unmapped} member ids without an HGNC symbol left out"] if unmapped else []
    return SourceTables.make(entities=ents, relations=rel, aliases=aliases, notes=notes)
