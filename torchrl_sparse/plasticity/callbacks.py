"""Lightning adapter for :class:`~torchrl_sparse.plasticity.PlasticityMonitor`.

Lightning is an optional dependency (``pip install torchrl-sparse[cli]``); it is imported only
here, so ``import torchrl_sparse.plasticity`` works without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from tensordict import TensorDictBase

from torchrl_sparse.plasticity.monitor import PlasticityMonitor

__all__ = ["PlasticityCallback"]


def _default_frames(batch: Any) -> int:
    if isinstance(batch, TensorDictBase):
        return batch.numel()
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, list | tuple) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0].shape[0]
    return 1


def _default_metric_batch(batch: Any) -> Any:
    # (inputs, targets) pairs from supervised-style loaders: the inputs are the states
    if isinstance(batch, list | tuple):
        return batch[0]
    return batch


class PlasticityCallback(pl.Callback):
    """Run a plasticity monitor after each training batch and log its metrics.

    The monitor's cadence counts ``frames_fn(batch)`` per training batch (default: the batch
    size, i.e. environment frames for a batch of collected transitions); when due, the metrics
    are logged with ``pl_module.log_dict``. The monitor's state is saved in checkpoints.

    Args:
        monitor: the monitor.
        frames_fn: number of steps a training batch counts for.
        batch_fn: maps the training batch to the metric batch (default: the batch itself, or
            its first element for ``(inputs, targets)`` pairs); ignored when the monitor has a
            reservoir.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        >>> cb = PlasticityCallback(PlasticityMonitor({"net": net}, ["dormant_ratio"], every=64))
        >>> cb.state_dict()["schedule"]["steps"]
        0

        Then ``lightning.Trainer(callbacks=[cb]).fit(model)`` with ``model.net is net``.
    """

    def __init__(
        self,
        monitor: PlasticityMonitor,
        frames_fn: Callable[[Any], int] | None = None,
        batch_fn: Callable[[Any], Any] | None = None,
    ) -> None:
        self.monitor = monitor
        self.frames_fn = frames_fn or _default_frames
        self.batch_fn = batch_fn or _default_metric_batch

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Advance the monitor and log the metrics when due."""
        out = self.monitor.step(self.frames_fn(batch), lambda: self.batch_fn(batch))
        if out is not None:
            pl_module.log_dict({k: float(v) for k, v in out.items()}, on_step=True)

    def state_dict(self) -> dict[str, Any]:
        """The monitor's state (cadence counters, initial weights)."""
        return self.monitor.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the monitor's state."""
        self.monitor.load_state_dict(state_dict)
