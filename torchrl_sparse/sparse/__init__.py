"""Sparse training: masks, schedules, layer distributions and methods (GMP, SET, RigL, ...).

Examples:
    >>> import torch
    >>> from torchrl_sparse.sparse import SET, ERK, Sparsifier
    >>> net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    >>> optimizer = torch.optim.Adam(net.parameters())
    >>> sparsifier = Sparsifier(net, {"*": 0.9}, method=SET(), distribution=ERK(),
    ...                         optimizer=optimizer)
    >>> round(sparsifier.stats()["sparsity/total"], 2)
    0.9
"""

from torchrl_sparse.sparse.distributions import ER, ERK, LayerDistribution, Uniform
from torchrl_sparse.sparse.masks import drop_and_grow, keep_top, num_active, random_mask
from torchrl_sparse.sparse.methods import (
    GMP,
    SET,
    IterativeMagnitudePruning,
    MethodContext,
    RigL,
    SparseMethod,
    StaticSparse,
)
from torchrl_sparse.sparse.schedules import (
    ConstantSchedule,
    CubicSchedule,
    ResolvedSchedule,
    SparsitySchedule,
)
from torchrl_sparse.sparse.sparsifier import Sparsifier, flops_per_forward, preserves_zeros
from torchrl_sparse.sparse.targets import SparseTarget, SparsityGroup, find_layers, find_targets

__all__ = [
    "ER",
    "ERK",
    "GMP",
    "SET",
    "ConstantSchedule",
    "CubicSchedule",
    "IterativeMagnitudePruning",
    "LayerDistribution",
    "MethodContext",
    "ResolvedSchedule",
    "RigL",
    "SparseMethod",
    "SparseTarget",
    "Sparsifier",
    "SparsityGroup",
    "SparsitySchedule",
    "StaticSparse",
    "Uniform",
    "drop_and_grow",
    "find_layers",
    "find_targets",
    "flops_per_forward",
    "keep_top",
    "num_active",
    "preserves_zeros",
    "random_mask",
]
