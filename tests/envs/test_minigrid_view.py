"""egocentric_obs must equal MiniGrid's own gen_obs, cell for cell, on every suite task."""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import gymnasium as gym
import numpy as np
import pytest
import torch
from minigrid.core.world_object import Door
from minigrid.minigrid_env import MiniGridEnv

from torchrl_sparse.envs import (
    MiniGridMultiTaskEnv,
    check_fast_observations,
    egocentric_obs,
    minigrid_task_ids,
    minigrid_view,
    use_fast_observations,
)

ALL_TASKS = minigrid_task_ids("MT7")


def _random_walk(task: str, steps: int, seed: int) -> Iterator[MiniGridEnv]:
    """Yield the env after every step of a seeded random walk (actions biased to move)."""
    env = gym.make(task).unwrapped
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    # forward, turns, pickup, toggle: enough to carry keys and open doors
    actions = [0, 1, 2, 2, 2, 3, 5]
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(actions[rng.integers(len(actions))])
        yield env
        if terminated or truncated:
            env.reset()


@pytest.mark.parametrize("task", ALL_TASKS)
def test_equals_minigrid_gen_obs(task: str) -> None:
    for env in _random_walk(task, steps=1500, seed=3):
        expected = MiniGridEnv.gen_obs(env)
        actual = egocentric_obs(env)
        np.testing.assert_array_equal(actual["image"], expected["image"])
        assert actual["image"].dtype == expected["image"].dtype == np.uint8
        assert actual["direction"] == expected["direction"]
        assert actual["mission"] == expected["mission"]


def test_covers_carrying_and_open_doors() -> None:
    """The equality above is only meaningful if the walks hit these cases."""
    carried = opened = False
    for env in _random_walk("MiniGrid-DoorKey-6x6-v0", steps=3000, seed=3):
        carried |= env.carrying is not None
        opened |= any(isinstance(obj, Door) and obj.is_open for obj in env.grid.grid)
        if carried and opened:
            np.testing.assert_array_equal(
                egocentric_obs(env)["image"], MiniGridEnv.gen_obs(env)["image"]
            )
            break
    assert carried and opened


def test_see_through_walls() -> None:
    env = gym.make("MiniGrid-RedBlueDoors-6x6-v0").unwrapped
    env.see_through_walls = True
    env.reset(seed=0)
    for action in (0, 1, 0, 2, 0, 0):
        env.step(action)
        np.testing.assert_array_equal(
            egocentric_obs(env)["image"], MiniGridEnv.gen_obs(env)["image"]
        )


def test_patched_env_steps_and_pickles() -> None:
    env = use_fast_observations(gym.make("MiniGrid-RedBlueDoors-6x6-v0").unwrapped)
    reference = gym.make("MiniGrid-RedBlueDoors-6x6-v0").unwrapped
    obs, _ = env.reset(seed=5)
    expected, _ = reference.reset(seed=5)
    np.testing.assert_array_equal(obs["image"], expected["image"])
    clone = pickle.loads(pickle.dumps(env))
    for action in (2, 2, 1, 2, 5, 0, 2):
        obs, *_ = env.step(action)
        expected, *_ = reference.step(action)
        cloned, *_ = clone.step(action)
        np.testing.assert_array_equal(obs["image"], expected["image"])
        np.testing.assert_array_equal(cloned["image"], expected["image"])
    assert clone.gen_obs.args[0] is clone  # the copy observes itself, not the original


@pytest.mark.parametrize("task_sampling", ["lockstep", "random"])
def test_suite_rollouts_do_not_depend_on_the_observation_path(task_sampling: str) -> None:
    rollouts = []
    for fast in (True, False):
        env = MiniGridMultiTaskEnv(
            "MT7", envs_per_task=2, task_sampling=task_sampling, seed=7, fast_observations=fast
        )
        torch.manual_seed(0)
        rollouts.append(env.rollout(60, break_when_any_done=False))
    assert (rollouts[0] == rollouts[1]).all()


@pytest.mark.parametrize("source_fast", [True, False])
def test_simulator_state_crosses_observation_paths(source_fast: bool) -> None:
    source = MiniGridMultiTaskEnv("MT3", seed=1, fast_observations=source_fast)
    td = source.reset().set("action", torch.tensor([2, 2, 2]))
    state = source.simulator_state()
    # The snapshot holds plain MiniGrid environments, and the source keeps its setting.
    assert b"egocentric_obs" not in state["envs"]
    assert all(("gen_obs" in vars(env)) == source_fast for env in source._active)
    expected = source.step(td.clone())["next", "observation"]
    target = MiniGridMultiTaskEnv("MT3", fast_observations=not source_fast)
    target.load_simulator_state(state)
    assert all(("gen_obs" in vars(env)) == (not source_fast) for env in target._active)
    torch.testing.assert_close(target.step(td.clone())["next", "observation"], expected)


def test_environments_with_their_own_view_are_refused() -> None:
    lava_gap = type(gym.make("MiniGrid-LavaGapS7-v0").unwrapped)

    class WideLavaGap(lava_gap):
        def gen_obs(self) -> dict:
            return super().gen_obs()

    with pytest.raises(ValueError, match=r"WideLavaGap overrides \['gen_obs'\]"):
        use_fast_observations(WideLavaGap(size=7))


def test_a_disagreeing_view_stops_the_suite(monkeypatch: pytest.MonkeyPatch) -> None:
    env = gym.make("MiniGrid-LavaGapS7-v0").unwrapped
    env.reset(seed=0)
    check_fast_observations(env)  # agrees
    blank = {"image": np.zeros((7, 7, 3), dtype=np.uint8), "direction": 0, "mission": ""}
    monkeypatch.setattr(minigrid_view, "egocentric_obs", lambda env: blank)
    with pytest.raises(RuntimeError, match="fast_observations=False"):
        check_fast_observations(env)
    # The suite checks every sub-environment on its first reset ...
    with pytest.raises(RuntimeError, match="differs from MiniGrid's gen_obs on LavaGapEnv"):
        MiniGridMultiTaskEnv("MT3", seed=0).reset()
    # ... unless it uses MiniGrid's own observations.
    MiniGridMultiTaskEnv("MT3", seed=0, fast_observations=False).reset()
