"""Retrieval on the starter KB: drugs, ligands and genetic perturbations; ranking against a signature; the token
budget of the prompt rendering; drivers; JSON round trip."""

from __future__ import annotations

import numpy as np
import pytest

from mechcell.datasets.schemas import Condition, Signature
from mechcell.knowledge import KnowledgeBase, RetrievedContext, Retriever
from mechcell.knowledge.retrieve import approx_tokens


@pytest.fixture(scope="module")
def retriever(starter: KnowledgeBase) -> Retriever:
    return Retriever(starter)


def _signature(cond: Condition, kb: KnowledgeBase, down: dict[str, float], seed: int) -> Signature:
    """A signature over the starter's genes plus 1500 unrelated ones: N(0,1) noise, planted shifts on `down`."""
    rng = np.random.default_rng(seed)
    genes = sorted(set(kb.genes()) | {f"NOISE{i}" for i in range(1500)})
    lfc = rng.standard_normal(len(genes))
    for i, g in enumerate(genes):
        lfc[i] -= down.get(g, 0.0)
    p = np.full(len(genes), 0.5)
    return Signature(
        condition=cond,
        method="synthetic",
        n_treated=100,
        n_control=100,
        genes=genes,
        log2fc=lfc.tolist(),
        pvalue=p.tolist(),
        padj=p.tolist(),
    )


def test_drug_context(retriever: Retriever) -> None:
    cond = Condition(
        perturbation="Trametinib (DMSO_TF solvate)", dose=0.05, dose_unit="uM", context="CVCL_0023", batch="plate1"
    )
    ctx = retriever.context(cond)
    assert ctx.kind == "drug" and ctx.resolution.id == "Trametinib"
    assert [(t.gene, t.sign) for t in ctx.targets] == [("MAP2K1", -1), ("MAP2K2", -1)]
    assert all(t.sources == ["mechcell-starter"] for t in ctx.targets)
    reached = {a.name: a for a in ctx.tfs if a.reached}
    assert {"ETS1", "ELK1", "MYC"} <= set(reached)
    assert reached["ETS1"].predicted_sign == -1 and reached["ETS1"].path_length == 2
    mapk = next(a for a in ctx.pathways if a.name == "MAPK")
    assert mapk.reached and mapk.predicted_sign == -1
    p = next(p for p in ctx.paths if p.end == "ETS1")
    assert p.path.nodes[0] in ("MAP2K1", "MAP2K2") and p.predicted_sign == -1
    assert all(r.source for r in p.path.relations) and len(p.path.relations) == p.path.length
    assert [d.gene for d in ctx.drivers][:1] and "KRAS" in {d.gene for d in ctx.drivers}
    assert ctx.cell_line == "A549" and ctx.kb_version == retriever.kb.version
    assert "MAP2K1" in ctx.text and "ETS1" in ctx.text and "KRAS" in ctx.text
    assert RetrievedContext.model_validate_json(ctx.model_dump_json()) == ctx


def test_signature_ranks_the_tf_whose_regulon_moved(retriever: Retriever, starter: KnowledgeBase) -> None:
    """Planted: ETS1's regulon and the MAPK footprint go down (δ = 2 sd); everything else is noise."""
    cond = Condition(perturbation="Trametinib", context="A549")
    down = {g: 2.0 for g in starter.regulon("ETS1")} | {g: 2.0 for g, w in starter.footprint("MAPK").items() if w > 0}
    ctx = retriever.context(cond, _signature(cond, starter, down, seed=1))
    assert ctx.signature_used
    top = ctx.tfs[0]
    # 5 regulon genes shifted by 2 sd: expected score ≈ −sqrt(5)·1.7 ≈ −3.8 (sd 1); −2 is p ≈ 0.05
    assert top.name == "ETS1" and top.reached and top.score is not None and top.score < -2
    assert top.agreement is not None and top.agreement > 2
    assert ctx.pathways[0].name == "MAPK" and ctx.pathways[0].agreement > 2
    assert ctx.paths[0].end in ("ETS1", "MAPK")
    assert "observed z=" in ctx.text


def test_ligand_context(retriever: Retriever) -> None:
    ctx = retriever.context(Condition(perturbation="IFNB1", context="A549"))
    assert ctx.kind == "ligand" and "ligand" in ctx.kind_reason
    assert {t.gene for t in ctx.targets} == {"IFNAR1", "IFNAR2"}
    reached = {a.name: a for a in ctx.tfs if a.reached}
    assert reached["STAT1"].predicted_sign == 1 and reached["STAT2"].predicted_sign == 1
    assert all(p.path.nodes[0] == "IFNB1" for p in ctx.paths)


@pytest.mark.parametrize("label", ["sgTP53", "TP53_KO", "TP53"])
def test_genetic_context(retriever: Retriever, label: str) -> None:
    ctx = retriever.context(Condition(perturbation=label))
    assert ctx.kind == "genetic" and [(t.gene, t.sign) for t in ctx.targets] == [("TP53", -1)]
    tp53 = next(a for a in ctx.tfs if a.name == "TP53")
    assert tp53.reached and tp53.path_length == 0 and tp53.predicted_sign == -1
    assert next(a for a in ctx.pathways if a.name == "p53").predicted_sign == -1


def test_kind_can_be_forced(retriever: Retriever) -> None:
    assert retriever.context(Condition(perturbation="IFNB1"), kind="genetic").kind == "genetic"
    assert retriever.context(Condition(perturbation="STAT1"), kind="ligand").kind == "ligand"
    assert retriever.context(Condition(perturbation="STAT1"), kind="drug").kind == "unknown"


def test_unknown_perturbation(retriever: Retriever) -> None:
    ctx = retriever.context(Condition(perturbation="Trametnib"))
    assert ctx.kind == "unknown" and ctx.targets == [] and ctx.paths == []
    assert "Trametinib" in ctx.resolution.suggestions and "Trametinib" in ctx.text


@pytest.mark.parametrize("budget", [40, 120, 400, 4000])
def test_text_fits_the_budget(retriever: Retriever, starter: KnowledgeBase, budget: int) -> None:
    cond = Condition(perturbation="Bortezomib", context="A549")
    ctx = retriever.context(cond, _signature(cond, starter, {}, seed=3), budget=budget)
    assert ctx.n_tokens == approx_tokens(ctx.text) <= budget
    assert ctx.text.startswith("Perturbation: Bortezomib")
    if budget >= 400:
        assert "PSMB5" in ctx.text


def test_more_budget_never_means_less_text(retriever: Retriever) -> None:
    cond = Condition(perturbation="Bortezomib", context="A549")
    lengths = [len(retriever.context(cond, budget=b).text) for b in (50, 100, 200, 400, 800)]
    assert lengths == sorted(lengths)


def test_condition_key_and_name_context(retriever: Retriever) -> None:
    ctx = retriever.context(Condition(perturbation="Trametinib", context="ACH-unknown", context_name="HT-29"))
    assert ctx.cell_line == "HT-29" and "BRAF" in {d.gene for d in ctx.drivers}
