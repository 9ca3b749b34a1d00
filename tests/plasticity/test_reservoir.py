"""The observation reservoir on an environment, on a replay buffer and standalone."""

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.envs import GymEnv, TransformedEnv, check_env_specs

from torchrl_sparse.plasticity import ObservationReservoir


def test_on_env_records_resets_and_steps() -> None:
    env = TransformedEnv(GymEnv("CartPole-v1"), ObservationReservoir(capacity=1000))
    check_env_specs(env)
    env.transform.empty()
    env.set_seed(0)
    rollout = env.rollout(10, break_when_any_done=False)
    assert len(env.transform) == 11  # one reset + ten steps
    stored = env.transform.sample(100)["observation"]
    assert stored.shape == (11, 4)
    assert torch.isin(rollout["next", "observation"][-1], stored).all()


def test_on_replay_buffer_records_writes_not_samples() -> None:
    reservoir = ObservationReservoir(capacity=50)
    rb = ReplayBuffer(storage=LazyTensorStorage(100), transform=reservoir)
    rb.extend(TensorDict({"observation": torch.randn(30, 4)}, [30]))
    rb.sample(8)
    assert len(reservoir) == 30


def test_keeps_most_recent_and_validates() -> None:
    reservoir = ObservationReservoir(["observation", "task"], capacity=5)
    obs = torch.arange(8.0).unsqueeze(-1)
    reservoir.record(TensorDict({"observation": obs, "task": torch.zeros(8, 1)}, [8]))
    assert sorted(reservoir.sample(5)["observation"].flatten().tolist()) == [3, 4, 5, 6, 7]
    with pytest.raises(ValueError, match="capacity must be"):
        ObservationReservoir(capacity=0)
    with pytest.raises(ValueError, match="empty"):
        ObservationReservoir().sample(4)
    with pytest.raises(KeyError):
        reservoir.record(TensorDict({"observation": obs}, [8]))
