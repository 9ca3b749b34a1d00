"""Lottery tickets of one network as plain tensors: pruning, rewinding, baselines, input masks.

The study (:mod:`torchrl_sparse.lottery.study`) keeps every round's masks and weights as
``{parameter name: tensor}`` dictionaries of the policy network (``ControlPolicy``: the
``Linear`` weights ``encoder.0.weight``, ``encoder.2.weight``, ..., ``head.weight``; biases stay
dense). These functions are the science of Vischer et al. (2022):

- :func:`magnitude_prune`: prune a fraction of the *remaining* weights by magnitude (per layer,
  or across layers);
- :func:`condition_weights`: the ticket and its baselines, from the ticket's mask and the
  network's initial (or early-step) weights;
- :func:`rescale_to_dense_variance`: the initialisation rescaling;
- :func:`input_connections`: which input dimensions keep outgoing connections.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from torchrl_sparse.sparse.masks import keep_top

__all__ = [
    "CONDITIONS",
    "condition_weights",
    "input_connections",
    "magnitude_prune",
    "rescale_to_dense_variance",
    "sparsity",
]

CONDITIONS = ("ticket", "permuted_init", "permuted_mask", "random_reinit")
"""The ticket and its baselines (Vischer et al. 2022):

- ``"ticket"``: the IMP mask with the original initial weights;
- ``"permuted_init"``: the IMP mask with each layer's initial weights permuted at random;
- ``"permuted_mask"``: each layer's mask permuted at random (same count per layer) with
  permuted initial weights;
- ``"random_reinit"``: a random mask at the same overall sparsity with every layer at the same
  density (so the ticket's layer-wise densities are lost too) and a fresh initialisation.
"""


def sparsity(masks: Mapping[str, torch.Tensor]) -> float:
    """Fraction of pruned entries over all masks.

    Examples:
        >>> sparsity({"w": torch.tensor([True, False, False, False])})
        0.75
    """
    total = sum(m.numel() for m in masks.values())
    return 1.0 - sum(int(m.sum()) for m in masks.values()) / total


def magnitude_prune(
    weights: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    fraction: float,
    scope: str = "layer",
) -> dict[str, torch.Tensor]:
    """Prune ``fraction`` of the remaining weights, those of smallest trained magnitude.

    Args:
        weights: the trained weights.
        masks: their current masks (pruned entries stay pruned).
        fraction: fraction of the remaining weights to prune, in ``(0, 1)``.
        scope: ``"layer"`` (each layer loses ``fraction`` of its remaining weights, Frankle &
            Carbin) or ``"global"`` (the smallest magnitudes across all layers).

    Raises:
        ValueError: for a fraction outside ``(0, 1)`` or an unknown scope.

    Examples:
        >>> w = {"a": torch.tensor([0.1, -0.5, 0.3, 0.9]), "b": torch.tensor([2.0, 0.2])}
        >>> m = {k: torch.ones_like(v, dtype=torch.bool) for k, v in w.items()}
        >>> magnitude_prune(w, m, 0.5)["a"].tolist()
        [False, True, False, True]
        >>> magnitude_prune(w, m, 0.5, scope="global")["b"].tolist()
        [True, False]
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction!r}.")
    if scope not in ("layer", "global"):
        raise ValueError(f"Unknown scope {scope!r}; allowed: ['layer', 'global'].")
    # Pruned entries score -1, below every |w|: they stay pruned.
    scores = {k: weights[k].detach().abs().masked_fill(~masks[k], -1.0) for k in masks}
    if scope == "layer":
        return {
            k: keep_top(s, round((1.0 - fraction) * int(masks[k].sum()))) for k, s in scores.items()
        }
    flat = torch.cat([s.flatten() for s in scores.values()])
    active = sum(int(m.sum()) for m in masks.values())
    keep = keep_top(flat, round((1.0 - fraction) * active))
    sizes = [s.numel() for s in scores.values()]
    return {
        k: chunk.reshape(scores[k].shape)
        for k, chunk in zip(scores, keep.split(sizes), strict=True)
    }


def _permuted(tensor: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flat = tensor.flatten()
    return flat[torch.randperm(flat.numel(), generator=generator)].reshape(tensor.shape)


def _fresh_init(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    # PyTorch's default Linear/Conv initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    bound = 1.0 / math.sqrt(math.prod(weight.shape[1:]))
    return (torch.rand(weight.shape, generator=generator) * 2.0 - 1.0) * bound


def rescale_to_dense_variance(
    weight: torch.Tensor, dense: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Scale the surviving ``weight`` entries so the layer keeps its dense second moment.

    ``weight * mask`` is multiplied by ``sqrt(sum(dense^2) / sum((weight * mask)^2))``: the layer
    (zeros included) then has the mean square, i.e. the variance of a zero-mean initialisation,
    of the dense ``dense`` initialisation (the rescaling of Vischer et al. 2022).

    Examples:
        >>> dense = torch.tensor([1.0, -1.0, 1.0, -1.0])
        >>> mask = torch.tensor([True, False, False, False])
        >>> rescale_to_dense_variance(dense, dense, mask).tolist()
        [2.0, 0.0, 0.0, 0.0]
    """
    kept = torch.where(mask, weight, 0.0)
    norm = kept.pow(2).sum()
    if norm == 0:
        return kept
    return kept * torch.sqrt(dense.pow(2).sum() / norm)


def condition_weights(
    initial: Mapping[str, torch.Tensor],
    ticket_masks: Mapping[str, torch.Tensor],
    condition: str,
    generator: torch.Generator,
    rescale: bool = False,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Masks and starting weights of one condition of the study.

    Args:
        initial: the weights to rewind to (the initialisation, or step ``k``'s weights).
        ticket_masks: the IMP masks of this round.
        condition: one of :data:`CONDITIONS`.
        generator: the random generator of permutations and fresh initialisations.
        rescale: rescale each layer's surviving weights to its dense variance
            (:func:`rescale_to_dense_variance`).

    Returns:
        ``(masks, weights)``, with pruned weights at zero.

    Raises:
        ValueError: for an unknown condition.

    Examples:
        >>> init = {"w": torch.arange(1.0, 9.0).reshape(2, 4)}
        >>> mask = {"w": torch.tensor([[True, False, True, False], [False, False, True, True]])}
        >>> g = torch.Generator().manual_seed(0)
        >>> masks, weights = condition_weights(init, mask, "ticket", g)
        >>> weights["w"].tolist()
        [[1.0, 0.0, 3.0, 0.0], [0.0, 0.0, 7.0, 8.0]]
        >>> masks, weights = condition_weights(init, mask, "random_reinit", g)
        >>> int(masks["w"].sum()), weights["w"][~masks["w"]].abs().sum().item()
        (4, 0.0)
    """
    if condition not in CONDITIONS:
        raise ValueError(f"Unknown condition {condition!r}; allowed: {list(CONDITIONS)}.")
    if condition == "random_reinit":
        density = 1.0 - sparsity(ticket_masks)
        masks = {
            k: keep_top(torch.rand(m.shape, generator=generator), round(density * m.numel()))
            for k, m in ticket_masks.items()
        }
        start = {k: _fresh_init(initial[k], generator) for k in ticket_masks}
    elif condition == "ticket":
        masks = {k: m.clone() for k, m in ticket_masks.items()}
        start = {k: initial[k].clone() for k in ticket_masks}
    else:
        start = {k: _permuted(initial[k], generator) for k in ticket_masks}
        masks = {
            k: _permuted(m, generator) if condition == "permuted_mask" else m.clone()
            for k, m in ticket_masks.items()
        }
    weights = {
        k: rescale_to_dense_variance(start[k], initial[k], masks[k])
        if rescale
        else torch.where(masks[k], start[k], 0.0)
        for k in masks
    }
    return masks, weights


def input_connections(first_layer_mask: torch.Tensor) -> torch.Tensor:
    """Outgoing connections kept from each input dimension: the mask's column sums.

    An input with 0 is removed from the network's view altogether.

    Examples:
        >>> input_connections(torch.tensor([[True, False, False], [True, False, True]])).tolist()
        [2, 0, 1]
    """
    return first_layer_mask.sum(dim=0)
