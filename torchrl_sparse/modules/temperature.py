"""Per-task entropy temperature for multi-task SAC."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["TaskTemperature"]


class TaskTemperature(nn.Module):
    """One learnable SAC entropy temperature per task (``log_alpha`` of shape ``[num_tasks]``).

    Multi-task SAC (Yu et al. 2020; McLean et al. 2025) tunes one temperature per task, because
    tasks reach their entropy target at different times. TorchRL's ``SACLoss`` holds a single
    scalar ``log_alpha``; to use per-task temperatures, build the loss with
    ``fixed_alpha=True`` and replace its alpha terms by :meth:`alpha` (weights for the actor
    loss and the soft target) and :meth:`loss` (the temperature loss), optimising this module's
    parameter with its own optimizer.

    Args:
        num_tasks: number of tasks.
        init_alpha: initial temperature of every task.

    Raises:
        ValueError: if ``num_tasks < 1`` or ``init_alpha <= 0``.

    Examples:
        >>> temp = TaskTemperature(10, init_alpha=1.0)
        >>> task_id = torch.tensor([0, 3, 3])
        >>> temp.alpha(task_id)
        tensor([1., 1., 1.])
        >>> log_prob = torch.tensor([-1.0, -2.0, -3.0])
        >>> temp.loss(log_prob, task_id, target_entropy=-4.0).backward()
        >>> temp.log_alpha.grad.nonzero().squeeze(-1).tolist()
        [0, 3]
    """

    def __init__(self, num_tasks: int, init_alpha: float = 1.0) -> None:
        super().__init__()
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}.")
        if init_alpha <= 0:
            raise ValueError(f"init_alpha must be > 0, got {init_alpha}.")
        self.log_alpha = nn.Parameter(torch.full((num_tasks,), math.log(init_alpha)))

    def alpha(self, task_id: torch.Tensor) -> torch.Tensor:
        """Detached temperature of each sample's task, shaped like ``task_id``."""
        return self.log_alpha.detach().exp()[task_id.long()]

    def loss(
        self, log_prob: torch.Tensor, task_id: torch.Tensor, target_entropy: float
    ) -> torch.Tensor:
        """SAC temperature loss ``-log_alpha[task] * (log_prob + target_entropy)``, averaged.

        Args:
            log_prob: log-probabilities of actions sampled from the current policy.
            task_id: task of each sample (same shape as ``log_prob``).
            target_entropy: entropy target (typically ``-action_dim``).

        Returns:
            The scalar loss; only ``log_alpha`` receives gradients.
        """
        log_alpha = self.log_alpha[task_id.long()]
        return -(log_alpha * (log_prob.detach() + target_entropy)).mean()
