"""TaskOneHot under TorchRL's transform test matrix, on the real MiniGrid suite."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torch import nn
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.envs import Compose, ParallelEnv, SerialEnv, TransformedEnv
from torchrl.envs.utils import check_env_specs

from torchrl_sparse.envs import MiniGridMultiTaskEnv
from torchrl_sparse.transforms import TaskOneHot


def _base_env() -> MiniGridMultiTaskEnv:
    return MiniGridMultiTaskEnv("MT3", seed=0)


def _transformed_env() -> TransformedEnv:
    return TransformedEnv(_base_env(), TaskOneHot(3))


def _check_onehot(td: TensorDict) -> None:
    expected = torch.eye(3)[td["task_id"]]
    assert torch.equal(td["task_onehot"], expected)
    assert td["task_onehot"].dtype == torch.float32


def test_single_env() -> None:
    env = _transformed_env()
    check_env_specs(env)
    _check_onehot(env.reset())
    td = env.rollout(3)
    _check_onehot(td)
    _check_onehot(td["next"])


@pytest.mark.parametrize("transform_outside", [True, False])
def test_serial_env(transform_outside: bool) -> None:
    if transform_outside:
        env = TransformedEnv(SerialEnv(2, _base_env), TaskOneHot(3))
    else:
        env = SerialEnv(2, _transformed_env)
    try:
        check_env_specs(env)
        _check_onehot(env.rollout(3)["next"])
    finally:
        env.close()


def test_parallel_env() -> None:
    env = ParallelEnv(2, _transformed_env, mp_start_method="fork")
    try:
        check_env_specs(env)
        _check_onehot(env.rollout(3)["next"])
    finally:
        env.close()


def test_no_env() -> None:
    td = TaskOneHot(4)(TensorDict({"task_id": torch.tensor([[3, 0], [1, 2]])}, [2, 2]))
    assert td["task_onehot"].shape == (2, 2, 4)
    _check_onehot_n(td, 4)


def _check_onehot_n(td: TensorDict, n: int) -> None:
    assert torch.equal(td["task_onehot"], torch.eye(n)[td["task_id"]])


def test_compose() -> None:
    env = TransformedEnv(_base_env(), Compose(TaskOneHot(3)))
    check_env_specs(env)
    _check_onehot(env.reset())
    td = Compose(TaskOneHot(3))(TensorDict({"task_id": torch.tensor([2])}, [1]))
    _check_onehot(td)


def test_replay_buffer() -> None:
    rb = ReplayBuffer(storage=LazyTensorStorage(20))
    rb.append_transform(TaskOneHot(3, in_keys=["task_id"], out_keys=["task_onehot"]))
    rb.extend(TensorDict({"task_id": torch.arange(12) % 3}, [12]))
    _check_onehot(rb.sample(8))


def test_as_module() -> None:
    model = nn.Sequential(TaskOneHot(3), nn.Identity())
    td = model(TensorDict({"task_id": torch.tensor([1, 2])}, [2]))
    _check_onehot(td)


def test_custom_keys_and_spec() -> None:
    t = TaskOneHot(3, in_keys=["task_id"], out_keys=[("task", "onehot")])
    env = TransformedEnv(_base_env(), t)
    check_env_specs(env)
    assert env.observation_spec["task", "onehot"].shape == (3, 3)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="num_tasks must be >= 1"):
        TaskOneHot(0)
    with pytest.raises(IndexError, match=r"allowed: 0\.\.2"):
        TaskOneHot(3)(TensorDict({"task_id": torch.tensor([0, 3])}, [2]))
