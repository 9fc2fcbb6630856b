"""The KB built from ../shared/kb (skipped when absent) answers the issue's questions."""

from __future__ import annotations

import pandas as pd

from mechcell.datasets.schemas import Condition
from mechcell.knowledge import KnowledgeBase, Retriever


def test_trametinib_targets_are_map2k1_and_map2k2(full_kb: KnowledgeBase) -> None:
    rels = full_kb.drug_targets("Trametinib")
    assert {r.object for r in rels} == {"MAP2K1", "MAP2K2"}
    assert {r.predicate for r in rels} == {"inhibits"} and {r.sign for r in rels} == {-1}
    curated = [r for r in rels if not r.model_generated]
    assert {r.object for r in curated} == {"MAP2K1", "MAP2K2"}  # not only Tahoe's model-generated claim
    assert any(r.source == "drugcentral" and r.evidence for r in curated)
    assert {r.source for r in rels if r.model_generated} == {"tahoe_drugs"}


def test_stat1_regulates_isg15_up(full_kb: KnowledgeBase) -> None:
    rels = full_kb.relations(subject="STAT1", predicate="regulates_expression", object="ISG15")
    assert any(r.source == "collectri" and r.sign == 1 and r.evidence for r in rels)
    assert full_kb.regulon("STAT1")["ISG15"] == 1


def test_signed_path_from_map2k1_to_a_tf_regulating_dusp6(full_kb: KnowledgeBase) -> None:
    regulators = [tf for tf, reg in full_kb.regulons().items() if "DUSP6" in reg]
    assert regulators
    found = [(tf, p) for tf in regulators for p in full_kb.paths("MAP2K1", tf, max_len=3)]
    assert found
    tf, p = min(found, key=lambda x: x[1].length)
    assert p.nodes[0] == "MAP2K1" and p.nodes[-1] == tf and p.length <= 3
    assert all(r.source for r in p.relations) and p.sign in (-1, 0, 1)


def test_sources_and_version(full_kb: KnowledgeBase) -> None:
    assert all(s.status == "ok" for s in full_kb.sources.values()), {
        k: v.message for k, v in full_kb.sources.items() if v.status != "ok"
    }
    assert (
        len(full_kb.version) == 16 and full_kb.path is not None and full_kb.path.name == f"kb-{full_kb.version}.duckdb"
    )
    assert full_kb.sources["tahoe_drugs"].model_generated


def test_coverage_is_recorded_and_consistent(full_kb: KnowledgeBase, shared_kb_dir) -> None:
    cov = full_kb.stats()["coverage"]
    n = len(pd.read_parquet(shared_kb_dir / "tahoe/drug_metadata.parquet"))
    assert cov["n_drugs"] == n
    assert cov["drugs_reaching_tf"] <= cov["drugs_with_resolved_targets"] <= cov["drugs_with_targets"] <= n
    assert cov["drugs_reaching_tf"] > 0.5 * n


def test_retrieval_over_tahoe_drugs(full_kb: KnowledgeBase, shared_kb_dir) -> None:
    drugs = pd.read_parquet(shared_kb_dir / "tahoe/drug_metadata.parquet")["drug"].tolist()[:40]
    r = Retriever(full_kb)
    kinds = []
    for d in drugs:
        ctx = r.context(Condition(perturbation=d, context="CVCL_0023"), budget=800)
        kinds.append(ctx.kind)
        assert ctx.n_tokens <= 800 and ctx.kb_version == full_kb.version
        assert {dr.gene for dr in ctx.drivers} >= {"KRAS"}
    assert kinds.count("drug") == len(drugs)
    ctx = r.context(Condition(perturbation="IFNB1"))
    assert ctx.kind == "ligand" and {"IFNAR1", "IFNAR2"} <= {t.gene for t in ctx.targets}
