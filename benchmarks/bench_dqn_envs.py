"""Frames per second of the DQN environments (MinAtar, Atari), side by side with plain loops.

Compares, for one game with ``--num-envs`` copies and random actions:

(a) MinAtar:

1. a plain gymnasium loop over ``gym.make("MinAtar/<game>-v1")`` envs, resetting finished ones;
2. :func:`torchrl_sparse.envs.make_minatar_env`, driven by an endless
   ``torchrl.collectors.Collector`` as DQN training drives it.

(b) Atari, with the same preprocessing everywhere (no-op starts up to 30, frame skip 4 with
max-pooling, 84x84 grayscale, 4 stacked frames, sticky actions 0.25):

1. a plain gymnasium loop over ``FrameStackObservation(AtariPreprocessing(gym.make(
   "ALE/<game>-v5", frameskip=1)), 4, padding_type="zero")`` envs (needs
   ``pip install opencv-python-headless``; skipped without it);
2. a plain loop over ale-py's ``AtariVectorEnv`` (the engine of our environment, without
   TorchRL);
3. :func:`torchrl_sparse.envs.make_atari_env`, driven by a collector as in (a).

A frame is one environment step (an agent step: 4 emulator frames on Atari). The collectors use
the DQN recipes' ``frames_per_batch`` (64 for MinAtar, 256 for Atari; rounded up to a multiple of
``--num-envs``) and a ``RandomPolicy``, so every contender pays the same for its actions.

Everything runs single-threaded (``torch.set_num_threads(1)`` and one ALE worker thread), in
interleaved rounds in one process, and each number is the best round, since other processes only
ever slow a run down. Next to frames per wall-clock second, frames per CPU second of this process
(all its threads) are printed: on a shared machine they are much less disturbed by other
processes. The ratios ours / plain gymnasium loop are printed for both clocks.

Run: ``python benchmarks/bench_dqn_envs.py [--num-envs 4] [--frames 2000] [--rounds 2]
[--minatar-game Breakout] [--atari-game Pong]`` (the defaults take well under a minute).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable

import ale_py
import gymnasium as gym
import minatar.gym
import numpy as np
import torch
from ale_py.vector_env import AtariVectorEnv
from torchrl.collectors import Collector
from torchrl.envs import EnvBase
from torchrl.envs.utils import RandomPolicy

from torchrl_sparse.envs import make_atari_env, make_minatar_env

MINATAR_FRAMES_PER_BATCH = 64
"""The MinAtar DQN recipe's frames per collected batch."""
ATARI_FRAMES_PER_BATCH = 256
"""The Atari DQN recipe's frames per collected batch."""


class Clock:
    """Wall-clock and process CPU time since construction."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def rates(self, frames: int) -> np.ndarray:
        """Frames per wall-clock second and per CPU second."""
        return np.array(
            [
                frames / (time.perf_counter() - self.wall),
                frames / (time.process_time() - self.cpu),
            ]
        )


def bench_gym_loop(make: Callable[[], gym.Env], num_envs: int, frames: int) -> np.ndarray:
    """Frames/s (wall, CPU) of a plain loop over gymnasium envs, random actions."""
    envs = [make() for _ in range(num_envs)]
    for i, env in enumerate(envs):
        env.reset(seed=i)
    num_actions = int(envs[0].action_space.n)
    rng = np.random.default_rng(0)
    steps = math.ceil(frames / num_envs)
    clock = Clock()
    for _ in range(steps):
        for env in envs:
            _, _, terminated, truncated, _ = env.step(int(rng.integers(num_actions)))
            if terminated or truncated:
                env.reset()
    rates = clock.rates(steps * num_envs)
    for env in envs:
        env.close()
    return rates


def bench_ale_vector(rom: str, num_envs: int, frames: int) -> np.ndarray:
    """Frames/s (wall, CPU) of ale-py's AtariVectorEnv (autoresets), random actions."""
    env = AtariVectorEnv(
        rom,
        num_envs,
        num_threads=1,
        repeat_action_probability=0.25,
        use_fire_reset=False,
        reward_clipping=False,
    )
    env.reset(seed=0)
    num_actions = int(env.single_action_space.n)
    rng = np.random.default_rng(0)
    steps = math.ceil(frames / num_envs)
    clock = Clock()
    for _ in range(steps):
        env.step(rng.integers(num_actions, size=num_envs))
    return clock.rates(steps * num_envs)


def bench_collector(env: EnvBase, frames_per_batch: int, frames: int) -> np.ndarray:
    """Frames/s (wall, CPU) of an endless collector on ``env``, after one warm-up batch."""
    collector = Collector(
        env, RandomPolicy(env.action_spec), frames_per_batch=frames_per_batch, total_frames=-1
    )
    batches_iter = iter(collector)
    next(batches_iter)
    batches = max(1, math.ceil(frames / frames_per_batch))
    clock = Clock()
    for _ in range(batches):
        next(batches_iter)
    rates = clock.rates(batches * frames_per_batch)
    collector.shutdown()
    return rates


def atari_gym_maker(game: str) -> Callable[[], gym.Env] | None:
    """The gymnasium Atari env with the DQN preprocessing, or ``None`` without OpenCV."""
    try:
        import cv2  # noqa: F401  (AtariPreprocessing resizes with OpenCV)
    except ImportError:
        return None
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    gym.register_envs(ale_py)

    def make() -> gym.Env:
        env = gym.make(f"ALE/{game}-v5", frameskip=1, repeat_action_probability=0.25)
        return FrameStackObservation(
            AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84),
            4,
            padding_type="zero",
        )

    return make


def run_rounds(
    contenders: dict[str, Callable[[], np.ndarray]], rounds: int
) -> dict[str, np.ndarray]:
    """Best (wall, CPU) rates of each contender over interleaved rounds."""
    best = {name: np.zeros(2) for name in contenders}
    for _ in range(rounds):
        for name, bench in contenders.items():
            best[name] = np.maximum(best[name], bench())
    return best


def report(title: str, best: dict[str, np.ndarray], ours: str, plain: str, unit: str) -> None:
    print(f"\n{title}")
    print(f"{'':<36}{unit + '/s':>14}{unit + '/CPU-s':>16}")
    for name, (wall, cpu) in best.items():
        print(f"{name:<36}{wall:>14.0f}{cpu:>16.0f}")
    if plain in best:
        wall, cpu = best[ours] / best[plain]
        print(f"ours / plain gymnasium loop: {wall:.2f}x (wall), {cpu:.2f}x (CPU)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=4, help="copies of each game")
    parser.add_argument("--frames", type=int, default=2000, help="timed frames per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--minatar-game", default="Breakout")
    parser.add_argument("--atari-game", default="Pong")
    args = parser.parse_args()
    torch.set_num_threads(1)
    n, frames = args.num_envs, args.frames
    minatar.gym.register_envs()
    print(
        f"{n} copies of each game, {frames} timed frames per run, random actions, best of "
        f"{args.rounds} interleaved rounds"
    )
    print("load average (1, 5, 15 min) before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))

    game = args.minatar_game
    per_batch = math.ceil(MINATAR_FRAMES_PER_BATCH / n) * n
    minatar_best = run_rounds(
        {
            "plain gymnasium loop": lambda: bench_gym_loop(
                lambda: gym.make(f"MinAtar/{game}-v1"), n, frames
            ),
            "torchrl_sparse MinAtarEnv": lambda: bench_collector(
                make_minatar_env(game, num_envs=n, seed=0), per_batch, frames
            ),
        },
        args.rounds,
    )

    atari = args.atari_game
    rom = make_atari_env(atari).rom_ids[0]  # also validates the game name
    per_batch = math.ceil(ATARI_FRAMES_PER_BATCH / n) * n
    atari_contenders: dict[str, Callable[[], np.ndarray]] = {}
    maker = atari_gym_maker(atari)
    if maker is not None:
        atari_contenders["plain gymnasium loop"] = lambda: bench_gym_loop(maker, n, frames)
    atari_contenders["plain ale_py AtariVectorEnv loop"] = lambda: bench_ale_vector(rom, n, frames)
    atari_contenders["torchrl_sparse AtariMultiGameEnv"] = lambda: bench_collector(
        make_atari_env(atari, envs_per_game=n, seed=0), per_batch, frames
    )
    atari_best = run_rounds(atari_contenders, args.rounds)
    print("load average (1, 5, 15 min) after:  {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))

    report(
        f"(a) MinAtar {game}",
        minatar_best,
        "torchrl_sparse MinAtarEnv",
        "plain gymnasium loop",
        "frames",
    )
    report(
        f"(b) Atari {atari} (agent steps; x4 for emulator frames)",
        atari_best,
        "torchrl_sparse AtariMultiGameEnv",
        "plain gymnasium loop",
        "steps",
    )
    wall, cpu = (
        atari_best["torchrl_sparse AtariMultiGameEnv"]
        / (atari_best["plain ale_py AtariVectorEnv loop"])
    )
    print(f"ours / plain AtariVectorEnv loop: {wall:.2f}x (wall), {cpu:.2f}x (CPU)")
    if maker is None:
        print(
            "plain gymnasium loop skipped: gymnasium's AtariPreprocessing needs OpenCV "
            "(pip install opencv-python-headless)"
        )


if __name__ == "__main__":
    main()
