"""Finding run folders and reading their ``summary.json``.

A run folder is ``<save_dir>/<condition>/seed<N>/``, as ``torchrl-sparse fit`` writes it: the
resolved ``config.yaml``, TensorBoard events, ``checkpoints/`` and, at the end of every fit,
``summary.json`` (what was trained, how far, the last evaluation per task). A report is built
from the summaries (final scores) and the events (curves); this module never writes into a
run folder.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torchrl_sparse.experiments.summary import SCHEMA_VERSION, SUMMARY_FILE
from torchrl_sparse.report.events import EVENTS_GLOB

__all__ = [
    "SUMMARY_FILE",
    "Finding",
    "LoadedRuns",
    "ReportInputError",
    "Run",
    "find_run_dirs",
    "holds_run_files",
    "is_run_dir",
    "load_run",
    "load_runs",
]

# Files only a run folder holds (the fit, TensorBoardLogger). Not config.yaml or checkpoints/:
# a sweep root or a project folder may hold those too.
_RUN_MARKERS = (SUMMARY_FILE, "hparams.yaml")
_SEED_FOLDER = re.compile(r"seed\d+")
# Where a sweep moves an attempt that cannot be resumed (not a run of the report).
_EARLIER_ATTEMPT = re.compile(r"seed\d+\.attempt-\d+")


class ReportInputError(ValueError):
    """The input of a report cannot make one: the message says which path or value, and why.

    A ``ValueError``, so that callers that catch bad values catch it too.

    Examples:
        >>> from torchrl_sparse.report import ReportInputError, find_run_dirs
        >>> try:
        ...     find_run_dirs(["/nonexistent/sweep"])
        ... except ReportInputError as error:
        ...     print(error, isinstance(error, ValueError))
        /nonexistent/sweep: no such folder True
    """


@dataclass(frozen=True)
class Finding:
    """Something in the input a reader of the report must know, and what the report did about it.

    ``kind`` is ``"skipped"`` (a folder that is not a usable run), ``"excluded"`` (a run left
    out of the table and curves) or ``"warning"`` (reported anyway, read with care).

    Examples:
        >>> print(Finding("skipped", "runs/a/seed0: no summary.json"))
        skipped: runs/a/seed0: no summary.json
    """

    kind: Literal["skipped", "excluded", "warning"]
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


@dataclass(frozen=True)
class Run:
    """One run folder and what its ``summary.json`` says.

    ``final_eval`` maps each task to its last evaluation in ``metric``; ``sparsity`` is the
    last logged fraction of zero weights (``None`` for a dense run).

    Examples:
        :func:`load_runs` reads one from each run folder's ``summary.json``:

        >>> import json, tempfile
        >>> from torchrl_sparse.report import load_runs
        >>> run_dir = Path(tempfile.mkdtemp()) / "gmp" / "seed0"
        >>> run_dir.mkdir(parents=True)
        >>> _ = (run_dir / "summary.json").write_text(json.dumps(dict(
        ...     schema_version=1, condition="gmp", treatment="gmp", seed=0,
        ...     algorithm="MultiTaskPPO", benchmark="minigrid", suite="MT3", arch="mtppo",
        ...     tasks=["a"], metric="success", final_eval={"a": 0.8}, frames=100,
        ...     total_frames=100, finished=True, sparsity=0.9, config_hash=None)))
        >>> run = load_runs([run_dir.parent]).runs[0]
        >>> run.treatment, run.seed, run.final_eval, run.sparsity, run.has_events
        ('gmp', 0, {'a': 0.8}, 0.9, False)
    """

    path: Path
    condition: str
    treatment: str
    seed: int
    algorithm: str
    benchmark: str
    suite: str
    arch: str
    tasks: tuple[str, ...]
    metric: str
    final_eval: dict[str, float]
    frames: int
    total_frames: int
    finished: bool
    sparsity: float | None
    config_hash: str | None
    has_events: bool
    wall_time_s: float | None = None


@dataclass
class LoadedRuns:
    """The run folders found under the input paths: the runs read, and those skipped and why."""

    run_dirs: list[Path]
    runs: list[Run]
    skipped: list[Finding]


def holds_run_files(path: Path) -> bool:
    """Whether ``path`` holds what only a run folder holds: events, a summary or hparams.yaml.

    Examples:
        >>> holds_run_files(Path("/nonexistent/seed0"))
        False
    """
    return any((path / marker).is_file() for marker in _RUN_MARKERS) or any(path.glob(EVENTS_GLOB))


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a run folder: it holds run files or is named ``seed<N>``.

    A ``seed<N>`` folder counts even when empty, so that a run that never started is listed;
    ``seed<N>.attempt-<time>``, an earlier attempt a sweep moved aside, does not.

    Examples:
        >>> is_run_dir(Path("/nonexistent/seed3")), is_run_dir(Path("/nonexistent/dense"))
        (False, False)
    """
    if not path.is_dir() or _EARLIER_ATTEMPT.fullmatch(path.name):
        return False
    return bool(_SEED_FOLDER.fullmatch(path.name)) or holds_run_files(path)


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """The run folders under ``paths``, each a sweep root, a condition folder or a run folder.

    The search does not look inside a run folder (its checkpoints may be large trees) nor
    inside hidden folders. A folder reached through two paths is listed once.

    Raises:
        ReportInputError: a path does not exist or is not a folder.

    Examples:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> for seed in (0, 1):
        ...     (root / "minigrid/mt3/mtppo/dense" / f"seed{seed}").mkdir(parents=True)
        >>> [str(p.relative_to(root)) for p in find_run_dirs([root, root / "minigrid"])]
        ['minigrid/mt3/mtppo/dense/seed0', 'minigrid/mt3/mtppo/dense/seed1']
    """
    found: dict[Path, None] = {}
    for given in paths:
        root = Path(given)
        if not root.exists():
            raise ReportInputError(f"{given}: no such folder")
        if not root.is_dir():
            raise ReportInputError(f"{given}: not a folder (give a sweep root or a run folder)")
        if is_run_dir(root):
            found[root.resolve()] = None
            continue
        for folder, subfolders, _ in os.walk(root):
            subfolders.sort()
            kept = []
            for name in subfolders:
                candidate = Path(folder) / name
                if name.startswith("."):
                    continue
                if is_run_dir(candidate):
                    found[candidate.resolve()] = None
                else:
                    kept.append(name)
            subfolders[:] = kept
    return sorted(found)


def _require(summary: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in summary:
        raise ValueError(f"summary.json has no {key!r}")
    value = summary[key]
    # bool is an int in Python: a seed of `true` is not a seed
    if isinstance(value, bool) and kind is not bool:
        raise ValueError(f"summary.json {key!r} is {value!r}, expected {_kind_name(kind)}")
    if not isinstance(value, kind):
        raise ValueError(f"summary.json {key!r} is {value!r}, expected {_kind_name(kind)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)


def _parse_summary(path: Path, summary: dict[str, Any]) -> Run:
    """A :class:`Run` from a summary's fields; ``ValueError`` names the field that is wrong."""
    version = summary.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(f"summary.json schema_version is {version!r}; this report reads 1")
    tasks = _require(summary, "tasks", list)
    if not tasks or not all(isinstance(task, str) for task in tasks):
        raise ValueError(f"summary.json 'tasks' is {tasks!r}, not a list of task names")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"summary.json 'tasks' repeats a task: {tasks!r}")
    final_eval = _require(summary, "final_eval", dict)
    for task, score in final_eval.items():
        if (
            isinstance(score, bool)
            or not isinstance(score, int | float)
            or not math.isfinite(score)
        ):
            raise ValueError(f"summary.json final_eval[{task!r}] is {score!r}, expected a number")
    sparsity = _require(summary, "sparsity", (int, float, type(None)))
    wall_time = summary.get("wall_time_s")
    return Run(
        path=path,
        condition=_require(summary, "condition", str),
        treatment=_require(summary, "treatment", str),
        seed=_require(summary, "seed", int),
        algorithm=_require(summary, "algorithm", str),
        benchmark=_require(summary, "benchmark", str),
        suite=_require(summary, "suite", str),
        arch=_require(summary, "arch", str),
        tasks=tuple(tasks),
        metric=_require(summary, "metric", str),
        final_eval={task: float(score) for task, score in final_eval.items()},
        frames=_require(summary, "frames", int),
        total_frames=_require(summary, "total_frames", int),
        finished=_require(summary, "finished", bool),
        sparsity=None if sparsity is None else float(sparsity),
        config_hash=_require(summary, "config_hash", (str, type(None))),
        has_events=any(path.glob(EVENTS_GLOB)),
        wall_time_s=float(wall_time) if isinstance(wall_time, int | float) else None,
    )


def load_run(path: Path) -> Run:
    """The :class:`Run` of one run folder.

    Raises:
        ValueError: the folder has no ``summary.json``, or one this version cannot read; the
            message says what is missing or wrong.
    """
    summary_path = path / SUMMARY_FILE
    if not summary_path.is_file():
        has_events = any(path.glob(EVENTS_GLOB))
        state = "events but" if has_events else "no events and"
        raise ValueError(f"{state} no {SUMMARY_FILE} (still running, crashed or never started)")
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{SUMMARY_FILE} is not readable JSON ({error})") from error
    if not isinstance(summary, dict):
        raise ValueError(f"{SUMMARY_FILE} holds a {type(summary).__name__}, not an object")
    return _parse_summary(path, summary)


def load_runs(paths: Sequence[str | Path]) -> LoadedRuns:
    """Find the run folders under ``paths`` and read their summaries.

    A folder without a readable ``summary.json`` is skipped, with the reason, not an error:
    a partial sweep still gives a report of what has finished.

    Raises:
        ReportInputError: a path does not exist, or no run folder is found under ``paths``.

    Examples:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "dense" / "seed0").mkdir(parents=True)
        >>> loaded = load_runs([root])
        >>> loaded.runs, [finding.kind for finding in loaded.skipped]
        ([], ['skipped'])
    """
    run_dirs = find_run_dirs(paths)
    if not run_dirs:
        raise ReportInputError(
            f"no run folder under {', '.join(map(str, paths))} (a run folder holds "
            f"{SUMMARY_FILE}, TensorBoard events or hparams.yaml, or is named seed<N>)"
        )
    runs, skipped = [], []
    for run_dir in run_dirs:
        try:
            runs.append(load_run(run_dir))
        except ValueError as error:
            skipped.append(Finding("skipped", f"{run_dir}: {error}"))
    return LoadedRuns(run_dirs, runs, skipped)
