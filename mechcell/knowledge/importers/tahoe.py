"""Tahoe-100M metadata: the drug panel (targets, MoA), cell lines with driver mutations, and the gene vocabulary.

Tahoe's drug targets and MoA were written by a language model (GPT-4o) and checked against a vendor catalogue:
every drug → target relation from here is flagged `model_generated`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from mechcell.knowledge.records import SourceTables, join_evidence, read_parquet

_MOA = {"inhibitor/antagonist": ("inhibits", -1), "activator/agonist": ("activates", 1)}


def _clean(v: object) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    s = str(v).strip()
    return s or None


def read_tahoe_drugs(path: Path) -> SourceTables:
    """Drug labels as entities (attrs: MoA, approval, PubChem CID); comma-separated targets as drug → gene
    relations whose predicate follows `moa-broad` (inhibitor/antagonist → inhibits, activator/agonist →
    activates, otherwise binds)."""
    df = read_parquet(path, ["drug", "targets", "moa-broad", "moa-fine"])
    ents, rels, aliases = [], [], []
    for row in df.to_dict("records"):
        label = _clean(row["drug"])
        if label is None:
            continue
        cid = row.get("pubchem_cid")
        cid_s = None if cid is None or (isinstance(cid, float) and math.isnan(cid)) else str(int(cid))
        broad, fine = _clean(row.get("moa-broad")), _clean(row.get("moa-fine"))
        ents.append(
            {
                "id": label,
                "type": "drug",
                "name": label,
                "attrs": json.dumps(
                    {
                        "moa_broad": broad,
                        "moa_fine": fine,
                        "approved": _clean(row.get("human-approved")),
                        "pubchem_cid": cid_s,
                    }
                ),
            }
        )
        aliases.append({"key": label, "entity_type": "drug", "entity_id": label, "kind": "label"})
        pred, sign = _MOA.get(broad or "", ("binds", 0))
        targets = [t.strip() for t in (_clean(row["targets"]) or "").split(",") if t.strip()]
        ev = join_evidence([f"https://pubchem.ncbi.nlm.nih.gov/compound/{cid_s}" if cid_s else None])
        for t in targets:
            rels.append(
                {
                    "subject": label,
                    "subject_type": "drug",
                    "predicate": pred,
                    "object": t,
                    "object_type": "gene",
                    "sign": sign,
                    "action": fine or broad,
                    "record_id": label,
                    "evidence": ev,
                    "model_generated": True,
                }
            )
    return SourceTables.make(entities=ents, relations=rels, aliases=aliases)


def read_tahoe_cell_lines(path: Path) -> SourceTables:
    """Cell lines (aliases: Cellosaurus and DepMap ids) and their driver mutations (cell line → has_driver → gene)."""
    cols = [
        "cell_name",
        "Cell_ID_DepMap",
        "Cell_ID_Cellosaur",
        "Organ",
        "Driver_Gene_Symbol",
        "Driver_ProtEffect_or_CdnaEffect",
        "Driver_VarType",
        "Driver_Mech_InferDM",
        "Driver_GeneType_DM",
    ]
    df = read_parquet(path, cols)
    ents: dict[str, dict] = {}
    aliases, rels = [], []
    for row in df.to_dict("records"):
        cell = _clean(row["cell_name"])
        if cell is None:
            continue
        if cell not in ents:
            cvcl, depmap = _clean(row["Cell_ID_Cellosaur"]), _clean(row["Cell_ID_DepMap"])
            ents[cell] = {
                "id": cell,
                "type": "cell_line",
                "name": cell,
                "attrs": json.dumps({"cellosaurus": cvcl, "depmap": depmap, "organ": _clean(row["Organ"])}),
            }
            for key, kind in ((cell, "name"), (cvcl, "cellosaurus"), (depmap, "depmap")):
                if key:
                    aliases.append({"key": key, "entity_type": "cell_line", "entity_id": cell, "kind": kind})
        gene = _clean(row["Driver_Gene_Symbol"])
        if gene is None:
            continue
        variant = _clean(row["Driver_ProtEffect_or_CdnaEffect"]) or _clean(row["Driver_VarType"])
        effect, role = _clean(row["Driver_Mech_InferDM"]), _clean(row["Driver_GeneType_DM"])
        cvcl = json.loads(ents[cell]["attrs"])["cellosaurus"]
        rels.append(
            {
                "subject": cell,
                "subject_type": "cell_line",
                "predicate": "has_driver",
                "object": gene,
                "object_type": "gene",
                "sign": {"GoF": 1, "LoF": -1}.get(effect or "", 0),
                "action": variant,
                "record_id": f"{cell}:{gene}:{variant}",
                "evidence": join_evidence([f"Cellosaurus:{cvcl}" if cvcl else None]),
                "model_generated": False,
                "attrs": json.dumps(
                    {"variant": variant, "effect": effect, "gene_role": role, "var_type": _clean(row["Driver_VarType"])}
                ),
            }
        )
    return SourceTables.make(entities=list(ents.values()), relations=rels, aliases=aliases)


def read_tahoe_genes(path: Path) -> SourceTables:
    """Tahoe's gene vocabulary: symbol and Ensembl id of every measured gene (tokens 0–2 are not genes)."""
    df = read_parquet(path, ["gene_symbol", "ensembl_id"])
    df = df[df["ensembl_id"].astype(str).str.startswith("ENS") & df["gene_symbol"].notna()]
    sym = df["gene_symbol"].astype(str).str.strip()
    ens = df["ensembl_id"].astype(str).str.strip()
    entities = pd.DataFrame(
        {"id": sym, "type": "gene", "name": None, "attrs": [json.dumps({"ensembl": e}) for e in ens]}
    )
    aliases = pd.concat(
        [
            pd.DataFrame({"key": sym, "entity_type": "gene", "entity_id": sym, "kind": "tahoe_symbol"}),
            pd.DataFrame({"key": ens, "entity_type": "gene", "entity_id": sym, "kind": "ensembl"}),
        ],
        ignore_index=True,
    )
    return SourceTables.make(entities=entities, aliases=aliases)
