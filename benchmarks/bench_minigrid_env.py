"""Frames per second of the MiniGrid multi-task suite, side by side with its baselines.

Compares, for the MT3 tasks with the same number of sub-environments:

1. raw gymnasium MiniGrid stepping (a Python loop over ``gym.make`` envs, random actions);
2. a TorchRL ``SerialEnv`` of one ``GymEnv`` per sub-environment (``ImgObsWrapper``);
3. :func:`torchrl_sparse.envs.make_minigrid_env` (one batched env, transforms included).

Targets (issue #3): the suite is >= 2x the ``SerialEnv`` baseline and >= 50% of raw stepping.

Each number is the best of ``--repeats`` runs, since other processes on a small machine only
ever slow a run down. TorchRL's fixed cost per batched step is amortised over the
sub-environments, so the ratios improve with ``--envs-per-task``.

Run: ``python benchmarks/bench_minigrid_env.py [--frames 24000] [--envs-per-task 4]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import gymnasium as gym
import minigrid  # noqa: F401  (registers MiniGrid ids)
import numpy as np
import torch
from minigrid.wrappers import ImgObsWrapper
from torchrl.envs import GymWrapper, SerialEnv

from torchrl_sparse.envs import make_minigrid_env, minigrid_task_ids


def best_of(repeats: int, bench: Callable[[], float]) -> float:
    """Highest frames/s over ``repeats`` runs."""
    return max(bench() for _ in range(repeats))


def bench_raw(task_ids: list[str], envs_per_task: int, frames: int) -> float:
    envs = [gym.make(task) for task in task_ids for _ in range(envs_per_task)]
    for i, env in enumerate(envs):
        env.reset(seed=i)
    rng = np.random.default_rng(0)
    steps = frames // len(envs)
    start = time.perf_counter()
    for _ in range(steps):
        for env in envs:
            _, _, terminated, truncated, _ = env.step(int(rng.integers(7)))
            if terminated or truncated:
                env.reset()
    return steps * len(envs) / (time.perf_counter() - start)


def _gym_env(task: str) -> GymWrapper:
    return GymWrapper(ImgObsWrapper(gym.make(task)))


def bench_serial(task_ids: list[str], envs_per_task: int, frames: int) -> float:
    fns = [lambda task=task: _gym_env(task) for task in task_ids for _ in range(envs_per_task)]
    env = SerialEnv(len(fns), fns)
    env.set_seed(0)
    env.rollout(10, break_when_any_done=False)
    steps = frames // len(fns)
    start = time.perf_counter()
    env.rollout(steps, break_when_any_done=False)
    elapsed = time.perf_counter() - start
    env.close()
    return steps * len(fns) / elapsed


def bench_suite(envs_per_task: int, frames: int) -> float:
    env = make_minigrid_env("MT3", envs_per_task=envs_per_task, seed=0)
    env.rollout(10, break_when_any_done=False)
    n = env.batch_size[0]
    steps = frames // n
    start = time.perf_counter()
    env.rollout(steps, break_when_any_done=False)
    return steps * n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24_000)
    parser.add_argument("--envs-per-task", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    task_ids = minigrid_task_ids("MT3")
    n = len(task_ids) * args.envs_per_task
    per_task, frames, repeats = args.envs_per_task, args.frames, args.repeats
    print(f"MiniGrid MT3, {n} sub-environments, {frames} frames, random actions, best of {repeats}")
    raw = best_of(repeats, lambda: bench_raw(task_ids, per_task, frames))
    serial = best_of(repeats, lambda: bench_serial(task_ids, per_task, frames))
    suite = best_of(repeats, lambda: bench_suite(per_task, frames))
    print(f"{'raw gymnasium loop':<32}{raw:>10.0f} frames/s")
    print(f"{'SerialEnv of GymEnv':<32}{serial:>10.0f} frames/s")
    print(f"{'torchrl_sparse MiniGrid suite':<32}{suite:>10.0f} frames/s")
    vs_serial, vs_raw = suite / serial, suite / raw
    print(
        f"suite / SerialEnv = {vs_serial:.2f}x (target >= 2x): {'OK' if vs_serial >= 2 else 'MISS'}"
    )
    print(f"suite / raw       = {vs_raw:.0%} (target >= 50%): {'OK' if vs_raw >= 0.5 else 'MISS'}")


if __name__ == "__main__":
    main()
