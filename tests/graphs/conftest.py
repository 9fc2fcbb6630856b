from __future__ import annotations

import pytest

WORKED_EXAMPLE = """<think> free reasoning, each link marked causal or correlative </think>
<answer> one-paragraph mechanism summary ending in the predicted outcome </answer>
<explain>
set_context(id="n0", cell_type="A549", genotype="KRAS G12S; STK11 LoF")
binds_to(id="n1", actor="Trametinib", target="MAP2K1", affinity="0.9", unit="nM")
modulates_molecule_activity(id="n2", target="MAP2K1", direction="down", via="allosteric inhibition")
modulates_molecule_activity(id="n3", target="MAPK1", direction="down", via="loss of MEK phosphorylation")
regulates_expression(id="n4", regulator="MAPK1", gene_list=["DUSP6","SPRY4","ETV5","FOSL1"], direction="down")
</explain>
<dag>
edge("n1", "n2", relation="causal")
edge("n2", "n3", relation="causal")
edge("n3", "n4", relation="causal")
</dag>
"""


@pytest.fixture
def worked_example() -> str:
    """The worked example of methods/action_graph.md, verbatim."""
    return WORKED_EXAMPLE
