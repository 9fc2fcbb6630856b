"""Can expression data tell a decoy target from the drug's real mechanism? Decided from the KB alone.

Why: a decoy edge ("the drug binds B", B a KB annotation the world does not act on) is only falsifiable by RNA when
trusting it predicts something the data can show *and* the real mechanism does not already produce. When neither
holds, a verifier that supports the claim is not wrong about the data — the benchmark asked an unanswerable question.
The definition below is fixed in advance and reads the KB and the planted engaged targets only, never a verdict:

- readouts of a target t under the drug's recorded action a (+1 activates, −1 inhibits): every TF with a regulon of
  ≥ `min_regulon_size` genes and every pathway footprint anchored at a node, for the nodes reached from t by a signed
  KB path of ≤ `max_path_len` steps (t itself included, step 0), each with the predicted activity sign
  a × (sign of the shortest signed paths; both signs when shortest paths disagree) × (the anchor's sign);
- the active mechanism's readouts: what the world moves — the planted TFs and pathways with their directions
  (`DrugTruth.tfs`, `.pathways`; none for an inactive drug). Not the KB reach of the engaged targets: the world plants
  a few of the TFs an engaged target reaches, and a decoy predicting the others is falsifiable by the data;
- class `no_readout`: the decoy has no readout (the KB links B to no expression programme, so the data cannot speak
  to it); `indistinguishable`: every readout of the decoy is also a readout of the active mechanism with the same
  sign (paralogs such as MAP2K1/MAP2K2, targets upstream of the same TF); else `identifiable`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from mechcell.datasets.synthetic.models import DecoyEdge, DrugTruth, Truth
    from mechcell.knowledge import KnowledgeBase

Readout = tuple[str, str, int]  # ("tf" | "pathway", name, predicted activity sign)
DecoyClass = Literal["identifiable", "no_readout", "indistinguishable"]


class DecoyIdentifiability(BaseModel):
    """One decoy edge's class and the KB readouts behind it."""

    model_config = ConfigDict(frozen=True)

    drug: str
    target: str
    kind: str
    cls: DecoyClass
    decoy_readouts: list[str] = Field(description="the decoy target's predicted readouts, e.g. 'tf:E2F1 down'")
    active_readouts: list[str] = Field(description="what the drug's active mechanism moves (planted TFs, pathways)")
    shared_readouts: list[str] = Field(description="decoy readouts the active mechanism also moves (same sign)")


def _signed_reach(kb: KnowledgeBase, source: str, max_len: int) -> dict[str, set[int]]:
    """Node → signs of the shortest signed paths from `source` (≤ max_len steps; unsigned edges are not followed)."""
    adj = kb.adjacency()
    signs: dict[str, set[int]] = {source: {1}}
    frontier = [source]
    for _ in range(max_len):
        layer: dict[str, set[int]] = {}
        for u in frontier:
            for v, s in adj.succ.get(u, ()):
                if s == 0 or v in signs:
                    continue
                layer.setdefault(v, set()).update(x * s for x in signs[u])
        signs.update(layer)
        frontier = list(layer)
    return signs


def target_readouts(kb: KnowledgeBase, target: str, action: int, *, max_path_len: int, min_regulon_size: int) -> set:
    """The target's readouts (see the module docstring) as a set of (kind, name, sign)."""
    anchors: dict[str, list[tuple[str, int]]] = {}
    for pw in kb.footprint_names():
        for rel in kb.pathway_anchors(pw):
            anchors.setdefault(rel.subject, []).append((pw, rel.sign or 1))
    tfs = {tf for tf in kb.regulon_tfs() if len(kb.regulon(tf)) >= min_regulon_size}
    out: set[Readout] = set()
    for node, signs in _signed_reach(kb, target, max_path_len).items():
        for s in signs:
            if node in tfs:
                out.add(("tf", node, action * s))
            for pw, a_sign in anchors.get(node, []):
                out.add(("pathway", pw, action * s * a_sign))
    return out


def _fmt(r: set[Readout]) -> list[str]:
    return sorted(f"{k}:{n} {'up' if s > 0 else 'down'}" for k, n, s in r)


def classify_decoy(
    kb: KnowledgeBase, decoy: DecoyEdge, active: set[Readout], *, max_path_len: int, min_regulon_size: int
) -> DecoyIdentifiability:
    """Class of one decoy; `active`: the readouts the drug's real mechanism moves (see `active_readouts`)."""
    mine = target_readouts(
        kb, decoy.target, decoy.sign or -1, max_path_len=max_path_len, min_regulon_size=min_regulon_size
    )
    cls: DecoyClass = "no_readout" if not mine else "indistinguishable" if mine <= active else "identifiable"
    return DecoyIdentifiability(
        drug=decoy.drug,
        target=decoy.target,
        kind=decoy.kind,
        cls=cls,
        decoy_readouts=_fmt(mine),
        active_readouts=_fmt(active),
        shared_readouts=_fmt(mine & active),
    )


def active_readouts(drug: DrugTruth) -> set[Readout]:
    """The readouts a drug's planted mechanism moves: its planted TFs and pathways with their directions."""
    if not drug.active:
        return set()
    sign = {"up": 1, "down": -1}
    return {("tf", k, sign[v]) for k, v in drug.tfs.items()} | {
        ("pathway", k, sign[v]) for k, v in drug.pathways.items()
    }


def classify_decoys(kb: KnowledgeBase, truth: Truth) -> dict[tuple[str, str], DecoyIdentifiability]:
    """(drug, decoy target) → class, for every decoy edge of a world (KB + planted mechanism only, no verdicts)."""
    cfg = truth.config
    return {
        (d.drug, d.target): classify_decoy(
            kb,
            d,
            active_readouts(truth.drug(d.drug)),
            max_path_len=cfg.max_path_len,
            min_regulon_size=cfg.min_regulon_size,
        )
        for d in truth.decoys
    }
