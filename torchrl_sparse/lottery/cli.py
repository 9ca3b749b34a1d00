"""``torchrl-sparse lottery``: run (or resume) an IMP study over seeds, then write its report.

Examples::

    torchrl-sparse lottery --task CartPole-v1 --rounds 8 --seeds 0-2 --jobs 2 --out runs/lottery
    torchrl-sparse lottery --task CartPole-v1 --out runs/lottery --report-only

Seeds run in parallel processes (``--jobs``, default cores // ``--threads-per-job``), each with
``--threads-per-job`` torch threads (and ``OMP_NUM_THREADS``), so jobs do not oversubscribe the
cores. Every training is saved as it finishes: re-running the same command resumes where it
stopped (Ctrl-C exits 130). Bad settings are one ``error:`` line and exit 2, before anything runs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from torchrl_sparse.commands import OneLineErrorParser
    from torchrl_sparse.lottery.tickets import CONDITIONS

    parser = OneLineErrorParser(
        prog="torchrl-sparse lottery",
        description="Lottery tickets in RL vs behaviour cloning (iterative magnitude pruning).",
    )
    parser.add_argument("--task", required=True, help="gymnasium id, e.g. CartPole-v1")
    parser.add_argument(
        "--out", default="runs/lottery", help="study directory (default: %(default)s)"
    )
    parser.add_argument("--seeds", default="0", help="'0-2' or '0,3,5' (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=8, help="pruning rounds after round 0")
    parser.add_argument("--prune-fraction", type=float, default=0.2, help="of remaining weights")
    parser.add_argument("--scope", default="layer", help="'layer' or 'global' magnitude ranking")
    parser.add_argument(
        "--rewind-step", type=int, default=0, help="optimizer steps of round 0 to rewind to"
    )
    parser.add_argument("--rescale", action="store_true", help="rescale to dense layer variance")
    parser.add_argument("--paradigms", default="rl,bc", help="'rl,bc' or 'rl'")
    parser.add_argument("--conditions", default=",".join(CONDITIONS), help="ticket and baselines")
    parser.add_argument("--hidden", default="64,64", help="hidden layer widths")
    parser.add_argument("--rl-frames", type=int, default=50_000, help="PPO frames per training")
    parser.add_argument("--bc-epochs", type=int, default=20, help="BC epochs per training")
    parser.add_argument("--bc-transitions", type=int, default=10_000, help="expert dataset size")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument(
        "--ppo", action="append", default=[], metavar="KEY=VALUE", help="a PPO option"
    )
    parser.add_argument(
        "--bc", action="append", default=[], metavar="KEY=VALUE", help="a BC option"
    )
    parser.add_argument("--jobs", type=int, default=None, help="seeds run at once")
    parser.add_argument("--threads-per-job", type=int, default=1)
    parser.add_argument("--report-only", action="store_true", help="only (re)write the report")
    return parser


def _value(text: str) -> object:
    # YAML 1.1 reads "1e-3" as a string: numbers first.
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    import yaml

    return yaml.safe_load(text)


def _options(pairs: list[str]) -> dict[str, object]:
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{pair!r} is not KEY=VALUE")
        options[key] = _value(value)
    return options


def _run_one(study_dict: dict, seed: int, threads: int) -> int:
    import logging
    import warnings

    import lightning.pytorch  # noqa: F401 - sets its logger's level on import: before ours
    import torch

    from torchrl_sparse.lottery.study import LotteryStudy, run_seed

    torch.set_num_threads(threads)
    # Dozens of short trainings: keep Lightning's per-fit banners out of the study's log.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")
    run_seed(LotteryStudy(**study_dict), seed)
    return seed


def _run_star(work: tuple[dict, int, int]) -> int:
    return _run_one(*work)


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    from torchrl_sparse.experiments.sweep import parse_seeds

    try:
        seeds = sorted(set(parse_seeds(args.seeds)))
    except ValueError:
        parser.error(f"--seeds {args.seeds!r}: give '0-2' or '0,3,5' (non-negative integers)")
    try:
        from torchrl_sparse.lightning.control import gym_make

        gym_make(args.task).close()
    except Exception:  # gymnasium raises several error types for unknown ids
        parser.error(f"--task {args.task!r} is not a registered gymnasium environment")
    from torchrl_sparse.experiments.local import default_jobs, thread_environment
    from torchrl_sparse.lottery.report import write_report
    from torchrl_sparse.lottery.study import LotteryStudy

    try:
        study = LotteryStudy(
            task=args.task,
            out=args.out,
            rounds=args.rounds,
            prune_fraction=args.prune_fraction,
            scope=args.scope,
            rewind_step=args.rewind_step,
            rescale=args.rescale,
            paradigms=tuple(p for p in args.paradigms.split(",") if p),
            conditions=tuple(c for c in args.conditions.split(",") if c),
            hidden_sizes=tuple(int(h) for h in args.hidden.split(",")),
            rl_frames=args.rl_frames,
            bc_epochs=args.bc_epochs,
            bc_transitions=args.bc_transitions,
            eval_episodes=args.eval_episodes,
            ppo=_options(args.ppo),
            bc=_options(args.bc),
        )
    except (ValueError, TypeError) as error:
        parser.error(str(error))
    task_dir = Path(args.out) / args.task
    if not args.report_only:
        jobs = args.jobs or default_jobs(threads_per_job=args.threads_per_job)
        if jobs < 1 or args.threads_per_job < 1:
            parser.error("--jobs and --threads-per-job must be >= 1")
        # Worker processes inherit the thread limits: set them before they start.
        os.environ.update(thread_environment(args.threads_per_job))
        print(f"[lottery] {args.task}: seeds {seeds}, {jobs} at a time; writing {task_dir}")
        pool = multiprocessing.get_context("spawn").Pool(min(jobs, len(seeds)))
        try:
            work = [(study.to_dict(), seed, args.threads_per_job) for seed in seeds]
            for _ in pool.imap_unordered(_run_star, work):
                pass
            pool.close()
        except KeyboardInterrupt:
            # Only the training in flight is lost: every finished one is on disk.
            pool.terminate()
            print("[lottery] interrupted: finished trainings are saved; re-run to resume.")
            return 130
        finally:
            pool.join()
    try:
        report = write_report(task_dir)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"[lottery] report: {report}")
    return 0
