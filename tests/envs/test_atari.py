"""Tests of the Atari environment (real ALE emulators, ROMs shipped with ale-py)."""

from __future__ import annotations

import io

import pytest
import torch
from tensordict import TensorDictBase
from torchrl.envs.utils import check_env_specs

from torchrl_sparse.envs import ATARI_GAMES, AtariMultiGameEnv, make_atari_env


def _run(
    env: AtariMultiGameEnv, td: TensorDictBase, actions: torch.Tensor
) -> tuple[TensorDictBase, TensorDictBase]:
    """Steps with ``actions[t]`` at step ``t``, resetting finished slots as collectors do."""
    steps = []
    for action in actions:
        step, td = env.step_and_maybe_reset(td.set("action", action))
        steps.append(step)
    return torch.stack(steps, dim=1), td


def _actions(steps: int, n: int, num_actions: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, num_actions, (steps, n), generator=torch.Generator().manual_seed(seed))


def test_specs_keys_and_action_sets() -> None:
    env = make_atari_env(["Breakout"], envs_per_game=2, seed=0)
    check_env_specs(env)
    assert isinstance(env, AtariMultiGameEnv)
    assert env.action_spec.space.n == 4  # Breakout's minimal action set
    td = env.reset()
    assert td["observation"].shape == (2, 4, 84, 84)
    assert td["observation"].dtype == torch.uint8
    # After a reset only the newest frame is filled in.
    assert (td["observation"][:, :3] == 0).all() and td["observation"][:, 3].any()
    step = env.step(td.set("action", torch.tensor([1, 3])))["next"]
    for key, dtype, shape in [
        ("observation", torch.uint8, (2, 4, 84, 84)),
        ("task_id", torch.int64, (2,)),
        ("episode_return", torch.float32, (2, 1)),
        ("episode_length", torch.int64, (2, 1)),
        ("game_over", torch.bool, (2, 1)),
        ("reward", torch.float32, (2, 1)),
        ("done", torch.bool, (2, 1)),
        ("terminated", torch.bool, (2, 1)),
        ("truncated", torch.bool, (2, 1)),
    ]:
        assert step[key].dtype == dtype and step[key].shape == shape, key
    # The frame stack shifts by one frame per step.
    assert torch.equal(step["observation"][:, 2], td["observation"][:, 3])
    assert step["episode_length"].view(-1).tolist() == [1, 1]
    full = make_atari_env("Breakout", full_action_space=True)
    assert full.action_spec.space.n == 18 and full.task_names == ["Breakout"]


def test_two_games_share_the_full_action_set_and_get_task_ids() -> None:
    env = make_atari_env(["Pong", "Breakout"], envs_per_game=2, seed=0)
    assert env.batch_size == torch.Size([4])
    assert env.action_spec.space.n == 18
    assert env.task_names == ["Pong", "Breakout"] and env.num_tasks == 2
    td = env.rollout(20, break_when_any_done=False)
    assert (td["task_id"] == torch.tensor([0, 0, 1, 1])[:, None]).all()
    assert (td["next", "task_id"] == td["task_id"]).all()
    frames = td["next", "observation"][:, -1, -1].float()
    # Pong's and Breakout's screens differ; copies of one game look alike.
    assert (frames[0] - frames[2]).abs().mean() > 10
    assert (frames[0] - frames[1]).abs().mean() < (frames[0] - frames[2]).abs().mean()


def test_equal_seeds_give_equal_rollouts() -> None:
    actions = _actions(50, 2, 4)

    def run(seed: int) -> TensorDictBase:
        env = make_atari_env("Breakout", envs_per_game=2, seed=seed)
        return _run(env, env.reset(), actions)[0]

    first, second = run(1), run(1)
    assert (first == second).all()
    # set_seed on a used environment restarts the same random streams.
    env = make_atari_env("Breakout", envs_per_game=2, seed=2)
    other = _run(env, env.reset(), actions)[0]
    assert not torch.equal(first["next", "observation"], other["next", "observation"])
    env.set_seed(1)
    assert (_run(env, env.reset(), actions)[0] == first).all()


def test_no_op_starts_and_sticky_actions_are_the_only_randomness() -> None:
    def frames(seed: int, noop_max: int) -> torch.Tensor:
        env = make_atari_env(
            "SpaceInvaders",
            envs_per_game=2,
            seed=seed,
            noop_max=noop_max,
            repeat_action_probability=0.0,
        )
        steps, _ = _run(env, env.reset(), torch.zeros(4, 2, dtype=torch.int64))
        return steps["next", "observation"]

    plain = frames(0, noop_max=0)
    assert torch.equal(plain, frames(1, noop_max=0))
    assert (plain == plain[0]).all()
    randomized = frames(0, noop_max=30)  # the invaders have moved by different amounts
    assert not (randomized == randomized[0]).all()


def test_partial_reset_only_resets_requested_slots() -> None:
    env = make_atari_env("Breakout", envs_per_game=3, seed=0)
    td = env.reset()
    for _ in range(5):
        td = env.step(td.set("action", torch.tensor([1, 2, 3])))["next"]
    assert td["episode_length"].view(-1).tolist() == [5, 5, 5]
    out = env.reset(td.set("_reset", torch.tensor([[False], [True], [False]])))
    assert out["episode_length"].view(-1).tolist() == [5, 0, 5]
    assert torch.equal(out["observation"][[0, 2]], td["observation"][[0, 2]])
    assert (out["observation"][1, :3] == 0).all()
    nxt = env.step(out.set("action", torch.tensor([0, 0, 0])))["next"]
    assert nxt["episode_length"].view(-1).tolist() == [6, 1, 6]


def _play_one_game(
    terminal_on_life_loss: bool, steps: int = 300
) -> tuple[TensorDictBase, TensorDictBase]:
    """Random Breakout until the first game over; returns the steps and the reset outputs."""
    env = make_atari_env(
        "Breakout", seed=2, clip_rewards=False, terminal_on_life_loss=terminal_on_life_loss
    )
    td = env.reset()
    steps_td, resets = [], []
    for action in _actions(steps, 1, 4, seed=2):
        step, td = env.step_and_maybe_reset(td.set("action", action))
        steps_td.append(step)
        resets.append(td.clone())
        if step["next", "game_over"].any():
            break
    assert steps_td[-1]["next", "game_over"].all(), "no game over: raise steps"
    return torch.cat(steps_td), torch.cat(resets)


def test_life_loss_ends_the_episode_but_not_the_game() -> None:
    steps, after = _play_one_game(terminal_on_life_loss=True)
    nxt = steps["next"]
    terminated = nxt["terminated"].view(-1)
    game_over = nxt["game_over"].view(-1)
    # Breakout's 5 lives: 4 life losses end the agent's episode, the 5th loss ends the game.
    assert terminated.sum() == 5 and game_over.sum() == 1 and game_over[-1]
    assert (nxt["done"].view(-1) == terminated).all()
    lost = terminated.nonzero().view(-1)[:-1]
    # The reset after a life loss continues the game: same frames, same statistics.
    assert torch.equal(after["observation"][lost], nxt["observation"][lost])
    assert torch.equal(after["episode_length"][lost], nxt["episode_length"][lost])
    assert not after["done"][lost].any()
    # Statistics cover the whole game: its length in agent steps and its unclipped score.
    length = nxt["episode_length"].view(-1)
    assert torch.equal(length, torch.arange(1, len(length) + 1))
    assert nxt["episode_return"][-1].item() == nxt["reward"].sum().item() > 0
    # The reset after the game over starts a new game.
    assert after["episode_length"][-1].item() == 0 and after["episode_return"][-1].item() == 0


def test_without_terminal_on_life_loss_episodes_are_games() -> None:
    steps, _ = _play_one_game(terminal_on_life_loss=False)
    nxt = steps["next"]
    assert nxt["terminated"].sum() == 1 and nxt["terminated"][-1].all()
    assert torch.equal(nxt["done"], nxt["game_over"])


def test_reward_clipping_keeps_the_game_score() -> None:
    actions = _actions(150, 2, 6, seed=1)

    def run(clip: bool) -> TensorDictBase:
        env = make_atari_env("SpaceInvaders", envs_per_game=2, seed=0, clip_rewards=clip)
        return _run(env, env.reset(), actions)[0]["next"]

    clipped, raw = run(True), run(False)
    assert raw["reward"].max() > 1  # invaders are worth 5 to 30 points
    assert torch.equal(clipped["reward"], raw["reward"].sign())
    assert torch.equal(clipped["episode_return"], raw["episode_return"])
    assert torch.equal(clipped["observation"], raw["observation"])


def test_max_episode_steps_truncates_the_game() -> None:
    env = make_atari_env("Pong", seed=0, max_episode_steps=10)
    steps, _ = _run(env, env.reset(), _actions(15, 1, 6))
    nxt = steps["next"]
    assert nxt["truncated"].view(-1).tolist() == [False] * 9 + [True] + [False] * 5
    assert torch.equal(nxt["game_over"], nxt["truncated"])
    assert not nxt["terminated"].any()
    assert nxt["episode_length"].view(-1).tolist() == [*range(1, 11), *range(1, 6)]


def test_simulator_state_restores_the_bookkeeping_and_restarts_the_games() -> None:
    actions = _actions(60, 2, 4, seed=2)
    env = make_atari_env("Breakout", envs_per_game=2, seed=0, terminal_on_life_loss=False)
    _, td = _run(env, env.reset(), actions[:40])
    buffer = io.BytesIO()
    torch.save(env.simulator_state(), buffer)  # through a file, as checkpoints are loaded

    def resume() -> tuple[AtariMultiGameEnv, TensorDictBase]:
        other = make_atari_env("Breakout", envs_per_game=2, seed=7, terminal_on_life_loss=False)
        other.reset()
        buffer.seek(0)
        other.load_simulator_state(torch.load(buffer, weights_only=True))
        return other, _run(other, td.clone(), actions[40:])[0]

    resumed_env, resumed = resume()
    # The first step ignores its actions and ends every episode as truncated, leading back to
    # the checkpoint's observation with its statistics; no game is reported as over.
    first = resumed[:, 0]["next"]
    assert first["truncated"].all() and not first["terminated"].any()
    assert not first["game_over"].any() and (first["reward"] == 0).all()
    assert torch.equal(first["observation"], td["observation"])
    assert torch.equal(first["episode_length"], td["episode_length"])
    assert torch.equal(first["episode_return"], td["episode_return"])
    # Then new games, seeded from the snapshot's seed: a second resume replays them exactly.
    assert resumed[:, 1]["episode_length"].view(-1).tolist() == [0, 0]
    assert (resume()[1] == resumed).all()
    assert resumed_env.simulator_state()["resumes"] == 1


def test_simulator_state_mismatch() -> None:
    state = make_atari_env("Pong").simulator_state()
    with pytest.raises(ValueError, match="envs_per_game is 1 in the state but 2 here"):
        make_atari_env("Pong", envs_per_game=2).load_simulator_state(state)
    with pytest.raises(ValueError, match="full_action_space is False in the state but True"):
        make_atari_env("Pong", full_action_space=True).load_simulator_state(state)
    with pytest.raises(ValueError, match="missing key"):
        make_atari_env("Pong").load_simulator_state({"games": ["Pong"]})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"games": ["Pongg"]}, r"Unknown Atari game 'Pongg'\. Did you mean \['Pong'\]\?"),
        ({"games": ["NotAGame"]}, r"Allowed: .*'Alien'"),
        ({"games": []}, "at least one"),
        ({"games": ["Pong", "Pong"]}, r"distinct.*\['Pong'\]"),
        ({"games": "Pong", "envs_per_game": 0}, "envs_per_game must be an integer >= 1"),
        ({"games": "Pong", "max_episode_steps": 0}, "max_episode_steps"),
        (
            {"games": "Pong", "repeat_action_probability": 1.5},
            r"repeat_action_probability.*\[0, 1\]",
        ),
        ({"games": "Pong", "num_threads": 0}, "num_threads"),
    ],
)
def test_bad_input(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_atari_env(**kwargs)


def test_invalid_actions_are_refused_and_the_env_survives() -> None:
    env = make_atari_env("Pong", envs_per_game=2, seed=0)
    td = env.reset()
    with pytest.raises(ValueError, match=r"actions must be in \[0, 6\), got \[0, 6\]"):
        env.step(td.clone().set("action", torch.tensor([0, 6])))
    assert env.step(td.set("action", torch.tensor([0, 5])))["next", "episode_length"].eq(1).all()
    env.close()
    with pytest.raises(RuntimeError, match="closed"):
        env.reset()


def test_study_games_are_ale_games() -> None:
    assert ATARI_GAMES == ("Pong", "Breakout", "SpaceInvaders", "MsPacman", "Qbert")
    env = AtariMultiGameEnv(ATARI_GAMES)
    assert env.task_names == list(ATARI_GAMES) and env.action_spec.space.n == 18
