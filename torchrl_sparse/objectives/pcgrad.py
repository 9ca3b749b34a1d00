"""PCGrad (Yu et al. 2020): project away conflicting per-task gradients before each step.

For each task ``i`` (in the order of the batch's task ids) the gradient ``g_i`` is projected, in
a random order over the other tasks ``j``, onto the normal plane of every *original* ``g_j`` it
conflicts with (``g_i . g_j < 0``): ``g_i <- g_i - (g_i . g_j) / ||g_j||^2 g_j``. The projected
gradients are then averaged (or summed) and written to ``.grad`` before ``optimizer.step()``,
so optimizer hooks (e.g. the sparsifier's gradient masking) still see them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from tensordict import NestedKey, TensorDict, TensorDictBase
from torch import nn

from torchrl_sparse.plasticity.metrics import task_ids_from

__all__ = ["PCGrad", "pcgrad_project"]


def pcgrad_project(
    grads: Sequence[torch.Tensor] | torch.Tensor,
    *,
    reduction: Literal["mean", "sum"] = "mean",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, int]:
    """Combine flat per-task gradients with PCGrad.

    Args:
        grads: ``T`` flat gradients of equal length (or a ``(T, P)`` tensor).
        reduction: ``"mean"`` (same scale as the mean multi-task loss) or ``"sum"``
            (Yu et al.'s formulation).
        generator: random generator for the projection order.

    Returns:
        The combined gradient ``(P,)`` and the number of conflicting pairs that were projected.

    Raises:
        ValueError: on no gradients or an unknown ``reduction``.

    Examples:
        >>> import torch
        >>> g, n = pcgrad_project([torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])],
        ...                       reduction="sum")
        >>> g, n
        (tensor([0.5000, 1.5000]), 2)
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got reduction={reduction!r}")
    g = torch.stack(list(grads)) if not isinstance(grads, torch.Tensor) else grads
    if g.ndim != 2 or g.shape[0] == 0:
        raise ValueError(
            f"need a (tasks, params) stack of >= 1 gradient, got shape {tuple(g.shape)}"
        )
    projected = g.clone()
    sq_norms = (g * g).sum(1)
    conflicts = 0
    for i in range(g.shape[0]):
        for j in torch.randperm(g.shape[0], generator=generator).tolist():
            if j == i or sq_norms[j] == 0:
                continue
            dot = projected[i] @ g[j]
            if dot < 0:
                projected[i] -= dot / sq_norms[j] * g[j]
                conflicts += 1
    combined = projected.mean(0) if reduction == "mean" else projected.sum(0)
    return combined, conflicts


class PCGrad:
    """Multi-task optimizer step with PCGrad around any TorchRL loss module.

    ``step(batch)`` splits the batch by task id, evaluates the loss module on each task's
    samples, sums the ``loss_*`` entries into one loss per task, takes per-task gradients of all
    parameters in ``optimizer``, projects them with :func:`pcgrad_project`, writes the result to
    ``.grad`` and calls ``optimizer.step()``.

    Args:
        loss_module: e.g. ``ClipPPOLoss`` or ``SACLoss`` (any module mapping a TensorDict to a
            TensorDict of ``loss_*`` scalars).
        optimizer: optimizer over the parameters to train (e.g. ``loss_module.parameters()``).
        task_key: key of the task id (integer ids or one-hot) in the batch.
        reduction: ``"mean"`` or ``"sum"`` over tasks of the projected gradients.
        loss_keys: the loss entries to optimise; default every key starting with ``"loss_"``.
        max_grad_norm: clip the combined gradient to this global norm (``None``: no clipping).
        generator: random generator for the projection order.

    Raises:
        ValueError: on a bad ``reduction``/``max_grad_norm``; at ``step`` if the batch has no
            task id.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from tensordict import TensorDict
        >>> from tensordict.nn import TensorDictModule
        >>> from torchrl.modules import ProbabilisticActor, ValueOperator
        >>> from torchrl.objectives import ClipPPOLoss
        >>> _ = torch.manual_seed(0)
        >>> actor = ProbabilisticActor(
        ...     TensorDictModule(nn.Linear(4, 2), ["observation"], ["logits"]),
        ...     in_keys=["logits"], distribution_class=torch.distributions.Categorical,
        ...     return_log_prob=True)
        >>> critic = ValueOperator(nn.Linear(4, 1), in_keys=["observation"])
        >>> loss = ClipPPOLoss(actor, critic)
        >>> pcgrad = PCGrad(loss, torch.optim.Adam(loss.parameters()), task_key="task_id")
        >>> batch = TensorDict({
        ...     "observation": torch.randn(8, 4), "action": torch.randint(2, (8,)),
        ...     "action_log_prob": torch.full((8,), -0.7), "advantage": torch.randn(8, 1),
        ...     "value_target": torch.randn(8, 1), "task_id": torch.arange(8) % 2}, [8])
        >>> out = pcgrad.step(batch)
        >>> "loss_objective" in out.keys() and "pcgrad/conflicts" in out.keys()
        True
    """

    def __init__(
        self,
        loss_module: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        task_key: NestedKey = "task_id",
        reduction: Literal["mean", "sum"] = "mean",
        loss_keys: Sequence[str] | None = None,
        max_grad_norm: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got reduction={reduction!r}")
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0 or None, got {max_grad_norm}")
        self.loss_module = loss_module
        self.optimizer = optimizer
        self.task_key = task_key
        self.reduction = reduction
        self.loss_keys = list(loss_keys) if loss_keys is not None else None
        self.max_grad_norm = max_grad_norm
        self.generator = generator

    @property
    def params(self) -> list[torch.Tensor]:
        """The trainable parameters of the optimizer."""
        return [p for g in self.optimizer.param_groups for p in g["params"] if p.requires_grad]

    def _total_loss(self, out: TensorDictBase) -> torch.Tensor:
        # iterating a TensorDict walks its batch dimension, so list the keys explicitly
        names = list(out.keys())
        keys = self.loss_keys or [k for k in names if isinstance(k, str) and k.startswith("loss_")]
        if not keys:
            raise ValueError(f"the loss output has no loss_* entry; keys are {list(out.keys())}")
        return sum(out.get(k).sum() for k in keys)

    def task_gradients(self, batch: TensorDictBase) -> tuple[torch.Tensor, list[TensorDictBase]]:
        """Flat per-task gradients ``(T, P)`` and the per-task loss outputs (detached).

        Args:
            batch: a TensorDict with the task id under ``task_key``.

        Raises:
            ValueError: if the task id is missing or the batch is empty.
        """
        task = batch.get(self.task_key, None)
        if task is None:
            raise ValueError(
                f"PCGrad needs a task id under key {self.task_key!r}, but the batch has keys "
                f"{list(batch.keys(include_nested=True, leaves_only=True))}"
            )
        flat = batch.reshape(-1)
        if flat.numel() == 0:
            raise ValueError("PCGrad got an empty batch")
        ids = task_ids_from(task)
        params = self.params
        grads, outs = [], []
        for t in torch.unique(ids).tolist():
            out = self.loss_module(flat[ids == t])
            g = torch.autograd.grad(self._total_loss(out), params, allow_unused=True)
            grads.append(
                torch.cat(
                    [
                        (gi if gi is not None else torch.zeros_like(p)).reshape(-1)
                        for gi, p in zip(g, params, strict=True)
                    ]
                )
            )
            outs.append(out.detach())
        return torch.stack(grads), outs

    def step(self, batch: TensorDictBase) -> TensorDict:
        """One PCGrad update on ``batch``.

        Args:
            batch: a TensorDict with the task id under ``task_key``.

        Returns:
            The per-task loss outputs averaged over tasks (detached), plus
            ``"pcgrad/conflicts"`` (conflicting task pairs projected) and
            ``"pcgrad/num_tasks"``.
        """
        grads, outs = self.task_gradients(batch)
        combined, conflicts = pcgrad_project(
            grads, reduction=self.reduction, generator=self.generator
        )
        self.optimizer.zero_grad(set_to_none=True)
        params = self.params
        # Accumulated through autograd, not assigned to ``.grad``: gradient hooks on the
        # parameters (a sparsifier's masks, RigL's dense-gradient capture) run as after any
        # backward.
        chunks = combined.split([p.numel() for p in params])
        torch.autograd.backward(params, [c.view_as(p) for c, p in zip(chunks, params, strict=True)])
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        self.optimizer.step()
        summary = torch.stack(outs).apply(lambda x: x.float().mean(0), batch_size=[])
        summary.set("pcgrad/conflicts", torch.tensor(float(conflicts)))
        summary.set("pcgrad/num_tasks", torch.tensor(float(len(outs))))
        return summary
