"""PROGENy: pathway-responsive genes with weights (the footprint of a pathway's activity on expression)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mechcell.knowledge.records import SourceFormatError, SourceTables, read_table


def read_progeny(path: Path) -> SourceTables:
    """`gene pathway weight p.value` → pathway → footprint → gene, weight as given, sign = sign(weight)."""
    df = read_table(path, "\t", columns=["gene", "pathway", "weight"], required=["gene", "pathway", "weight"])
    w = pd.to_numeric(df["weight"], errors="coerce")
    bad = ~np.isfinite(w.to_numpy(dtype=float))
    if bad.any():
        i = int(bad.nonzero()[0][0])
        raise SourceFormatError(path, f"weight is not a number: {df['weight'].iloc[i]!r}", line=i + 2)
    pval = df["p.value"] if "p.value" in df.columns else pd.Series([None] * len(df))
    rel = pd.DataFrame(
        {
            "subject": df["pathway"].str.strip(),
            "subject_type": "pathway",
            "predicate": "footprint",
            "object": df["gene"].str.strip(),
            "object_type": "gene",
            "sign": np.sign(w).astype(int),
            "weight": w,
            "action": None,
            "record_id": df["pathway"].str.strip() + ":" + df["gene"].str.strip(),
            "evidence": ["" if p is None or p != p else f"p={p}" for p in pval],
            "model_generated": False,
        }
    )
    paths = sorted(rel["subject"].unique())
    ents = pd.DataFrame({"id": paths, "type": "pathway", "name": paths, "attrs": '{"collection": "progeny"}'})
    aliases = pd.DataFrame({"key": paths, "entity_type": "pathway", "entity_id": paths, "kind": "progeny"})
    return SourceTables.make(entities=ents, relations=rel, aliases=aliases)
