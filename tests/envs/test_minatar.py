"""The MinAtar suite: specs, seeding, agreement with MinAtar's own gymnasium env, snapshots."""

from __future__ import annotations

import io

import gymnasium as gym
import minatar.gym
import numpy as np
import pytest
import torch
from torchrl.envs.utils import check_env_specs

from torchrl_sparse.envs.minatar import MINATAR_GAMES, MinAtarEnv, make_minatar_env

CHANNELS = {"Asterix": 4, "Breakout": 4, "Freeway": 7, "Seaquest": 10, "SpaceInvaders": 6}
ACTIONS = {"Asterix": 5, "Breakout": 3, "Freeway": 3, "Seaquest": 6, "SpaceInvaders": 4}


@pytest.mark.parametrize("game", sorted(MINATAR_GAMES))
def test_specs_and_shapes(game: str) -> None:
    env = make_minatar_env(game, num_envs=2, seed=0)
    check_env_specs(env)
    assert env.observation_spec["observation"].shape == (2, CHANNELS[game], 10, 10)
    assert env.action_spec.space.n == ACTIONS[game]
    td = env.rollout(20, break_when_any_done=False)
    observation = td["next", "observation"]
    assert observation.dtype == torch.float32 and set(observation.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(td["task_id"], torch.zeros(2, 20, dtype=torch.int64))


def test_agrees_with_minatars_gymnasium_env() -> None:
    """Same seed and actions: the same observations (channels first) and rewards as v1."""
    minatar.gym.register_envs()
    seed = 3
    ours = MinAtarEnv("Breakout", seed=seed)
    raw_seed = int(np.random.SeedSequence([seed, 0]).generate_state(1)[0])
    theirs = gym.make("MinAtar/Breakout-v1")
    obs, _ = theirs.reset(seed=raw_seed)
    td = ours.reset()
    assert torch.equal(td["observation"][0], torch.from_numpy(obs).permute(2, 0, 1).float())
    rng = np.random.default_rng(0)
    for _ in range(200):
        action = int(rng.integers(3))
        td["action"] = torch.tensor([action])
        td = ours.step(td)
        obs, reward, terminated, _, _ = theirs.step(action)
        nxt = td["next"]
        assert torch.equal(nxt["observation"][0], torch.from_numpy(obs).permute(2, 0, 1).float())
        assert float(nxt["reward"]) == reward and bool(nxt["terminated"]) == terminated
        if terminated:
            break
        td = nxt


def test_seeding_partial_reset_and_statistics() -> None:
    def rollout(seed: int):
        torch.manual_seed(0)  # the same random actions
        return MinAtarEnv("Asterix", num_envs=3, seed=seed).rollout(60, break_when_any_done=False)

    first, second, other = rollout(7), rollout(7), rollout(8)
    assert torch.equal(first["next", "observation"], second["next", "observation"])
    assert not torch.equal(first["next", "observation"], other["next", "observation"])
    # episode_return accumulates the rewards of the running episode and restarts after a reset.
    returns, rewards = first["next", "episode_return"], first["next", "reward"]
    done = first["next", "done"]
    for slot in range(3):
        total = 0.0
        for t in range(60):
            total += float(rewards[slot, t])
            assert float(returns[slot, t]) == pytest.approx(total)
            if done[slot, t]:
                total = 0.0


def test_partial_reset_leaves_other_slots_running() -> None:
    env = MinAtarEnv("Freeway", num_envs=2, seed=0)
    td = env.reset()
    td["action"] = torch.tensor([1, 1])
    td = env.step(td)["next"]
    td["_reset"] = torch.tensor([[True], [False]])
    after = env.reset(td)
    assert after["episode_length"].view(-1).tolist() == [0, 1]


def test_truncation() -> None:
    env = MinAtarEnv("Freeway", num_envs=1, seed=0, max_episode_steps=5)
    td = env.rollout(5, break_when_any_done=False)
    assert td["next", "truncated"].view(-1).tolist() == [False] * 4 + [True]
    assert not td["next", "terminated"].any()


def test_simulator_state_survives_a_weights_only_checkpoint() -> None:
    env = MinAtarEnv("Seaquest", num_envs=2, seed=0)
    env.rollout(30, break_when_any_done=False)
    buffer = io.BytesIO()
    torch.save(env.simulator_state(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    actions = torch.randint(6, (20, 2))
    expected = _play(env, actions)
    restored = MinAtarEnv("Seaquest", num_envs=2, seed=123)
    restored.load_simulator_state(state)
    assert torch.equal(_play(restored, actions), expected)
    with pytest.raises(ValueError, match="game is 'Seaquest' in the state but 'Breakout' here"):
        MinAtarEnv("Breakout", num_envs=2).load_simulator_state(state)


def _play(env: MinAtarEnv, actions: torch.Tensor) -> torch.Tensor:
    # Continue the running episodes (a step without reset: simulators carry the state).
    from tensordict import TensorDict

    observations = []
    for action in actions:
        td = env.step(TensorDict({"action": action}, batch_size=[env.num_envs]))
        observations.append(td["next", "observation"])
    return torch.stack(observations)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"game": "Pong"}, "Unknown MinAtar game 'Pong'; allowed: ['Asterix', 'Breakout', "),
        ({"game": "Breakout", "num_envs": 0}, "num_envs must be >= 1, got 0"),
        ({"game": "Breakout", "sticky_action_prob": 1.5}, "sticky_action_prob must be in [0, 1]"),
        ({"game": "Breakout", "max_episode_steps": 0}, "max_episode_steps must be >= 1 or None"),
    ],
)
def test_bad_input(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as error:
        MinAtarEnv(**kwargs)
    assert message in str(error.value)
