"""The machine-readable summary a finished (or stopped) fit writes next to its events.

``summary.json`` in the run folder ``<save_dir>/<condition>/seed<N>/`` says what was trained
(condition, treatment, seed, algorithm, benchmark, suite, architecture, tasks), how far
(``frames`` of ``total_frames``, ``finished``) and how well (the last evaluation per task, in
the module's evaluation metric: ``normalized_return`` for MiniGrid PPO, ``success`` for
MetaWorld SAC), with the final sparsity, the package version and git commit, and a hash of the
configuration without its seed and run folder (equal for every seed of one condition). Sweeps
skip runs whose summary says ``finished``; reports tabulate summaries and read curves from the
events.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import torchrl_sparse

__all__ = [
    "SCHEMA_VERSION",
    "SUMMARY_FILE",
    "config_hash",
    "read_summary",
    "summarize_module",
    "write_json",
]

SUMMARY_FILE = "summary.json"
SCHEMA_VERSION = 1


def config_hash(config: dict[str, Any]) -> str:
    """A hash of a run's configuration that ignores its seed and where it logs.

    Every seed of one condition has the same hash; any other change (a learning rate, a
    callback setting, a different sparsity) changes it.

    Examples:
        >>> a = {"seed_everything": 0, "model": {"init_args": {"seed": 0, "lr": 1e-3}}}
        >>> b = {"seed_everything": 1, "model": {"init_args": {"seed": 1, "lr": 1e-3}}}
        >>> config_hash(a) == config_hash(b)
        True
        >>> b["model"]["init_args"]["lr"] = 3e-4
        >>> config_hash(a) == config_hash(b)
        False
    """
    stripped = json.loads(json.dumps(config, default=str))
    stripped.pop("seed_everything", None)
    stripped.pop("ckpt_path", None)
    stripped.pop("config", None)  # the files it was read from, not what they say
    (stripped.get("model") or {}).get("init_args", {}).pop("seed", None)
    trainer = stripped.get("trainer") or {}
    trainer.pop("logger", None)
    trainer.pop("default_root_dir", None)
    text = json.dumps(stripped, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _git_commit() -> str | None:
    """The commit of the package's source tree, when it is a git checkout."""
    source = Path(torchrl_sparse.__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def summarize_module(
    module: Any,
    run_dir: str | Path,
    condition: str,
    seed: int,
    config: dict[str, Any] | None = None,
    wall_time_s: float | None = None,
) -> dict[str, Any]:
    """Write ``summary.json`` for a multi-task RL module into ``run_dir`` and return it.

    Args:
        module: a :class:`~torchrl_sparse.lightning.base.MultiTaskRLModule` after (or during)
            a fit: its ``frames``, ``total_frames``, ``task_names``, ``eval_metric`` and the
            latest logged scalars are read.
        run_dir: the run folder (``<save_dir>/<condition>/seed<N>``).
        condition: the run folder below the logger's save directory, without ``seed<N>``.
        seed: the run's seed.
        config: the resolved configuration (``config.yaml``) for :func:`config_hash`.
        wall_time_s: seconds this process trained, if known.

    Returns:
        The summary, as written.

    Examples:
        >>> import tempfile
        >>> from torchrl_sparse.lightning import MultiTaskPPO
        >>> module = MultiTaskPPO("MT3")
        >>> module.latest.update(
        ...     {f"charts/eval/normalized_return/{task}": 0.5 for task in module.task_names}
        ... )
        >>> summary = summarize_module(module, tempfile.mkdtemp(), "minigrid/mt3/mtppo/dense", 0)
        >>> summary["treatment"], summary["final_eval_mean"], summary["finished"]
        ('dense', 0.5, False)
    """
    hparams = dict(module.hparams)
    # Single-task modules name their task set (a game, an env id): reports compare within it.
    suite = getattr(module, "suite_name", None) or hparams.get("suite")
    metric = module.eval_metric
    final_eval = {
        task: module.latest[f"charts/eval/{metric}/{task}"]
        for task in module.task_names
        if f"charts/eval/{metric}/{task}" in module.latest
    }
    complete = len(final_eval) == len(module.task_names)
    summary = {
        "schema_version": SCHEMA_VERSION,
        "condition": condition,
        "treatment": condition.rstrip("/").split("/")[-1],
        "seed": seed,
        "algorithm": type(module).__name__,
        "benchmark": module.benchmark,
        "suite": suite if isinstance(suite, str) else "custom",
        "arch": hparams.get("arch") or hparams.get("network") or "mlp",
        "tasks": list(module.task_names),
        "metric": metric,
        "final_eval": final_eval,
        "final_eval_mean": (sum(final_eval.values()) / len(final_eval) if complete else None),
        "frames": int(module.frames),
        "total_frames": int(module.total_frames),
        "finished": int(module.frames) >= int(module.total_frames),
        "sparsity": module.latest.get("sparsity/total"),
        "config_hash": config_hash(config) if config is not None else None,
        "package_version": torchrl_sparse.__version__,
        "git_commit": _git_commit(),
        "wall_time_s": wall_time_s,
        "written_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_json(Path(run_dir) / SUMMARY_FILE, summary)
    return summary


def write_json(path: Path, value: dict[str, Any]) -> None:
    """Write ``value`` as JSON so that a reader never sees half a file (write, then rename).

    Examples:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "status.json"
        >>> write_json(path, {"returncode": 0})
        >>> json.loads(path.read_text())
        {'returncode': 0}
    """
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=1) + "\n")
    partial.replace(path)


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """The ``summary.json`` of ``run_dir``, or ``None`` when there is none.

    Raises:
        ValueError: the file is not a summary this version can read.

    Examples:
        >>> read_summary("/nonexistent/run") is None
        True
    """
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    if summary.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{path}: schema_version {summary.get('schema_version')!r}; this version of "
            f"torchrl_sparse reads {SCHEMA_VERSION}."
        )
    return summary
