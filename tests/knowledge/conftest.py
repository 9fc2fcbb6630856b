"""Fixtures for the knowledge tests: a small hand-made source directory in the layout of ../shared/kb, the starter
KB, and (when ../shared/kb is beside the checkout) the KB built from the real tables."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from mechcell.config import Settings

SHARED_KB = Path(__file__).resolve().parents[2] / ".." / "shared" / "kb"

HGNC_HEADER = (
    "HGNC ID\tApproved symbol\tApproved name\tStatus\tAlias symbols\tNCBI Gene ID(supplied by NCBI)\t"
    "UniProt ID(supplied by UniProt)\tMouse genome database ID(supplied by MGI)\t"
    "Rat genome database ID(supplied by RGD)\tPrevious symbols\tEnsembl gene ID\tLocus type\tEnzyme IDs"
)
#: (hgnc id, symbol, name, status, aliases, entrez, uniprot, previous, ensembl)
HGNC_ROWS = [
    (
        "HGNC:6840",
        "MAP2K1",
        "mitogen-activated protein kinase kinase 1",
        "Approved",
        "MEK1, MKK1",
        "5604",
        "Q02750",
        "PRKMK1",
        "ENSG00000169032",
    ),
    (
        "HGNC:6842",
        "MAP2K2",
        "mitogen-activated protein kinase kinase 2",
        "Approved",
        "MEK2",
        "5605",
        "P36507",
        "PRKMK2",
        "ENSG00000126934",
    ),
    (
        "HGNC:6871",
        "MAPK1",
        "mitogen-activated protein kinase 1",
        "Approved",
        "ERK2, p42",
        "5594",
        "P28482",
        "PRKM1",
        "ENSG00000100030",
    ),
    (
        "HGNC:6877",
        "MAPK3",
        "mitogen-activated protein kinase 3",
        "Approved",
        "ERK1",
        "5595",
        "P27361",
        "PRKM3",
        "ENSG00000102882",
    ),
    (
        "HGNC:3488",
        "ETS1",
        "ETS proto-oncogene 1, transcription factor",
        "Approved",
        "",
        "2113",
        "P14921",
        "",
        "ENSG00000134954",
    ),
    (
        "HGNC:3072",
        "DUSP6",
        "dual specificity phosphatase 6",
        "Approved",
        "MKP3",
        "1848",
        "Q16828",
        "",
        "ENSG00000139318",
    ),
    (
        "HGNC:11362",
        "STAT1",
        "signal transducer and activator of transcription 1",
        "Approved",
        "ISGF-3",
        "6772",
        "P42224",
        "",
        "ENSG00000115415",
    ),
    (
        "HGNC:4053",
        "ISG15",
        "ISG15 ubiquitin like modifier",
        "Approved",
        "G1P2",
        "9636",
        "P05161",
        "G1P2",
        "ENSG00000187608",
    ),
    ("HGNC:11998", "TP53", "tumor protein p53", "Approved", "p53, LFS1", "7157", "P04637", "", "ENSG00000141510"),
    (
        "HGNC:1784",
        "CDKN1A",
        "cyclin dependent kinase inhibitor 1A",
        "Approved",
        "p21, CIP1, WAF1",
        "1026",
        "P38936",
        "CDKN1",
        "ENSG00000124762",
    ),
    (
        "HGNC:15780",
        "TCEAL1",
        "transcription elongation factor A like 1",
        "Approved",
        "p21",
        "9338",
        "Q15170",
        "",
        "ENSG00000172465",
    ),
    (
        "HGNC:13280",
        "ERO1A",
        "endoplasmic reticulum oxidoreductase 1 alpha",
        "Approved",
        "",
        "30001",
        "Q96HE7",
        "ERO1L",
        "ENSG00000197930",
    ),
    ("HGNC:3393", "EPHB2", "EPH receptor B2", "Approved", "", "2048", "P29323", "ERK, DRT", "ENSG00000133216"),
    ("HGNC:6407", "KRAS", "KRAS proto-oncogene, GTPase", "Approved", "", "3845", "P01116", "KRAS2", "ENSG00000133703"),
    ("HGNC:5434", "IFNB1", "interferon beta 1", "Approved", "IFNB", "3456", "P01574", "IFNB", "ENSG00000171855"),
    (
        "HGNC:5432",
        "IFNAR1",
        "interferon alpha and beta receptor subunit 1",
        "Approved",
        "",
        "3454",
        "P17181",
        "",
        "ENSG00000142166",
    ),
    (
        "HGNC:5433",
        "IFNAR2",
        "interferon alpha and beta receptor subunit 2",
        "Approved",
        "",
        "3455",
        "P48551",
        "",
        "ENSG00000159110",
    ),
    ("HGNC:6018", "JAK1", "Janus kinase 1", "Approved", "", "3716", "P23458", "", "ENSG00000162434"),
    ("HGNC:9538", "PSMB5", "proteasome 20S subunit beta 5", "Approved", "", "5693", "P28074", "", "ENSG00000100804"),
    (
        "HGNC:3236",
        "EGFR",
        "epidermal growth factor receptor",
        "Approved",
        "ERBB1",
        "1956",
        "P00533",
        "",
        "ENSG00000146648",
    ),
    (
        "HGNC:3430",
        "ERBB2",
        "erb-b2 receptor tyrosine kinase 2",
        "Approved",
        "HER2",
        "2064",
        "P04626",
        "",
        "ENSG00000141736",
    ),
    ("HGNC:99999", "OLDGENE", "withdrawn entry", "Symbol Withdrawn", "", "", "", "", ""),
]


def _write_tsv(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def write_mini_kb(root: Path) -> Path:
    """A tiny but complete source directory (every registered importer has a file) with known answers."""
    lines = [HGNC_HEADER] + [
        "\t".join([i, s, n, st, al, ez, up, "", "", pv, en, "gene with protein product", ""])
        for i, s, n, st, al, ez, up, pv, en in HGNC_ROWS
    ]
    _write_tsv(root / "ids/hgnc_entries.tsv", "\n".join(lines) + "\n")
    _write_tsv(root / "ids/famplex/entities.csv", "MEK\nERK\nIFNAR\n")
    _write_tsv(
        root / "ids/famplex/relations.csv",
        "HGNC,MAP2K1,isa,FPLX,MEK\nHGNC,MAP2K2,isa,FPLX,MEK\nHGNC,MAPK1,isa,FPLX,ERK\nHGNC,MAPK3,isa,FPLX,ERK\n"
        "HGNC,IFNAR1,partof,FPLX,IFNAR\nHGNC,IFNAR2,partof,FPLX,IFNAR\nUP,P12345,isa,FPLX,ERK\n"
        "HGNC,RELA,partof,FPLX,NFKB\nHGNC,NFKB1,partof,FPLX,NFKB\n",
    )
    _write_tsv(root / "ids/transcription_factors.csv", "EntrezGene,Symbol\n2113,ETS1\n6772,STAT1\n7157,TP53\n")
    _write_tsv(
        root / "ids/kinases.tsv",
        "Entry\tGene names  (primary )\tOrganism ID\tEntry name\n"
        "Q02750\tMAP2K1\t9606\tMP2K1_HUMAN\nP28482\tMAPK1\t9606\tMK01_HUMAN\n",
    )
    _write_tsv(
        root / "regulons/collectri.csv",
        "source,target,weight,PMID\nETS1,DUSP6,1,20097731\nSTAT1,ISG15,1,347694\nTP53,CDKN1A,1,8242752;7834749\n"
        "STAT1,CDKN1A,-1,\nNFKB,ISG15,1,1234\n",
    )
    _write_tsv(
        root / "footprints/progeny_human_top500.tsv",
        "gene\tpathway\tweight\tp.value\nDUSP6\tMAPK\t3.5\t1e-10\nETS1\tMAPK\t1.2\t1e-3\n"
        "ISG15\tJAK-STAT\t4.0\t1e-12\nCDKN1A\tp53\t5.0\t1e-20\nDUSP6\tp53\t-0.5\t0.01\n",
    )
    _write_tsv(
        root / "networks/omnipath_signed_pkn.tsv",
        "source\tinteraction\ttarget\nMAP2K1\t1\tMAPK1\nMAP2K1\t1\tMAPK3\nMAP2K2\t1\tMAPK1\nMAPK1\t1\tETS1\n"
        "MAPK3\t1\tETS1\nMAPK1\t-1\tDUSP6\nDUSP6\t-1\tMAPK1\nIFNB1\t1\tIFNAR1\nIFNB1\t1\tIFNAR1_IFNAR2\n"
        "IFNAR1_IFNAR2\t1\tJAK1\nJAK1\t1\tSTAT1\nKRAS\t1\tMAP2K1\nKRAS\t-1\tMAP2K1\n"
        "Metab__HMDB0000001_c\t1\tSTAT1\nMAPK1\t1\tMetab__HMDB0000001_c\nGene1__TP53\t1\tTP53\n",
    )
    root.joinpath("networks").mkdir(parents=True, exist_ok=True)
    with gzip.open(root / "networks/string_v12_subset.tsv.gz", "wt") as fh:
        fh.write(
            "gene1_entrez\tgene2_entrez\tgene1\tgene2\texperiments\tdatabase\tcombined_score\n"
            "5604\t5594\tMAP2K1\tMAPK1\t990.0\t900.0\t999.0\n5594\t2113\tMAPK1\tETS1\t500.0\t0.0\t720.0\n"
        )
    _write_tsv(
        root / "drugs/drugcentral_2016_drug_target.tsv",
        "DRUG_ID\tCHEMBL_ID\tDRUG_NAME\tTARGET_NAME\tTARGET_FAMILY\tUNIPROT\tGENE\tSWISSPROT\tACTION_TYPE\tSOURCE\t"
        "REFERENCE\n"
        "1\tCHEMBL2105741\ttrametinib\tMEK1\tKinase\tQ02750\tMAP2K1\tMP2K1_HUMAN\tINHIBITOR\tCHEMBL\t"
        "https://www.ebi.ac.uk/chembl/compound/inspect/CHEMBL2105741\n"
        "1\tCHEMBL2105741\ttrametinib\tMEK2\tKinase\tP36507\tMAP2K2\tMP2K2_HUMAN\tINHIBITOR\tCHEMBL\t\n"
        "2\t\tbortezomib\tProteasome\tEnzyme\tP28074\tPSMB5\t\tINHIBITOR\tCHEMBL\t\n"
        "3\t\tinterferon beta-1a\tIFNAR\tReceptor\tP17181|P48551\tIFNAR1|IFNAR2\t\tAGONIST\tDRUG LABEL\t\n"
        "4\t\tmysterium\tunknown\t\t\t\t\t\t\t\n",
    )
    _write_tsv(
        root / "genesets/hallmark_v7.0.gmt",
        "HALLMARK_INTERFERON_ALPHA_RESPONSE\thttp://x/h1\tISG15\tSTAT1\t\n"
        "HALLMARK_P53_PATHWAY\thttp://x/h2\tCDKN1A\tTP53\n",
    )
    _write_tsv(root / "genesets/reactome_2021-10.gmt", "MAPK-signaling\tR-HSA-1\tMAP2K1\tMAPK1\tMAPK3\n")
    _write_tsv(root / "genesets/go_bp_2021_enrichr.gmt", "ERK1 and ERK2 cascade (GO:0070371)\t\tMAPK1\tMAPK3\tDUSP6\n")
    _write_tsv(
        root / "genesets/wikipathways_2022-03-10_entrez.gmt",
        "Type I interferon%WikiPathways_20220310%WP100%Homo sapiens\thttp://x/wp100\t3456\t3454\t9636\t424242\n",
    )
    (root / "tahoe").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "drug": ["Trametinib", "Trametinib (DMSO_TF solvate)", "Lapatinib ditosylate", "Talc", "Bortezomib"],
            "targets": ["MAP2K1, MAP2K2", "MAP2K1, MAP2K2", "EGFR, ERBB2", None, "PSMB5"],
            "moa-broad": ["inhibitor/antagonist"] * 3 + ["unclear", "inhibitor/antagonist"],
            "moa-fine": ["MEK inhibitor", "MEK inhibitor", "EGFR/ERBB inhibitor", "unclear", "Proteasome inhibitor"],
            "human-approved": ["yes"] * 5,
            "pubchem_cid": [11707110.0, None, 11557040.0, None, 387447.0],
        }
    ).to_parquet(root / "tahoe/drug_metadata.parquet")
    pd.DataFrame(
        {
            "cell_name": ["A549", "A549", "HT-29"],
            "Cell_ID_DepMap": ["ACH-000681", "ACH-000681", "ACH-000552"],
            "Cell_ID_Cellosaur": ["CVCL_0023", "CVCL_0023", "CVCL_0320"],
            "Organ": ["Lung", "Lung", "Colon"],
            "Driver_Gene_Symbol": ["KRAS", "TP53", "BRAF"],
            "Driver_VarZyg": [None] * 3,
            "Driver_VarType": ["Missense"] * 3,
            "Driver_ProtEffect_or_CdnaEffect": ["p.G12S", "p.X1Y", "p.V600E"],
            "Driver_Mech_InferDM": ["GoF", "LoF", "GoF"],
            "Driver_GeneType_DM": ["Oncogene", "Suppressor", "Oncogene"],
        }
    ).to_parquet(root / "tahoe/cell_line_metadata.parquet")
    pd.DataFrame(
        {
            "gene_symbol": ["<pad>", "MAP2K1", "G1P2"],
            "ensembl_id": ["<pad>", "ENSG00000169032", "ENSG00000187608"],
            "token_id": [0, 3, 4],
        }
    ).to_parquet(root / "tahoe/gene_metadata.parquet")
    return root


@pytest.fixture(scope="session")
def make_mini_kb():
    """The `write_mini_kb` function, for tests that need a fresh, modifiable copy."""
    return write_mini_kb


@pytest.fixture(scope="session")
def mini_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mini_kb(tmp_path_factory.mktemp("mini_kb"))


@pytest.fixture(scope="session")
def mini_kb(mini_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """KB built from the mini directory without the starter (known answers only)."""
    from mechcell.knowledge.build import build_store
    from mechcell.knowledge.store import load_kb

    out = tmp_path_factory.mktemp("mini_store") / "mini.duckdb"
    build_store(mini_dir, out, include_starter=False)
    kb = load_kb(out)
    yield kb
    kb.close()


@pytest.fixture(scope="session")
def starter():
    from mechcell.knowledge import load_kb

    kb = load_kb()
    yield kb
    kb.close()


@pytest.fixture(scope="session")
def shared_kb_dir() -> Path:
    if not (SHARED_KB / "README.md").is_file():
        pytest.skip(f"real KB tables not found at {SHARED_KB}")
    return SHARED_KB.resolve()


@pytest.fixture(scope="session")
def full_kb(shared_kb_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The KB built from ../shared/kb through `load_kb(DIR)` (build on first use into the cache dir)."""
    from mechcell.knowledge import load_kb

    settings = Settings(cache_dir=tmp_path_factory.mktemp("kb_cache"))
    kb = load_kb(shared_kb_dir, settings=settings)
    yield kb
    kb.close()
