"""Trace of the policy's Fisher information, ``E_{s, a~pi} ||grad_theta log pi(a|s)||^2``.

Actions are sampled from the policy itself (not taken from the batch); per-sample gradients are
computed with ``torch.func`` (``vmap`` over ``grad``), each sample being run as a batch of one,
so convolutions and any batch-shaped module work unchanged.

Supported policies:

* anything with ``get_dist(tensordict)`` (TorchRL ``ProbabilisticActor`` with a categorical,
  one-hot categorical or ``TanhNormal`` distribution, ...), run on a TensorDict batch;
* a plain module returning logits, run on a tensor batch (categorical policy);
* any module with a custom ``dist_fn(module, batch) -> Distribution``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from tensordict import TensorDict, TensorDictBase, from_module
from torch import nn
from torch.distributions import Categorical, Distribution
from torch.func import grad, vmap

__all__ = ["DistFn", "fisher_trace"]

DistFn = Callable[[nn.Module, Any], Distribution]


def _default_dist(module: nn.Module, batch: Any) -> Distribution:
    if hasattr(module, "get_dist"):
        return module.get_dist(batch)
    return Categorical(logits=module(batch))


def _batch_len(batch: Any) -> int:
    if isinstance(batch, TensorDictBase):
        return batch.batch_size[0] if batch.batch_dims else 0
    return batch.shape[0] if batch.ndim else 0


def fisher_trace(
    policy: nn.Module,
    batch: TensorDictBase | torch.Tensor,
    *,
    dist_fn: DistFn | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
    method: Literal["vmap", "loop"] = "vmap",
    chunk_size: int | None = None,
) -> float:
    """Fisher information trace of a stochastic policy over its trainable parameters.

    Args:
        policy: the actor (see the module docstring for the supported kinds).
        batch: states, a TensorDict with one batch dimension or a tensor ``(N, ...)``.
        dist_fn: maps ``(policy, batch)`` to a distribution; the default uses
            ``policy.get_dist`` or treats the output as categorical logits.
        masks: resolved sparsity masks; pruned entries are excluded from the trace.
        method: ``"vmap"`` (per-sample gradients with ``torch.func``) or ``"loop"`` (one
            backward per sample; a reference implementation, much slower).
        chunk_size: optional ``vmap`` chunk size to bound memory.

    Returns:
        The trace averaged over the batch.

    Raises:
        ValueError: on an empty batch or an unknown ``method``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> policy = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))
        >>> x = torch.randn(32, 4)
        >>> fisher_trace(policy, x) > 0
        True
    """
    if method not in ("vmap", "loop"):
        raise ValueError(f"method must be 'vmap' or 'loop', got method={method!r}")
    n = _batch_len(batch)
    if n == 0:
        raise ValueError("fisher_trace got an empty batch: need a batch of >= 1 state")
    dist_fn = dist_fn or _default_dist
    masks = masks or {}
    names = [name for name, p in policy.named_parameters() if p.requires_grad]
    with torch.no_grad():
        actions = dist_fn(policy, batch).sample()

    def mask_of(name: str, g: torch.Tensor) -> torch.Tensor:
        m = masks.get(name)
        return g if m is None else g * m

    if method == "loop":
        total = 0.0
        params = [p for name, p in policy.named_parameters() if p.requires_grad]
        for i in range(n):
            logp = dist_fn(policy, batch[i : i + 1]).log_prob(actions[i : i + 1]).sum()
            grads = torch.autograd.grad(logp, params, allow_unused=True)
            total += sum(
                float(mask_of(name, g).pow(2).sum())
                for name, g in zip(names, grads, strict=True)
                if g is not None
            )
        return total / n

    params = from_module(policy, as_module=False).detach()
    trainable = TensorDict(
        {tuple(name.split(".")): params.get(tuple(name.split("."))) for name in names}, []
    )

    def log_prob(p: TensorDictBase, state: Any, action: torch.Tensor) -> torch.Tensor:
        with p.to_module(policy):
            dist = dist_fn(policy, state.unsqueeze(0))
            return dist.log_prob(action.unsqueeze(0)).sum()

    per_sample = vmap(grad(log_prob), (None, 0, 0), chunk_size=chunk_size)(
        trainable, batch, actions
    )
    total = sum(
        mask_of(name, per_sample.get(tuple(name.split(".")))).pow(2).flatten(1).sum(1)
        for name in names
    )
    return float(total.mean())
