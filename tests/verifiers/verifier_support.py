from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mechcell.datasets.schemas import Condition, Signature
from mechcell.knowledge import KnowledgeBase, load_kb

TRAMETINIB = """<explain>
set_context(id="n0", cell_type="A549")
binds_to(id="n1", actor="Trametinib", target="MAP2K1")
modulates_molecule_activity(id="n2", target="MAP2K1", direction="down", via="allosteric inhibition")
modulates_molecule_activity(id="n3", target="MAPK1", direction="down")
regulates_expression(id="n4", regulator="MAPK1", gene_list=["DUSP6","SPRY4","ETV5","FOSL1"], direction="{dir}")
</explain>
<dag>
edge("n1","n2")
edge("n2","n3")
edge("n3","n4")
</dag>"""

MAPK_DOWN = ["DUSP6", "SPRY4", "ETV5", "FOSL1", "SPRY2", "ETV4", "DUSP4", "EGR1", "FOS", "MYC", "CCND1", "IER3"]


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return load_kb(None)


def make_signature(
    condition: Condition, down: list[str], up: list[str], *, n_background: int = 800, effect: float = 1.5, seed: int = 0
) -> Signature:
    """A signature whose `down`/`up` genes move by ±effect (p ≈ 1e-12) and everything else is noise (null)."""
    rng = np.random.default_rng(seed)
    genes = list(dict.fromkeys([*down, *up, *[f"BG{i:04d}" for i in range(n_background)]]))
    se = 0.1
    lfc = rng.normal(0.0, se, len(genes))
    for i, g in enumerate(genes):
        if g in down:
            lfc[i] = -effect + rng.normal(0, 0.05)
        elif g in up:
            lfc[i] = effect + rng.normal(0, 0.05)
    p = 2 * stats.norm.sf(np.abs(lfc) / se)
    from mechcell.causal_stats.evalues import bh_adjust

    return Signature(
        condition=condition,
        method="welch_t",
        n_treated=200,
        n_control=200,
        genes=genes,
        log2fc=lfc.tolist(),
        pvalue=p.tolist(),
        padj=bh_adjust(p).tolist(),
    )


@pytest.fixture
def condition() -> Condition:
    return Condition(perturbation="Trametinib", dose=0.5, dose_unit="uM", context="A549", batch="plate2")


@pytest.fixture
def mek_signature(condition: Condition) -> Signature:
    return make_signature(condition, down=MAPK_DOWN, up=[])
