"""Frames per second of the MiniGrid multi-task suite, side by side with its baselines.

Compares, for the MT3 tasks with the same sub-environments (``--envs-per-task`` per task) and
the same number of frames:

1. raw gymnasium MiniGrid stepping: a Python loop over ``gym.make`` envs, random actions,
   resetting finished envs;
2. a TorchRL ``SerialEnv`` with one ``GymEnv`` (``ImgObsWrapper``) per sub-environment, i.e.
   per (task, env) slot, without transforms;
3. :func:`torchrl_sparse.envs.make_minigrid_env`, transforms included, as training uses it
   (egocentric views computed by :func:`~torchrl_sparse.envs.egocentric_obs`);
4. the same suite with ``fast_observations=False`` (MiniGrid's own ``gen_obs``), to show how
   much of the gain is TorchRL overhead saved and how much is the faster view.

Both TorchRL environments are driven as PPO training drives them: an endless
``torchrl.collectors.Collector`` with ``frames_per_batch=2000`` (rounded up to a multiple of the
number of sub-environments, as :class:`~torchrl_sparse.lightning.MultiTaskPPO` does). The policy
draws random actions (``RandomPolicy``) so that every contender pays the same for its actions
and the numbers measure the environments, not a network.

Targets (issue #3): the suite is >= 2x the ``SerialEnv`` baseline and >= 50% of raw stepping.
The default is PPO training's default, 8 environments per task; TorchRL's fixed cost per
batched step is amortised over the sub-environments, so the ratios improve with
``--envs-per-task``.

The contenders run single-threaded, in interleaved rounds in one process (so a change of
machine load hits all of them), and each number is the best round, since other processes only
ever slow a run down. Next to frames per wall-clock second, frames per CPU second of this
process are printed: on a shared machine they are much less disturbed by other processes. The
load average is printed before and after.

Run: ``python benchmarks/bench_minigrid_env.py [--envs-per-task 8] [--batches 6] [--rounds 3]``
(the default is PPO training's, 8 environments per task).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable

import gymnasium as gym
import minigrid  # noqa: F401  (registers MiniGrid ids)
import numpy as np
import torch
from minigrid.wrappers import ImgObsWrapper
from torchrl.collectors import Collector
from torchrl.envs import EnvBase, GymWrapper, SerialEnv
from torchrl.envs.utils import RandomPolicy

from torchrl_sparse.envs import make_minigrid_env, minigrid_task_ids
from torchrl_sparse.lightning.ppo import DEFAULT_ENVS_PER_TASK

FRAMES_PER_BATCH = 2_000
"""Training's default frames per collected batch."""


class Clock:
    """Wall-clock and process CPU time since construction."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def rates(self, frames: int) -> tuple[float, float]:
        """Frames per wall-clock second and per CPU second."""
        return (
            frames / (time.perf_counter() - self.wall),
            frames / (time.process_time() - self.cpu),
        )


def bench_raw(task_ids: list[str], envs_per_task: int, frames: int) -> tuple[float, float]:
    """Frames/s (wall, CPU) of a plain loop over gymnasium MiniGrid envs."""
    envs = [gym.make(task) for task in task_ids for _ in range(envs_per_task)]
    for i, env in enumerate(envs):
        env.reset(seed=i)
    rng = np.random.default_rng(0)
    steps = frames // len(envs)
    clock = Clock()
    for _ in range(steps):
        for env in envs:
            _, _, terminated, truncated, _ = env.step(int(rng.integers(7)))
            if terminated or truncated:
                env.reset()
    return clock.rates(steps * len(envs))


def bench_collector(env: EnvBase, frames_per_batch: int, batches: int) -> tuple[float, float]:
    """Frames/s (wall, CPU) of an endless collector on ``env``, after one warm-up batch."""
    collector = Collector(
        env, RandomPolicy(env.action_spec), frames_per_batch=frames_per_batch, total_frames=-1
    )
    batches_iter = iter(collector)
    next(batches_iter)
    clock = Clock()
    for _ in range(batches):
        next(batches_iter)
    rates = clock.rates(batches * frames_per_batch)
    collector.shutdown()
    return rates


def serial_env(task_ids: list[str], envs_per_task: int) -> SerialEnv:
    """One ``GymEnv`` per (task, env) slot, stepped in series."""
    fns = [
        lambda task=task: GymWrapper(ImgObsWrapper(gym.make(task)))
        for task in task_ids
        for _ in range(envs_per_task)
    ]
    env = SerialEnv(len(fns), fns)
    env.set_seed(0)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs-per-task", type=int, default=DEFAULT_ENVS_PER_TASK)
    parser.add_argument("--batches", type=int, default=6, help="timed batches per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    task_ids = minigrid_task_ids("MT3")
    per_task = args.envs_per_task
    n = len(task_ids) * per_task
    frames_per_batch = math.ceil(FRAMES_PER_BATCH / n) * n
    frames = args.batches * frames_per_batch
    print(
        f"MiniGrid MT3, {n} sub-environments ({per_task} per task), {frames} frames per run "
        f"({args.batches} x {frames_per_batch}-frame collector batches), random actions, "
        f"best of {args.rounds} interleaved rounds"
    )
    print("load average (1, 5, 15 min) before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    contenders: dict[str, Callable[[], tuple[float, float]]] = {
        "raw gymnasium loop": lambda: bench_raw(task_ids, per_task, frames),
        "SerialEnv of GymEnv": lambda: bench_collector(
            serial_env(task_ids, per_task), frames_per_batch, args.batches
        ),
        "torchrl_sparse MiniGrid suite": lambda: bench_collector(
            make_minigrid_env("MT3", envs_per_task=per_task, seed=0),
            frames_per_batch,
            args.batches,
        ),
        "  same, MiniGrid's gen_obs": lambda: bench_collector(
            make_minigrid_env("MT3", envs_per_task=per_task, seed=0, fast_observations=False),
            frames_per_batch,
            args.batches,
        ),
    }
    best = {name: np.zeros(2) for name in contenders}
    for _ in range(args.rounds):
        for name, bench in contenders.items():
            best[name] = np.maximum(best[name], bench())
    print("load average (1, 5, 15 min) after:  {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(f"{'':<32}{'frames/s':>10}{'frames/CPU-s':>14}")
    for name, (wall, cpu) in best.items():
        print(f"{name:<32}{wall:>10.0f}{cpu:>14.0f}")
    raw, serial, suite, suite_gen_obs = best.values()
    for name, rates in (("suite", suite), ("suite with gen_obs", suite_gen_obs)):
        vs_serial, vs_raw = rates / serial, rates / raw
        for i, clock in enumerate(("wall", "CPU ")):
            print(
                f"{clock}: {name} / SerialEnv = {vs_serial[i]:.2f}x (target >= 2x) "
                f"{'OK' if vs_serial[i] >= 2 else 'MISS'}; {name} / raw = {vs_raw[i]:.0%} "
                f"(target >= 50%) {'OK' if vs_raw[i] >= 0.5 else 'MISS'}"
            )


if __name__ == "__main__":
    main()
