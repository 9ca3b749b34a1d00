"""Observation encoders: the MiniGrid CNN and a plain MLP torso."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLP", "MiniGridCNN"]


class MiniGridCNN(nn.Module):
    """The MiniGrid CNN of MOORE / Todorov et al.

    ``Conv(3,16,2x2)-ReLU-Conv(16,32,2x2)-ReLU-Conv(32,64,2x2)[-Tanh]``, flattened: a
    ``[..., 3, 7, 7]`` grid gives ``[..., 1024]`` features. The final ``Tanh`` is used by the
    shared-backbone MTPPO; MoE/MOORE experts omit it (the mixture applies ``tanh`` after mixing).

    Args:
        final_tanh: append ``Tanh`` after the last convolution.
        layer_norm: apply ``LayerNorm`` to the flattened features (a plasticity baseline);
            adds ``2 * 1024`` parameters.

    Examples:
        >>> cnn = MiniGridCNN(final_tanh=True)
        >>> cnn(torch.zeros(5, 3, 7, 7)).shape
        torch.Size([5, 1024])
        >>> sum(p.numel() for p in cnn.parameters())
        10544
    """

    out_features: int = 1024

    def __init__(self, final_tanh: bool = False, layer_norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3, 16, kernel_size=2),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=2),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=2),
        ]
        if final_tanh:
            layers.append(nn.Tanh())
        self.conv = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(self.out_features) if layer_norm else nn.Identity()

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        batch = observation.shape[:-3]
        # Conv2d wants exactly one batch dim; fold any leading dims (e.g. [envs, time]).
        x = self.conv(observation.reshape(-1, *observation.shape[-3:]))
        return self.norm(x.reshape(*batch, self.out_features))


class MLP(nn.Sequential):
    """A fully connected torso: ``Linear[-LayerNorm]-activation`` per hidden layer.

    Args:
        in_features: input width.
        hidden: widths of the hidden layers (e.g. ``[400, 400, 400]``).
        activation: activation class, instantiated once per layer.
        layer_norm: insert ``LayerNorm`` after each hidden ``Linear``.
        activate_last: apply normalisation and activation after the last layer too; set to
            ``False`` for MOORE/MoE experts, whose outputs are mixed before the ``tanh``.

    Raises:
        ValueError: if ``hidden`` is empty or holds a width < 1.

    Examples:
        >>> mlp = MLP(49, [400, 400, 400])
        >>> mlp(torch.zeros(2, 49)).shape
        torch.Size([2, 400])
        >>> [name for name, m in mlp.named_modules() if isinstance(m, nn.Linear)]
        ['0', '2', '4']
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        activation: type[nn.Module] = nn.ReLU,
        layer_norm: bool = False,
        activate_last: bool = True,
    ) -> None:
        if len(hidden) == 0 or min(hidden) < 1:
            raise ValueError(f"hidden must be a non-empty list of widths >= 1, got {hidden}.")
        layers: list[nn.Module] = []
        widths = [in_features, *hidden]
        for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Linear(n_in, n_out))
            if activate_last or i < len(hidden) - 1:
                if layer_norm:
                    layers.append(nn.LayerNorm(n_out))
                layers.append(activation())
        super().__init__(*layers)
        self.out_features = hidden[-1]
