"""Losses, loss hooks and wrappers: multi-task SAC, PCGrad, plasticity metrics in loss outputs."""

from torchrl_sparse.objectives.hooks import PlasticityLossHook
from torchrl_sparse.objectives.multitask_sac import MultiTaskSACLoss
from torchrl_sparse.objectives.pcgrad import PCGrad, pcgrad_project

__all__ = ["MultiTaskSACLoss", "PCGrad", "PlasticityLossHook", "pcgrad_project"]
