"""Data-parallel RL under Lightning's DDP: each rank collects, gradients are averaged.

PPO takes many optimizer steps per collected batch (epochs x minibatches), and PCGrad takes
its gradients with ``torch.autograd.grad``: neither fits DDP's one-forward-one-backward
reducer. So backward passes run under DDP's ``no_sync`` and every optimizer averages the
gradients over ranks in a step pre-hook, whatever produced them. Parameters start equal (DDP
broadcasts them) and see the same averaged gradients, so they stay equal; sparsity masks are
broadcast by the sparsifier.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.hooks import RemovableHandle

__all__ = ["average_gradients_on_step", "broadcast_parameters", "gradient_sync_disabled"]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def average_gradients_on_step(optimizer: torch.optim.Optimizer) -> RemovableHandle | None:
    """Average the optimizer's gradients over ranks before each of its steps.

    Returns the hook handle, or ``None`` when not running distributed.
    """
    if not _distributed():
        return None

    def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        grads = [
            p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None
        ]
        if not grads:
            return
        flat = torch._utils._flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        for grad, synced in zip(
            grads, torch._utils._unflatten_dense_tensors(flat, grads), strict=True
        ):
            grad.copy_(synced)

    return optimizer.register_step_pre_hook(hook)


@contextlib.contextmanager
def gradient_sync_disabled(model: Any) -> Iterator[None]:
    """DDP's ``no_sync`` when ``model`` is DDP-wrapped, else nothing."""
    no_sync = getattr(model, "no_sync", None)
    with no_sync() if no_sync is not None and _distributed() else contextlib.nullcontext():
        yield


def broadcast_parameters(module: torch.nn.Module, src: int = 0) -> None:
    """Give every rank ``src``'s parameters (after a randomised intervention such as ReDo)."""
    if not _distributed():
        return
    with torch.no_grad():
        for param in module.parameters():
            dist.broadcast(param.data, src=src)
