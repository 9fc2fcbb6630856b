"""The silent-drug gate: a binding / activity claim that RNA cannot read out falls back on the KB record only when
the drug moves some gene in this line at some measured dose (PanelSettings.require_drug_effect).

Null of the gate: the drug changes no gene (BH across genes per dose signature); unit: genes. Starter KB:
Dinaciclib → CDK9 is a curated inhibitor record, and nothing in the starter KB reads CDK9 out in RNA."""

from __future__ import annotations

from verifier_support import MAPK_DOWN, make_signature

from mechcell.datasets.schemas import Condition
from mechcell.graphs import parse_text
from mechcell.verifiers import PanelSettings
from mechcell.verifiers.doses import DosePoint, DoseSeries
from mechcell.verifiers.panel import run_panel

DINACICLIB = """<explain>
set_context(id="n0", cell_type="A549")
binds_to(id="n1", actor="Dinaciclib", target="CDK9")
modulates_molecule_activity(id="n2", target="CDK9", direction="down")
induces_phenotype(id="n3", source="CDK9", phenotype="apoptosis")
</explain>
<dag>
edge("n1","n2")
edge("n2","n3")
</dag>"""


def cond(dose: float, plate: str) -> Condition:
    return Condition(perturbation="Dinaciclib", dose=dose, dose_unit="uM", context="A549", batch=plate)


def panel_status(report, claim: str) -> str:
    return next(r.status for r in report.claims if r.claim_id == claim)


def test_silent_drug_gets_no_kb_only_support(kb) -> None:
    g = parse_text(DINACICLIB).graph
    c = cond(0.5, "plate2")
    silent = make_signature(c, down=[], up=[], seed=1)
    assert min(silent.padj) >= 0.05  # the null signature: no gene passes BH
    r = run_panel(g, condition=c, kb=kb, signature=silent)
    assert panel_status(r, "n1") == panel_status(r, "n2") == "inconclusive"
    v = next(v for v in r.verdicts if v.verifier == "expression" and v.claim.id == "n1")
    assert "moves no gene" in v.reason and v.null
    assert not r.accepted
    # the switch restores the KB fallback
    off = run_panel(g, condition=c, kb=kb, signature=silent, settings=PanelSettings(require_drug_effect=False))
    assert panel_status(off, "n1") == "supported"


def test_a_drug_that_moves_genes_keeps_the_kb_fallback(kb) -> None:
    c = cond(0.5, "plate2")
    moving = make_signature(c, down=MAPK_DOWN[:6], up=[], seed=1)
    r = run_panel(parse_text(DINACICLIB).graph, condition=c, kb=kb, signature=moving)
    assert panel_status(r, "n1") == "supported"


def status_with_a_moving_higher_dose(kb, plate: str, field: str) -> str:
    """The binding claim's panel status at a silent low dose (plate1) when a 5 uM dose on `plate`, held in the
    series' `field` (siblings: pooled; same_plate: gate only), moves genes."""
    low, high = cond(0.05, "plate1"), cond(5.0, plate)
    moving = DosePoint(
        key=high.key,
        dose=5.0,
        dose_unit="uM",
        batch=plate,
        signature=make_signature(high, down=MAPK_DOWN[:6], up=[], seed=2),
    )
    doses = DoseSeries(condition_key=low.key, dose=0.05, dose_unit="uM", **{field: [moving]})
    r = run_panel(
        parse_text(DINACICLIB).graph,
        condition=low,
        kb=kb,
        signature=make_signature(low, down=[], up=[], seed=1),
        doses=doses,
    )
    return panel_status(r, "n1")


def test_a_sibling_dose_that_moves_genes_is_enough(kb) -> None:
    """Silent at this (low) dose, active at a higher dose of the same line: the drug acts in this context."""
    assert status_with_a_moving_higher_dose(kb, "plate3", "siblings") == "supported"


def test_a_same_plate_dose_that_moves_genes_is_enough(kb) -> None:
    """A dose sharing the plate cannot be pooled (correlated nulls) but still shows the drug acting in the line."""
    assert status_with_a_moving_higher_dose(kb, "plate1", "same_plate") == "supported"
