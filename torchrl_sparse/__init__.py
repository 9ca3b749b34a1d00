"""torchrl_sparse: sparse training and plasticity for (multi-task) deep RL on TorchRL."""

__version__ = "0.1.0"
