"""``torchrl-sparse sweep``: run every (condition, seed) of a grid, resumably.

Examples (shell)::

    # MT3 MTPPO, three conditions x three seeds, two jobs at a time on this machine
    torchrl-sparse sweep recipes/minigrid/mt3/mtppo/{dense,gmp,layer_norm}.yaml \\
        --seeds 0-2 --out runs/sweeps/mt3 --save runs/sweeps/mt3.yaml
    # the same sweep again: finished runs are skipped, interrupted ones resume
    torchrl-sparse sweep --from-file runs/sweeps/mt3.yaml
    # a learning-rate grid on a SLURM cluster
    torchrl-sparse sweep recipes/minigrid/mt3/mtppo/dense.yaml --seeds 0-9 \\
        --grid model.init_args.lr=1e-3,3e-4 --executor slurm --partition gpu --timeout-min 240
"""

from __future__ import annotations

import argparse
import concurrent.futures
import signal
import subprocess
import sys
from pathlib import Path

from torchrl_sparse.commands import OneLineErrorParser
from torchrl_sparse.experiments.local import LocalPool, default_jobs, thread_environment
from torchrl_sparse.experiments.sweep import Sweep, SweepRun, parse_grid, parse_seeds

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="torchrl-sparse sweep",
        description="Run every (condition, seed) as its own `torchrl-sparse fit`, each in its "
        "own run folder <out>/<condition>/seed<N>. Re-running the same sweep skips finished "
        "runs and resumes interrupted ones from their last.ckpt.",
    )
    parser.add_argument("recipes", nargs="*", help="recipe files or globs (** allowed)")
    parser.add_argument("--from-file", help="a sweep YAML (as written by --save)")
    parser.add_argument("--seeds", help="seeds of every condition: '0-9', '0,3,5' (default 0)")
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="an option and its values; every combination is a condition (repeatable)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option set for every run, e.g. a shorter budget (repeatable)",
    )
    parser.add_argument("--out", help="save directory of the run folders (default: runs)")
    parser.add_argument("--save", help="write the sweep as YAML to this file, to re-run/share")
    parser.add_argument("--executor", choices=("local", "slurm"), default="local")
    parser.add_argument(
        "--jobs", type=int, help="local runs at once (default: cores // threads per job)"
    )
    parser.add_argument("--threads-per-job", type=int, default=1, help="torch threads per run")
    parser.add_argument(
        "--retry-failed", action="store_true", help="run failed runs again (resuming if they can)"
    )
    parser.add_argument("--dry-run", action="store_true", help="list the runs and their state")
    parser.add_argument(
        "--report-every", type=float, default=30.0, help="seconds between progress lines"
    )
    slurm = parser.add_argument_group("slurm executor (submitit)")
    slurm.add_argument("--partition")
    slurm.add_argument("--timeout-min", type=int, default=240, help="time limit per attempt")
    slurm.add_argument("--array-parallelism", type=int, default=32)
    slurm.add_argument("--gpus-per-task", type=int, default=0)
    slurm.add_argument("--mem-gb", type=int)
    slurm.add_argument("--max-requeues", type=int, default=10)
    slurm.add_argument(
        "--submitit-cluster",
        choices=("slurm", "local", "debug"),
        default="slurm",
        help="submitit's local/debug executors run the SLURM path on this machine",
    )
    slurm.add_argument("--wait", action="store_true", help="wait for the array to finish")
    return parser


def _build_sweep(args: argparse.Namespace) -> Sweep:
    if args.from_file:
        if args.recipes or args.grid or args.set:
            raise ValueError("give either --from-file or recipes/--grid/--set, not both.")
        sweep = Sweep.load(args.from_file)
        if args.seeds:
            sweep.seeds = parse_seeds(args.seeds)
        if args.out:
            sweep.out = args.out
        return sweep
    if not args.recipes:
        raise ValueError("no recipe given (positional RECIPES or --from-file).")
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE.")
        overrides[key.strip().removeprefix("--")] = value.strip()
    return Sweep(
        recipes=list(args.recipes),
        seeds=parse_seeds(args.seeds or "0"),
        grid=parse_grid(args.grid),
        out=args.out or "runs",
        overrides=overrides,
    )


def _check_options(runs: list[SweepRun], jobs: int) -> None:
    """Parse one run of each recipe with ``--print_config`` so a wrong option fails now.

    Raises:
        ValueError: the CLI's message for the first recipe whose options do not parse.
    """
    firsts = list({run.recipe: run for run in runs}.values())

    def check(run: SweepRun) -> str | None:
        result = subprocess.run(
            [*run.command(resume=False), "--print_config"],
            capture_output=True,
            text=True,
            env=thread_environment(1),
            check=False,
        )
        if result.returncode == 0:
            return None
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        message = next((line for line in lines if "error:" in line), lines[-1] if lines else "")
        return f"{run.recipe}: {message.strip()}"

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for problem in pool.map(check, firsts):
            if problem is not None:
                raise ValueError(problem)


def _plan(runs: list[SweepRun], retry_failed: bool) -> tuple[list[SweepRun], dict[str, list]]:
    by_state: dict[str, list[SweepRun]] = {}
    for run in runs:
        by_state.setdefault(run.state(), []).append(run)
    todo = [
        run
        for run in runs
        if run in by_state.get("queued", [])
        or run in by_state.get("interrupted", [])
        or (retry_failed and run in by_state.get("failed", []))
    ]
    return todo, by_state


def main(argv: list[str]) -> int:
    """Run ``torchrl-sparse sweep`` with ``argv``; return the exit status.

    0: every run finished or is running elsewhere; 1: some runs failed (each listed with its
    log); 2: bad arguments (one ``error:`` line, nothing started); ``128 + n``: stopped by
    signal ``n`` (re-run the same command to resume).
    """
    args = _parser().parse_args(argv)
    try:
        sweep = _build_sweep(args)
        runs = sweep.runs()
        jobs = args.jobs
        if jobs is None:
            jobs = default_jobs(threads_per_job=max(1, args.threads_per_job))
        if jobs < 1 or args.threads_per_job < 1:
            raise ValueError(
                f"--jobs {jobs} / --threads-per-job {args.threads_per_job}: both must be >= 1."
            )
        todo, by_state = _plan(runs, args.retry_failed)
        if todo and not args.dry_run:
            _check_options(todo, jobs)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted before any run started.", file=sys.stderr)
        return 128 + signal.SIGINT
    if args.save:
        sweep.save(args.save)
        print(f"Sweep saved to {args.save} (re-run: torchrl-sparse sweep --from-file {args.save})")
    counts = ", ".join(f"{state} {len(group)}" for state, group in sorted(by_state.items()))
    print(f"{len(runs)} runs in {sweep.out}: {counts}")
    for run in by_state.get("running", []):
        print(f"  running elsewhere: {run.name} ({run.lock_holder()})")
    for run in by_state.get("failed", []):
        note = "retrying" if args.retry_failed else "skipped; --retry-failed to run it again"
        print(f"  failed before: {run.name} ({note}), log: {run.log}")
    if args.dry_run:
        for run in runs:
            print(f"  {run.state():<11} {run.name}: {' '.join(run.command()[2:])}")
        return 0
    if not todo:
        return 1 if by_state.get("failed") else 0
    if args.executor == "slurm":
        return _run_slurm(todo, sweep, args)
    return _run_local(todo, runs, jobs, args)


def _run_local(
    todo: list[SweepRun], runs: list[SweepRun], jobs: int, args: argparse.Namespace
) -> int:
    print(
        f"Running {len(todo)} runs, {jobs} at a time with {args.threads_per_job} torch "
        f"thread(s) each; logs: <run folder>/sweep.log"
    )
    pool = LocalPool(jobs, args.threads_per_job, report_every_s=args.report_every)
    results = pool.run(todo)
    return _final_report(runs, results, pool.stop_signal)


def _final_report(runs: list[SweepRun], results: dict[str, int], stop_signal: int | None) -> int:
    states = {run.name: run.state() for run in runs}
    counts = {state: list(states.values()).count(state) for state in sorted(set(states.values()))}
    print("Sweep summary: " + ", ".join(f"{state} {n}" for state, n in counts.items()))
    failed = [run for run in runs if states[run.name] == "failed"]
    for run in failed:
        print(f"  FAILED {run.name} (exit {results.get(run.name, '?')}): see {run.log}")
    if stop_signal is not None:
        print("Stopped: run the same sweep command again to resume the interrupted runs.")
        return 128 + stop_signal
    return 1 if failed else 0


def _run_slurm(todo: list[SweepRun], sweep: Sweep, args: argparse.Namespace) -> int:
    try:
        from torchrl_sparse.experiments.slurm import submit
    except ModuleNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    folder = Path(sweep.out) / ".submitit"
    try:
        jobs = submit(
            todo,
            folder,
            threads_per_job=args.threads_per_job,
            timeout_min=args.timeout_min,
            partition=args.partition,
            array_parallelism=args.array_parallelism,
            gpus_per_task=args.gpus_per_task,
            mem_gb=args.mem_gb,
            max_requeues=args.max_requeues,
            cluster=args.submitit_cluster,
        )
    except (ValueError, subprocess.CalledProcessError, FileNotFoundError) as error:
        print(f"error: submitting to SLURM failed: {error}", file=sys.stderr)
        return 2
    print(f"Submitted {len(jobs)} array tasks: {', '.join(job.job_id for job in jobs)}")
    print(f"submitit logs: {folder}; check progress with: torchrl-sparse sweep ... --dry-run")
    # submitit's debug jobs run when their result is asked for.
    if not args.wait and args.submitit_cluster != "debug":
        return 0
    results: dict[str, int] = {}
    for run, job in zip(todo, jobs, strict=True):
        try:
            results[run.name] = job.result()
        except Exception as error:
            print(f"  {run.name}: {str(error).strip().splitlines()[-1]}")
            results[run.name] = 1
    return _final_report(sweep.runs(), results, None)
