"""Per-task output heads selected by the task id."""

from __future__ import annotations

import torch
from torch import nn

from torchrl_sparse._compat import is_functorch_transformed

__all__ = ["MultiHead", "task_onehot"]


def task_onehot(task_id: torch.Tensor, num_tasks: int) -> torch.Tensor:
    """One-hot encode task ids as float, compatible with ``torch.func.vmap``.

    Args:
        task_id: integer tensor of any shape.
        num_tasks: number of tasks.

    Returns:
        ``float32`` tensor of shape ``[*task_id.shape, num_tasks]``.

    Examples:
        >>> task_onehot(torch.tensor([1, 0]), 3)
        tensor([[0., 1., 0.],
                [1., 0., 0.]])
    """
    # A comparison instead of F.one_hot: one_hot checks values and does not vmap.
    return (task_id.unsqueeze(-1) == torch.arange(num_tasks, device=task_id.device)).float()


def _check_task_ids(task_id: torch.Tensor, num_tasks: int) -> None:
    if task_id.numel() and (task_id.min() < 0 or task_id.max() >= num_tasks):
        bad = task_id[(task_id < 0) | (task_id >= num_tasks)].unique().tolist()
        raise IndexError(f"task id(s) {bad} out of range; allowed: 0..{num_tasks - 1}.")


class MultiHead(nn.Module):
    """One output head per task; each sample goes through the head of its task.

    Heads are kept as an ``nn.ModuleList`` of plain ``nn.Linear`` (or small ``nn.Sequential``)
    modules, so sparsifiers and plasticity probes that select layers by name find them
    (``heads.0``, ``heads.1.0``, ...).

    In eager mode each head only processes its own samples. Under ``torch.func`` transforms
    (``vmap``/``grad`` for per-sample gradients), where data-dependent routing is impossible,
    every head is applied and the task's output is gathered; both give the same values.

    Args:
        num_tasks: number of heads.
        in_features: input width.
        out_features: output width of each head.
        hidden: if given, each head is ``Linear(in, hidden)[-LayerNorm]-activation-Linear(hidden,
            out)`` (the MiniGrid heads use ``hidden=128`` and ``Tanh``); otherwise a single
            ``Linear(in, out)``.
        activation: activation class of the hidden layer.
        layer_norm: ``LayerNorm`` after the hidden ``Linear``.

    Raises:
        ValueError: if ``num_tasks < 1``.
        IndexError: (when called) for a task id outside ``[0, num_tasks)``.

    Examples:
        >>> heads = MultiHead(3, 1024, 7, hidden=128)
        >>> x = torch.randn(4, 1024)
        >>> out = heads(x, torch.tensor([0, 2, 2, 1]))
        >>> out.shape
        torch.Size([4, 7])
        >>> torch.allclose(out[1], heads.heads[2](x[1]), atol=1e-6)
        True
    """

    def __init__(
        self,
        num_tasks: int,
        in_features: int,
        out_features: int,
        hidden: int | None = None,
        activation: type[nn.Module] = nn.Tanh,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}.")
        self.num_tasks = num_tasks
        self.out_features = out_features
        self.heads = nn.ModuleList(
            self._make_head(in_features, out_features, hidden, activation, layer_norm)
            for _ in range(num_tasks)
        )

    @staticmethod
    def _make_head(
        in_features: int,
        out_features: int,
        hidden: int | None,
        activation: type[nn.Module],
        layer_norm: bool,
    ) -> nn.Module:
        if hidden is None:
            return nn.Linear(in_features, out_features)
        layers: list[nn.Module] = [nn.Linear(in_features, hidden)]
        if layer_norm:
            layers.append(nn.LayerNorm(hidden))
        layers += [activation(), nn.Linear(hidden, out_features)]
        return nn.Sequential(*layers)

    def forward(self, features: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        task_id = task_id.long()
        if is_functorch_transformed(features):
            outs = torch.stack([head(features) for head in self.heads], dim=-2)
            index = task_id[..., None, None].expand(*outs.shape[:-2], 1, self.out_features)
            return outs.gather(-2, index).squeeze(-2)
        _check_task_ids(task_id, self.num_tasks)
        batch = features.shape[:-1]
        flat = features.reshape(-1, features.shape[-1])
        flat_ids = task_id.expand(batch).reshape(-1)
        if flat.shape[0] == 0:
            return flat.new_empty(*batch, self.out_features)
        # Route contiguous runs of a task through its head: a split's backward is a cheap
        # concatenation, where indexed assignment costs an index_put with accumulation.
        # Collector batches and stratified minibatches are already grouped by task.
        order = None
        if not bool((flat_ids[1:] >= flat_ids[:-1]).all()):
            order = flat_ids.argsort(stable=True)
            flat, flat_ids = flat.index_select(0, order), flat_ids[order]
        tasks, counts = torch.unique_consecutive(flat_ids, return_counts=True)
        chunks = flat.split(counts.tolist())
        out = torch.cat(
            [self.heads[task](chunk) for task, chunk in zip(tasks.tolist(), chunks, strict=True)]
        )
        if order is not None:
            out = out.index_select(0, order.argsort())
        return out.reshape(*batch, self.out_features)
