"""Layer-sparsity distributions: how a group's sparsity target is split across its layers.

Each distribution maps the shapes of a group's weight tensors and the group's target sparsity to
one density per layer. They are swappable pieces, independent of the sparse method (the
JaxPruner split).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch

__all__ = ["ER", "ERK", "LayerDistribution", "Uniform"]


class LayerDistribution(ABC):
    """Maps the weight shapes of a group and its target sparsity to per-layer densities.

    Examples:
        A distribution that keeps a group's first layer dense (the others at its density):

        >>> import torch
        >>> from torchrl_sparse.sparse import LayerDistribution, Sparsifier, StaticSparse
        >>> class DenseFirst(LayerDistribution):
        ...     def densities(self, shapes, sparsity):
        ...         return [1.0] + [1.0 - sparsity] * (len(shapes) - 1)
        >>> DenseFirst().densities([torch.Size([8, 4]), torch.Size([2, 8])], 0.75)
        [1.0, 0.25]
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> sparsifier = Sparsifier(net, {"*": 0.75}, method=StaticSparse(),
        ...                         distribution=DenseFirst())
        >>> sparsifier.stats()["sparsity/0"], sparsifier.stats()["sparsity/2"]
        (0.0, 0.75)
    """

    @abstractmethod
    def densities(self, shapes: Sequence[torch.Size], sparsity: float) -> list[float]:
        """Return the density (fraction of kept weights) of each layer, each in ``[0, 1]``."""


class Uniform(LayerDistribution):
    """Every layer gets the group's sparsity.

    Examples:
        >>> import torch
        >>> from torchrl_sparse.sparse import Uniform
        >>> Uniform().densities([torch.Size([8, 4]), torch.Size([2, 8])], 0.75)
        [0.25, 0.25]
    """

    def densities(self, shapes: Sequence[torch.Size], sparsity: float) -> list[float]:
        return [1.0 - sparsity for _ in shapes]


class ER(LayerDistribution):
    """Erdos-Renyi: density proportional to ``(n_in + n_out) / (n_in * n_out)``.

    With ``epsilon=None`` (the default) the scale is solved so that the group as a whole meets
    its target (Evci et al., RigL); layers whose density would exceed 1 are kept dense and the
    remaining budget is redistributed over the others. With ``epsilon`` set, the density of each
    layer is ``min(1, epsilon * score)`` as in SET (Mocanu et al., ``epsilon = 11``) and the
    group's sparsity target is not used: the resulting sparsity is whatever epsilon gives.

    Args:
        epsilon: SET's density parameter; ``None`` scales to the target instead.

    Examples:
        >>> import torch
        >>> from torchrl_sparse.sparse import ERK
        >>> shapes = [torch.Size([16, 3, 2, 2]), torch.Size([128, 1024])]
        >>> densities = ERK().densities(shapes, 0.9)
        >>> kept = sum(d * s.numel() for d, s in zip(densities, shapes))
        >>> round(kept / sum(s.numel() for s in shapes), 6)
        0.1
    """

    kernel: bool = False

    def __init__(self, epsilon: float | None = None) -> None:
        if epsilon is not None and epsilon <= 0:
            raise ValueError(f"epsilon must be positive or None, got {epsilon!r}.")
        self.epsilon = epsilon

    def score(self, shape: torch.Size) -> float:
        """Raw density score of one weight tensor shaped ``(n_out, n_in, *kernel)``."""
        dims = list(shape) if self.kernel else list(shape[:2])
        return sum(dims) / math.prod(dims)

    def densities(self, shapes: Sequence[torch.Size], sparsity: float) -> list[float]:
        scores = [self.score(shape) for shape in shapes]
        if self.epsilon is not None:
            return [min(1.0, self.epsilon * score) for score in scores]
        sizes = [shape.numel() for shape in shapes]
        budget = (1.0 - sparsity) * sum(sizes)
        dense: set[int] = set()
        # Solve for the scale; any layer pushed over density 1 is fixed dense and removed from
        # the scaled set, which raises the scale of the others. At most len(shapes) rounds.
        while True:
            free_budget = budget - sum(sizes[i] for i in dense)
            free_mass = sum(scores[i] * sizes[i] for i in range(len(shapes)) if i not in dense)
            scale = free_budget / free_mass if free_mass > 0 else 0.0
            overflow = {i for i in range(len(shapes)) if i not in dense and scale * scores[i] > 1.0}
            if not overflow:
                break
            dense |= overflow
        return [1.0 if i in dense else scale * scores[i] for i in range(len(shapes))]


class ERK(ER):
    """Erdos-Renyi-Kernel: like :class:`ER` with the kernel sizes in the score.

    The score of a ``(n_out, n_in, k_h, k_w)`` kernel is
    ``(n_out + n_in + k_h + k_w) / (n_out * n_in * k_h * k_w)``; for ``Linear`` layers it
    equals :class:`ER`.

    Examples:
        >>> import torch
        >>> from torchrl_sparse.sparse import ERK
        >>> ERK(epsilon=11).densities([torch.Size([400, 400])], 0.0)
        [0.055]
    """

    kernel = True
