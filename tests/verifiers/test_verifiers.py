"""Each verifier on hand-built cases with known verdicts (starter KB + a hand-made signature)."""

from __future__ import annotations

import json

from verifier_support import TRAMETINIB, make_signature

from mechcell.graphs import parse_text
from mechcell.verifiers import PanelSettings
from mechcell.verifiers.api import verify
from mechcell.verifiers.panel import run_panel


def statuses(report, verifier: str) -> dict[str, str]:
    return {v.claim.id: v.status for v in report.verdicts if v.verifier == verifier}


def test_correct_trametinib_chain_is_supported(kb, condition, mek_signature) -> None:
    g = parse_text(TRAMETINIB.replace("{dir}", "down")).graph
    r = run_panel(g, condition=condition, kb=kb, signature=mek_signature)
    assert not r.structural
    k = statuses(r, "knowledge")
    assert k["n1"] == k["n2"] == k["n3"] == "supported"
    assert k["n4:DUSP6"] == "supported"
    e = statuses(r, "expression")
    assert e["n4:DUSP6"] == e["n4:SPRY4"] == e["n4:*"] == "supported"
    assert all(res.status == "supported" for res in r.claims if res.claim_id.startswith("n4"))
    assert r.accepted and r.reward > 0.7
    assert r.factual_precision == 1.0 and r.expression_precision == 1.0
    dusp6 = next(v for v in r.verdicts if v.verifier == "expression" and v.claim.id == "n4:DUSP6")
    assert dusp6.p_value < 1e-6 and dusp6.e_value > 20 and "H0" in dusp6.null and dusp6.evidence
    kb_n1 = next(v for v in r.verdicts if v.verifier == "knowledge" and v.claim.id == "n1")
    assert kb_n1.evidence[0].source and kb_n1.evidence[0].record_id


def test_same_chain_with_dusp6_up_is_contradicted(kb, condition, mek_signature) -> None:
    g = parse_text(TRAMETINIB.replace("{dir}", "up")).graph
    r = run_panel(g, condition=condition, kb=kb, signature=mek_signature)
    assert statuses(r, "knowledge")["n4:DUSP6"] == "contradicted"
    assert statuses(r, "expression")["n4:DUSP6"] == "contradicted"
    assert not r.accepted
    assert any("n4:DUSP6" in f and "contradicted" in f for f in r.feedback)
    good = run_panel(
        parse_text(TRAMETINIB.replace("{dir}", "down")).graph, condition=condition, kb=kb, signature=mek_signature
    )
    assert r.reward < good.reward


def test_chain_resting_on_a_wrong_target_is_rejected(kb, condition, mek_signature) -> None:
    text = TRAMETINIB.replace("{dir}", "down").replace('target="MAP2K1")', 'target="EGFR")', 1)
    r = run_panel(parse_text(text).graph, condition=condition, kb=kb, signature=mek_signature)
    assert statuses(r, "knowledge")["n1"] == "contradicted"
    assert not r.accepted
    assert any(f.startswith("n1 ") for f in r.feedback)


def test_inhibitor_does_not_activate(kb, condition, mek_signature) -> None:
    text = TRAMETINIB.replace("{dir}", "down").replace(
        'target="MAP2K1", direction="down"', 'target="MAP2K1", direction="up"'
    )
    r = run_panel(parse_text(text).graph, condition=condition, kb=kb, signature=mek_signature)
    assert statuses(r, "knowledge")["n2"] == "contradicted"


def test_unmeasurable_phenotype_is_uncheckable(kb, condition, mek_signature) -> None:
    text = """<explain>
set_context(id="n0")
binds_to(id="n1", actor="Trametinib", target="MAP2K1")
modulates_molecule_activity(id="n2", target="MAP2K1", direction="down")
induces_phenotype(id="n3", source="MAP2K1", phenotype="reduced tumour angiogenesis")
</explain>
<dag>
edge("n1","n2")
edge("n2","n3")
</dag>"""
    r = run_panel(parse_text(text).graph, condition=condition, kb=kb, signature=mek_signature)
    res = {c.claim_id: c.status for c in r.claims}
    assert res["n3"] == "uncheckable"
    assert statuses(r, "expression")["n3"] == "uncheckable"


def test_null_gene_list_is_not_supported(kb, condition, mek_signature) -> None:
    text = TRAMETINIB.replace("{dir}", "down").replace(
        '["DUSP6","SPRY4","ETV5","FOSL1"]', '["BG0001","BG0002","BG0003","BG0004"]'
    )
    r = run_panel(parse_text(text).graph, condition=condition, kb=kb, signature=mek_signature)
    e = statuses(r, "expression")
    assert all(e[k] != "supported" for k in e if k.startswith("n4"))


def test_structural_errors_give_reward_zero(kb, condition, mek_signature) -> None:
    text = TRAMETINIB.replace("{dir}", "down").replace('edge("n3","n4")', 'edge("n3","n4")\nedge("n4","n2")')
    r = verify(text, condition, kb=kb)
    assert r.reward == 0.0 and not r.accepted and any(p.kind == "cycle" for p in r.structural)
    assert any("cycle" in f for f in r.feedback)


def test_no_data_never_defaults_to_supported(kb, condition) -> None:
    g = parse_text(TRAMETINIB.replace("{dir}", "down")).graph
    r = run_panel(g, condition=condition, kb=kb, signature=None)
    assert all(v.status == "uncheckable" for v in r.verdicts if v.verifier == "expression")
    r2 = run_panel(g, condition=condition, kb=None, signature=None)
    assert all(v.status != "supported" for v in r2.verdicts)


def test_deterministic_for_a_seed(kb, condition, mek_signature) -> None:
    g = parse_text(TRAMETINIB.replace("{dir}", "down")).graph
    a = run_panel(g, condition=condition, kb=kb, signature=mek_signature, settings=PanelSettings(seed=3))
    b = run_panel(g, condition=condition, kb=kb, signature=mek_signature, settings=PanelSettings(seed=3))
    strip = lambda r: json.dumps(r.model_dump(mode="json", exclude={"seconds"}), sort_keys=True)  # noqa: E731
    assert strip(a) == strip(b)


def test_robustness_is_reported_for_supported_sets(kb, condition) -> None:
    sig = make_signature(condition, down=["DUSP6", "SPRY4", "ETV5", "FOSL1"], up=[])
    g = parse_text(TRAMETINIB.replace("{dir}", "down")).graph
    r = run_panel(g, condition=condition, kb=kb, signature=sig)
    v = next(v for v in r.verdicts if v.verifier == "expression" and v.claim.id == "n4:*")
    assert v.status == "supported" and v.robustness is not None
    assert v.robustness.selection_breaking_point is not None and v.robustness.selection_breaking_point > 0
