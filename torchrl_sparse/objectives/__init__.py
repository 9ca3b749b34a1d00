"""Losses, loss hooks and wrappers: multi-task SAC, PCGrad, plasticity metrics in loss outputs,
views of stacked loss networks."""

from torchrl_sparse.objectives.hooks import PlasticityLossHook
from torchrl_sparse.objectives.multitask_sac import MultiTaskSACLoss
from torchrl_sparse.objectives.pcgrad import PCGrad, pcgrad_project
from torchrl_sparse.objectives.stacked_view import StackedNetworkView

__all__ = [
    "MultiTaskSACLoss",
    "PCGrad",
    "PlasticityLossHook",
    "StackedNetworkView",
    "pcgrad_project",
]
