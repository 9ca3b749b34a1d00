"""``torchrl-sparse report RUN_DIRS --out DIR``: the report of a sweep's run folders.

Bad input (a missing path, ``--out`` inside a run folder, nothing reportable) prints one
``error: ...`` line on stderr and returns 2. Runs that are skipped, excluded or need care are
printed as ``skipped: ...``, ``excluded: ...`` and ``warning: ...`` lines and listed in the
report's ``index.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from torchrl_sparse.report.build import build_report
from torchrl_sparse.report.index import plural
from torchrl_sparse.report.runs import ReportInputError
from torchrl_sparse.report.statistics import BootstrapSettings

__all__ = ["main", "parser"]

EXIT_BAD_INPUT = 2
EXIT_MISSING_DEPENDENCY = 1


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are :class:`ReportInputError` (one line, exit 2)."""

    def error(self, message: str) -> NoReturn:
        raise ReportInputError(message)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def parser() -> argparse.ArgumentParser:
    """The command's argument parser.

    Examples:
        >>> args = parser().parse_args(["runs/minigrid", "--out", "report"])
        >>> args.baseline, args.seed, args.reps
        ('dense', 0, 2000)
    """
    command = _Parser(
        prog="torchrl-sparse report",
        description=(
            "Tables (IQM and 95%% stratified-bootstrap CIs, probability of improvement) and "
            "figures (learning curves, plasticity, sparsity vs performance) of run folders."
        ),
    )
    command.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="sweep roots, condition folders or run folders (<save_dir>/<condition>/seed<N>)",
    )
    command.add_argument(
        "--out", required=True, help="the report's folder (created; not inside a run folder)"
    )
    command.add_argument(
        "--baseline",
        default="dense",
        help="treatment the others are compared with (default: %(default)s)",
    )
    command.add_argument(
        "--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)"
    )
    command.add_argument(
        "--reps",
        type=_positive,
        default=2000,
        help="bootstrap resamples per estimate (default: %(default)s)",
    )
    command.add_argument(
        "--metric",
        help="score runs in this evaluation metric (charts/eval/METRIC/<task>, last value) "
        "instead of their summary's",
    )
    command.add_argument("--profiles", action="store_true", help="also draw performance profiles")
    command.add_argument(
        "--sweep",
        metavar="SWEEP_YAML",
        help="the sweep file (torchrl-sparse sweep --save) whose runs not started are listed",
    )
    command.add_argument(
        "--workers",
        type=_positive,
        help="processes reading event files (default: one per core)",
    )
    return command


def _sweep_run_dirs(path: str) -> list[Path]:
    """The run folders of every run of the sweep file ``path``."""
    from torchrl_sparse.experiments.sweep import Sweep

    try:
        return [run.run_dir for run in Sweep.load(path).runs()]
    except ValueError as error:
        raise ReportInputError(f"--sweep {path}: {error}") from error


def main(argv: list[str]) -> int:
    """Run ``torchrl-sparse report`` with ``argv`` (the arguments after ``report``).

    Returns:
        0 on success, 2 on bad input, 1 when a dependency is missing.

    Examples:
        >>> import contextlib, io
        >>> with contextlib.redirect_stderr(io.StringIO()) as stderr:
        ...     code = main(["/nonexistent/sweep", "--out", "/tmp/report"])
        >>> code, stderr.getvalue()
        (2, 'error: /nonexistent/sweep: no such folder\\n')
    """
    try:
        args = parser().parse_args(argv)
        expected = _sweep_run_dirs(args.sweep) if args.sweep else []
        report = build_report(
            args.run_dirs,
            args.out,
            baseline=args.baseline,
            settings=BootstrapSettings(seed=args.seed, reps=args.reps),
            metric=args.metric,
            profiles=args.profiles,
            workers=args.workers,
            expected=expected,
        )
    except ReportInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_MISSING_DEPENDENCY
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)
    for finding in report.findings:
        print(finding, file=sys.stderr)
    conditions = report.grouping.conditions
    reported = sum(len(condition.runs) for condition in conditions)
    print(
        f"report: {report.index} ({plural(reported, 'run')} in "
        f"{plural(len(conditions), 'condition')}, {report.seconds:.1f} s)"
    )
    return 0
