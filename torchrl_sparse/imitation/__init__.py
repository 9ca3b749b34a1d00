"""Imitation learning: expert datasets for behaviour cloning (see
:class:`~torchrl_sparse.lightning.BehaviourCloning` for the Lightning module)."""

from torchrl_sparse.imitation.dataset import (
    METADATA_FILE,
    ExpertDataset,
    collect_expert_dataset,
    env_id,
    env_specs,
    spec_summary,
)

__all__ = [
    "METADATA_FILE",
    "ExpertDataset",
    "collect_expert_dataset",
    "env_id",
    "env_specs",
    "spec_summary",
]
