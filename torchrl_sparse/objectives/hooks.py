"""Loss hooks that add plasticity metrics to a TorchRL loss output."""

from __future__ import annotations

from typing import Any

from tensordict import TensorDictBase
from torch import nn
from torch.utils.hooks import RemovableHandle

from torchrl_sparse.plasticity.monitor import PlasticityMonitor

__all__ = ["PlasticityLossHook"]


class PlasticityLossHook:
    """Forward hook adding ``plasticity/...`` entries to a loss module's output TensorDict.

    Each loss call advances the monitor by one step (so the monitor's ``every`` counts loss
    calls here) and, when due, the metrics computed on the loss input (or the monitor's
    reservoir) are written into the output. They are not ``loss_*`` keys, so summing the
    ``loss_*`` entries is unaffected; loggers pick them up like any other entry.

    Args:
        monitor: the monitor to run.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from tensordict import TensorDict
        >>> from tensordict.nn import TensorDictModule
        >>> from torchrl.modules import ProbabilisticActor, ValueOperator
        >>> from torchrl.objectives import ClipPPOLoss
        >>> from torchrl_sparse.plasticity import PlasticityMonitor
        >>> net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
        >>> actor = ProbabilisticActor(
        ...     TensorDictModule(net, ["observation"], ["logits"]), in_keys=["logits"],
        ...     distribution_class=torch.distributions.Categorical, return_log_prob=True)
        >>> loss = ClipPPOLoss(actor, ValueOperator(nn.Linear(4, 1), in_keys=["observation"]))
        >>> handle = PlasticityLossHook(
        ...     PlasticityMonitor({"actor": actor}, ["dormant_ratio"], every=1)).register(loss)
        >>> batch = TensorDict({
        ...     "observation": torch.randn(8, 4), "action": torch.randint(2, (8,)),
        ...     "action_log_prob": torch.full((8,), -0.7), "advantage": torch.randn(8, 1),
        ...     "value_target": torch.randn(8, 1)}, [8])
        >>> float(loss(batch)["plasticity/actor/dormant_ratio"]) >= 0
        True
        >>> handle.remove()
    """

    def __init__(self, monitor: PlasticityMonitor) -> None:
        self.monitor = monitor

    def __call__(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        """The forward hook: add the metrics to ``output`` when the monitor is due."""
        batch = args[0] if args and isinstance(args[0], TensorDictBase) else None
        metrics = self.monitor.step(1, batch)
        if metrics is not None and isinstance(output, TensorDictBase):
            output.update(metrics)
        return output

    def register(self, loss_module: nn.Module) -> RemovableHandle:
        """Register on ``loss_module``; returns the handle (``handle.remove()`` detaches)."""
        return loss_module.register_forward_hook(self)
