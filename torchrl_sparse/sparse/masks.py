"""Mask arithmetic shared by the sparse methods.

Every tensor is seen as ``(copies, units)``: stacked copies (``SACLoss``'s Q ensemble) are
sparsified independently, one row each, so every copy has exactly the requested count.
"""

from __future__ import annotations

import torch

__all__ = ["drop_and_grow", "keep_top", "num_active", "random_mask"]


def num_active(density: float, numel: int) -> int:
    """Number of entries kept at ``density`` in a tensor of ``numel`` entries.

    Rounded to the nearest count and clipped to ``[0, numel]``.

    Examples:
        >>> from torchrl_sparse.sparse import num_active
        >>> num_active(0.1, 64), num_active(1.0, 64), num_active(0.0, 64)
        (6, 64, 0)
    """
    return max(0, min(numel, round(density * numel)))


def _rows(tensor: torch.Tensor, copies: int) -> torch.Tensor:
    return tensor.reshape(copies, -1)


def keep_top(scores: torch.Tensor, k: int, copies: int = 1) -> torch.Tensor:
    """Boolean mask keeping the ``k`` highest scores of each copy (row).

    Examples:
        >>> import torch
        >>> from torchrl_sparse.sparse import keep_top
        >>> scores = torch.tensor([[0.1, 0.9, 0.5], [0.7, 0.2, 0.3]])
        >>> keep_top(scores, 2, copies=2)  # two stacked copies: 2 entries in each row
        tensor([[False,  True,  True],
                [ True, False,  True]])
        >>> keep_top(scores, 2)  # one copy: the 2 highest of all 6 entries
        tensor([[False,  True, False],
                [ True, False, False]])
    """
    rows = _rows(scores, copies)
    mask = torch.zeros_like(rows, dtype=torch.bool)
    if k > 0:
        mask.scatter_(1, rows.topk(k, dim=1).indices, True)
    return mask.reshape(scores.shape)


def random_mask(shape: torch.Size, k: int, copies: int, generator: torch.Generator) -> torch.Tensor:
    """Boolean mask with ``k`` entries per copy drawn uniformly at random.

    Examples:
        >>> import torch
        >>> from torchrl_sparse.sparse import random_mask
        >>> shape = torch.Size([2, 3, 4])  # two stacked copies of a 3x4 weight
        >>> mask = random_mask(shape, 5, copies=2, generator=torch.Generator().manual_seed(0))
        >>> mask.dtype, mask.reshape(2, -1).sum(dim=1).tolist()
        (torch.bool, [5, 5])
        >>> torch.equal(mask, random_mask(shape, 5, 2, torch.Generator().manual_seed(0)))
        True
    """
    scores = torch.rand(shape, generator=generator)
    return keep_top(scores, k, copies)


def drop_and_grow(
    mask: torch.Tensor,
    magnitude: torch.Tensor,
    grow_scores: torch.Tensor,
    drop: int,
    copies: int,
) -> torch.Tensor:
    """Drop the ``drop`` smallest-magnitude active entries of each copy and grow as many.

    Growth picks the highest ``grow_scores`` among entries that were inactive *before* the drop,
    so a connection dropped now is not regrown in the same update and every grown connection
    is new (it starts at zero with zero optimizer state).

    Args:
        mask: current boolean mask.
        magnitude: ``|w|``, ranks active entries for dropping.
        grow_scores: ranks inactive entries for growth (random numbers for SET, ``|grad|``
            for RigL).
        drop: entries to drop (and grow) per copy; clipped to what is available.
        copies: number of independent stacked copies.

    Examples:
        Entry 1 (the smallest active magnitude) is dropped and, though it has the highest grow
        score, not regrown; entry 4 grows instead:

        >>> import torch
        >>> from torchrl_sparse.sparse import drop_and_grow
        >>> mask = torch.tensor([True, True, True, False, False, False])
        >>> magnitude = torch.tensor([0.9, 0.1, 0.5, 0.0, 0.0, 0.0])
        >>> grow_scores = torch.tensor([0.0, 1.0, 0.0, 0.2, 0.8, 0.4])  # e.g. |grad| (RigL)
        >>> drop_and_grow(mask, magnitude, grow_scores, drop=1, copies=1)
        tensor([ True, False,  True, False,  True, False])
    """
    rows = _rows(mask, copies)
    active = rows.sum(dim=1)
    drop = max(0, min(drop, int(active.min()), int((rows.shape[1] - active).min())))
    if drop == 0:
        return mask.clone()
    # Inactive entries get +inf so they are never "dropped"; active ones -inf so never "grown".
    drop_scores = _rows(magnitude, copies).masked_fill(~rows, float("inf"))
    dropped = drop_scores.topk(drop, dim=1, largest=False).indices
    candidates = _rows(grow_scores, copies).masked_fill(rows, float("-inf"))
    grown = candidates.topk(drop, dim=1).indices
    new = rows.clone()
    new.scatter_(1, dropped, False)
    new.scatter_(1, grown, True)
    return new.reshape(mask.shape)
