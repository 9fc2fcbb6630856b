"""CollecTRI: signed transcription-factor → target-gene regulons with literature support (PMIDs)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mechcell.knowledge.records import EVIDENCE_SEP, SourceFormatError, SourceTables, read_table


def read_collectri(path: Path) -> SourceTables:
    """`source,target,weight,PMID` → TF → regulates_expression → target, sign = weight (must be ±1)."""
    df = read_table(path, ",", columns=["source", "target", "weight"], required=["source", "target", "weight"])
    w = pd.to_numeric(df["weight"], errors="coerce")
    bad = ~w.isin([1, -1])
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise SourceFormatError(path, f"weight must be 1 or -1, got {df['weight'].iloc[i]!r}", line=i + 2)
    pmids = df["PMID"].fillna("") if "PMID" in df.columns else pd.Series([""] * len(df))
    evidence = [EVIDENCE_SEP.join(f"PMID:{p.strip()}" for p in s.split(";") if p.strip()) for s in pmids]
    rel = pd.DataFrame(
        {
            "subject": df["source"].str.strip(),
            "subject_type": "gene",
            "predicate": "regulates_expression",
            "object": df["target"].str.strip(),
            "object_type": "gene",
            "sign": w.astype(int),
            "weight": None,
            "action": None,
            "record_id": df["source"].str.strip() + "->" + df["target"].str.strip(),
            "evidence": evidence,
            "model_generated": False,
        }
    )
    roles = pd.DataFrame({"entity_id": rel["subject"].unique(), "role": "tf"})
    return SourceTables.make(relations=rel, roles=roles)
