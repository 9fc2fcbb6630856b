"""Dose pooling (verifiers/doses.py): size and power by simulation, contradiction at the dose itself, labelling.

Every simulated signature is made gene by gene: log2FC = effect + N(0, se²) with the two-sided p of z = log2FC / se,
so a null gene's one-sided p is exactly uniform. Each dose is an independent draw (its own plate and controls).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mechcell.causal_stats.evalues import bh_adjust
from mechcell.datasets.schemas import Condition, Signature
from mechcell.graphs import ActionGraph, Edge
from mechcell.graphs.primitives import RegulatesExpression, SetContext
from mechcell.verifiers import PanelSettings
from mechcell.verifiers.doses import DosePoint, DoseSeries
from mechcell.verifiers.panel import run_panel

DOSES = (0.05, 0.5, 5.0)
SE = 0.1


def cond(dose: float) -> Condition:
    plate = f"plate{DOSES.index(dose) + 1}"
    return Condition(perturbation="DrugX", dose=dose, dose_unit="uM", context="LINE1", batch=plate)


def signature(dose: float, effects: dict[str, float], n_background: int, rng: np.random.Generator) -> Signature:
    genes = [*effects, *[f"BG{i:04d}" for i in range(n_background)]]
    mu = np.array([effects.get(g, 0.0) for g in genes])
    lfc = mu + rng.normal(0.0, SE, len(genes))
    p = 2 * stats.norm.sf(np.abs(lfc) / SE)
    return Signature(
        condition=cond(dose),
        method="welch_t",
        n_treated=100,
        n_control=100,
        genes=genes,
        log2fc=lfc.tolist(),
        pvalue=p.tolist(),
        padj=bh_adjust(p).tolist(),
    )


def series(
    own_dose: float, effects: dict[float, dict[str, float]], rng: np.random.Generator, n_background: int = 400
) -> tuple[Signature, DoseSeries]:
    sigs = {d: signature(d, effects.get(d, {}), n_background, rng) for d in DOSES}
    sibs = [
        DosePoint(key=cond(d).key, dose=d, dose_unit="uM", batch=cond(d).batch, signature=sigs[d])
        for d in DOSES
        if d != own_dose
    ]
    return sigs[own_dose], DoseSeries(condition_key=cond(own_dose).key, dose=own_dose, dose_unit="uM", siblings=sibs)


def graph(genes: list[str], direction: str) -> ActionGraph:
    return ActionGraph(
        nodes=[
            SetContext(id="n0"),
            RegulatesExpression(id="n1", regulator="TFX", gene_list=genes, direction=direction),
        ],
        edges=[Edge(src="n0", tgt="n1")],
    )


def statuses(g: ActionGraph, sig: Signature, doses: DoseSeries | None, **kw) -> dict[str, str]:
    settings = PanelSettings(n_permutations=200, **kw)
    r = run_panel(g, condition=sig.condition, kb=None, signature=sig, settings=settings, doses=doses)
    return {c.claim_id: c.status for c in r.claims}


def test_size_null_claims_keep_level() -> None:
    """Null: the claimed genes move at no dose (unit: genes; per-dose draws independent). Per-claim level
    without multiplicity control must stay ≤ α (+3 SE); 120 simulated conditions × 10 gene claims + 1 list."""
    rng = np.random.default_rng(1)
    alpha = 0.05
    gene_hits, gene_n, set_hits, set_n = 0, 0, 0, 0
    for _ in range(120):
        own = DOSES[int(rng.integers(0, 3))]
        sig, doses = series(own, {}, rng)
        genes = [f"BG{i:04d}" for i in rng.choice(400, size=10, replace=False)]
        st = statuses(graph(genes, str(rng.choice(["up", "down"]))), sig, doses, multiplicity="none")
        gene_hits += sum(v == "supported" for k, v in st.items() if not k.endswith("*"))
        gene_n += 10
        set_hits += st["n1:*"] == "supported"
        set_n += 1
    se_g = np.sqrt(alpha * (1 - alpha) / gene_n)
    se_s = np.sqrt(alpha * (1 - alpha) / set_n)
    assert gene_hits / gene_n <= alpha + 3 * se_g, gene_hits / gene_n
    assert set_hits / set_n <= alpha + 3 * se_s, set_hits / set_n


def test_power_weak_low_dose_gains_from_the_dose_series() -> None:
    """A monotone Hill-like response (fractions .2/.7/.95 of −0.5 log2) claimed at the low dose: pooled support
    far above the own-dose test's; the decoy (the same genes claimed in a world where they never move) is never
    supported."""
    rng = np.random.default_rng(2)
    genes = [f"G{i}" for i in range(12)]
    frac = {0.05: 0.2, 0.5: 0.7, 5.0: 0.95}
    pooled = own_only = decoy = 0
    n = 0
    for _ in range(25):
        eff = {d: {g: -0.5 * f for g in genes} for d, f in frac.items()}
        sig, doses = series(0.05, eff, rng)
        g = graph(genes, "down")
        st_p = statuses(g, sig, doses)
        st_o = statuses(g, sig, doses, dose_pooling=False)
        pooled += sum(st_p[f"n1:{x}"] == "supported" for x in genes)
        own_only += sum(st_o[f"n1:{x}"] == "supported" for x in genes)
        sig0, doses0 = series(0.05, {}, rng)
        st_d = statuses(graph(genes[:3] + [f"BG{i:04d}" for i in range(5)], "down"), sig0, doses0)
        decoy += sum(v == "supported" for v in st_d.values())
        n += len(genes)
    assert pooled / n >= 0.7, pooled / n
    assert own_only / n <= 0.5 * pooled / n, (own_only / n, pooled / n)
    assert decoy <= 2


def test_contradiction_at_the_dose_itself_wins() -> None:
    """Up at the two higher doses, clearly down at this dose: contradicted, not supported by the series."""
    rng = np.random.default_rng(3)
    genes = ["A1", "A2", "A3", "A4"]
    eff = {0.05: {g: -0.8 for g in genes}, 0.5: {g: 1.0 for g in genes}, 5.0: {g: 1.5 for g in genes}}
    sig, doses = series(0.05, eff, rng)
    st = statuses(graph(genes, "up"), sig, doses)
    assert all(st[f"n1:{g}"] == "contradicted" for g in genes)
    assert st["n1:*"] == "contradicted"


def test_sign_at_this_dose_is_required() -> None:
    """Strongly up at the higher doses, flat (slightly down) here: the series rejects but the sign fails, so
    the claim at this dose is not supported (inconclusive)."""
    rng = np.random.default_rng(4)
    genes = ["B1", "B2", "B3"]
    eff = {0.05: {g: -0.02 for g in genes}, 0.5: {g: 1.0 for g in genes}, 5.0: {g: 1.5 for g in genes}}
    sig, doses = series(0.05, eff, rng)
    # force this dose's estimates below zero (the sign is what is tested, not the noise)
    lfc = [(-abs(x) if g in genes else x) for g, x in zip(sig.genes, sig.log2fc, strict=True)]
    sig = sig.model_copy(update={"log2fc": lfc})
    st = statuses(graph(genes, "up"), sig, doses)
    assert all(st[f"n1:{g}"] == "inconclusive" for g in genes)


def test_pooled_verdicts_are_labelled_and_the_switch_is_recorded() -> None:
    rng = np.random.default_rng(5)
    genes = ["C1", "C2", "C3"]
    eff = {0.05: {g: 0.15 for g in genes}, 0.5: {g: 0.6 for g in genes}, 5.0: {g: 0.9 for g in genes}}
    sig, doses = series(0.05, eff, rng)
    r = run_panel(graph(genes, "up"), condition=sig.condition, signature=sig, doses=doses)
    assert r.settings["dose_pooling"] is True
    sup = [v for v in r.verdicts if v.verifier == "expression" and v.status == "supported"]
    assert sup
    for v in sup:
        assert any(e.source == "dose-pooled" and "dose-pooled: doses 0.05/0.5/5 uM" in e.detail for e in v.evidence)
        assert "any dose" in (v.null or "") or "dose-pooled" in (v.null or "")
        assert v.diagnostics.get("dose_pooled") is True
    off = run_panel(
        graph(genes, "up"),
        condition=sig.condition,
        signature=sig,
        doses=doses,
        settings=PanelSettings(dose_pooling=False),
    )
    assert off.settings["dose_pooling"] is False
    assert not any(e.source == "dose-pooled" for v in off.verdicts for e in v.evidence)


@pytest.mark.parametrize("own", DOSES)
def test_weights_increase_with_dose(own: float) -> None:
    rng = np.random.default_rng(6)
    _, doses = series(own, {}, rng, n_background=10)
    w_own, w = doses.weights()
    by_dose = {own: w_own, **{s.dose: x for s, x in zip(doses.siblings, w, strict=True)}}
    assert [by_dose[d] for d in DOSES] == [1.0, 2.0, 3.0]


def test_dose_series_keeps_one_condition_per_plate_and_none_on_its_own(tmp_path) -> None:
    """Signatures against the same plate's control wells are correlated under the null, so the Stouffer combination
    may only take siblings from other plates, one per plate; a condition without a plate pools nothing. Real
    DuckDB store with registered conditions and stored signatures."""
    from mechcell.datasets.perturbation import ConditionSummary
    from mechcell.datasets.store import Store
    from mechcell.verifiers.doses import dose_series

    def c(dose: float, plate: str | None) -> Condition:
        return Condition(perturbation="DrugX", dose=dose, dose_unit="uM", context="LINE1", batch=plate)

    conds = [c(0.05, "plate1"), c(0.5, "plate1"), c(0.5, "plate2"), c(5.0, "plate2"), c(5.0, "plate3"), c(5.0, None)]
    rng = np.random.default_rng(0)
    with Store(tmp_path / "s.duckdb") as st:
        did = st.register_dataset(
            "virtual.h5ad",
            "h5ad",
            summaries=[ConditionSummary(condition=x, n_cells=100, n_control_cells=100) for x in conds],
            dataset_id="ds",
        )
        for x in conds:
            sig = signature(0.05, {}, 20, rng).model_copy(update={"condition": x})
            st.put_signature(sig, dataset_id=did)
        series_ = dose_series(st, conds[0], dataset_id=did)
        assert series_ is not None
        plates = [s.batch for s in series_.siblings]
        assert "plate1" not in plates and None not in plates  # not its own plate, never an unknown one
        assert len(plates) == len(set(plates)) == 2  # one per plate: plate2 and plate3
        # the rest is kept apart, for the silent-drug gate only: own plate, a second condition on plate2, no plate
        assert sorted(str(p.batch) for p in series_.same_plate) == ["None", "plate1", "plate2"]
        no_plate = dose_series(st, conds[-1], dataset_id=did)  # no plate: independence cannot be checked
        assert no_plate is not None and not no_plate.siblings and len(no_plate.same_plate) == 5


def test_robustness_of_a_dose_pooled_list_is_read_on_the_pooled_scale() -> None:
    """A list supported by the dose series at a weak dose: its breaking point comes from the pooled responses
    (where the list's genes respond), not from this dose alone (where few do, D* ≈ 0.003). Label noise is bounded
    by the list's share of the genes (12 / 412 here) whatever the scale, so the selection D* is what is checked."""
    rng = np.random.default_rng(4)
    genes = [f"G{i}" for i in range(12)]
    frac = {0.05: 0.2, 0.5: 0.7, 5.0: 0.95}
    sig, doses = series(0.05, {d: {g: -0.5 * f for g in genes} for d, f in frac.items()}, rng)
    r = run_panel(
        graph(genes, "down"), condition=sig.condition, signature=sig, settings=PanelSettings(n_permutations=200),
        doses=doses,
    )  # fmt: skip
    v = next(v for v in r.verdicts if v.verifier == "expression" and v.claim.id == "n1:*")
    assert v.status == "supported" and v.diagnostics.get("dose_pooled")
    assert v.robustness is not None and (v.robustness.selection_breaking_point or 0.0) > 0.1, v.robustness
