"""Task-identity transforms for multi-task environments."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import NestedKey, TensorDictBase
from torchrl.data import Composite, OneHot
from torchrl.envs import Transform

__all__ = ["TaskOneHot"]


class TaskOneHot(Transform):
    """Writes the one-hot encoding of an integer task id.

    Reads an ``int64`` task id of shape ``[*batch]`` (default key ``"task_id"``) and writes a
    ``float32`` one-hot of shape ``[*batch, num_tasks]`` (default key ``"task_onehot"``). The
    task id is kept. Works inside a :class:`~torchrl.envs.TransformedEnv` (step and reset), in a
    replay buffer (``rb.append_transform``) and as a module on a TensorDict.

    Args:
        num_tasks: number of tasks (length of the one-hot).
        in_keys: key(s) holding the task id. Defaults to ``["task_id"]``.
        out_keys: key(s) to write the one-hot to. Defaults to ``["task_onehot"]``.

    Raises:
        ValueError: if ``num_tasks < 1``.
        IndexError: (when called) if a task id is outside ``[0, num_tasks)``.

    Examples:
        >>> from tensordict import TensorDict
        >>> t = TaskOneHot(3)
        >>> td = t(TensorDict({"task_id": torch.tensor([2, 0])}, batch_size=[2]))
        >>> td["task_onehot"]
        tensor([[0., 0., 1.],
                [1., 0., 0.]])
    """

    def __init__(
        self,
        num_tasks: int,
        in_keys: Sequence[NestedKey] | None = None,
        out_keys: Sequence[NestedKey] | None = None,
    ) -> None:
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}.")
        in_keys = ["task_id"] if in_keys is None else list(in_keys)
        out_keys = ["task_onehot"] if out_keys is None else list(out_keys)
        super().__init__(in_keys=in_keys, out_keys=out_keys)
        self.num_tasks = num_tasks
        # Not persistent: derived from num_tasks, and old state dicts do not have it.
        self.register_buffer("_eye", torch.eye(num_tasks), persistent=False)

    def _apply_transform(self, task_id: torch.Tensor) -> torch.Tensor:
        if task_id.dtype != torch.int64:
            task_id = task_id.long()
        eye = self._eye
        if not (task_id.is_cpu and eye.is_cpu):
            # Off the CPU an out-of-range lookup is a device-side assert, not an IndexError.
            self._check_range(task_id)
            eye = eye.to(task_id.device)
        try:
            # Rows of the identity: one kernel, already float32, and it rejects bad ids.
            return torch.nn.functional.embedding(task_id, eye)
        except IndexError:
            self._check_range(task_id)
            raise

    def _check_range(self, task_id: torch.Tensor) -> None:
        bad = task_id[(task_id < 0) | (task_id >= self.num_tasks)].unique().tolist()
        if bad:
            raise IndexError(
                f"task id(s) {bad} out of range; allowed: 0..{self.num_tasks - 1} "
                f"(num_tasks={self.num_tasks})."
            )

    def _reset(
        self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase
    ) -> TensorDictBase:
        # Reset outputs carry the first task id of each episode: encode it too.
        return self._call(tensordict_reset)

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        for in_key, out_key in zip(self.in_keys, self.out_keys, strict=True):
            if in_key not in observation_spec.keys(include_nested=True):
                continue
            spec = observation_spec[in_key]
            observation_spec[out_key] = OneHot(
                self.num_tasks,
                shape=(*spec.shape, self.num_tasks),
                dtype=torch.float32,
                device=spec.device,
            )
        return observation_spec
