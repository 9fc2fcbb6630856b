"""Synthetic Tahoe-style worlds with known mechanisms: the ground truth verifiers, proposers and evals are
scored on.

    from mechcell.datasets.synthetic import SyntheticWorldConfig, generate_world, load_truth
    summary = generate_world(SyntheticWorldConfig(seed=1), "world/", layout="both")
    truth = load_truth("world/")          # planted graphs per condition key, planted genes, decoy edges

Biology comes from a knowledge base (the starter KB, or the real tables of ../shared/kb); see `mechanisms`.
Nuisance structure (plates confounded with dose, wells, cell cycle, library size, NB counts) is in `expression`.
"""

from mechcell.datasets.synthetic.models import (
    CellLineTruth,
    ConditionTruth,
    DecoyEdge,
    DrugTruth,
    PlantedGene,
    SyntheticWorldConfig,
    Truth,
    WorldSummary,
    load_truth,
)
from mechcell.datasets.synthetic.world import (
    H5AD_FILE,
    TAHOE_DIR,
    WORLD_MD,
    WorldPlan,
    generate_world,
    hill,
    plan_world,
)

__all__ = [
    "H5AD_FILE",
    "TAHOE_DIR",
    "WORLD_MD",
    "CellLineTruth",
    "ConditionTruth",
    "DecoyEdge",
    "DrugTruth",
    "PlantedGene",
    "SyntheticWorldConfig",
    "Truth",
    "WorldPlan",
    "WorldSummary",
    "generate_world",
    "hill",
    "load_truth",
    "plan_world",
]
