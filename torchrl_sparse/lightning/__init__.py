"""Lightning recipes: multi-task PPO and SAC modules, callbacks and the ``torchrl-sparse`` CLI."""

from torchrl_sparse.lightning.callbacks import FrameCheckpoint, SparsityCallback, SummaryFigure
from torchrl_sparse.lightning.loader import CollectorLoader
from torchrl_sparse.lightning.plasticity import (
    PlasticityMonitorCallback,
    ReDoCallback,
    ResetCallback,
    ShrinkAndPerturbCallback,
)
from torchrl_sparse.lightning.ppo import MultiTaskPPO
from torchrl_sparse.lightning.sac import MultiTaskSAC

__all__ = [
    "CollectorLoader",
    "FrameCheckpoint",
    "MultiTaskPPO",
    "MultiTaskSAC",
    "PlasticityMonitorCallback",
    "ReDoCallback",
    "ResetCallback",
    "ShrinkAndPerturbCallback",
    "SparsityCallback",
    "SummaryFigure",
]
