"""Q-networks of the DQN studies: the MinAtar network and the Nature DQN CNN.

Both are an ``encoder`` (the convolutions and the hidden fully-connected layer, whose output is
the representation that plasticity metrics such as srank read) followed by a ``head`` (one
``Linear`` to the action values). A ``width`` multiplier scales every hidden layer, as in the
sparse-training studies (Graesser et al. 2022; "A Closer Look at Sparse Training in Deep RL").
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torchrl.modules import QValueActor

__all__ = ["QNETWORKS", "MinAtarQNetwork", "NatureQNetwork", "make_qvalue_actor"]


def _scaled(units: int, width: float) -> int:
    return max(1, round(units * width))


def _check_width(width: float) -> None:
    if not width > 0:
        raise ValueError(f"width must be > 0 (a multiplier of the hidden sizes), got {width!r}.")


class MinAtarQNetwork(nn.Module):
    """The MinAtar Q-network (Young & Tian 2019).

    ``Conv(C, 16, 3x3, stride 1)-ReLU-Flatten-Linear(16*8*8, 128)-ReLU-Linear(128, A)``, with 16
    and 128 multiplied by ``width``. Input: ``[..., C, 10, 10]`` 0/1 channels (float or uint8).

    Args:
        in_channels: the game's channels (4 to 10).
        num_actions: size of the game's minimal action set.
        width: multiplier of the hidden sizes.

    Examples:
        >>> net = MinAtarQNetwork(4, 3)
        >>> net(torch.zeros(2, 4, 10, 10)).shape
        torch.Size([2, 3])
        >>> sum(p.numel() for p in net.parameters())
        132179
        >>> [name for name, _ in net.named_children()]
        ['encoder', 'head']
    """

    def __init__(self, in_channels: int, num_actions: int, width: float = 1.0) -> None:
        super().__init__()
        _check_width(width)
        channels, hidden = _scaled(16, width), _scaled(128, width)
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, channels, kernel_size=3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(channels * 8 * 8, hidden),
            nn.ReLU(),
        )
        self.head = nn.Linear(hidden, num_actions)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        batch = observation.shape[:-3]
        # float: the replay buffer stores the 0/1 channels as uint8
        features = self.encoder(observation.reshape(-1, *observation.shape[-3:]).float())
        return self.head(features).reshape(*batch, -1)


class NatureQNetwork(nn.Module):
    """The Nature DQN CNN (Mnih et al. 2015) on 4 stacked 84x84 grayscale frames.

    ``Conv(4,32,8,s4)-ReLU-Conv(32,64,4,s2)-ReLU-Conv(64,64,3,s1)-ReLU-Flatten-Linear(3136,512)
    -ReLU-Linear(512,A)``, every hidden size multiplied by ``width``. Input: ``uint8`` (or float)
    pixels in ``[0, 255]``, ``[..., 4, 84, 84]``; the network divides by 255.

    Args:
        num_actions: number of actions.
        width: multiplier of the hidden sizes.
        in_channels: stacked frames.

    Examples:
        >>> net = NatureQNetwork(6)
        >>> net(torch.zeros(2, 4, 84, 84, dtype=torch.uint8)).shape
        torch.Size([2, 6])
        >>> sum(p.numel() for p in net.parameters())
        1687206
    """

    def __init__(self, num_actions: int, width: float = 1.0, in_channels: int = 4) -> None:
        super().__init__()
        _check_width(width)
        c1, c2, c3, hidden = (_scaled(n, width) for n in (32, 64, 64, 512))
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(c1, c2, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(c2, c3, kernel_size=3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(c3 * 7 * 7, hidden),
            nn.ReLU(),
        )
        self.head = nn.Linear(hidden, num_actions)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        batch = observation.shape[:-3]
        pixels = observation.reshape(-1, *observation.shape[-3:]).float() / 255.0
        return self.head(self.encoder(pixels)).reshape(*batch, -1)


QNETWORKS = ("minatar", "nature")
"""Q-network names for :func:`make_qvalue_actor`."""


def make_qvalue_actor(
    network: Literal["minatar", "nature"],
    observation_shape: tuple[int, ...],
    num_actions: int,
    width: float = 1.0,
    bias: bool = True,
) -> QValueActor:
    """A TorchRL ``QValueActor`` (greedy action, ``"action_value"``, ``"chosen_action_value"``).

    Args:
        network: ``"minatar"`` (:class:`MinAtarQNetwork`) or ``"nature"``
            (:class:`NatureQNetwork`).
        observation_shape: ``(C, H, W)`` of the ``"observation"`` entry.
        num_actions: number of discrete actions (the action spec's ``n``).
        width: multiplier of the hidden sizes.
        bias: ``False`` builds every layer without bias parameters (rather than masking them
            away: no parameter, no optimizer state).

    Raises:
        ValueError: for an unknown network or an observation shape it cannot read.

    Examples:
        >>> actor = make_qvalue_actor("minatar", (4, 10, 10), 3)
        >>> from tensordict import TensorDict
        >>> td = actor(TensorDict({"observation": torch.zeros(5, 4, 10, 10)}, [5]))
        >>> td["action"].shape, td["action_value"].shape
        (torch.Size([5]), torch.Size([5, 3]))
    """
    if network not in QNETWORKS:
        raise ValueError(f"Unknown Q-network {network!r}; allowed: {list(QNETWORKS)}.")
    if network == "minatar":
        if len(observation_shape) != 3 or tuple(observation_shape[1:]) != (10, 10):
            raise ValueError(
                f"the MinAtar network reads [C, 10, 10] observations, got {observation_shape}."
            )
        module: nn.Module = MinAtarQNetwork(observation_shape[0], num_actions, width)
    else:
        if len(observation_shape) != 3 or tuple(observation_shape[1:]) != (84, 84):
            raise ValueError(
                f"the Nature CNN reads [frames, 84, 84] observations, got {observation_shape}."
            )
        module = NatureQNetwork(num_actions, width, in_channels=observation_shape[0])
    if not bias:
        _remove_biases(module)
    return QValueActor(module, in_keys=["observation"], action_space="categorical")


def _remove_biases(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d) and layer.bias is not None:
            layer.bias = None
