"""A small synthetic world for the eval tests, generated once per session (real files: h5ad + truth.json)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mechcell.datasets.synthetic import SyntheticWorldConfig, Truth, generate_world, load_truth
from mechcell.knowledge import KnowledgeBase, load_kb

CONFIG = SyntheticWorldConfig(
    seed=5,
    n_drugs=5,
    n_cell_lines=1,
    doses=[5.0],
    n_genes=300,
    cells_per_condition=60,
    frac_inactive=0.2,
    frac_decoy=0.4,
)


@pytest.fixture(scope="session")
def eval_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.getbasetemp() / "eval-world"
    if not (root / "truth.json").is_file():
        generate_world(CONFIG, root, layout="h5ad")
    return root


@pytest.fixture(scope="session")
def truth(eval_world: Path) -> Truth:
    return load_truth(eval_world)


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return load_kb(None)
