"""One copy of a TorchRL loss's stacked network, as a plain module for plasticity metrics.

TorchRL losses keep some networks as stacked functional parameters: ``SACLoss`` holds its
twin Q-networks as ``qvalue_network_params`` with a leading dimension of 2, and the
``qvalue_network`` module itself keeps stale, untrained parameters. Tools that walk a module
(activation probes, dormant ratio, weight norms) need one network with live parameters.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import nn
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import LossModule

from torchrl_sparse.plasticity.masks import MaskProvider

__all__ = ["StackedNetworkView"]


class StackedNetworkView(TensorDictModuleBase):
    """Copy ``index`` of a loss's stacked network, with live parameters.

    The view is a copy of the network's structure whose parameters alias slice ``index`` of the
    loss's stacked parameters: it reads the values the optimizer writes, without copying, and
    writes into them (an in-place change through the view changes the loss's network). The
    view's parameters do not require gradients; :meth:`refresh_gradients` points their
    ``.grad`` at the matching slice of the stacked gradients. The aliasing lasts as long as the
    stacked storage: after the loss moves to another device or dtype, build a new view.

    When the network reads keys that the monitored batches lack (a Q-network's ``"action"``),
    ``action_source`` (the actor) writes them first, sampling from the policy. It is not a
    submodule: probes and norms of the view cover the network only.

    Args:
        loss_module: the TorchRL loss holding ``<network>_params``.
        network: the network's name in the loss, e.g. ``"qvalue_network"``.
        index: which copy of the stack.
        action_source: a TensorDict module that writes the missing inputs, or ``None``.

    Raises:
        ValueError: if the loss has no such network or its parameters are not stacked.
        IndexError: if ``index`` is outside the stack.

    Examples:
        >>> from torchrl_sparse.lightning import MultiTaskSAC
        >>> sac = MultiTaskSAC(width=32, num_layers=2)
        >>> critic = StackedNetworkView(sac.loss_module, "qvalue_network", 0, sac.actor)
        >>> critic.in_keys
        ['observation', 'task_id']
        >>> first = sac.loss_module.qvalue_network_params["module", "encoder", "0", "weight"][0]
        >>> critic.network.module.encoder[0].weight.data_ptr() == first.data_ptr()
        True
    """

    def __init__(
        self,
        loss_module: LossModule,
        network: str,
        index: int = 0,
        action_source: TensorDictModuleBase | None = None,
    ) -> None:
        super().__init__()
        params = getattr(loss_module, f"{network}_params", None)
        if not isinstance(getattr(loss_module, network, None), nn.Module) or params is None:
            raise ValueError(
                f"{type(loss_module).__name__} has no functional network {network!r} "
                f"(expected attributes {network!r} and {network + '_params'!r})."
            )
        if params.batch_dims != 1:
            raise ValueError(
                f"{network}_params must be stacked along one leading dimension, got batch size "
                f"{tuple(params.batch_size)}."
            )
        copies = params.batch_size[0]
        if not 0 <= index < copies:
            raise IndexError(f"index {index} out of range; allowed: 0..{copies - 1}.")
        self.index = index
        self.network = copy.deepcopy(getattr(loss_module, network))
        loss_names = {id(p): name for name, p in loss_module.named_parameters()}
        # (view parameter, stacked parameter, the stacked parameter's name in the loss)
        self._aliases: list[tuple[nn.Parameter, nn.Parameter, str]] = []
        for key, stacked in params.items(include_nested=True, leaves_only=True):
            owner = self.network.get_submodule(".".join(key[:-1]))
            alias = nn.Parameter(stacked.data[index], requires_grad=False)
            owner.register_parameter(key[-1], alias)
            self._aliases.append((alias, stacked, loss_names[id(stacked)]))
        # Plain attributes, not submodules: probes and norms see the network only.
        self.__dict__["_loss_module"] = loss_module
        self.__dict__["_action_source"] = action_source
        produced = set(action_source.out_keys) if action_source is not None else set()
        self.in_keys = [key for key in self.network.in_keys if key not in produced]
        if action_source is not None:
            self.in_keys += [key for key in action_source.in_keys if key not in self.in_keys]
        self.out_keys = list(self.network.out_keys)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Run the network copy, first sampling the inputs it lacks from ``action_source``."""
        source = self._action_source
        present = tensordict.keys(include_nested=True)
        if source is not None and any(k not in present for k in self.network.in_keys):
            with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
                tensordict = source(tensordict)
        return self.network(tensordict)

    def refresh_gradients(self) -> None:
        """Point every parameter's ``.grad`` at its slice of the stacked gradient (or None)."""
        for alias, stacked, _ in self._aliases:
            alias.grad = None if stacked.grad is None else stacked.grad[self.index]

    def masks_from(self, provider: MaskProvider) -> MaskProvider:
        """Translate a provider of the loss's (stacked) masks into masks of this view.

        Args:
            provider: e.g. the :class:`~torchrl_sparse.sparse.Sparsifier` attached to the loss.

        Returns:
            A provider whose ``named_masks(view)`` gives slice ``index`` of every stacked mask,
            keyed by the view's parameter names; queried anew on each call.
        """
        return _SlicedMasks(self, provider)


class _SlicedMasks:
    """``named_masks`` of a :class:`StackedNetworkView`, from the loss's stacked masks."""

    def __init__(self, view: StackedNetworkView, provider: MaskProvider) -> None:
        self.view = view
        self.provider = provider

    def named_masks(self, module: nn.Module) -> dict[str, torch.Tensor]:
        """Slice ``index`` of the stacked masks, keyed by the view's parameter names."""
        stacked: Mapping[str, torch.Tensor] = self.provider.named_masks(self.view._loss_module)
        names = {id(p): name for name, p in self.view.named_parameters()}
        return {
            names[id(alias)]: stacked[loss_name][self.view.index]
            for alias, _, loss_name in self.view._aliases
            if loss_name in stacked
        }
