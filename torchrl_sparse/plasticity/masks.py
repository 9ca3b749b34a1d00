"""How plasticity tools receive the sparsity masks of :mod:`torchrl_sparse.sparse`.

Masks map a parameter's qualified name, as given by ``module.named_parameters()`` of the module
handed to a metric or intervention, to a bool tensor of the parameter's shape (``True`` = active
connection). They come either as a plain mapping or from any object with a
``named_masks(module)`` method, such as the core's ``Sparsifier``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, TypeAlias, runtime_checkable

import torch
from torch import nn

__all__ = ["MaskProvider", "MaskSource", "incoming_alive", "resolve_masks"]


@runtime_checkable
class MaskProvider(Protocol):
    """Anything that can report the current masks of a module (e.g. the core ``Sparsifier``).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> class AllDense:
        ...     def named_masks(self, module):
        ...         return {n: torch.ones_like(p, dtype=torch.bool)
        ...                 for n, p in module.named_parameters()}
        >>> isinstance(AllDense(), MaskProvider)
        True
    """

    def named_masks(self, module: nn.Module) -> dict[str, torch.Tensor]:
        """Return ``{qualified parameter name: bool mask}`` for ``module``."""
        ...


MaskSource: TypeAlias = Mapping[str, torch.Tensor] | MaskProvider | None


def resolve_masks(masks: MaskSource, module: nn.Module) -> dict[str, torch.Tensor]:
    """Turn a mask source into a plain dict for ``module`` (empty when dense).

    Providers are queried on every call because masks change during sparse training.

    Args:
        masks: a mapping, a :class:`MaskProvider` or ``None``.
        module: the module the parameter names refer to.

    Returns:
        ``{qualified parameter name: bool tensor}``.

    Raises:
        ValueError: if a mask names no parameter of ``module`` or has the wrong shape.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> lin = nn.Linear(2, 3)
        >>> resolve_masks({"weight": torch.ones(3, 2, dtype=torch.bool)}, lin)["weight"].shape
        torch.Size([3, 2])
    """
    if masks is None:
        return {}
    raw = masks.named_masks(module) if isinstance(masks, MaskProvider) else masks
    params = dict(module.named_parameters())
    out: dict[str, torch.Tensor] = {}
    for name, mask in raw.items():
        if name not in params:
            raise ValueError(
                f"mask for {name!r} names no parameter of {type(module).__name__}; "
                f"allowed names are those of named_parameters(), e.g. {list(params)[:4]}"
            )
        if mask.shape != params[name].shape:
            raise ValueError(
                f"mask for {name!r} has shape {tuple(mask.shape)}, expected the parameter's "
                f"shape {tuple(params[name].shape)}"
            )
        out[name] = mask.to(dtype=torch.bool, device=params[name].device)
    return out


def incoming_alive(masks: Mapping[str, torch.Tensor], layer_name: str, units: int) -> torch.Tensor:
    """Which units of a Linear/Conv layer still have at least one active incoming connection.

    Args:
        masks: resolved masks (see :func:`resolve_masks`).
        layer_name: qualified name of the layer (its weight is ``f"{layer_name}.weight"``).
        units: number of output units of the layer.

    Returns:
        Bool tensor of shape ``(units,)``; all ``True`` if the layer has no mask.

    Examples:
        >>> import torch
        >>> m = {"0.weight": torch.tensor([[True, False], [False, False]])}
        >>> incoming_alive(m, "0", 2)
        tensor([ True, False])
    """
    key = f"{layer_name}.weight" if layer_name else "weight"
    mask = masks.get(key)
    if mask is None:
        return torch.ones(units, dtype=torch.bool)
    return mask.reshape(mask.shape[0], -1).any(dim=1).cpu()
