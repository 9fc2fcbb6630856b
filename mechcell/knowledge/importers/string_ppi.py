"""STRING v12 physical/functional interactions (subset without text mining), with channel scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mechcell.knowledge.records import SourceFormatError, SourceTables, read_table

_CHANNELS = ["experiments", "database", "coexpression", "homology", "cooccurence", "fusion", "neighborhood"]


def read_string(path: Path, *, compression: str | None = "gzip") -> SourceTables:
    """`gene1 gene2 ... combined_score` → gene1 interacts_with gene2, weight = combined_score / 1000."""
    df = read_table(
        path,
        "\t",
        compression=compression,
        columns=["gene1", "gene2", "combined_score"],
        required=["gene1", "gene2", "combined_score"],
    )
    score = pd.to_numeric(df["combined_score"], errors="coerce")
    bad = ~np.isfinite(score.to_numpy(dtype=float))
    if bad.any():
        i = int(bad.nonzero()[0][0])
        raise SourceFormatError(path, f"combined_score is not a number: {df['combined_score'].iloc[i]!r}", line=i + 2)
    chans = [c for c in _CHANNELS if c in df.columns]
    attrs = (
        [
            json.dumps({c: float(v) for c, v in zip(chans, row, strict=True) if v and float(v) > 0})
            for row in df[chans].itertuples(index=False)
        ]
        if chans
        else None
    )
    e1 = df["gene1_entrez"] if "gene1_entrez" in df.columns else df["gene1"]
    e2 = df["gene2_entrez"] if "gene2_entrez" in df.columns else df["gene2"]
    rel = pd.DataFrame(
        {
            "subject": df["gene1"].str.strip(),
            "subject_type": "gene",
            "predicate": "interacts_with",
            "object": df["gene2"].str.strip(),
            "object_type": "gene",
            "sign": 0,
            "weight": score / 1000.0,
            "action": None,
            "record_id": e1.astype(str).str.replace(".0", "", regex=False)
            + "."
            + e2.astype(str).str.replace(".0", "", regex=False),
            "evidence": "",
            "model_generated": False,
            "attrs": attrs,
        }
    )
    return SourceTables.make(relations=rel)
