"""Tests of the multi-task MiniGrid suites (real MiniGrid environments)."""

from __future__ import annotations

import io

import gymnasium as gym
import pytest
import torch
from tensordict import TensorDictBase
from torchrl.envs import TransformedEnv
from torchrl.envs.utils import check_env_specs

from torchrl_sparse.envs import (
    MINIGRID_RETURN_NORMALIZERS,
    MINIGRID_SUITES,
    MiniGridMultiTaskEnv,
    make_minigrid_env,
    minigrid_task_ids,
)


def test_task_lists() -> None:
    assert minigrid_task_ids("MT3") == [
        "MiniGrid-LavaGapS7-v0",
        "MiniGrid-RedBlueDoors-6x6-v0",
        "MiniGrid-MemoryS11-v0",
    ]
    assert MINIGRID_SUITES["MT5"] == (
        "DoorKey-6x6",
        "LavaGapS7",
        "RedBlueDoors-6x6",
        "DistShift1",
        "MemoryS11",
    )
    assert MINIGRID_SUITES["MT7"] == (
        "DoorKey-6x6",
        "DistShift1",
        "RedBlueDoors-6x6",
        "LavaGapS7",
        "MemoryS11",
        "SimpleCrossingS9N2",
        "MultiRoom-N2-S4",
    )
    assert MINIGRID_RETURN_NORMALIZERS["MultiRoom-N2-S4"] == 0.8875


@pytest.mark.parametrize("suite", ["MT3", "MT5", "MT7"])
@pytest.mark.parametrize("task_sampling", ["lockstep", "random"])
def test_specs(suite: str, task_sampling: str) -> None:
    env = make_minigrid_env(suite, envs_per_task=2, task_sampling=task_sampling, seed=0)
    check_env_specs(env)
    n_tasks = len(MINIGRID_SUITES[suite])
    td = env.reset()
    assert td["observation"].shape == (2 * n_tasks, 3, 7, 7)
    assert td["observation"].dtype == torch.float32
    assert td["task_onehot"].shape == (2 * n_tasks, n_tasks)
    assert td["task_id"].dtype == torch.int64


def test_observation_is_unscaled_channels_first_grid() -> None:
    base = MiniGridMultiTaskEnv("MT3", seed=3)
    env = make_minigrid_env("MT3", seed=3)
    raw = base.reset()["observation"]
    obs = env.reset()["observation"]
    assert torch.equal(obs, raw.permute(0, 3, 1, 2).float())
    # Object indices (at most 10), not pixels scaled to [0, 1].
    assert obs.max() > 1 and obs.max() <= 10
    reference = gym.make("MiniGrid-LavaGapS7-v0")
    assert raw.shape[1:] == reference.observation_space["image"].shape


def test_seeding_reproduces_rollouts() -> None:
    def run(seed: int) -> torch.Tensor:
        env = make_minigrid_env("MT3", envs_per_task=2, task_sampling="random", seed=seed)
        torch.manual_seed(seed)
        td = env.rollout(150, break_when_any_done=False)
        return torch.cat([td["next", "observation"].flatten(2), td["task_id"][..., None]], -1)

    first, second, other = run(1), run(1), run(2)
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_lockstep_steps_every_task_every_step() -> None:
    env = make_minigrid_env("MT5", envs_per_task=3, seed=0)
    td = env.rollout(200, break_when_any_done=False)
    expected = torch.arange(5).repeat_interleave(3)
    assert (td["task_id"] == expected[:, None]).all()


def test_random_sampling_draws_tasks_uniformly_per_episode() -> None:
    env = MiniGridMultiTaskEnv("MT3", envs_per_task=2, task_sampling="random", seed=0)
    td = env.rollout(300, break_when_any_done=False)
    # The task of a slot only changes at episode starts...
    changed = td["task_id"][:, 1:] != td["task_id"][:, :-1]
    assert changed.any()
    assert not (changed & ~td["next", "done"][:, :-1, 0]).any()
    # ...where every slot draws each task with probability 1/3.
    draws = torch.stack([env.reset()["task_id"] for _ in range(200)])
    freq = torch.bincount(draws.flatten(), minlength=3).float() / draws.numel()
    assert (freq - 1 / 3).abs().max() < 0.06
    # Lockstep instead pins slot i to task i // envs_per_task.
    lockstep = MiniGridMultiTaskEnv("MT3", envs_per_task=2, seed=0)
    assert lockstep.reset()["task_id"].tolist() == [0, 0, 1, 1, 2, 2]


def test_episode_statistics_and_normalized_return() -> None:
    env = MiniGridMultiTaskEnv("MT3", envs_per_task=2, seed=0)
    td = env.rollout(400, break_when_any_done=False)
    nxt = td["next"]
    # Running sums of the reward, reset at episode starts.
    assert torch.allclose(nxt["episode_return"][:, 0], nxt["reward"][:, 0])
    assert (nxt["episode_length"][:, 0] == 1).all()
    done = nxt["done"][..., 0]
    assert done.any()
    norm = env.normalizers[td["task_id"]]
    assert torch.allclose(nxt["normalized_return"][..., 0], nxt["episode_return"][..., 0] / norm)
    steps = torch.cat([nxt["episode_length"][:, 1:][done[:, :-1]]])
    assert (steps == 1).all()


def test_normalizer_makes_the_best_return_one() -> None:
    # The best LavaGapS7 return 0.9633 is MiniGrid's 1 - 0.9 * steps / max_steps for 8 steps.
    env = MiniGridMultiTaskEnv("MT3", seed=0)
    max_steps = gym.make("MiniGrid-LavaGapS7-v0").unwrapped.max_steps
    best = env.normalizers[0].item()
    assert best == pytest.approx(1 - 0.9 * 8 / max_steps, abs=2e-3)


def test_partial_reset_only_resets_requested_slots() -> None:
    env = MiniGridMultiTaskEnv("MT3", seed=0)
    td = env.reset()
    td["action"] = torch.full((3,), 2)
    td = env.step(td)["next"]
    assert (td["episode_length"] == 1).all()
    out = env.reset(td.set("_reset", torch.tensor([[True], [False], [False]])))
    assert out["episode_length"].view(-1).tolist() == [0, 1, 1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"suite": "MT4"}, "allowed: \\['MT3', 'MT5', 'MT7'\\]"),
        ({"task_sampling": "roundrobin"}, "allowed: \\['lockstep', 'random'\\]"),
        ({"envs_per_task": 0}, "envs_per_task"),
    ],
)
def test_bad_input(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MiniGridMultiTaskEnv(**kwargs)


def _run(
    env: TransformedEnv, td: TensorDictBase, actions: torch.Tensor
) -> tuple[TensorDictBase, TensorDictBase]:
    """Steps with ``actions[t]`` at step ``t``, resetting finished slots as collectors do."""
    steps = []
    for action in actions:
        step, td = env.step_and_maybe_reset(td.set("action", action))
        steps.append(step)
    return torch.stack(steps, dim=1), td


@pytest.mark.parametrize("task_sampling", ["lockstep", "random"])
def test_simulator_state_resumes_the_same_episodes(task_sampling: str) -> None:
    config = {"suite": "MT3", "envs_per_task": 2, "task_sampling": task_sampling}
    actions = torch.randint(0, 7, (150, 6), generator=torch.Generator().manual_seed(0))
    env_a = make_minigrid_env(**config, seed=0)
    _, td = _run(env_a, env_a.reset(), actions[:50])
    # Through a checkpoint file, loaded as Lightning loads checkpoints by default.
    buffer = io.BytesIO()
    torch.save(env_a.base_env.simulator_state(), buffer)
    carried = td.clone()
    expected, _ = _run(env_a, td, actions[50:])

    env_b = make_minigrid_env(**config, seed=1)
    env_b.reset()
    buffer.seek(0)
    env_b.base_env.load_simulator_state(torch.load(buffer, weights_only=True))
    resumed, _ = _run(env_b, carried, actions[50:])

    assert expected["next", "done"].any()  # episodes end and restart within the window
    for key in [
        ("next", "observation"),
        ("next", "reward"),
        ("next", "done"),
        ("next", "terminated"),
        ("next", "truncated"),
        "task_id",
        ("next", "task_id"),
        ("next", "episode_return"),
        ("next", "episode_length"),
    ]:
        assert torch.equal(resumed[key], expected[key]), key
    assert (resumed == expected).all()


@pytest.mark.parametrize(
    ("other", "match"),
    [
        ({"suite": "MT5"}, "suite is 'MT3' in the state but 'MT5' here"),
        ({"envs_per_task": 1}, "envs_per_task is 2 in the state but 1 here"),
        ({"task_sampling": "random"}, "task_sampling is 'lockstep' in the state but 'random'"),
    ],
)
def test_simulator_state_from_another_suite_is_rejected(other: dict, match: str) -> None:
    config = {"suite": "MT3", "envs_per_task": 2, "task_sampling": "lockstep"}
    source = MiniGridMultiTaskEnv(**config, seed=0)
    source.reset()
    with pytest.raises(ValueError, match=match):
        MiniGridMultiTaskEnv(**{**config, **other}).load_simulator_state(source.simulator_state())
    with pytest.raises(ValueError, match="not a MiniGridMultiTaskEnv simulator state"):
        source.load_simulator_state({"qpos": torch.zeros(3)})
