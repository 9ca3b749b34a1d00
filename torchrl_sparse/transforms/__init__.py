"""TorchRL environment transforms for multi-task RL."""

from torchrl_sparse.transforms.minigrid import MiniGridObservation
from torchrl_sparse.transforms.task import TaskOneHot

__all__ = ["MiniGridObservation", "TaskOneHot"]
