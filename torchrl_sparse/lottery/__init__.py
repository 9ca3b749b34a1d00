"""Lottery tickets in RL vs behaviour cloning (Vischer et al. 2022): the IMP study and its parts."""

from torchrl_sparse.lottery.tickets import (
    CONDITIONS,
    condition_weights,
    input_connections,
    magnitude_prune,
    rescale_to_dense_variance,
    sparsity,
)

__all__ = [
    "CONDITIONS",
    "condition_weights",
    "input_connections",
    "magnitude_prune",
    "rescale_to_dense_variance",
    "sparsity",
]
