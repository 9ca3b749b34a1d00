"""Per-task aggregation of episode statistics."""

from __future__ import annotations

import torch

__all__ = ["per_task_mean"]


def per_task_mean(
    values: torch.Tensor,
    task_id: torch.Tensor,
    num_tasks: int,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of ``values`` per task, e.g. episode returns or success at episode ends.

    Args:
        values: values of any shape (a trailing singleton dim is squeezed to match ``task_id``).
        task_id: task of each value, shape ``values.shape`` (without the trailing 1).
        num_tasks: number of tasks.
        mask: optional boolean selection (e.g. ``td["next", "done"]``), same shape as ``values``.

    Returns:
        ``float32 [num_tasks]``; ``nan`` for tasks without any selected value.

    Raises:
        IndexError: for a task id outside ``[0, num_tasks)``.

    Examples:
        >>> per_task_mean(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0, 0, 2]), 3)
        tensor([0.5000,    nan, 1.0000])
    """
    if values.shape != task_id.shape and values.shape[-1:] == (1,):
        values = values.squeeze(-1)
    if mask is not None:
        mask = mask.reshape(values.shape)
        values, task_id = values[mask], task_id[mask]
    values, task_id = values.reshape(-1).float(), task_id.reshape(-1).long()
    if task_id.numel() and (task_id.min() < 0 or task_id.max() >= num_tasks):
        raise IndexError(
            f"task ids must lie in 0..{num_tasks - 1}, got {task_id.unique().tolist()}."
        )
    sums = torch.zeros(num_tasks).index_add_(0, task_id, values)
    counts = torch.zeros(num_tasks).index_add_(0, task_id, torch.ones_like(values))
    return sums / counts
