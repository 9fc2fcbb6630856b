"""Entity resolution: symbols, aliases, previous symbols, ids, families, salt / solvate forms, synonyms, and honest
`ambiguous` / `unresolved` answers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mechcell.knowledge import KnowledgeBase
from mechcell.knowledge.resolve import (
    display_drug_name,
    drug_base_key,
    genetic_gene_part,
    normalize_gene_key,
    strip_salts,
)


@pytest.mark.parametrize(
    "name,base",
    [
        ("Trametinib (DMSO_TF solvate)", "Trametinib"),
        ("Lapatinib ditosylate", "Lapatinib"),
        ("Pexidartinib (hydrochloride)", "Pexidartinib"),
        ("Dapagliflozin ((2S)-1,2-propanediol, hydrate)", "Dapagliflozin"),
        ("L-Thyroxine (sodium salt pentahydrate)", "L-Thyroxine"),
        ("Docetaxel (Trihydrate)", "Docetaxel"),
        ("Ixazomib citrate", "Ixazomib"),
        ("(S)-Crizotinib", "(S)-Crizotinib"),
        ("(R)-Verapamil (hydrochloride)", "(R)-Verapamil"),
        ("Sodium Salicylate", "Sodium Salicylate"),
        ("Lactate (calcium)", "Lactate"),
        ("Citrate", "Citrate"),
        ("Sacubitril/Valsartan", "Sacubitril/Valsartan"),
    ],
)
def test_strip_salts(name: str, base: str) -> None:
    assert strip_salts(name) == base


def test_drug_keys_ignore_case_whitespace_and_dashes() -> None:
    assert drug_base_key("  trametinib ") == drug_base_key("Trametinib (DMSO_TF solvate)") == "trametinib"
    assert drug_base_key("MK‐8353") == drug_base_key("mk-8353")  # unicode hyphen
    assert display_drug_name("olaparib") == "Olaparib" and display_drug_name("5-Fluorouracil") == "5-Fluorouracil"


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40))
@settings(max_examples=200, deadline=None)
def test_strip_salts_never_empties_a_name(name: str) -> None:
    if name.strip():
        assert strip_salts(name).strip() or not strip_salts(name)
        assert strip_salts(strip_salts(name)) == strip_salts(name)  # idempotent


def test_gene_key_normalisation() -> None:
    assert normalize_gene_key(" tp53 ") == "TP53"
    assert normalize_gene_key("ENSG00000141510.17") == "ENSG00000141510"
    assert normalize_gene_key("'p53'") == "P53"


@pytest.mark.parametrize(
    "label,gene",
    [
        ("sgTP53", "TP53"),
        ("TP53_KO", "TP53"),
        ("KRAS knockdown", "KRAS"),
        ("siMYC", "MYC"),
        ("CRISPRi-STAT1", "STAT1"),
        ("Trametinib", None),
    ],
)
def test_genetic_labels(label: str, gene: str | None) -> None:
    assert genetic_gene_part(label) == gene


# --------------------------------------------------------------------------------------------- on the mini KB


@pytest.mark.parametrize(
    "query,symbol,how",
    [
        ("MAP2K1", "MAP2K1", "symbol"),
        ("map2k1", "MAP2K1", "symbol"),
        ("MEK1", "MAP2K1", "alias"),
        ("PRKMK1", "MAP2K1", "previous"),
        ("ERO1L", "ERO1A", "previous"),
        ("ENSG00000141510", "TP53", "ensembl"),
        ("ENSG00000141510.17", "TP53", "ensembl"),
        ("7157", "TP53", "entrez"),
        ("HGNC:11998", "TP53", "hgnc_id"),
        ("P04637", "TP53", "uniprot"),
        ("G1P2", "ISG15", "previous"),
    ],
)
def test_gene_resolution(mini_kb: KnowledgeBase, query: str, symbol: str, how: str) -> None:
    r = mini_kb.resolve_gene(query)
    assert (r.status, r.id, r.matched_by) == ("resolved", symbol, how)


def test_ambiguous_alias_is_reported_not_guessed(mini_kb: KnowledgeBase) -> None:
    r = mini_kb.resolve_gene("p21")
    assert r.status == "ambiguous" and r.id is None and r.symbols == ["CDKN1A", "TCEAL1"]


def test_family_wins_over_a_retired_symbol(mini_kb: KnowledgeBase) -> None:
    # "ERK" is a previous symbol of EPHB2 in HGNC, but the FamPlex family is what people mean
    r = mini_kb.resolve_gene("ERK")
    assert (r.status, r.entity_type, r.symbols) == ("resolved", "family", ["MAPK1", "MAPK3"])
    assert mini_kb.expand_family("MEK") == ["MAP2K1", "MAP2K2"]
    assert mini_kb.expand_family("mek") == ["MAP2K1", "MAP2K2"]
    assert mini_kb.expand_family("NOPE") == []


def test_unresolved_gene_comes_with_suggestions(mini_kb: KnowledgeBase) -> None:
    r = mini_kb.resolve_gene("MAP2K3X")
    assert r.status == "unresolved" and {"MAP2K1", "MAP2K2"} & set(r.suggestions)


@pytest.mark.parametrize(
    "query",
    [
        "Trametinib",
        "trametinib",
        " TRAMETINIB ",
        "Trametinib (DMSO_TF solvate)",
        "Trametinib (hydrate)",
        "trametinib sodium",
    ],
)
def test_drug_forms_resolve_to_one_drug(mini_kb: KnowledgeBase, query: str) -> None:
    r = mini_kb.resolve_drug(query)
    assert (r.status, r.id) == ("resolved", "Trametinib")


def test_a_different_compound_is_not_guessed(mini_kb: KnowledgeBase) -> None:
    r = mini_kb.resolve_drug("trametinib dimethyl sulfoxide")  # "sulfoxide" names no salt form
    assert r.status == "unresolved" and "Trametinib" in r.suggestions


def test_salt_suffix_not_in_any_source_still_resolves(mini_kb: KnowledgeBase) -> None:
    r = mini_kb.resolve_drug("Lapatinib tosylate")
    assert (r.status, r.id, r.matched_by) == ("resolved", "Lapatinib", "salt/solvate stripped")


def test_unknown_drug(mini_kb: KnowledgeBase) -> None:
    r = mini_kb.resolve_drug("Bortezomab")
    assert r.status == "unresolved" and r.suggestions[:1] == ["Bortezomib"]


def test_cell_line_resolution(mini_kb: KnowledgeBase) -> None:
    for q in ("A549", "a549", "CVCL_0023", "ACH-000681"):
        assert mini_kb.resolve_cell_line(q).id == "A549"
    assert mini_kb.resolve_cell_line("HT29").id == "HT-29"  # punctuation-insensitive
    assert [d.gene for d in mini_kb.cell_line_drivers("CVCL_0023")] == ["KRAS", "TP53"]


# --------------------------------------------------------------------------------------------- on the starter


def test_starter_synonyms_and_aliases(starter: KnowledgeBase) -> None:
    assert starter.resolve_drug("Sirolimus").id == "Rapamycin"
    assert starter.resolve_drug("PLX4032").id == "Vemurafenib"
    assert starter.resolve_drug("5-FU").id == "5-Fluorouracil"
    assert starter.resolve_drug("olaparib").id == "Olaparib"
    assert starter.resolve_gene("NRF2").id == "NFE2L2"
    assert starter.resolve_gene("DDX58").id == "RIGI"
    assert starter.resolve_gene("PI3K_p110").symbols == ["PIK3CA", "PIK3CB", "PIK3CD", "PIK3CG"]


# --------------------------------------------------------------------------------------------- on the real KB


def test_full_kb_resolution(full_kb: KnowledgeBase) -> None:
    assert full_kb.resolve_gene("MEK").symbols == ["MAP2K1", "MAP2K2"]
    assert full_kb.resolve_gene("ERK").symbols == ["MAPK1", "MAPK3"]
    assert full_kb.resolve_gene("ERO1L").id == "ERO1A"
    assert full_kb.resolve_gene("ENSG00000141510").id == "TP53"
    assert full_kb.resolve_gene("p21").status == "ambiguous" and "CDKN1A" in full_kb.resolve_gene("p21").symbols
    for label in ("Trametinib (DMSO_TF solvate)", "Erdafitinib ", "Pexidartinib (hydrochloride)", "Sirolimus"):
        assert full_kb.resolve_drug(label).status == "resolved", label
    assert full_kb.resolve_drug("Sirolimus").id == "Rapamycin"
    assert full_kb.resolve_drug("(S)-Crizotinib").id != full_kb.resolve_drug("crizotinib").id  # a stereoisomer
