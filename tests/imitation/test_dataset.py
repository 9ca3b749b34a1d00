"""Expert datasets: collection, round trip through disk, spec checks."""

from __future__ import annotations

import json

import pytest
import torch
from tensordict.nn import TensorDictModule
from torchrl.envs import GymEnv, SerialEnv

from torchrl_sparse.imitation import (
    METADATA_FILE,
    ExpertDataset,
    collect_expert_dataset,
    spec_summary,
)
from torchrl_sparse.modules.control import ControlPolicy, make_control_actor


def cartpole() -> GymEnv:
    return GymEnv("CartPole-v1", categorical_action_encoding=True)


def cartpole_expert() -> TensorDictModule:
    """Push the cart toward where the pole is falling (angle + angular velocity): scores 500."""
    return TensorDictModule(
        lambda obs: (obs[..., 2] + obs[..., 3] > 0).long(), ["observation"], ["action"]
    )


def pendulum_expert() -> TensorDictModule:
    """A saturated proportional-derivative torque toward upright."""
    return TensorDictModule(
        lambda obs: (-(5 * obs[..., 1:2] + obs[..., 2:3])).clamp(-2, 2),
        ["observation"],
        ["action"],
    )


def test_round_trip(tmp_path):
    env = cartpole()
    path = tmp_path / "cartpole"
    collected = collect_expert_dataset(cartpole_expert(), env, 1_200, path, seed=0)
    loaded = ExpertDataset.load(path, env=env)

    assert len(collected) == len(loaded) == 1_200
    assert loaded.observations.shape == (1_200, 4)
    assert loaded.actions.shape == (1_200,) and loaded.actions.dtype == torch.int64
    assert torch.equal(collected.observations, loaded.observations)
    assert torch.equal(collected.actions, loaded.actions)
    assert torch.equal(collected.rewards, loaded.rewards)
    assert torch.equal(collected.dones, loaded.dones)
    # The expert balances the pole for the whole 500 steps: two episodes end in 1,200 steps.
    assert loaded.expert_return == 500.0
    meta = json.loads((path / METADATA_FILE).read_text())
    assert meta["env_id"] == loaded.env_id == "CartPole-v1"
    assert meta["num_transitions"] == 1_200
    assert meta["episode_returns"] == [500.0, 500.0] and meta["expert_episodes"] == 2
    assert meta["action_spec"] == {
        "class": "Categorical",
        "shape": [],
        "dtype": "torch.int64",
        "n": 2,
    }
    assert meta["observation_spec"]["shape"] == [4]
    assert meta["observation_spec"]["low"][0] == pytest.approx(-4.8)
    # Episode boundaries are where the returns say.
    assert torch.nonzero(loaded.dones.view(-1)).view(-1).tolist() == [499, 999]
    # The expert's actions are the scripted rule on the stored observations.
    obs = loaded.observations
    assert torch.equal(loaded.actions, (obs[:, 2] + obs[:, 3] > 0).long())
    # Same seed, same data.
    again = collect_expert_dataset(cartpole_expert(), env, 1_200, tmp_path / "again", seed=0)
    assert torch.equal(again.observations, loaded.observations)


def test_spec_mismatch_is_refused(tmp_path):
    path = tmp_path / "cartpole"
    collect_expert_dataset(cartpole_expert(), cartpole(), 50, path, seed=0)
    with pytest.raises(ValueError) as error:
        ExpertDataset.load(path, env=GymEnv("Acrobot-v1", categorical_action_encoding=True))
    message = str(error.value)
    assert "observation_spec.shape: dataset [4], environment [6]" in message
    assert "action_spec.n: dataset 2, environment 3" in message
    assert "'CartPole-v1'" in message and "'Acrobot-v1'" in message
    # Same task, other action encoding (one-hot): refused too.
    with pytest.raises(ValueError, match=r"action_spec.class: dataset 'Categorical'"):
        ExpertDataset.load(path, env=GymEnv("CartPole-v1"))
    # Without an env, no check.
    assert len(ExpertDataset.load(path)) == 50


def test_batched_env_stores_trajectories_contiguously(tmp_path):
    env = SerialEnv(2, cartpole)
    data = collect_expert_dataset(cartpole_expert(), env, 61, tmp_path / "batched", seed=3)
    env.close()
    assert len(data) == 61  # 31 steps of 2 copies, cut to 61
    assert data.env_id == "CartPole-v1"  # as the copies say
    assert data.observations.shape == (61, 4)
    # The specs are those of one copy: an unbatched env accepts the dataset.
    ExpertDataset.load(tmp_path / "batched", env=cartpole())
    # Copy 0's 31 steps first: consecutive observations follow CartPole's dynamics
    # (x_{t+1} = x_t + 0.02 * x_dot_t).
    obs = data.observations[:31]
    assert torch.allclose(obs[1:, 0], obs[:-1, 0] + 0.02 * obs[:-1, 1], atol=1e-5)


def test_continuous_dataset(tmp_path):
    env = GymEnv("Pendulum-v1")
    data = collect_expert_dataset(pendulum_expert(), env, 250, tmp_path / "pendulum", seed=0)
    loaded = ExpertDataset.load(tmp_path / "pendulum", env=env)
    assert loaded.actions.shape == (250, 1) and loaded.actions.dtype == torch.float32
    assert torch.equal(loaded.actions, data.actions)
    assert loaded.actions.abs().max() <= 2.0
    assert loaded.metadata["action_spec"] == {
        "class": "BoundedContinuous",
        "shape": [1],
        "dtype": "torch.float32",
        "low": [-2.0],
        "high": [2.0],
    }
    # One 200-step episode ended (gym's time limit); its return is that of the stored rewards.
    assert loaded.metadata["expert_episodes"] == 1
    assert loaded.expert_return == pytest.approx(loaded.rewards[:200].sum().item(), rel=1e-5)


def test_probabilistic_actor_seeded_and_rng_untouched(tmp_path):
    env = cartpole()
    policy = ControlPolicy(4, 2)
    actor = make_control_actor(policy, env.action_spec)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = collect_expert_dataset(actor, env, 80, tmp_path / "a", deterministic=False, seed=7)
    assert torch.equal(torch.rand(1), before)  # the collection forked torch's generator
    second = collect_expert_dataset(actor, env, 80, tmp_path / "b", deterministic=False, seed=7)
    assert torch.equal(first.actions, second.actions)
    greedy = collect_expert_dataset(actor, env, 80, tmp_path / "c", deterministic=True, seed=7)
    assert torch.equal(greedy.actions, policy(greedy.observations).argmax(-1))


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="num_transitions must be a positive int, got 0"):
        collect_expert_dataset(cartpole_expert(), cartpole(), 0, tmp_path / "none")
    with pytest.raises(FileNotFoundError, match=METADATA_FILE):
        ExpertDataset.load(tmp_path)


def test_spec_summary_strips_batch_dims():
    env = SerialEnv(3, lambda: GymEnv("Pendulum-v1"))
    batched = spec_summary(env.action_spec, batch_dims=1)
    assert batched == spec_summary(GymEnv("Pendulum-v1").action_spec)
