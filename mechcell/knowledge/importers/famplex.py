"""FamPlex: protein families and complexes ("MEK" → MAP2K1, MAP2K2; "PI3K" → its p110 and p85 subunits).

Why: papers, drug labels and LLMs name families ("MEK inhibitor"); verifiers need the member genes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mechcell.knowledge.records import SourceFormatError, SourceTables, read_table

_REL = {"isa": "is_a", "partof": "part_of"}


def read_famplex(entities_path: Path, relations_path: Path) -> SourceTables:
    """Families/complexes as entities (complex when something is `partof` it), isa/partof as relations."""
    ent = read_table(entities_path, ",", names=["id"], required=["id"])
    rel = read_table(
        relations_path, ",", names=["ns1", "id1", "rel", "ns2", "id2"], required=["ns1", "id1", "rel", "ns2", "id2"]
    )
    bad = ~rel["rel"].isin(list(_REL))
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise SourceFormatError(
            relations_path, f"unknown relation {rel['rel'].iloc[i]!r} (expected isa/partof)", line=i + 1
        )
    notes = []
    up = rel["ns1"] == "UP"
    if up.any():
        notes.append(f"{int(up.sum())} UniProt-only members left out (no HGNC symbol)")
    rel = rel[rel["ns1"].isin(["HGNC", "FPLX"]) & (rel["ns2"] == "FPLX")]
    complexes = set(rel.loc[rel["rel"] == "partof", "id2"])
    ids = list(dict.fromkeys(list(ent["id"]) + list(rel["id2"]) + list(rel.loc[rel["ns1"] == "FPLX", "id1"])))
    etype = {i: ("complex" if i in complexes else "family") for i in ids}
    entities = pd.DataFrame({"id": ids, "type": [etype[i] for i in ids], "name": ids, "attrs": None})
    relations = pd.DataFrame(
        {
            "subject": rel["id1"],
            "subject_type": [
                ("gene" if ns == "HGNC" else etype.get(i, "family"))
                for ns, i in zip(rel["ns1"], rel["id1"], strict=True)
            ],
            "predicate": rel["rel"].map(_REL),
            "object": rel["id2"],
            "object_type": [etype[i] for i in rel["id2"]],
            "sign": 0,
            "weight": None,
            "action": rel["rel"],
            "record_id": rel["ns1"] + ":" + rel["id1"] + " " + rel["rel"] + " FPLX:" + rel["id2"],
            "evidence": "FPLX:" + rel["id2"],
            "model_generated": False,
        }
    )
    aliases = pd.DataFrame({"key": ids, "entity_type": [etype[i] for i in ids], "entity_id": ids, "kind": "famplex"})
    return SourceTables.make(entities=entities, relations=relations, aliases=aliases, notes=notes)
