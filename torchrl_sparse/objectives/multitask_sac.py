"""Multi-task SAC loss: TorchRL's ``SACLoss`` with one entropy temperature per task.

Multi-task SAC (Yu et al. 2020; McLean et al. 2025) tunes a separate temperature for every task,
because tasks reach their entropy target at different times. :class:`MultiTaskSACLoss` keeps
all of TorchRL's SAC (twin Q ensemble kept stacked, target networks, value estimator, reductions)
and changes only the three places where the temperature enters:

- the actor loss ``alpha[task] * log_prob - min_j Q_j(s, a~pi)``,
- the soft Q target ``r + gamma * (min_j Q'_j(s', a') - alpha[task] * log pi(a'|s'))``,
- the temperature loss ``-log_alpha[task] * (log_prob + target_entropy)``, averaged over the
  batch, so each task's temperature is trained on that task's samples.

``log_alpha`` has shape ``[num_tasks]``; the temperature of each sample is looked up by its
``"task_id"``. The output keeps the ``SACLoss`` keys: ``loss_actor``, ``loss_qvalue``,
``loss_alpha``, ``alpha`` (the mean temperature over tasks) and ``entropy``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import ProbabilisticTensorDictSequential, TensorDictModule
from torch import Tensor, nn
from torchrl.objectives import SACLoss

__all__ = ["MultiTaskSACLoss"]


class MultiTaskSACLoss(SACLoss):
    """TorchRL ``SACLoss`` (v2, no value network) with a per-task temperature.

    Args:
        actor_network: the stochastic actor (reads ``"task_id"`` itself if it is multi-task).
        qvalue_network: one Q-network; ``num_qvalue_nets`` copies are stacked (the twin critics).
        num_tasks: number of tasks (size of ``log_alpha``).

    Keyword Args:
        num_qvalue_nets: number of Q-networks (2: the twin critics).
        task_key: key of the integer task id of each sample.
        alpha_init: initial temperature of every task.
        min_alpha: lower clamp of every temperature (``None``: none).
        max_alpha: upper clamp of every temperature (``None``: none).
        fixed_alpha: keep the temperatures fixed (``log_alpha`` is then a buffer).
        target_entropy: ``"auto"`` (``-action_dim``, read from the actor's or the given action
            spec) or a number.
        **kwargs: any other ``SACLoss`` keyword (``loss_function``, ``action_spec``,
            ``delay_qvalue``, ``reduction``, ...).

    Raises:
        ValueError: if ``num_tasks < 1`` or ``alpha_init <= 0``.

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl_sparse.modules import make_sac_actor, make_sac_qvalue
        >>> actor = make_sac_actor(3, width=8, num_layers=1)
        >>> qvalue = make_sac_qvalue(3, width=8, num_layers=1)
        >>> loss = MultiTaskSACLoss(actor, qvalue, num_tasks=3)
        >>> loss.log_alpha.shape, loss.target_entropy.item()
        (torch.Size([3]), -4.0)
        >>> n = 6
        >>> data = TensorDict(
        ...     {
        ...         "observation": torch.randn(n, 39),
        ...         "task_id": torch.tensor([0, 0, 1, 1, 2, 2]),
        ...         "action": torch.rand(n, 4) * 2 - 1,
        ...         "next": {
        ...             "observation": torch.randn(n, 39),
        ...             "task_id": torch.tensor([0, 0, 1, 1, 2, 2]),
        ...             "reward": torch.randn(n, 1),
        ...             "done": torch.zeros(n, 1, dtype=torch.bool),
        ...             "terminated": torch.zeros(n, 1, dtype=torch.bool),
        ...         },
        ...     },
        ...     [n],
        ... )
        >>> out = loss(data)
        >>> sorted(out.keys())
        ['alpha', 'entropy', 'loss_actor', 'loss_alpha', 'loss_qvalue']
        >>> out["loss_alpha"].backward()
        >>> loss.log_alpha.grad.shape
        torch.Size([3])
    """

    def __init__(
        self,
        actor_network: ProbabilisticTensorDictSequential,
        qvalue_network: TensorDictModule,
        num_tasks: int,
        *,
        num_qvalue_nets: int = 2,
        task_key: str = "task_id",
        alpha_init: float = 1.0,
        min_alpha: float | None = None,
        max_alpha: float | None = None,
        fixed_alpha: bool = False,
        target_entropy: str | float = "auto",
        **kwargs: Any,
    ) -> None:
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks!r}.")
        if alpha_init <= 0:
            raise ValueError(f"alpha_init must be > 0, got {alpha_init!r}.")
        if "value_network" in kwargs and kwargs["value_network"] is not None:
            raise ValueError(
                "MultiTaskSACLoss implements SAC v2 only; got a value_network (allowed: None)."
            )
        super().__init__(
            actor_network,
            qvalue_network,
            num_qvalue_nets=num_qvalue_nets,
            alpha_init=alpha_init,
            min_alpha=min_alpha,
            max_alpha=max_alpha,
            fixed_alpha=fixed_alpha,
            target_entropy=target_entropy,
            **kwargs,
        )
        self.num_tasks = num_tasks
        self.task_key = task_key
        # Replace SACLoss's scalar temperature by one per task (same parameter/buffer name, so
        # ``loss.log_alpha`` is what an optimizer or a checkpoint sees).
        log_alpha = torch.full((num_tasks,), math.log(alpha_init), device=self.alpha_init.device)
        del self.log_alpha
        if fixed_alpha:
            self.register_buffer("log_alpha", log_alpha)
        else:
            self.register_parameter("log_alpha", nn.Parameter(log_alpha))
        # Per-sample temperatures, set while the actor loss / the target are computed, and the
        # task ids of the current forward call for the temperature loss.
        self._sample_alpha: Tensor | None = None
        self._task_id: Tensor | None = None
        # SACLoss registers its ``_target_entropy`` buffer on first use, so a fresh loss and a
        # trained one have different state_dict keys and a parent module's strict
        # ``load_state_dict`` (Lightning's checkpoint restore) fails. Resolve it now when the
        # action spec allows; otherwise it stays lazy as in SACLoss.
        with contextlib.suppress(RuntimeError):
            _ = self.target_entropy
        # Likewise for the value estimator (and its ``gamma`` buffer): build the default now;
        # ``make_value_estimator`` replaces it.
        self.make_value_estimator(self.default_value_estimator)

    # ------------------------------------------------------------------ temperature lookup
    def task_alpha(self, task_id: Tensor) -> Tensor:
        """Detached temperature of each sample's task, shaped like ``task_id``.

        Raises:
            ValueError: if a task id is outside ``[0, num_tasks)``.
        """
        task_id = task_id.long()
        if task_id.numel() and (task_id.min() < 0 or task_id.max() >= self.num_tasks):
            raise ValueError(
                f"task ids must lie in [0, {self.num_tasks}), got values in "
                f"[{int(task_id.min())}, {int(task_id.max())}]."
            )
        self._clamp_log_alpha()
        with torch.no_grad():
            return self.log_alpha.exp()[task_id]

    def _clamp_log_alpha(self) -> None:
        if self.min_log_alpha is not None or self.max_log_alpha is not None:
            self.log_alpha.data.clamp_(self.min_log_alpha, self.max_log_alpha)

    @property
    def _alpha(self) -> Tensor:
        """Temperature as ``SACLoss`` multiplies it: per sample inside the actor loss and the
        target computation, otherwise the mean over tasks (the logged ``alpha``)."""
        if self._sample_alpha is not None:
            return self._sample_alpha
        self._clamp_log_alpha()
        with torch.no_grad():
            return self.log_alpha.exp().mean()

    @contextlib.contextmanager
    def _per_sample_alpha(self, tensordict: TensorDictBase, unsqueeze: bool) -> Iterator[None]:
        task_id = tensordict.get(self.task_key, None)
        if task_id is None:
            raise KeyError(
                f"MultiTaskSACLoss needs the task of every sample under {self.task_key!r}; "
                f"the batch has keys {sorted(map(str, tensordict.keys()))}."
            )
        alpha = self.task_alpha(task_id.reshape(tensordict.shape))
        self._sample_alpha = alpha.unsqueeze(-1) if unsqueeze else alpha
        try:
            yield
        finally:
            self._sample_alpha = None

    # ------------------------------------------------------------------ SACLoss overrides
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """The ``SACLoss`` forward with per-task temperatures (see the class docstring)."""
        task_id = tensordict.get(self.task_key, None)
        self._task_id = None if task_id is None else task_id.reshape(tensordict.shape)
        try:
            return super().forward(tensordict)
        finally:
            self._task_id = None

    def actor_loss(self, tensordict: TensorDictBase) -> tuple[Tensor, dict[str, Tensor]]:
        """``SACLoss.actor_loss`` with ``alpha[task]`` weighting each sample's log-prob."""
        with self._per_sample_alpha(tensordict, unsqueeze=False):
            return super().actor_loss(tensordict)

    def _compute_target_v2(self, tensordict: TensorDictBase) -> Tensor:
        # A private SACLoss hook (listed in torchrl_sparse._compat). ``SACLoss`` subtracts
        # ``alpha * log_prob`` from Q-values shaped [num_qvalue_nets, *B, 1]
        # with the log-prob unsqueezed to [*B, 1]: the per-sample alpha gets the same trailing 1.
        with self._per_sample_alpha(tensordict, unsqueeze=True):
            return super()._compute_target_v2(tensordict)

    def alpha_loss(self, log_prob: Tensor, task_id: Tensor | None = None) -> Tensor:
        """Per-sample temperature loss ``-log_alpha[task] * (log_prob + target_entropy)``.

        Args:
            log_prob: log-probabilities of actions sampled from the current policy.
            task_id: task of each sample (defaults to the tasks of the batch being processed
                by :meth:`forward`).

        Returns:
            The unreduced loss, shaped like ``log_prob``.
        """
        if task_id is not None:
            self._task_id = task_id
            try:
                return self._alpha_loss(log_prob)
            finally:
                self._task_id = None
        return self._alpha_loss(log_prob)

    def _alpha_loss(self, log_prob: Tensor) -> Tensor:
        # A private SACLoss hook (listed in torchrl_sparse._compat).
        if self.target_entropy is None:
            return torch.zeros_like(log_prob)
        if self._task_id is None:
            raise RuntimeError(
                "The per-task temperature loss needs task ids: call the loss on a batch with "
                f"{self.task_key!r}, or alpha_loss(log_prob, task_id)."
            )
        self._clamp_log_alpha()
        log_alpha = self.log_alpha[self._task_id.long().reshape(log_prob.shape)]
        return -log_alpha * (log_prob.detach() + self.target_entropy)
