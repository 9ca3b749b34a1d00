"""A TorchRL transform that keeps the most recent training observations for metric batches."""

from __future__ import annotations

from collections.abc import Sequence

from tensordict import NestedKey, TensorDictBase
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.data.replay_buffers import SamplerWithoutReplacement
from torchrl.envs import EnvBase, Transform

__all__ = ["ObservationReservoir"]


class ObservationReservoir(Transform):
    """Keep the last ``capacity`` observations seen in training; metrics sample from them.

    Plasticity papers measure dormant units, ranks and the Fisher trace on a batch of recent
    training states rather than on the current rollout; this transform collects them. It never
    changes the data passing through it.

    * On an environment (``TransformedEnv(env, reservoir)``) it records the observations of every
      reset and every step (the ``"next"`` observations).
    * On a replay buffer (``ReplayBuffer(..., transform=reservoir)``) it records what is written
      with ``extend``/``add``; sampling from the buffer records nothing.
    * Standalone, call :meth:`record` with any TensorDict.

    Storage is a first-in-first-out ring (a TorchRL ``LazyTensorStorage``), so the reservoir
    holds the most recent observations. Its content is not part of ``state_dict``; it refills
    within ``capacity`` steps after a restart.

    Args:
        in_keys: keys to store (default ``["observation"]``); add the task-id key to get
            per-task metrics.
        capacity: number of observations kept (default 100,000).

    Raises:
        ValueError: if ``capacity < 1`` or ``in_keys`` is empty.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> res = ObservationReservoir(["observation"], capacity=100)
        >>> res.record(TensorDict({"observation": torch.randn(8, 4)}, [8]))
        >>> len(res)
        8
        >>> res.sample(4)["observation"].shape
        torch.Size([4, 4])

        On an environment:

        >>> from torchrl.envs import GymEnv, TransformedEnv
        >>> env = TransformedEnv(GymEnv("CartPole-v1"), ObservationReservoir(capacity=1000))
        >>> _ = env.rollout(10)
        >>> len(env.transform) >= 10
        True
    """

    def __init__(self, in_keys: Sequence[NestedKey] | None = None, capacity: int = 100_000) -> None:
        in_keys = list(in_keys) if in_keys is not None else ["observation"]
        if not in_keys:
            raise ValueError("in_keys must name at least one key to store, got []")
        if int(capacity) != capacity or capacity < 1:
            raise ValueError(f"capacity must be an integer >= 1, got capacity={capacity}")
        super().__init__(in_keys=in_keys, out_keys=[])
        self.capacity = int(capacity)
        self._buffer = ReplayBuffer(
            storage=LazyTensorStorage(self.capacity),
            sampler=SamplerWithoutReplacement(),
            batch_size=None,
        )

    def __len__(self) -> int:
        return len(self._buffer)

    def record(self, tensordict: TensorDictBase) -> None:
        """Store the ``in_keys`` of every element of ``tensordict`` (any batch shape).

        Args:
            tensordict: data holding all ``in_keys``.

        Raises:
            KeyError: if a key is missing.
        """
        data = tensordict.select(*self.in_keys, strict=True)
        data = data.reshape(-1) if data.batch_dims else data.unsqueeze(0)
        if data.numel():
            self._buffer.extend(data.clone())

    def sample(self, batch_size: int) -> TensorDictBase:
        """Sample a batch of stored observations without replacement.

        Args:
            batch_size: number of samples; capped at the number stored.

        Returns:
            A TensorDict of shape ``(min(batch_size, len(self)),)`` with the ``in_keys``.

        Raises:
            ValueError: if the reservoir is empty or ``batch_size < 1``.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got batch_size={batch_size}")
        if len(self) == 0:
            raise ValueError("the observation reservoir is empty: record some data first")
        return self._buffer.sample(min(batch_size, len(self)))

    def _attached_to_env(self) -> bool:
        try:
            return isinstance(self.container, EnvBase)
        except (AttributeError, ValueError):
            return False

    def _call(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        self.record(next_tensordict)
        return next_tensordict

    def _reset(
        self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase
    ) -> TensorDictBase:
        self.record(tensordict_reset)
        return tensordict_reset

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        # replay-buffer sampling: data were recorded when written
        return tensordict

    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        # env.step also calls inv on the action input; only replay-buffer writes are recorded
        if not self._attached_to_env():
            self.record(tensordict)
        return tensordict

    def empty(self) -> None:
        """Drop all stored observations."""
        self._buffer.empty()

    def extra_repr(self) -> str:
        return f"in_keys={self.in_keys}, capacity={self.capacity}, stored={len(self)}"
