"""Builders for the actors and critics of the multi-task papers (PPO on MiniGrid, SAC on MetaWorld).

All networks read ``"observation"`` and the integer ``"task_id"`` from the TensorDict (the one-hot
is computed inside, so the networks also work on data without ``"task_onehot"``).
"""

from __future__ import annotations

from typing import Literal

import torch
from tensordict.nn import NormalParamExtractor, TensorDictModule, TensorDictSequential
from torch import nn
from torchrl.data import Bounded
from torchrl.modules import ProbabilisticActor, TanhNormal, ValueOperator

from torchrl_sparse.modules.encoders import MLP, MiniGridCNN
from torchrl_sparse.modules.heads import MultiHead
from torchrl_sparse.modules.mixture import MixtureOfExperts
from torchrl_sparse.modules.networks import MultiTaskNetwork

__all__ = [
    "LAYER_NORM_PLACEMENTS",
    "MINIGRID_ARCHITECTURES",
    "SAC_ARCHITECTURES",
    "make_minigrid_network",
    "make_ppo_actor",
    "make_ppo_critic",
    "make_sac_actor",
    "make_sac_network",
    "make_sac_qvalue",
]

MINIGRID_ARCHITECTURES = ("mtppo", "moe", "moore")
"""Shared backbone (MTPPO), mixture of experts, mixture of orthogonal experts."""
LAYER_NORM_PLACEMENTS = ("none", "representation", "heads", "both")
"""Where the MiniGrid networks put LayerNorm (see :func:`make_minigrid_network`)."""
LayerNormPlacement = Literal["none", "representation", "heads", "both"]
SAC_ARCHITECTURES = ("mtsac", "moe", "moore")
"""Plain multi-head MLP (MT-SAC, one-hot appended to the input), MoE, MOORE."""

_SUITE_TASKS = {"MT3": 3, "MT5": 5, "MT7": 7, "MT10": 10, "MT50": 50}
# Experts per suite used by MOORE (Hendawy et al.) and Todorov et al.
_DEFAULT_NUM_EXPERTS = {3: 2, 5: 3, 7: 4, 10: 4, 50: 6}
_MINIGRID_HIDDEN = 128
_MINIGRID_ACTIONS = 7


def _resolve_num_tasks(suite: int | str) -> int:
    if isinstance(suite, str):
        if suite not in _SUITE_TASKS:
            raise ValueError(
                f"Unknown suite {suite!r}; allowed: {list(_SUITE_TASKS)} or a number of tasks."
            )
        return _SUITE_TASKS[suite]
    if suite < 1:
        raise ValueError(f"number of tasks must be >= 1, got {suite}.")
    return suite


def _resolve_num_experts(arch: str, num_tasks: int, num_experts: int | None) -> int:
    if num_experts is None:
        if num_tasks not in _DEFAULT_NUM_EXPERTS:
            raise ValueError(
                f"arch={arch!r} with {num_tasks} tasks needs num_experts; defaults exist for "
                f"{sorted(_DEFAULT_NUM_EXPERTS)} tasks."
            )
        return _DEFAULT_NUM_EXPERTS[num_tasks]
    if num_experts < 1:
        raise ValueError(f"num_experts (k) must be >= 1, got {num_experts}.")
    return num_experts


def _check_arch(arch: str, allowed: tuple[str, ...]) -> None:
    if arch not in allowed:
        raise ValueError(f"Unknown arch {arch!r}; allowed: {list(allowed)}.")


def _check_layer_norm(layer_norm: str) -> None:
    if layer_norm not in LAYER_NORM_PLACEMENTS:
        raise ValueError(
            f"Unknown layer_norm placement {layer_norm!r}; allowed: {list(LAYER_NORM_PLACEMENTS)}."
        )


def make_minigrid_network(
    suite: int | str,
    out_features: int,
    arch: Literal["mtppo", "moe", "moore"] = "mtppo",
    num_experts: int | None = None,
    layer_norm: LayerNormPlacement = "none",
    multi_head: bool = True,
) -> MultiTaskNetwork:
    """The MiniGrid network of MOORE / Todorov et al. for ``[..., 3, 7, 7]`` observations.

    - ``"mtppo"``: the CNN (with final ``Tanh``) shared by all tasks.
    - ``"moe"`` / ``"moore"``: ``k`` CNN experts mixed by task weights (orthogonalised for
      MOORE), ``tanh`` after mixing.

    followed by one ``Linear(1024, 128)-Tanh-Linear(128, out)`` head per task, or with
    ``multi_head=False`` a single such head on the features concatenated with the one-hot.

    Args:
        suite: ``"MT3"``, ``"MT5"``, ``"MT7"`` or a number of tasks.
        out_features: ``7`` logits for an actor, ``1`` for a critic.
        arch: ``"mtppo"``, ``"moe"`` or ``"moore"``.
        num_experts: ``k``; defaults to 2, 3, 4 for MT3, MT5, MT7.
        layer_norm: where to put ``LayerNorm`` (the LayerNorm baseline; the papers do not say):
            ``"none"``; ``"representation"``, on the shared 1,024 features fed to the heads
            (after the CNN's ``Tanh``, or after the mixing ``tanh`` for MoE/MOORE);
            ``"heads"``, after the hidden ``Linear`` of every head, before its ``Tanh``;
            ``"both"``.
        multi_head: one head per task (all architectures of the papers) or a single head.

    Returns:
        The network, called as ``net(observation, task_id)``.

    Raises:
        ValueError: for an unknown suite or arch, or ``num_experts < 1``.

    Examples:
        >>> from torchrl_sparse.modules import count_parameters
        >>> count_parameters(make_minigrid_network("MT3", 7, arch="moore"))
        417403
    """
    _check_arch(arch, MINIGRID_ARCHITECTURES)
    _check_layer_norm(layer_norm)
    num_tasks = _resolve_num_tasks(suite)
    norm_representation = layer_norm in ("representation", "both")
    norm_heads = layer_norm in ("heads", "both")
    if arch == "mtppo":
        encoder: nn.Module = MiniGridCNN(final_tanh=True, layer_norm=norm_representation)
    else:
        encoder = MixtureOfExperts(
            MiniGridCNN,
            _resolve_num_experts(arch, num_tasks, num_experts),
            num_tasks,
            orthogonal=arch == "moore",
            layer_norm=norm_representation,
        )
    features = MiniGridCNN.out_features
    if multi_head:
        head: nn.Module = MultiHead(
            num_tasks, features, out_features, _MINIGRID_HIDDEN, nn.Tanh, norm_heads
        )
    else:
        head = MultiHead._make_head(
            features + num_tasks, out_features, _MINIGRID_HIDDEN, nn.Tanh, norm_heads
        )
    return MultiTaskNetwork(encoder, head, num_tasks)


def make_ppo_actor(
    suite: int | str = "MT3",
    arch: Literal["mtppo", "moe", "moore"] = "mtppo",
    num_experts: int | None = None,
    layer_norm: LayerNormPlacement = "none",
    multi_head: bool = True,
) -> ProbabilisticActor:
    """Categorical PPO actor for a MiniGrid suite.

    Reads ``"observation"`` (``[..., 3, 7, 7]`` float) and ``"task_id"``, writes ``"logits"``,
    ``"action"`` (``int64``, 7 actions) and ``"action_log_prob"``.

    Args:
        suite: ``"MT3"``, ``"MT5"``, ``"MT7"`` or a number of tasks.
        arch: ``"mtppo"``, ``"moe"`` or ``"moore"``.
        num_experts: ``k`` for MoE/MOORE (defaults 2, 3, 4 for MT3, MT5, MT7).
        layer_norm: see :func:`make_minigrid_network`.
        multi_head: see :func:`make_minigrid_network`.

    Returns:
        The actor; its network is ``actor.module[0].module`` (a
        :class:`~torchrl_sparse.modules.MultiTaskNetwork`).

    Examples:
        >>> from tensordict import TensorDict
        >>> actor = make_ppo_actor("MT3", arch="moore")
        >>> td = TensorDict(
        ...     {"observation": torch.zeros(4, 3, 7, 7), "task_id": torch.tensor([0, 1, 2, 0])},
        ...     batch_size=[4],
        ... )
        >>> actor(td)["action"].shape
        torch.Size([4])
    """
    net = make_minigrid_network(suite, _MINIGRID_ACTIONS, arch, num_experts, layer_norm, multi_head)
    module = TensorDictModule(net, in_keys=["observation", "task_id"], out_keys=["logits"])
    return ProbabilisticActor(
        module,
        in_keys=["logits"],
        out_keys=["action"],
        distribution_class=torch.distributions.Categorical,
        return_log_prob=True,
    )


def make_ppo_critic(
    suite: int | str = "MT3",
    arch: Literal["mtppo", "moe", "moore"] = "mtppo",
    num_experts: int | None = None,
    layer_norm: LayerNormPlacement = "none",
    multi_head: bool = True,
) -> ValueOperator:
    """State-value critic for a MiniGrid suite, a separate network from the actor.

    Reads ``"observation"`` and ``"task_id"``, writes ``"state_value"`` (``[..., 1]``).

    Args:
        suite: ``"MT3"``, ``"MT5"``, ``"MT7"`` or a number of tasks.
        arch: ``"mtppo"``, ``"moe"`` or ``"moore"``.
        num_experts: ``k`` for MoE/MOORE.
        layer_norm: see :func:`make_minigrid_network`.
        multi_head: see :func:`make_minigrid_network`.

    Returns:
        The critic.

    Examples:
        >>> from torchrl_sparse.modules import count_parameters
        >>> count_parameters(make_ppo_critic("MT3"))
        404531
    """
    net = make_minigrid_network(suite, 1, arch, num_experts, layer_norm, multi_head)
    return ValueOperator(net, in_keys=["observation", "task_id"], out_keys=["state_value"])


def make_sac_network(
    suite: int | str,
    in_dim: int,
    out_features: int,
    width: int = 400,
    num_layers: int = 3,
    arch: Literal["mtsac", "moe", "moore"] = "mtsac",
    num_experts: int | None = None,
    layer_norm: bool = False,
) -> MultiTaskNetwork:
    """Multi-head MLP network for multi-task SAC (McLean et al. 2025).

    - ``"mtsac"``: ``num_layers`` ReLU layers of ``width`` on the input concatenated with the task
      one-hot; the plain baseline that :func:`~torchrl_sparse.modules.match_width` scales.
    - ``"moe"`` / ``"moore"``: ``k`` MLP experts (``num_layers`` linear layers of ``width``, no
      activation after the last) on the input without the one-hot, mixed by task weights,
      ``tanh`` after mixing.

    followed by one ``Linear(width, out_features)`` head per task.

    Args:
        suite: ``"MT10"``, ``"MT50"`` or a number of tasks.
        in_dim: input width without the one-hot (observation, plus action for a Q-network).
        out_features: ``2 * action_dim`` for an actor, ``1`` for a Q-network.
        width: hidden width (400 in the papers; scale it to match parameter counts).
        num_layers: hidden layers.
        arch: ``"mtsac"``, ``"moe"`` or ``"moore"``.
        num_experts: ``k`` (defaults 4 for MT10, 6 for MT50).
        layer_norm: ``LayerNorm`` after each hidden layer.

    Returns:
        The network, called as ``net(observation, task_id[, action])``.

    Raises:
        ValueError: for an unknown suite or arch, ``num_experts < 1``, or a width or depth < 1.

    Examples:
        >>> from torchrl_sparse.modules import count_parameters
        >>> count_parameters(make_sac_network("MT10", 39, 8, arch="moore"))
        1379320
    """
    _check_arch(arch, SAC_ARCHITECTURES)
    num_tasks = _resolve_num_tasks(suite)
    if width < 1 or num_layers < 1:
        raise ValueError(f"width and num_layers must be >= 1, got {width} and {num_layers}.")
    hidden = [width] * num_layers
    if arch == "mtsac":
        encoder: nn.Module = MLP(in_dim + num_tasks, hidden, nn.ReLU, layer_norm)
    else:
        encoder = MixtureOfExperts(
            lambda: MLP(in_dim, hidden, nn.ReLU, layer_norm, activate_last=False),
            _resolve_num_experts(arch, num_tasks, num_experts),
            num_tasks,
            orthogonal=arch == "moore",
        )
    head = MultiHead(num_tasks, width, out_features)
    return MultiTaskNetwork(encoder, head, num_tasks, concat_task_input=arch == "mtsac")


def make_sac_actor(
    suite: int | str = "MT10",
    obs_dim: int = 39,
    action_dim: int = 4,
    width: int = 400,
    num_layers: int = 3,
    arch: Literal["mtsac", "moe", "moore"] = "mtsac",
    num_experts: int | None = None,
    layer_norm: bool = False,
    action_low: float = -1.0,
    action_high: float = 1.0,
) -> ProbabilisticActor:
    """TanhNormal SAC actor with per-task heads (MetaWorld defaults: 39-d obs, 4-d action).

    Reads ``"observation"`` and ``"task_id"``; writes ``"loc"``, ``"scale"``, ``"action"`` and
    ``"action_log_prob"``.

    Args:
        suite: ``"MT10"``, ``"MT50"`` or a number of tasks.
        obs_dim: observation width (without the one-hot).
        action_dim: action width.
        width: hidden width of the actor (scaled independently of the critic).
        num_layers: hidden layers.
        arch: ``"mtsac"``, ``"moe"`` or ``"moore"``.
        num_experts: ``k`` for MoE/MOORE.
        layer_norm: ``LayerNorm`` after hidden layers.
        action_low: lower action bound.
        action_high: upper action bound.

    Returns:
        The actor.

    Examples:
        >>> from tensordict import TensorDict
        >>> actor = make_sac_actor("MT10")
        >>> td = TensorDict(
        ...     {"observation": torch.zeros(3, 39), "task_id": torch.tensor([0, 5, 9])}, [3]
        ... )
        >>> actor(td)["action"].shape
        torch.Size([3, 4])
    """
    net = make_sac_network(
        suite, obs_dim, 2 * action_dim, width, num_layers, arch, num_experts, layer_norm
    )
    module = TensorDictSequential(
        TensorDictModule(net, in_keys=["observation", "task_id"], out_keys=["params"]),
        TensorDictModule(NormalParamExtractor(), in_keys=["params"], out_keys=["loc", "scale"]),
    )
    return ProbabilisticActor(
        module,
        in_keys=["loc", "scale"],
        out_keys=["action"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": action_low, "high": action_high},
        return_log_prob=True,
        # SACLoss reads the action dimension (target entropy) from the spec.
        spec=Bounded(action_low, action_high, shape=(action_dim,)),
    )


def make_sac_qvalue(
    suite: int | str = "MT10",
    obs_dim: int = 39,
    action_dim: int = 4,
    width: int = 400,
    num_layers: int = 3,
    arch: Literal["mtsac", "moe", "moore"] = "mtsac",
    num_experts: int | None = None,
    layer_norm: bool = False,
) -> ValueOperator:
    """One Q-network with per-task heads; ``SACLoss(num_qvalue_nets=2)`` makes the twin.

    Reads ``"observation"``, ``"task_id"`` and ``"action"``; writes ``"state_action_value"``.

    Args:
        suite: ``"MT10"``, ``"MT50"`` or a number of tasks.
        obs_dim: observation width (without the one-hot).
        action_dim: action width.
        width: hidden width of the critic (scale it alone to scale only the critic).
        num_layers: hidden layers.
        arch: ``"mtsac"``, ``"moe"`` or ``"moore"``.
        num_experts: ``k`` for MoE/MOORE.
        layer_norm: ``LayerNorm`` after hidden layers.

    Returns:
        The Q-network.

    Examples:
        >>> from torchrl_sparse.modules import count_parameters
        >>> count_parameters(make_sac_qvalue("MT10"))
        346410
    """
    net = make_sac_network(
        suite, obs_dim + action_dim, 1, width, num_layers, arch, num_experts, layer_norm
    )
    return ValueOperator(
        net, in_keys=["observation", "task_id", "action"], out_keys=["state_action_value"]
    )
