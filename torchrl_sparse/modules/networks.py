"""Multi-task networks: an encoder (shared, MoE or MOORE) followed by per-task heads."""

from __future__ import annotations

import torch
from torch import nn

from torchrl_sparse.modules.heads import MultiHead, task_onehot
from torchrl_sparse.modules.mixture import MixtureOfExperts

__all__ = ["MultiTaskNetwork"]


class MultiTaskNetwork(nn.Module):
    """Encoder plus head, conditioned on the task id.

    ``forward(observation, task_id, *extra)``: ``extra`` tensors (e.g. the action of a Q-network)
    are concatenated to the observation. Then:

    1. with ``concat_task_input`` the task one-hot is appended to the input (McLean's MT-SAC);
    2. the encoder runs; a :class:`~torchrl_sparse.modules.MixtureOfExperts` encoder also gets
       the one-hot for its task weights;
    3. a :class:`~torchrl_sparse.modules.MultiHead` head selects the head by ``task_id``; any
       other head (single-head variant) gets the features concatenated with the one-hot.

    Args:
        encoder: feature extractor.
        head: :class:`~torchrl_sparse.modules.MultiHead` or a single head module.
        num_tasks: number of tasks.
        concat_task_input: append the one-hot to the encoder input.

    Examples:
        >>> from torchrl_sparse.modules import MiniGridCNN, MultiHead
        >>> net = MultiTaskNetwork(MiniGridCNN(final_tanh=True), MultiHead(3, 1024, 7, 128), 3)
        >>> net(torch.zeros(4, 3, 7, 7), torch.tensor([0, 1, 2, 0])).shape
        torch.Size([4, 7])
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        num_tasks: int,
        concat_task_input: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.num_tasks = num_tasks
        self.concat_task_input = concat_task_input

    def features(
        self, observation: torch.Tensor, task_id: torch.Tensor, *extra: torch.Tensor
    ) -> torch.Tensor:
        """The shared representation fed to the heads (for rank and dormancy probes)."""
        onehot = task_onehot(task_id, self.num_tasks)
        x = torch.cat([observation, *extra], dim=-1) if extra else observation
        if self.concat_task_input:
            x = torch.cat([x, onehot], dim=-1)
        if isinstance(self.encoder, MixtureOfExperts):
            return self.encoder(x, onehot)
        return self.encoder(x)

    def forward(
        self, observation: torch.Tensor, task_id: torch.Tensor, *extra: torch.Tensor
    ) -> torch.Tensor:
        feats = self.features(observation, task_id, *extra)
        if isinstance(self.head, MultiHead):
            return self.head(feats, task_id)
        return self.head(torch.cat([feats, task_onehot(task_id, self.num_tasks)], dim=-1))
