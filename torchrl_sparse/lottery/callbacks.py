"""Lightning callbacks of the lottery study: hold a fixed mask, snapshot the weights at step k."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from torchrl_sparse.sparse import Sparsifier, StaticSparse

__all__ = ["HoldMasks", "SnapshotAtStep"]


class HoldMasks(pl.Callback):
    """Train ``pl_module.policy_network`` under fixed masks (pruned entries stay exactly zero).

    A :class:`~torchrl_sparse.sparse.Sparsifier` with :class:`~torchrl_sparse.sparse.StaticSparse`
    on the policy network, attached to the trainer's optimizers: weights, gradients and
    optimizer state keep the pruned entries at zero after every step.

    Args:
        masks: ``{parameter name of the policy network: boolean mask}`` for every ``Linear``
            weight.

    Examples:
        >>> from torchrl_sparse.modules import ControlPolicy
        >>> net = ControlPolicy(4, 2, hidden_sizes=(8,))
        >>> masks = {k: torch.rand(v.shape) > 0.5 for k, v in net.named_parameters()
        ...          if k.endswith("weight")}
        >>> HoldMasks(masks).masks.keys() == masks.keys()
        True
    """

    def __init__(self, masks: dict[str, torch.Tensor]) -> None:
        self.masks = masks
        self.sparsifier: Sparsifier | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.sparsifier = Sparsifier(
            pl_module.policy_network,
            {"*": 0.0},  # the masks are given: the group's sparsity is not used
            method=StaticSparse(masks=self.masks),
            optimizer=trainer.optimizers,
        )

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.sparsifier is not None:
            self.sparsifier.remove()


class SnapshotAtStep(pl.Callback):
    """Keep a copy of ``pl_module.policy_network``'s state after ``step`` optimizer steps.

    ``step=0`` copies the weights the training starts from. The snapshot is what late rewinding
    (Frankle et al. 2020) rewinds survivors to.

    Examples:
        >>> SnapshotAtStep(0).weights is None
        True
    """

    def __init__(self, step: int) -> None:
        self.step = step
        self.weights: dict[str, torch.Tensor] | None = None
        self._steps = 0
        self._handles: list[Any] = []

    def _take(self, pl_module: pl.LightningModule) -> None:
        self.weights = {
            k: v.detach().clone() for k, v in pl_module.policy_network.state_dict().items()
        }

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.step == 0:
            self._take(pl_module)
            return

        def count(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            self._steps += 1
            if self._steps == self.step:
                self._take(pl_module)

        self._handles = [o.register_step_post_hook(count) for o in trainer.optimizers]

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
