"""Loss hooks and wrappers: PCGrad for multi-task training, plasticity metrics in loss outputs."""

from torchrl_sparse.objectives.hooks import PlasticityLossHook
from torchrl_sparse.objectives.pcgrad import PCGrad, pcgrad_project

__all__ = ["PCGrad", "PlasticityLossHook", "pcgrad_project"]
