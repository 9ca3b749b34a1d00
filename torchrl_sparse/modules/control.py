"""Policy networks for low-dimensional control tasks (CartPole, Acrobot, Pendulum, ...).

:class:`ControlPolicy` is the one network that reinforcement learning (PPO) and behaviour
cloning train in the lottery-ticket study (Vischer et al. 2022), so their tickets can be
compared weight by weight: an MLP ``encoder`` (``Linear``-``Tanh`` blocks) and a ``head`` to the
action logits (discrete actions) or to the mean of a Gaussian with a learned, state-independent
log standard deviation (continuous actions). :func:`make_control_actor` wraps it into a TorchRL
``ProbabilisticActor`` for an environment's action spec.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.data import Categorical, OneHot, TensorSpec
from torchrl.modules import ProbabilisticActor, TanhNormal

__all__ = ["ControlPolicy", "make_control_actor"]


class ControlPolicy(nn.Module):
    """MLP policy: ``obs -> [Linear-Tanh] x len(hidden_sizes) -> Linear -> logits or mean``.

    Args:
        obs_dim: observation size.
        action_dim: number of discrete actions, or the dimension of continuous actions.
        hidden_sizes: widths of the hidden layers (64, 64 as in the lottery-ticket study).
        continuous: Gaussian actions (``forward`` returns ``(loc, scale)``) instead of logits.
        log_std_init: initial log standard deviation of continuous actions.

    Examples:
        >>> net = ControlPolicy(4, 2)
        >>> net(torch.zeros(3, 4)).shape
        torch.Size([3, 2])
        >>> [name for name, _ in net.named_parameters() if name.endswith("weight")]
        ['encoder.0.weight', 'encoder.2.weight', 'head.weight']
        >>> loc, scale = ControlPolicy(3, 1, continuous=True)(torch.zeros(5, 3))
        >>> loc.shape, scale.shape
        (torch.Size([5, 1]), torch.Size([5, 1]))
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_sizes: Sequence[int] = (64, 64),
        continuous: bool = False,
        log_std_init: float = 0.0,
    ) -> None:
        super().__init__()
        if obs_dim < 1 or action_dim < 1 or not hidden_sizes or min(hidden_sizes) < 1:
            raise ValueError(
                f"ControlPolicy needs positive sizes, got obs_dim={obs_dim}, "
                f"action_dim={action_dim}, hidden_sizes={list(hidden_sizes)}."
            )
        layers: list[nn.Module] = []
        width = obs_dim
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.Tanh()]
            width = hidden
        self.encoder = nn.Sequential(*layers)
        self.head = nn.Linear(width, action_dim)
        self.continuous = continuous
        if continuous:
            self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))

    def forward(
        self, observation: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self.encoder(observation))
        if not self.continuous:
            return out
        return out, self.log_std.exp().expand_as(out)


def make_control_actor(policy: ControlPolicy, action_spec: TensorSpec) -> ProbabilisticActor:
    """A TorchRL ``ProbabilisticActor`` over ``policy`` for ``action_spec``.

    Discrete specs (``Categorical`` or ``OneHot``) sample from a categorical over the logits
    (``"logits"``), in the spec's own encoding; continuous (bounded) specs from a ``TanhNormal``
    squashed into the spec's bounds (``"loc"``, ``"scale"``). The log-probability of the sample is
    written to ``"action_log_prob"`` (TorchRL's default key, which ``ClipPPOLoss`` reads).

    Raises:
        ValueError: if the policy's output does not fit the spec.

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl.data import Categorical
        >>> actor = make_control_actor(ControlPolicy(4, 2), Categorical(2))
        >>> actor(TensorDict({"observation": torch.zeros(3, 4)}, [3]))["action"].shape
        torch.Size([3])
    """
    from torchrl.modules.distributions import OneHotCategorical

    if isinstance(action_spec, Categorical | OneHot):
        n = action_spec.space.n
        if policy.continuous or policy.head.out_features != n:
            raise ValueError(
                f"The action spec has {n} discrete actions; the policy outputs "
                f"{policy.head.out_features} {'Gaussian means' if policy.continuous else 'logits'}."
            )
        module = TensorDictModule(policy, in_keys=["observation"], out_keys=["logits"])
        distribution = (
            OneHotCategorical
            if isinstance(action_spec, OneHot)
            else torch.distributions.Categorical
        )
        return ProbabilisticActor(
            module,
            in_keys=["logits"],
            spec=action_spec,
            distribution_class=distribution,
            return_log_prob=True,
        )
    dim = action_spec.shape[-1]
    if not policy.continuous or policy.head.out_features != dim:
        raise ValueError(
            f"The action spec is continuous of dimension {dim}; the policy outputs "
            f"{policy.head.out_features} {'Gaussian means' if policy.continuous else 'logits'}."
        )
    module = TensorDictModule(policy, in_keys=["observation"], out_keys=["loc", "scale"])
    return ProbabilisticActor(
        module,
        in_keys=["loc", "scale"],
        spec=action_spec,
        distribution_class=TanhNormal,
        distribution_kwargs={"low": action_spec.space.low, "high": action_spec.space.high},
        return_log_prob=True,
    )
