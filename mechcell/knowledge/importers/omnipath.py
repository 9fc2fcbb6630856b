"""OmniPath signed prior-knowledge network (as packaged by cosmosR's `meta_network`).

Nodes are gene symbols, complexes written as members joined by `_` (e.g. `IFNAR1_IFNAR2`), metabolites
(`Metab__HMDB0000220_c`) and the metabolic reactions of an enzyme (`Gene9130__HMOX1`, type `reaction`). Each
complex also gets `member → part_of_complex → complex` edges (sign +1) so that a path can start from a drug's
target gene and go on through the complexes it belongs to.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from mechcell.knowledge.records import SourceFormatError, SourceTables, read_table

_REACTION = re.compile(r"^Gene\d+__")


def node_type(name: str) -> str:
    if name.startswith("Metab__"):
        return "metabolite"
    if _REACTION.match(name):
        return "reaction"
    if "_" in name:
        return "complex"
    return "gene"


def read_omnipath_pkn(path: Path) -> SourceTables:
    """`source interaction target` → source activates (+1) / inhibits (−1) target."""
    df = read_table(
        path, "\t", columns=["source", "interaction", "target"], required=["source", "interaction", "target"]
    )
    s = pd.to_numeric(df["interaction"], errors="coerce")
    bad = ~s.isin([1, -1])
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise SourceFormatError(path, f"interaction must be 1 or -1, got {df['interaction'].iloc[i]!r}", line=i + 2)
    src, tgt = df["source"].str.strip(), df["target"].str.strip()
    stype, ttype = src.map(node_type), tgt.map(node_type)
    rel = pd.DataFrame(
        {
            "subject": src,
            "subject_type": stype,
            "predicate": s.map({1: "activates", -1: "inhibits"}),
            "object": tgt,
            "object_type": ttype,
            "sign": s.astype(int),
            "weight": None,
            "action": None,
            "record_id": src + ("|" + s.astype(int).astype(str) + "|") + tgt,
            "evidence": "",
            "model_generated": False,
        }
    )
    complexes = sorted(set(src[stype == "complex"]) | set(tgt[ttype == "complex"]))
    members = [(m, c) for c in complexes for m in dict.fromkeys(c.split("_")) if m]
    part = pd.DataFrame(
        {
            "subject": [m for m, _ in members],
            "subject_type": "gene",
            "predicate": "part_of_complex",
            "object": [c for _, c in members],
            "object_type": "complex",
            "sign": 1,
            "weight": None,
            "action": "member",
            "record_id": [f"{m} in {c}" for m, c in members],
            "evidence": "",
            "model_generated": False,
        }
    )
    ents = pd.DataFrame({"id": complexes, "type": "complex", "name": complexes, "attrs": None})
    return SourceTables.make(entities=ents, relations=pd.concat([rel, part], ignore_index=True))
