"""Cross-check the hand-written starter tables against the real tables in ../shared/kb (skipped when absent).

For every kind of starter record the test reports the agreement rate (run with `-s` to see it) and fails on any
contradiction that is not one of the documented disputes below, so a wrong starter fact cannot slip in unnoticed.
Absence from a real table is not a contradiction (DrugCentral is from 2016; CollecTRI does not hold every edge).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mechcell.knowledge.importers.collectri import read_collectri
from mechcell.knowledge.importers.drugcentral import read_drugcentral
from mechcell.knowledge.importers.famplex import read_famplex
from mechcell.knowledge.importers.gmt import read_gmt
from mechcell.knowledge.importers.hgnc import read_hgnc
from mechcell.knowledge.importers.omnipath import read_omnipath_pkn
from mechcell.knowledge.importers.progeny import read_progeny
from mechcell.knowledge.importers.tahoe import read_tahoe_cell_lines, read_tahoe_drugs
from mechcell.knowledge.resolve import drug_base_key
from mechcell.knowledge.starter import read_starter, starter_dir

#: Starter signalling edges whose sign OmniPath's cosmos network reverses. Each is a textbook mechanism stated by
#: the reference the starter cites; in a full build both records are kept and the merged edge gets sign 0.
DISPUTED_SIGNALLING = {
    ("MAPK1", "SOS1"),
    ("MAPK3", "SOS1"),  # ERK's inhibitory feedback phosphorylation of SOS (PMC3713778)
    ("DUSP6", "MAPK3"),  # DUSP6 dephosphorylates and inactivates ERK1/2 (PMC3713778)
    ("PTEN", "AKT3"),  # PTEN removes the PIP3 that activates every AKT (KEGG hsa04151)
    ("AKT1", "FOXO3"),
    ("AKT1", "GSK3B"),  # inhibitory phosphorylations (PMID 17604717)
    ("SOCS1", "JAK1"),
    ("SOCS1", "JAK2"),  # SOCS1 inhibits JAK kinase activity (KEGG hsa04630)
    ("SUFU", "GLI1"),  # SUFU sequesters and represses GLI (KEGG hsa04340)
}


def _report(what: str, n: int, checked: int, agree: int) -> None:
    rate = agree / checked if checked else float("nan")
    print(
        f"\nstarter cross-check — {what}: {n} records, {checked} present in the real table, {agree} agree ({rate:.1%})"
    )


@pytest.fixture(scope="module")
def starter_rel() -> pd.DataFrame:
    return read_starter().relations


def test_starter_genes_are_current_hgnc_symbols(shared_kb_dir: Path, starter_rel: pd.DataFrame) -> None:
    approved = set(read_hgnc(shared_kb_dir / "ids/hgnc_entries.tsv").entities["id"])
    r = starter_rel
    genes = set(r.loc[r["subject_type"] == "gene", "subject"]) | set(r.loc[r["object_type"] == "gene", "object"])
    assert sorted(g for g in genes if g not in approved) == []


def test_regulons_agree_with_collectri(shared_kb_dir: Path, starter_rel: pd.DataFrame) -> None:
    c = read_collectri(shared_kb_dir / "regulons/collectri.csv").relations
    real = dict(zip(zip(c["subject"], c["object"], strict=True), c["sign"], strict=True))
    reg = starter_rel[starter_rel["predicate"] == "regulates_expression"]
    both = [
        (a, b, s, real[(a, b)])
        for a, b, s in zip(reg["subject"], reg["object"], reg["sign"], strict=True)
        if (a, b) in real
    ]
    agree = sum(s == t for *_, s, t in both)
    _report("TF → target signs vs CollecTRI", len(reg), len(both), agree)
    assert [x for x in both if x[2] != x[3]] == []
    assert len(both) >= 0.6 * len(reg)  # most starter edges are in CollecTRI at all
    assert set(reg["subject"]) <= set(c["subject"])  # every starter TF has a CollecTRI regulon


def test_signalling_agrees_with_omnipath(shared_kb_dir: Path, starter_rel: pd.DataFrame) -> None:
    o = read_omnipath_pkn(shared_kb_dir / "networks/omnipath_signed_pkn.tsv").relations
    real: dict[tuple[str, str], set[int]] = {}
    for a, b, s in zip(o["subject"], o["object"], o["sign"], strict=True):
        real.setdefault((a, b), set()).add(int(s))
    sig = starter_rel[
        starter_rel["predicate"].isin(["activates", "inhibits"]) & (starter_rel["subject_type"] != "drug")
    ]
    both = [(a, b, s) for a, b, s in zip(sig["subject"], sig["object"], sig["sign"], strict=True) if (a, b) in real]
    agree = sum(s in real[(a, b)] for a, b, s in both)
    _report("signalling edge signs vs OmniPath", len(sig), len(both), agree)
    contradicted = {(a, b) for a, b, s in both if s not in real[(a, b)]}
    assert contradicted == DISPUTED_SIGNALLING


def test_drug_targets_appear_in_drugcentral_or_tahoe(shared_kb_dir: Path) -> None:
    dc = read_drugcentral(shared_kb_dir / "drugs/drugcentral_2016_drug_target.tsv").relations
    td = read_tahoe_drugs(shared_kb_dir / "tahoe/drug_metadata.parquet")
    known = {(drug_base_key(d), g) for d, g in zip(dc["subject"], dc["object"], strict=True)}
    known |= {(drug_base_key(d), g) for d, g in zip(td.relations["subject"], td.relations["object"], strict=True)}
    drugs = pd.read_csv(starter_dir() / "drugs.tsv", sep="\t", dtype=str, keep_default_na=False)
    names = {d: [d] + [s for s in syn.split(";") if s] for d, syn in zip(drugs["drug"], drugs["synonyms"], strict=True)}
    dt = pd.read_csv(starter_dir() / "drug_targets.tsv", sep="\t", dtype=str)
    found = [
        any((drug_base_key(n), g) in known for n in names[d]) for d, g in zip(dt["drug"], dt["target"], strict=True)
    ]
    _report("drug → target pairs in DrugCentral 2016 or Tahoe", len(dt), len(dt), sum(found))
    assert sum(found) / len(dt) >= 0.9
    tahoe = {drug_base_key(x) for x in td.entities["id"]}
    assert [d for d in names if drug_base_key(d) not in tahoe] == []  # every starter drug is in the Tahoe panel


def test_footprint_signs_agree_with_progeny(shared_kb_dir: Path, starter_rel: pd.DataFrame) -> None:
    pg = read_progeny(shared_kb_dir / "footprints/progeny_human_top500.tsv").relations
    real = dict(zip(zip(pg["subject"], pg["object"], strict=True), pg["sign"], strict=True))
    fp = starter_rel[starter_rel["predicate"] == "footprint"]
    both = [
        (a, b, s, real[(a, b)])
        for a, b, s in zip(fp["subject"], fp["object"], fp["sign"], strict=True)
        if (a, b) in real
    ]
    agree = sum(s == t for *_, s, t in both)
    _report("footprint gene signs vs PROGENy top-500", len(fp), len(both), agree)
    assert agree == len(both) and len(both) >= 0.5 * len(fp)


def test_cell_lines_agree_with_tahoe(shared_kb_dir: Path) -> None:
    cl = read_tahoe_cell_lines(shared_kb_dir / "tahoe/cell_line_metadata.parquet")
    cvcl = {e: json.loads(a)["cellosaurus"] for e, a in zip(cl.entities["id"], cl.entities["attrs"], strict=True)}
    drv = pd.read_csv(starter_dir() / "cell_line_drivers.tsv", sep="\t", dtype=str)
    assert {(c, x) for c, x in zip(drv["cell_line"], drv["cellosaurus"], strict=True) if cvcl.get(c) != x} == set()
    r = cl.relations
    variants: dict[tuple[str, str], set[str]] = {}
    for a, b, x in zip(r["subject"], r["object"], r["attrs"], strict=True):
        variants.setdefault((a, b), set()).add(json.loads(x)["variant"])
    present = [
        (c, g, v) for c, g, v in zip(drv["cell_line"], drv["gene"], drv["variant"], strict=True) if (c, g) in variants
    ]
    # "unknown" / "AMP": the starter names the driver without a protein change
    same = [x for x in present if x[2] in variants[(x[0], x[1])] or x[2] in ("unknown", "AMP")]
    _report("cell-line drivers vs Tahoe metadata", len(drv), len(present), len(same))
    assert len(present) >= 0.9 * len(drv)
    assert [x for x in present if x not in same] == []


def test_families_agree_with_famplex(shared_kb_dir: Path) -> None:
    fx = read_famplex(shared_kb_dir / "ids/famplex/entities.csv", shared_kb_dir / "ids/famplex/relations.csv")
    members: dict[str, set[str]] = {}
    for a, b in zip(fx.relations["subject"], fx.relations["object"], strict=True):
        members.setdefault(b, set()).add(a)

    def expand(f: str, seen: frozenset[str] = frozenset()) -> set[str]:
        out: set[str] = set()
        for m in members.get(f, ()):
            out |= expand(m, seen | {m}) if m in members and m not in seen else {m}
        return out

    fam = pd.read_csv(starter_dir() / "families.tsv", sep="\t", dtype=str)
    in_fx = fam[fam["family"].isin(members)]
    ok = sum(m in expand(f) for f, m in zip(in_fx["family"], in_fx["member"], strict=True))
    _report("family members vs FamPlex", len(fam), len(in_fx), ok)
    assert ok / len(in_fx) >= 0.95


def test_msigdb_references_name_real_hallmark_sets(shared_kb_dir: Path, starter_rel: pd.DataFrame) -> None:
    names = set(read_gmt(shared_kb_dir / "genesets/hallmark_v7.0.gmt", "hallmark").entities["id"])
    cited = {e.split(":", 1)[1] for ev in starter_rel["evidence"] for e in ev.split("\t") if e.startswith("MSigDB:")}
    assert cited and cited <= names
