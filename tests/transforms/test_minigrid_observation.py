"""MiniGridObservation under TorchRL's transform test matrix, on the real MiniGrid suite."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torch import nn
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.envs import Compose, ParallelEnv, SerialEnv, TransformedEnv
from torchrl.envs.utils import check_env_specs

from torchrl_sparse.envs import MiniGridMultiTaskEnv
from torchrl_sparse.transforms import MiniGridObservation


def _base_env() -> MiniGridMultiTaskEnv:
    return MiniGridMultiTaskEnv("MT3", seed=0)


def _transformed_env() -> TransformedEnv:
    return TransformedEnv(_base_env(), MiniGridObservation())


def _check_obs(td: TensorDict) -> None:
    obs = td["observation"]
    assert obs.shape[-3:] == (3, 7, 7)
    assert obs.dtype == torch.float32
    # Unscaled symbolic indices: integers, and some above 1.
    assert torch.equal(obs, obs.round()) and obs.max() > 1


def _grid(*batch: int) -> torch.Tensor:
    return torch.randint(0, 11, (*batch, 7, 7, 3), dtype=torch.uint8)


def test_single_env() -> None:
    env = _transformed_env()
    check_env_specs(env)
    raw = _base_env().reset()["observation"]
    reset = _transformed_env().reset()
    _check_obs(reset)
    assert torch.equal(reset["observation"], raw.permute(0, 3, 1, 2).float())
    _check_obs(env.rollout(3)["next"])


@pytest.mark.parametrize("transform_outside", [True, False])
def test_serial_env(transform_outside: bool) -> None:
    if transform_outside:
        env = TransformedEnv(SerialEnv(2, _base_env), MiniGridObservation())
    else:
        env = SerialEnv(2, _transformed_env)
    try:
        check_env_specs(env)
        _check_obs(env.rollout(3)["next"])
    finally:
        env.close()


def test_parallel_env() -> None:
    env = ParallelEnv(2, _transformed_env, mp_start_method="fork")
    try:
        check_env_specs(env)
        _check_obs(env.rollout(3)["next"])
    finally:
        env.close()


def test_no_env() -> None:
    grid = _grid(2, 5)
    td = MiniGridObservation()(TensorDict({"observation": grid}, [2, 5]))
    assert torch.equal(td["observation"], grid.permute(0, 1, 4, 2, 3).float())


def test_compose() -> None:
    env = TransformedEnv(_base_env(), Compose(MiniGridObservation()))
    check_env_specs(env)
    _check_obs(env.reset())
    grid = _grid(4)
    td = Compose(MiniGridObservation(out_keys=["pixels"]))(TensorDict({"observation": grid}, [4]))
    assert td["pixels"].shape == (4, 3, 7, 7) and td["observation"].dtype == torch.uint8


def test_replay_buffer() -> None:
    rb = ReplayBuffer(storage=LazyTensorStorage(20))
    rb.append_transform(MiniGridObservation())
    rb.extend(TensorDict({"observation": _grid(12) + 2}, [12]))
    _check_obs(rb.sample(8))


def test_as_module() -> None:
    model = nn.Sequential(MiniGridObservation(), nn.Identity())
    _check_obs(model(TensorDict({"observation": _grid(3) + 2}, [3])))


def test_spec_bounds() -> None:
    spec = _transformed_env().observation_spec["observation"]
    assert spec.shape == (3, 3, 7, 7)
    assert spec.dtype == torch.float32
    assert spec.space.low.min() == 0 and spec.space.high.max() == 255


def test_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\[\.\.\., H, W, 3\]"):
        MiniGridObservation()(TensorDict({"observation": torch.zeros(2, 3, 7, 7)}, [2]))
