"""The starter knowledge base shipped inside the package: small, hand-written tables of well-established facts.

Why: `make demo` must work on a fresh machine with nothing else installed. Every record carries a reference
(PMID, PMCID, DOI, KEGG map, MSigDB set, FamPlex id, Cellosaurus accession or a database page). The tables were
written from the literature, not extracted from any resource; `tests/knowledge/test_starter_crosscheck.py`
compares them with the real tables when those are present. See README.md beside this file.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import pandas as pd

from mechcell.knowledge.records import EVIDENCE_SEP, SourceFormatError, SourceTables, read_table

STARTER_SOURCE = "mechcell-starter"
STARTER_VERSION = "1"
STARTER_FILES = (
    "drugs.tsv",
    "drug_targets.tsv",
    "processes.tsv",
    "signaling.tsv",
    "regulons.tsv",
    "footprints.tsv",
    "pathway_anchors.tsv",
    "gene_sets.tsv",
    "families.tsv",
    "genes.tsv",
    "cell_line_drivers.tsv",
)
#: Starter drug actions → (predicate, sign).
ACTIONS = {
    "inhibitor": ("inhibits", -1),
    "antagonist": ("antagonist_of", -1),
    "agonist": ("agonist_of", 1),
    "activator": ("activates", 1),
    "binder": ("binds", 0),
}


def starter_dir() -> Path:
    """The folder holding the starter TSVs (works from a wheel as well as from a checkout)."""
    return Path(str(resources.files("mechcell.knowledge.starter")))


def starter_hash(folder: Path | None = None) -> str:
    """sha256 over the starter tables, so a KB built with them records exactly which starter it used."""
    folder = folder or starter_dir()
    h = hashlib.sha256()
    for name in STARTER_FILES:
        h.update(name.encode())
        h.update((folder / name).read_bytes())
    return h.hexdigest()


def _refs(s: str | None) -> str:
    return EVIDENCE_SEP.join(x.strip() for x in (s or "").split(";") if x.strip())


def _read(folder: Path, name: str, columns: list[str]) -> pd.DataFrame:
    df = read_table(
        folder / name,
        "\t",
        columns=columns,
        required=[c for c in columns if c not in ("synonyms", "aliases", "previous", "roles")],
    )
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].str.strip()
    return df


def read_starter(folder: Path | None = None) -> SourceTables:
    """All starter tables as one `SourceTables` (every record has a non-empty reference)."""
    folder = folder or starter_dir()
    ents: list[dict] = []
    rels: list[dict] = []
    aliases: list[dict] = []
    roles: list[dict] = []

    def rel(
        s: str,
        st: str,
        p: str,
        o: str,
        ot: str,
        sign: int,
        ref: str,
        *,
        weight: float | None = None,
        action: str | None = None,
        attrs: dict | None = None,
    ) -> None:
        rels.append(
            {
                "subject": s,
                "subject_type": st,
                "predicate": p,
                "object": o,
                "object_type": ot,
                "sign": sign,
                "weight": weight,
                "action": action,
                "record_id": f"{s}|{p}|{o}",
                "evidence": _refs(ref),
                "model_generated": False,
                "attrs": json.dumps(attrs) if attrs else None,
            }
        )

    drugs = _read(folder, "drugs.tsv", ["drug", "synonyms", "reference"])
    for row in drugs.itertuples(index=False):
        ents.append({"id": row.drug, "type": "drug", "name": row.drug, "attrs": None})
        aliases.append({"key": row.drug, "entity_type": "drug", "entity_id": row.drug, "kind": "label"})
        for syn in (row.synonyms or "").split(";") if isinstance(row.synonyms, str) else []:
            if syn.strip():
                aliases.append({"key": syn.strip(), "entity_type": "drug", "entity_id": row.drug, "kind": "synonym"})
    known = set(drugs["drug"])
    dt = _read(folder, "drug_targets.tsv", ["drug", "target", "action", "reference"])
    for i, row in enumerate(dt.itertuples(index=False)):
        if row.drug not in known:
            raise SourceFormatError(folder / "drug_targets.tsv", f"drug {row.drug!r} is not in drugs.tsv", line=i + 2)
        if row.action not in ACTIONS:
            raise SourceFormatError(
                folder / "drug_targets.tsv", f"unknown action {row.action!r} (have: {', '.join(ACTIONS)})", line=i + 2
            )
        pred, sign = ACTIONS[row.action]
        rel(row.drug, "drug", pred, row.target, "gene", sign, row.reference, action=row.action)

    proc = _read(folder, "processes.tsv", ["id", "name", "reference"])
    processes = set(proc["id"])
    ents += [
        {"id": r.id, "type": "process", "name": r.name, "attrs": json.dumps({"reference": r.reference})}
        for r in proc.itertuples(index=False)
    ]
    aliases += [{"key": r.id, "entity_type": "process", "entity_id": r.id, "kind": "id"} for r in proc.itertuples()]

    def ntype(n: str) -> str:
        return "process" if n in processes else "gene"

    sig = _read(folder, "signaling.tsv", ["source", "target", "sign", "mechanism", "reference"])
    for i, row in enumerate(sig.itertuples(index=False)):
        if row.sign not in ("1", "-1"):
            raise SourceFormatError(folder / "signaling.tsv", f"sign must be 1 or -1, got {row.sign!r}", line=i + 2)
        s = int(row.sign)
        rel(
            row.source,
            ntype(row.source),
            "activates" if s > 0 else "inhibits",
            row.target,
            ntype(row.target),
            s,
            row.reference,
            action=row.mechanism,
        )

    reg = _read(folder, "regulons.tsv", ["tf", "target", "sign", "reference"])
    for i, row in enumerate(reg.itertuples(index=False)):
        if row.sign not in ("1", "-1"):
            raise SourceFormatError(folder / "regulons.tsv", f"sign must be 1 or -1, got {row.sign!r}", line=i + 2)
        rel(row.tf, "gene", "regulates_expression", row.target, "gene", int(row.sign), row.reference)
    roles += [{"entity_id": t, "role": "tf"} for t in reg["tf"].unique()]

    fp = _read(folder, "footprints.tsv", ["pathway", "gene", "weight", "reference"])
    for i, row in enumerate(fp.itertuples(index=False)):
        try:
            w = float(row.weight)
        except ValueError:
            raise SourceFormatError(
                folder / "footprints.tsv", f"weight {row.weight!r} is not a number", i + 2
            ) from None
        rel(row.pathway, "pathway", "footprint", row.gene, "gene", 1 if w > 0 else -1, row.reference, weight=w)
    anch = _read(folder, "pathway_anchors.tsv", ["gene", "pathway", "reference"])
    for row in anch.itertuples(index=False):
        rel(row.gene, "gene", "activity_anchor", row.pathway, "pathway", 1, row.reference)
    pathways = sorted(set(fp["pathway"]) | set(anch["pathway"]))
    ents += [{"id": p, "type": "pathway", "name": p, "attrs": None} for p in pathways]
    aliases += [{"key": p, "entity_type": "pathway", "entity_id": p, "kind": "name"} for p in pathways]

    gs = _read(folder, "gene_sets.tsv", ["gene_set", "gene", "reference"])
    for row in gs.itertuples(index=False):
        rel(row.gene, "gene", "member_of", row.gene_set, "gene_set", 0, row.reference)
    for name in gs["gene_set"].unique():
        ents.append({"id": name, "type": "gene_set", "name": name, "attrs": json.dumps({"collection": "starter"})})
        aliases.append({"key": name, "entity_type": "gene_set", "entity_id": name, "kind": "id"})

    fam = _read(folder, "families.tsv", ["family", "member", "relation", "reference"])
    ftype = {
        f: ("complex" if (fam.loc[fam["family"] == f, "relation"] == "part_of").any() else "family")
        for f in fam["family"].unique()
    }
    for i, row in enumerate(fam.itertuples(index=False)):
        if row.relation not in ("is_a", "part_of"):
            raise SourceFormatError(
                folder / "families.tsv", f"relation must be is_a or part_of, got {row.relation!r}", line=i + 2
            )
        rel(row.member, ftype.get(row.member, "gene"), row.relation, row.family, ftype[row.family], 0, row.reference)
    for f, t in ftype.items():
        ents.append({"id": f, "type": t, "name": f, "attrs": None})
        aliases.append({"key": f, "entity_type": t, "entity_id": f, "kind": "famplex"})

    genes = _read(folder, "genes.tsv", ["symbol", "aliases", "previous", "roles", "reference"])
    for row in genes.itertuples(index=False):
        aliases.append({"key": row.symbol, "entity_type": "gene", "entity_id": row.symbol, "kind": "symbol"})
        for kind, col in (("alias", row.aliases), ("previous", row.previous)):
            for a in (col or "").split(";") if isinstance(col, str) else []:
                if a.strip():
                    aliases.append({"key": a.strip(), "entity_type": "gene", "entity_id": row.symbol, "kind": kind})
        for ro in (row.roles or "").split(";") if isinstance(row.roles, str) else []:
            if ro.strip():
                roles.append({"entity_id": row.symbol, "role": ro.strip()})

    cl = _read(
        folder,
        "cell_line_drivers.tsv",
        ["cell_line", "cellosaurus", "gene", "variant", "effect", "gene_role", "reference"],
    )
    for row in cl.itertuples(index=False):
        rels.append(
            {
                "subject": row.cell_line,
                "subject_type": "cell_line",
                "predicate": "has_driver",
                "object": row.gene,
                "object_type": "gene",
                "sign": {"GoF": 1, "LoF": -1}.get(row.effect, 0),
                "weight": None,
                "action": row.variant,
                "record_id": f"{row.cell_line}:{row.gene}:{row.variant}",
                "evidence": _refs(row.reference),
                "model_generated": False,
                "attrs": json.dumps({"variant": row.variant, "effect": row.effect, "gene_role": row.gene_role}),
            }
        )
    for cell, cvcl in cl[["cell_line", "cellosaurus"]].drop_duplicates().itertuples(index=False):
        ents.append({"id": cell, "type": "cell_line", "name": cell, "attrs": json.dumps({"cellosaurus": cvcl})})
        aliases += [
            {"key": cell, "entity_type": "cell_line", "entity_id": cell, "kind": "name"},
            {"key": cvcl, "entity_type": "cell_line", "entity_id": cell, "kind": "cellosaurus"},
        ]
    # every gene named anywhere in the starter is part of its vocabulary
    gene_ids = (
        {r["subject"] for r in rels if r["subject_type"] == "gene"}
        | {r["object"] for r in rels if r["object_type"] == "gene"}
        | set(genes["symbol"])
    )
    ents += [{"id": g, "type": "gene", "name": None, "attrs": None} for g in sorted(gene_ids)]
    aliases += [{"key": g, "entity_type": "gene", "entity_id": g, "kind": "symbol"} for g in sorted(gene_ids)]
    return SourceTables.make(entities=ents, relations=rels, aliases=aliases, roles=roles)
