"""Memory soak: a long real training whose resident memory (RSS) must stay flat after warm-up.

Trains :class:`~torchrl_sparse.lightning.MultiTaskPPO` through the ``torchrl-sparse`` CLI
(LightningCLI) with a shipped MiniGrid recipe, by default the MT3 MTPPO GMP recipe with all its
callbacks: GMP sparsity, the plasticity monitor (dormant ratio, srank, Fisher trace), frame
checkpoints and the summary figure, evaluation on. After every batch it samples the process's
RSS (``/proc/self/statm``) as it stands and once garbage is collected and glibc's free heap is
returned to the system ("live"), and the number of objects Python's garbage collector tracks;
it prints the curve and fits a line to the batches after warm-up.

Batches are shortened to iterate fast (``--steps-per-task-per-batch``, 400 by default: 1,200
frames on MT3 instead of the recipe's 6,000). Every frame period of the recipe (evaluation,
metric and checkpoint cadences, the metric reservoir's capacity) is shortened by the same
factor, so each batch does the same work per batch as in the recipe: the warm-up (the reservoir
filling) takes as many batches and a leak per event grows as fast per batch. Pass
``--steps-per-task-per-batch 2000`` for the recipe itself (6,000-frame batches, about 10 s each
on one thread with evaluation).

Verdict, on the live RSS (the raw RSS swings by tens of MiB with what the allocator keeps): its
least-squares slope over the batches after warm-up must be at most ``--max-slope`` MiB per
batch, and its value at the end (median of the last 5 batches) at most ``--max-growth`` times
its value right after warm-up (median of the first 5). The exit code is 1 when either misses.

Run: ``python benchmarks/bench_soak_memory.py [--batches 60] [--warmup 20]`` (about 5 minutes
on 2 cores; Linux with glibc, for ``/proc`` and ``malloc_trim``).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import inspect
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import lightning.pytorch as pl
import torch
import yaml

from torchrl_sparse.lightning import PlasticityMonitorCallback
from torchrl_sparse.lightning.cli import load_recipe, run

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RECIPE = REPO / "recipes/minigrid/mt3/mtppo/gmp.yaml"
#: Callback arguments counted in environment frames, shortened with the batches.
FRAME_ARGUMENTS = ("every_n_frames", "reservoir_size")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    """Resident set size of this process in MiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE / 2**20


class Sample(NamedTuple):
    """Memory after one batch."""

    frames: int
    seconds: float
    rss: float  #: MiB, as the process stands
    live: float  #: MiB after collecting garbage and returning free heap to the system
    objects: int  #: objects tracked by Python's garbage collector


class RSSRecorder(pl.Callback):
    """Sample the process's memory after every batch.

    ``live`` is the RSS once cyclic garbage is collected and glibc's free heap is returned to
    the system (``malloc_trim``): the allocator keeps tens of MiB of freed batches and metric
    tensors around, which hides a slow leak in the raw RSS and cannot hide one in ``live``.
    """

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self._start = time.perf_counter()
        self._trim = ctypes.CDLL("libc.so.6").malloc_trim

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any
    ) -> None:
        seconds, rss = time.perf_counter() - self._start, rss_mb()
        gc.collect()
        self._trim(0)
        live = rss_mb()
        self.samples.append(Sample(pl_module.frames, seconds, rss, live, len(gc.get_objects())))


def shortened_recipe(
    recipe: Path, steps_per_batch: int, batches: int
) -> tuple[dict[str, Any], float, int]:
    """The recipe (``extends`` resolved) with batches and frame periods scaled together.

    Returns:
        The shortened recipe, the scale factor (``steps_per_batch`` over the recipe's batch)
        and the number of batches of the recipe itself.
    """
    config = load_recipe(recipe)
    model = config["model"]["init_args"]
    scale = steps_per_batch / model["steps_per_task_per_batch"]
    recipe_batches = math.ceil(model["total_steps_per_task"] / model["steps_per_task_per_batch"])
    model["steps_per_task_per_batch"] = steps_per_batch
    model["total_steps_per_task"] = steps_per_batch * batches
    if model.get("eval_every_steps_per_task"):
        model["eval_every_steps_per_task"] = max(
            1, round(model["eval_every_steps_per_task"] * scale)
        )
    monitor = PlasticityMonitorCallback.__name__
    default_reservoir = (
        inspect.signature(PlasticityMonitorCallback).parameters["reservoir_size"].default
    )
    for callback in config["trainer"]["callbacks"]:
        arguments = callback.setdefault("init_args", {})
        if callback["class_path"].endswith(monitor):
            arguments.setdefault("reservoir_size", default_reservoir)
        for key in FRAME_ARGUMENTS:
            if key in arguments:
                arguments[key] = max(1, round(arguments[key] * scale))
    # Measured after every other callback of the batch (Lightning still runs checkpoints last).
    config["trainer"]["callbacks"].append({"class_path": f"{__name__}.{RSSRecorder.__name__}"})
    return config, scale, recipe_batches


def fit(config: dict[str, Any]) -> RSSRecorder:
    """Train ``config`` through the CLI in a scratch directory; the recorder of the run."""
    previous = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="bench_soak_") as workdir:
        os.chdir(workdir)
        try:
            path = Path(workdir) / "soak.yaml"
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            # LightningCLI warns when sys.argv holds arguments besides the ones it is given.
            argv, sys.argv = sys.argv, sys.argv[:1]
            cli = run(["fit", "--config", str(path), "--trainer.enable_progress_bar", "false"])
        finally:
            sys.argv = argv
            os.chdir(previous)
    return next(c for c in cli.trainer.callbacks if isinstance(c, RSSRecorder))


def _slope(values: list[float]) -> float:
    """Least-squares slope of ``values`` against their index."""
    return statistics.linear_regression(range(len(values)), values).slope


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE)
    parser.add_argument("--steps-per-task-per-batch", type=int, default=400)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=20, help="batches left out of the fit")
    parser.add_argument("--max-slope", type=float, default=0.2, help="MiB per batch")
    parser.add_argument("--max-growth", type=float, default=1.05, help="end RSS / post-warm-up")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.batches < args.warmup + 10:
        parser.error("--batches must leave at least 10 batches after --warmup")
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)

    config, scale, recipe_batches = shortened_recipe(
        args.recipe, args.steps_per_task_per_batch, args.batches
    )
    model = config["model"]["init_args"]
    cadences = {
        c["class_path"].rsplit(".", 1)[-1]: {
            k: v for k, v in c["init_args"].items() if k in FRAME_ARGUMENTS
        }
        for c in config["trainer"]["callbacks"]
        if any(k in c.get("init_args", {}) for k in FRAME_ARGUMENTS)
    }
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, recipe {args.recipe}")
    print(
        f"{args.batches} batches of {args.steps_per_task_per_batch} steps per task (recipe x "
        f"{scale:g}); evaluation every {model.get('eval_every_steps_per_task')} steps per task; "
        f"frame periods {cadences}"
    )
    recorder = fit(config)
    print(f"RSS after fit (summary figure, checkpoint): {rss_mb():.1f} MiB")

    print(f"\n{'batch':>5}{'frames':>9}{'seconds':>9}{'RSS MiB':>9}{'live MiB':>10}{'delta':>8}"
          f"{'objects':>10}")  # fmt: skip
    previous = recorder.samples[0].live
    for index, sample in enumerate(recorder.samples):
        mark = "  <- warm-up ends" if index == args.warmup else ""
        frames, seconds, rss, live, objects = sample
        print(f"{index:>5}{frames:>9}{seconds:>9.1f}{rss:>9.1f}{live:>10.1f}"
              f"{live - previous:>+8.1f}{objects:>10}{mark}")  # fmt: skip
        previous = live

    after = recorder.samples[args.warmup :]
    slopes = {name: _slope([getattr(s, name) for s in after]) for name in Sample._fields[2:]}
    start, end = (statistics.median(s.live for s in part) for part in (after[:5], after[-5:]))
    slope = slopes["live"]
    frames_per_batch = after[1].frames - after[0].frames
    print(
        f"\nafter warm-up ({len(after)} batches of {frames_per_batch} frames): live RSS slope "
        f"{slope:+.2f} MiB per batch (target <= {args.max_slope}), {start:.1f} -> {end:.1f} MiB "
        f"(x{end / start:.3f}, target <= x{args.max_growth}); raw RSS {slopes['rss']:+.2f} MiB "
        f"and Python objects {slopes['objects']:+.1f} per batch"
    )
    print(
        f"projected over the recipe's {recipe_batches} batches: {slope * recipe_batches:+.0f} MiB"
    )
    met = slope <= args.max_slope and end / start <= args.max_growth
    print(f"flat memory after warm-up: {'MET' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
