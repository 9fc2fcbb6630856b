"""HGNC: current symbols, names, aliases, previous symbols and Entrez / Ensembl / UniProt ids of human genes.

The backbone of gene resolution: every other source's gene names are mapped to the current HGNC symbol.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from mechcell.knowledge.records import SourceTables, read_table

COL_ID, COL_SYMBOL, COL_NAME, COL_STATUS = "HGNC ID", "Approved symbol", "Approved name", "Status"
COL_ALIAS, COL_PREV = "Alias symbols", "Previous symbols"
COL_ENTREZ = "NCBI Gene ID(supplied by NCBI)"
COL_UNIPROT = "UniProt ID(supplied by UniProt)"
COL_ENSEMBL = "Ensembl gene ID"
COL_LOCUS = "Locus type"


def _explode(df: pd.DataFrame, col: str, kind: str, sep: str = ",") -> pd.DataFrame:
    s = df[[col, COL_SYMBOL]].dropna(subset=[col])
    s = s.assign(key=s[col].str.split(sep)).explode("key")
    s["key"] = s["key"].str.strip()
    s = s[s["key"] != ""]
    return pd.DataFrame({"key": s["key"], "entity_type": "gene", "entity_id": s[COL_SYMBOL], "kind": kind})


def read_hgnc(path: Path) -> SourceTables:
    """Approved genes as entities; symbol, hgnc_id, entrez, ensembl, uniprot, previous and alias as aliases."""
    df = read_table(
        path,
        "\t",
        columns=[COL_ID, COL_SYMBOL, COL_STATUS, COL_ALIAS, COL_PREV, COL_ENTREZ, COL_ENSEMBL, COL_UNIPROT],
        required=[COL_ID, COL_SYMBOL, COL_STATUS],
    )
    df = df[df[COL_STATUS] == "Approved"].copy()
    locus = df[COL_LOCUS] if COL_LOCUS in df.columns else pd.Series([None] * len(df), index=df.index)
    attrs = [json.dumps({"hgnc_id": h, "locus_type": lt}) for h, lt in zip(df[COL_ID], locus, strict=True)]
    entities = pd.DataFrame(
        {"id": df[COL_SYMBOL], "type": "gene", "name": df[COL_NAME] if COL_NAME in df.columns else None, "attrs": attrs}
    )
    aliases = pd.concat(
        [
            pd.DataFrame({"key": df[COL_SYMBOL], "entity_type": "gene", "entity_id": df[COL_SYMBOL], "kind": "symbol"}),
            pd.DataFrame({"key": df[COL_ID], "entity_type": "gene", "entity_id": df[COL_SYMBOL], "kind": "hgnc_id"}),
            _explode(df, COL_ENTREZ, "entrez"),
            _explode(df, COL_ENSEMBL, "ensembl"),
            _explode(df, COL_UNIPROT, "uniprot"),
            _explode(df, COL_PREV, "previous"),
            _explode(df, COL_ALIAS, "alias"),
        ],
        ignore_index=True,
    )
    return SourceTables.make(entities=entities, aliases=aliases)


def entrez_to_symbol(tables: SourceTables) -> dict[str, str]:
    """Entrez id → current symbol, from `read_hgnc`'s aliases (used to read WikiPathways)."""
    a = tables.aliases
    a = a[a["kind"] == "entrez"]
    return dict(zip(a["key"].astype(str), a["entity_id"].astype(str), strict=True))
