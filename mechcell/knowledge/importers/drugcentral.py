"""DrugCentral (2016) drug → target table: action type, curated source (ChEMBL, IUPHAR, label...) and a reference."""

from __future__ import annotations

from pathlib import Path

from mechcell.knowledge.records import SourceTables, join_evidence, read_table

#: DrugCentral action type → (predicate, sign).
ACTIONS: dict[str, tuple[str, int]] = {
    "INHIBITOR": ("inhibits", -1),
    "BLOCKER": ("inhibits", -1),
    "NEGATIVE ALLOSTERIC MODULATOR": ("inhibits", -1),
    "ANTAGONIST": ("antagonist_of", -1),
    "ALLOSTERIC ANTAGONIST": ("antagonist_of", -1),
    "INVERSE AGONIST": ("antagonist_of", -1),
    "AGONIST": ("agonist_of", 1),
    "PARTIAL AGONIST": ("agonist_of", 1),
    "ACTIVATOR": ("activates", 1),
    "POSITIVE ALLOSTERIC MODULATOR": ("activates", 1),
    "POSITIVE MODULATOR": ("activates", 1),
    "OPENER": ("activates", 1),
}


def read_drugcentral(path: Path) -> SourceTables:
    """One relation per drug × gene (`GENE` may list several, `|`-separated); rows without a gene are counted."""
    df = read_table(
        path, "\t", columns=["DRUG_ID", "DRUG_NAME", "GENE", "ACTION_TYPE"], required=["DRUG_ID", "DRUG_NAME"]
    )
    ents: dict[str, dict] = {}
    rels, aliases = [], []
    no_gene = 0
    for row in df.to_dict("records"):
        name = row["DRUG_NAME"].strip()
        if name not in ents:
            ents[name] = {"id": name, "type": "drug", "name": name, "attrs": None}
            aliases.append({"key": name, "entity_type": "drug", "entity_id": name, "kind": "drugcentral"})
        gene_field = row.get("GENE")
        genes = [g.strip() for g in gene_field.split("|") if g.strip()] if isinstance(gene_field, str) else []
        if not genes:
            no_gene += 1
            continue
        action = row["ACTION_TYPE"].strip() if isinstance(row.get("ACTION_TYPE"), str) else None
        pred, sign = ACTIONS.get(action or "", ("binds", 0))
        ref, chembl = row.get("REFERENCE"), row.get("CHEMBL_ID")
        ev = join_evidence(
            [ref if isinstance(ref, str) else None, f"ChEMBL:{chembl}" if isinstance(chembl, str) else None]
        )
        src = row.get("SOURCE") if isinstance(row.get("SOURCE"), str) else ""
        for g in genes:
            rels.append(
                {
                    "subject": name,
                    "subject_type": "drug",
                    "predicate": pred,
                    "object": g,
                    "object_type": "gene",
                    "sign": sign,
                    "action": action,
                    "record_id": f"{row['DRUG_ID']}:{g}:{src}",
                    "evidence": ev,
                    "model_generated": False,
                }
            )
    notes = [f"{no_gene} rows without a target gene left out"] if no_gene else []
    return SourceTables.make(entities=list(ents.values()), relations=rels, aliases=aliases, notes=notes)
