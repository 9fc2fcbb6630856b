"""Every importer on a hand-made file (always) and on its real file in ../shared/kb (skipped when absent).

Real-file checks compare against counts computed independently from the raw file (line counts, distinct values),
never against numbers copied from a previous run.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from mechcell.knowledge.importers import SOURCES, BuildContext, found_sources
from mechcell.knowledge.importers.collectri import read_collectri
from mechcell.knowledge.importers.drugcentral import read_drugcentral
from mechcell.knowledge.importers.famplex import read_famplex
from mechcell.knowledge.importers.gene_roles import read_kinase_list, read_tf_list
from mechcell.knowledge.importers.gmt import read_gmt
from mechcell.knowledge.importers.hgnc import entrez_to_symbol, read_hgnc
from mechcell.knowledge.importers.omnipath import node_type, read_omnipath_pkn
from mechcell.knowledge.importers.progeny import read_progeny
from mechcell.knowledge.importers.string_ppi import read_string
from mechcell.knowledge.importers.tahoe import read_tahoe_cell_lines, read_tahoe_drugs, read_tahoe_genes
from mechcell.knowledge.records import SourceFormatError
from mechcell.knowledge.starter import read_starter, starter_dir

# ---------------------------------------------------------------------------------------------- hand-made files


def test_registry_finds_every_mini_file(mini_dir: Path) -> None:
    assert [s.name for s in found_sources(mini_dir)] == [s.name for s in SOURCES]


def test_hgnc_mini(mini_dir: Path) -> None:
    t = read_hgnc(mini_dir / "ids/hgnc_entries.tsv")
    assert "OLDGENE" not in set(t.entities["id"])  # withdrawn symbols are not genes
    a = t.aliases
    assert set(a[(a["key"] == "MEK1")]["entity_id"]) == {"MAP2K1"}
    assert set(a[(a["kind"] == "previous") & (a["key"] == "ERO1L")]["entity_id"]) == {"ERO1A"}
    assert set(a[(a["kind"] == "alias") & (a["key"] == "p21")]["entity_id"]) == {"CDKN1A", "TCEAL1"}
    assert entrez_to_symbol(t)["7157"] == "TP53"
    assert set(a[a["kind"] == "ensembl"]["key"]) >= {"ENSG00000141510"}


def test_famplex_mini(mini_dir: Path) -> None:
    t = read_famplex(mini_dir / "ids/famplex/entities.csv", mini_dir / "ids/famplex/relations.csv")
    r = t.relations
    assert set(r[r["object"] == "MEK"]["subject"]) == {"MAP2K1", "MAP2K2"}
    types = dict(zip(t.entities["id"], t.entities["type"], strict=True))
    assert types["IFNAR"] == "complex" and types["MEK"] == "family"
    assert any("UniProt" in n for n in t.notes)


def test_collectri_mini(mini_dir: Path) -> None:
    t = read_collectri(mini_dir / "regulons/collectri.csv")
    r = t.relations.set_index(["subject", "object"])
    assert r.loc[("STAT1", "ISG15"), "sign"] == 1 and r.loc[("STAT1", "CDKN1A"), "sign"] == -1
    assert r.loc[("TP53", "CDKN1A"), "evidence"] == "PMID:8242752\tPMID:7834749"
    assert set(t.roles["entity_id"]) == {"ETS1", "STAT1", "TP53", "NFKB"}


def test_progeny_mini(mini_dir: Path) -> None:
    t = read_progeny(mini_dir / "footprints/progeny_human_top500.tsv")
    r = t.relations.set_index(["subject", "object"])
    assert r.loc[("MAPK", "DUSP6"), "weight"] == pytest.approx(3.5)
    assert r.loc[("p53", "DUSP6"), "sign"] == -1
    assert set(t.entities["id"]) == {"MAPK", "JAK-STAT", "p53"}


def test_omnipath_mini(mini_dir: Path) -> None:
    t = read_omnipath_pkn(mini_dir / "networks/omnipath_signed_pkn.tsv")
    r = t.relations
    signed = r[r["predicate"].isin(["activates", "inhibits"])]
    assert len(signed) == 16
    assert set(r[r["predicate"] == "part_of_complex"]["subject"]) == {"IFNAR1", "IFNAR2"}
    assert node_type("Metab__HMDB0000001_c") == "metabolite" and node_type("Gene1__TP53") == "reaction"
    assert node_type("IFNAR1_IFNAR2") == "complex" and node_type("TP53") == "gene"


def test_string_mini(mini_dir: Path) -> None:
    t = read_string(mini_dir / "networks/string_v12_subset.tsv.gz")
    r = t.relations.set_index(["subject", "object"])
    assert r.loc[("MAP2K1", "MAPK1"), "weight"] == pytest.approx(0.999)
    assert r.loc[("MAP2K1", "MAPK1"), "record_id"] == "5604.5594"


def test_drugcentral_mini(mini_dir: Path) -> None:
    t = read_drugcentral(mini_dir / "drugs/drugcentral_2016_drug_target.tsv")
    r = t.relations
    assert set(r[r["subject"] == "trametinib"]["object"]) == {"MAP2K1", "MAP2K2"}
    assert set(r[r["subject"] == "interferon beta-1a"]["object"]) == {"IFNAR1", "IFNAR2"}
    assert set(r[r["subject"] == "interferon beta-1a"]["predicate"]) == {"agonist_of"}
    assert "mysterium" in set(t.entities["id"]) and any("without a target gene" in n for n in t.notes)


def test_gmt_mini(mini_dir: Path) -> None:
    h = read_gmt(mini_dir / "genesets/hallmark_v7.0.gmt", "hallmark")
    assert sorted(h.relations[h.relations["object"] == "HALLMARK_P53_PATHWAY"]["subject"]) == ["CDKN1A", "TP53"]
    go = read_gmt(mini_dir / "genesets/go_bp_2021_enrichr.gmt", "go_bp")
    assert set(go.entities["id"]) == {"GO:0070371"} and set(go.entities["type"]) == {"process"}
    rx = read_gmt(mini_dir / "genesets/reactome_2021-10.gmt", "reactome")
    assert set(rx.entities["id"]) == {"R-HSA-1"}
    wp = read_gmt(
        mini_dir / "genesets/wikipathways_2022-03-10_entrez.gmt",
        "wikipathways",
        {"3456": "IFNB1", "3454": "IFNAR1", "9636": "ISG15"},
    )
    assert set(wp.relations["subject"]) == {"IFNB1", "IFNAR1", "ISG15"} and set(wp.entities["id"]) == {"WP100"}
    assert any("1 member ids" in n for n in wp.notes)


def test_tahoe_mini(mini_dir: Path) -> None:
    d = read_tahoe_drugs(mini_dir / "tahoe/drug_metadata.parquet")
    assert d.relations["model_generated"].all()
    lap = d.relations[d.relations["subject"] == "Lapatinib ditosylate"]
    assert set(lap["object"]) == {"EGFR", "ERBB2"} and set(lap["predicate"]) == {"inhibits"}
    assert "Talc" in set(d.entities["id"]) and "Talc" not in set(d.relations["subject"])
    c = read_tahoe_cell_lines(mini_dir / "tahoe/cell_line_metadata.parquet")
    assert set(c.aliases[c.aliases["entity_id"] == "A549"]["key"]) == {"A549", "CVCL_0023", "ACH-000681"}
    g = read_tahoe_genes(mini_dir / "tahoe/gene_metadata.parquet")
    assert "<pad>" not in set(g.entities["id"])


def test_gene_role_lists_mini(mini_dir: Path) -> None:
    assert set(read_tf_list(mini_dir / "ids/transcription_factors.csv").roles["entity_id"]) == {"ETS1", "STAT1", "TP53"}
    assert set(read_kinase_list(mini_dir / "ids/kinases.tsv").roles["entity_id"]) == {"MAP2K1", "MAPK1"}


# ---------------------------------------------------------------------------------------------- damaged files


def test_truncated_table_reports_path_and_line(tmp_path: Path) -> None:
    p = tmp_path / "collectri.csv"
    p.write_text("source,target,weight,PMID\nETS1,DUSP6,1,1\nSTAT1,ISG15,1,2\nTP53,CDKN1A,")
    with pytest.raises(SourceFormatError) as e:
        read_collectri(p)
    assert e.value.line == 4 and str(p) in str(e.value)


def test_short_row_reports_its_line(tmp_path: Path) -> None:
    p = tmp_path / "pkn.tsv"
    p.write_text("source\tinteraction\ttarget\nA\t1\tB\nC\t1\n")
    with pytest.raises(SourceFormatError) as e:
        read_omnipath_pkn(p)
    assert e.value.line == 3


def test_bad_value_reports_its_line(tmp_path: Path) -> None:
    p = tmp_path / "collectri.csv"
    p.write_text("source,target,weight,PMID\nETS1,DUSP6,1,1\nSTAT1,ISG15,2,2\n")
    with pytest.raises(SourceFormatError, match="weight must be 1 or -1") as e:
        read_collectri(p)
    assert e.value.line == 3


def test_extra_field_is_a_malformed_row(tmp_path: Path) -> None:
    p = tmp_path / "pkn.tsv"
    p.write_text("source\tinteraction\ttarget\nA\t1\tB\nC\t1\tD\tE\n")
    with pytest.raises(SourceFormatError) as e:
        read_omnipath_pkn(p)
    assert e.value.line == 3


def test_missing_column_is_named(tmp_path: Path) -> None:
    p = tmp_path / "progeny.tsv"
    p.write_text("gene\tpathway\nA\tMAPK\n")
    with pytest.raises(SourceFormatError, match="weight"):
        read_progeny(p)


def test_truncated_gzip_is_reported(tmp_path: Path, mini_dir: Path) -> None:
    data = (mini_dir / "networks/string_v12_subset.tsv.gz").read_bytes()
    p = tmp_path / "string.tsv.gz"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceFormatError, match="string.tsv.gz"):
        read_string(p)


def test_damaged_parquet_is_reported(tmp_path: Path) -> None:
    p = tmp_path / "drug_metadata.parquet"
    p.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(SourceFormatError, match="Parquet"):
        read_tahoe_drugs(p)


def test_gmt_line_without_genes(tmp_path: Path) -> None:
    p = tmp_path / "h.gmt"
    p.write_text("SET_A\tdesc\tG1\tG2\nSET_B\tdesc\n")
    with pytest.raises(SourceFormatError) as e:
        read_gmt(p, "hallmark")
    assert e.value.line == 2


def test_wikipathways_needs_hgnc(mini_dir: Path) -> None:
    spec = next(s for s in SOURCES if s.name == "wikipathways")
    with pytest.raises(SourceFormatError, match="HGNC"):
        spec.reader([mini_dir / spec.paths[0]], BuildContext())


def test_starter_tables_have_references() -> None:
    t = read_starter()
    assert (t.relations["evidence"].str.len() > 0).all()
    for name in ("drugs.tsv", "drug_targets.tsv", "regulons.tsv", "signaling.tsv"):
        assert (starter_dir() / name).is_file()


# ---------------------------------------------------------------------------------------------- real files


def _real(shared: Path, rel: str) -> Path:
    p = shared / rel
    if not p.is_file():
        pytest.skip(f"{rel} not in {shared}")
    return p


def _data_lines(p: Path) -> int:
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt") as fh:
        return sum(1 for line in fh if line.strip()) - 1


def test_real_hgnc(shared_kb_dir: Path) -> None:
    p = _real(shared_kb_dir, "ids/hgnc_entries.tsv")
    t = read_hgnc(p)
    raw = pd.read_csv(p, sep="\t", dtype=str)
    assert len(t.entities) == int((raw["Status"] == "Approved").sum())
    assert entrez_to_symbol(t)["7157"] == "TP53"


def test_real_famplex(shared_kb_dir: Path) -> None:
    t = read_famplex(
        _real(shared_kb_dir, "ids/famplex/entities.csv"), _real(shared_kb_dir, "ids/famplex/relations.csv")
    )
    r = t.relations
    assert set(r[r["object"] == "MEK"]["subject"]) == {"MAP2K1", "MAP2K2"}


def test_real_collectri(shared_kb_dir: Path) -> None:
    p = _real(shared_kb_dir, "regulons/collectri.csv")
    t = read_collectri(p)
    assert len(t.relations) == _data_lines(p)
    r = t.relations.set_index(["subject", "object"])
    assert r.loc[("STAT1", "ISG15"), "sign"] == 1


def test_real_progeny(shared_kb_dir: Path) -> None:
    p = _real(shared_kb_dir, "footprints/progeny_human_top500.tsv")
    t = read_progeny(p)
    assert len(t.relations) == _data_lines(p)
    assert t.relations.groupby("subject").size().eq(500).all()


def test_real_omnipath(shared_kb_dir: Path) -> None:
    p = _real(shared_kb_dir, "networks/omnipath_signed_pkn.tsv")
    t = read_omnipath_pkn(p)
    r = t.relations
    assert int(r["predicate"].isin(["activates", "inhibits"]).sum()) == _data_lines(p)
    assert ((r["subject"] == "MAP2K1") & (r["object"] == "MAPK1") & (r["sign"] == 1)).any()


def test_real_string(shared_kb_dir: Path) -> None:
    p = _real(shared_kb_dir, "networks/string_v12_subset.tsv.gz")
    t = read_string(p)
    assert len(t.relations) == _data_lines(p)
    assert t.relations["weight"].between(0.4, 1.0).all()


def test_real_drugcentral(shared_kb_dir: Path) -> None:
    p = _real(shared_kb_dir, "drugs/drugcentral_2016_drug_target.tsv")
    t = read_drugcentral(p)
    raw = pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False)
    expected = sum(len([g for g in s.split("|") if g]) for s in raw["GENE"])
    assert len(t.relations) == expected
    r = t.relations
    assert set(r[r["subject"] == "trametinib"]["object"]) >= {"MAP2K1", "MAP2K2"}


@pytest.mark.parametrize(
    "rel,collection",
    [
        ("genesets/hallmark_v7.0.gmt", "hallmark"),
        ("genesets/reactome_2021-10.gmt", "reactome"),
        ("genesets/go_bp_2021_enrichr.gmt", "go_bp"),
    ],
)
def test_real_gmt(shared_kb_dir: Path, rel: str, collection: str) -> None:
    p = _real(shared_kb_dir, rel)
    t = read_gmt(p, collection)
    assert len(t.entities) == _data_lines(p) + 1  # one set per line (a GMT has no header)
    genes_per_line = [len([g for g in line.split("\t")[2:] if g.strip()]) for line in p.read_text().splitlines()]
    assert len(t.relations) <= sum(genes_per_line) and len(t.relations) >= 0.95 * sum(genes_per_line)


def test_real_wikipathways(shared_kb_dir: Path) -> None:
    p = _real(shared_kb_dir, "genesets/wikipathways_2022-03-10_entrez.gmt")
    hgnc = read_hgnc(_real(shared_kb_dir, "ids/hgnc_entries.tsv"))
    t = read_gmt(p, "wikipathways", entrez_to_symbol(hgnc))
    assert len(t.entities) == _data_lines(p) + 1
    assert t.relations["subject"].str.fullmatch(r"\d+").sum() == 0  # every member is a symbol now


def test_real_tahoe(shared_kb_dir: Path) -> None:
    d = read_tahoe_drugs(_real(shared_kb_dir, "tahoe/drug_metadata.parquet"))
    assert len(d.entities) == 379
    tram = d.relations[d.relations["subject"] == "Trametinib"]
    assert set(tram["object"]) == {"MAP2K1", "MAP2K2"} and tram["model_generated"].all()
    c = read_tahoe_cell_lines(_real(shared_kb_dir, "tahoe/cell_line_metadata.parquet"))
    assert len(c.relations) == 1000 and len(c.entities) == 102
    g = read_tahoe_genes(_real(shared_kb_dir, "tahoe/gene_metadata.parquet"))
    assert len(g.entities) > 60_000


def test_real_role_lists(shared_kb_dir: Path) -> None:
    tfs = read_tf_list(_real(shared_kb_dir, "ids/transcription_factors.csv"))
    assert {"TP53", "STAT1"} <= set(tfs.roles["entity_id"])
    kin = read_kinase_list(_real(shared_kb_dir, "ids/kinases.tsv"))
    assert "MAP2K1" in set(kin.roles["entity_id"])
