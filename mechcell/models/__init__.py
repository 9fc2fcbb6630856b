"""What learns: the f-TB loss family (`ftb`), GFlowNet plumbing kept in separate parts — environment,
estimator, sampler, replay buffer, trajectory log-ratios — and the hypergrid benchmark environment (`gfn`).

The proposer policy and the expression predictors build on these; this layer imports nothing of ours above
`mechcell.graphs`. Names are resolved lazily so importing a torch-free sibling module (e.g. the predictors)
does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_FTB = (
    "ALPHA_PRESETS",
    "DIVERGENCES",
    "AlphaSchedule",
    "ConditionalLogZ",
    "FTBConfig",
    "LearnedLogZ",
    "devgrad_offset",
    "ftb_loss",
    "ftb_pointwise",
    "ftb_weight",
    "tempered_alpha",
)

_POLICY = (
    "PolicyConfig",
    "PolicyEnv",
    "PolicyModel",
    "PolicyProposer",
    "load_policy",
    "policy_proposer",
    "save_policy",
)
_TRAIN_POLICY = ("PolicyTrainConfig", "train_policy")

__all__ = [*_FTB, *_POLICY, *_TRAIN_POLICY]


def __getattr__(name: str) -> Any:
    if name in _FTB:
        return getattr(importlib.import_module("mechcell.models.ftb"), name)
    if name in _POLICY:
        return getattr(importlib.import_module("mechcell.models.policy"), name)
    if name in _TRAIN_POLICY:
        return getattr(importlib.import_module("mechcell.models.train_policy"), name)
    raise AttributeError(f"module 'mechcell.models' has no attribute {name!r}")
