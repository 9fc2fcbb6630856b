"""Decoy identifiability: the KB-only class (identifiable / no readout / indistinguishable) of a decoy edge.

No statistics here (no null, no exchangeable unit): the classes are set-valued functions of the starter KB and the
planted mechanism, checked on hand-built decoys with known answers and on a generated world.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mechcell.datasets.synthetic import DecoyEdge, DrugTruth, SyntheticWorldConfig, generate_world, load_truth
from mechcell.datasets.synthetic.identifiability import (
    active_readouts,
    classify_decoy,
    classify_decoys,
    target_readouts,
)

KW = dict(max_path_len=3, min_regulon_size=8)


@pytest.fixture(scope="module")
def kb():
    from mechcell.knowledge import load_kb

    k = load_kb()
    yield k
    k.close()


def _decoy(drug: str, target: str, kind: str = "other_target") -> DecoyEdge:
    return DecoyEdge(
        drug=drug,
        target=target,
        predicate="inhibits",
        sign=-1,
        sources=["mechcell-starter"],
        model_generated=False,
        kind=kind,
        why="test",
    )


def _drug(name: str, *, tfs: dict[str, str], pathways: dict[str, str], active: bool = True) -> DrugTruth:
    return DrugTruth(
        drug=name,
        active=active,
        kb_targets=[],
        engaged_targets=[],
        decoy_targets=[],
        paths=[],
        tfs=tfs,  # type: ignore[arg-type]
        pathways=pathways,  # type: ignore[arg-type]
        ec50=1.0,
        hill=1.0,
        emax_log2=1.0,
        arrest=0.0,
        base_log2fc={},
    )


def test_readouts_follow_the_signed_kb(kb) -> None:
    mek = target_readouts(kb, "MAP2K1", -1, **KW)
    assert ("tf", "ELK1", -1) in mek and ("pathway", "MAPK", -1) in mek  # MEK ⊣: ERK's TFs and footprint go down
    assert ("tf", "E2F1", -1) in target_readouts(kb, "CDK4", -1, **KW)  # CDK4 ⊣ RB1 ⊣ E2F1: E2F1 down
    assert target_readouts(kb, "CDK9", -1, **KW) == set()  # the starter KB links CDK9 to no expression programme
    assert target_readouts(kb, "MAP2K1", -1, max_path_len=0, min_regulon_size=8) == set()


def test_classes_on_hand_built_decoys(kb) -> None:
    mek_active = active_readouts(_drug("Trametinib", tfs={"ELK1": "down", "MYC": "down"}, pathways={"MAPK": "down"}))
    # a paralog beside the engaged MEK: every readout it predicts, the real mechanism already moves
    v = classify_decoy(kb, _decoy("Trametinib", "MAP2K2"), mek_active, **KW)
    assert v.cls == "indistinguishable" and "tf:ELK1 down" in v.shared_readouts
    # the same target on an inactive drug: its readouts are unmoved, so the data can falsify it
    inactive = active_readouts(_drug("Trametinib", tfs={}, pathways={}, active=False))
    assert inactive == set()
    v = classify_decoy(kb, _decoy("Trametinib", "MAP2K2", "inactive_drug"), inactive, **KW)
    assert v.cls == "identifiable" and v.shared_readouts == []
    # a target the KB links to no expression programme: nothing the data could show
    v = classify_decoy(kb, _decoy("Dinaciclib", "CDK9", "inactive_drug"), inactive, **KW)
    assert v.cls == "no_readout" and v.decoy_readouts == []
    # partial overlap stays identifiable (the decoy predicts something the world does not move)
    proteasome = active_readouts(_drug("Bortezomib", tfs={"NFE2L1": "up", "RELA": "down"}, pathways={}))
    v = classify_decoy(kb, _decoy("Bortezomib", "PSMB1"), proteasome | {("tf", "HSF1", 1)}, **KW)
    assert v.cls == "identifiable" and v.shared_readouts == ["tf:HSF1 up"]


def test_every_decoy_of_a_world_is_classified(tmp_path: Path, kb) -> None:
    cfg = SyntheticWorldConfig(seed=2, n_drugs=12, cells_per_condition=20)
    generate_world(cfg, tmp_path / "w", "h5ad")
    truth = load_truth(tmp_path / "w")
    got = classify_decoys(kb, truth)
    assert set(got) == {(d.drug, d.target) for d in truth.decoys}
    # seed 2 holds inactive-drug decoys the starter KB cannot read out (Dinaciclib → CDK9) and readable ones
    assert {v.cls for v in got.values()} >= {"no_readout", "identifiable"}
    for (drug, _), v in got.items():
        if not truth.drug(drug).active:
            assert v.active_readouts == [] and v.cls != "indistinguishable"
    assert classify_decoys(kb, truth) == got  # a pure function of KB + truth
