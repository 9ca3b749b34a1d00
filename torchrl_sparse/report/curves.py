"""Learning and plasticity curves of a condition: its runs' event series on common frames.

The x axis is environment frames, the event step of every tag. Runs of one condition evaluate
at the same frames; when they do not (another evaluation period, a resumed run), their series
are interpolated linearly onto the union of their frames within the range all runs cover, and
a finding says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from torchrl_sparse.report.conditions import Condition
from torchrl_sparse.report.events import Series
from torchrl_sparse.report.runs import Finding
from torchrl_sparse.report.statistics import Curves

__all__ = [
    "EVAL_PREFIX",
    "PLASTICITY_PREFIX",
    "align",
    "eval_tag",
    "evaluation_curves",
    "plasticity_curves",
]

EVAL_PREFIX = "charts/eval/"
PLASTICITY_PREFIX = "plasticity/"
# plasticity/<network>/<metric>; per-layer and per-task tags have one more component
_PLASTICITY_TAG = re.compile(r"plasticity/([^/]+)/([^/]+)")

Scalars = Mapping[Path, Mapping[str, Series]]


def eval_tag(metric: str, task: str) -> str:
    """The TensorBoard tag of a task's evaluation in ``metric``.

    Examples:
        >>> eval_tag("success", "reach-v3")
        'charts/eval/success/reach-v3'
    """
    return f"{EVAL_PREFIX}{metric}/{task}"


def align(series: Sequence[Series]) -> tuple[np.ndarray, np.ndarray, bool]:
    """Several series on common frames: ``(frames, values of shape (len(series), frames),
    interpolated)``.

    Raises:
        ValueError: the series share no range of frames.

    Examples:
        >>> a = Series(np.array([10, 20, 30]), np.array([0.0, 1.0, 2.0]))
        >>> b = Series(np.array([15, 25]), np.array([0.0, 1.0]))
        >>> frames, values, interpolated = align([a, b])
        >>> frames.tolist(), values.tolist(), interpolated
        ([15, 20, 25], [[0.5, 1.0, 1.5], [0.0, 0.5, 1.0]], True)
    """
    first = series[0].steps
    if all(np.array_equal(s.steps, first) for s in series):
        return first, np.stack([s.values for s in series]), False
    start = max(int(s.steps[0]) for s in series)
    end = min(int(s.steps[-1]) for s in series)
    if start > end:
        raise ValueError(
            f"the series share no frames (the latest starts at {start}, the earliest ends at {end})"
        )
    frames = np.unique(
        np.concatenate([s.steps[(s.steps >= start) & (s.steps <= end)] for s in series])
    )
    return frames, np.stack([np.interp(frames, s.steps, s.values) for s in series]), True


def _interpolation_finding(condition: Condition, what: str, frames: np.ndarray) -> Finding:
    return Finding(
        "warning",
        f"{condition.key}: runs logged {what} at different frames; curves interpolated onto "
        f"{len(frames)} frames from {frames[0]} to {frames[-1]}",
    )


def evaluation_curves(
    condition: Condition, scalars: Scalars
) -> tuple[Curves | None, list[Finding]]:
    """The per-task evaluation curves of a condition's runs, ``(runs, tasks, frames)``.

    Args:
        condition: the condition; its metric and tasks name the tags.
        scalars: ``{run folder: {tag: Series}}`` with the runs' ``charts/eval/...`` tags.

    Returns:
        The curves of the runs that logged every task (``None`` when none did), and findings
        about the runs left out and the frames.

    Examples:
        >>> from torchrl_sparse.report.conditions import group_runs
        >>> from torchrl_sparse.report.runs import Run
        >>> run = Run(
        ...     path=Path("dense/seed0"), condition="dense", treatment="dense", seed=0,
        ...     algorithm="MultiTaskPPO", benchmark="minigrid", suite="MT3", arch="mtppo",
        ...     tasks=("a",), metric="success", final_eval={"a": 1.0}, frames=10,
        ...     total_frames=10, finished=True, sparsity=None, config_hash="h", has_events=True)
        >>> condition = group_runs([run]).conditions[0]
        >>> series = Series(np.array([5, 10]), np.array([0.5, 1.0]))
        >>> curves, _ = evaluation_curves(condition, {run.path: {"charts/eval/success/a": series}})
        >>> curves.values.tolist(), curves.frames.tolist()
        ([[[0.5, 1.0]]], [5, 10])
    """
    tags = [eval_tag(condition.metric, task) for task in condition.tasks]
    runs, lacking = [], []
    for run in condition.runs:
        logged = scalars.get(run.path, {})
        (runs if all(tag in logged for tag in tags) else lacking).append(run)
    findings = []
    if lacking:
        findings.append(
            Finding(
                "warning",
                f"{condition.key}: no {EVAL_PREFIX}{condition.metric}/<task> curves in "
                f"{', '.join(str(run.path) for run in lacking)}: left out of the learning curves",
            )
        )
    if not runs:
        return None, findings
    series = [scalars[run.path][tag] for run in runs for tag in tags]
    try:
        frames, values, interpolated = align(series)
    except ValueError as error:
        findings.append(Finding("warning", f"{condition.key}: no learning curve: {error}"))
        return None, findings
    if interpolated:
        findings.append(_interpolation_finding(condition, "evaluations", frames))
    try:
        curves = Curves(
            values.reshape(len(runs), len(tags), len(frames)),
            runs=tuple(f"seed{run.seed}" for run in runs),
            tasks=condition.tasks,
            frames=frames,
        )
    except ValueError as error:  # e.g. a diverged run's non-finite values
        findings.append(Finding("warning", f"{condition.key}: no learning curve: {error}"))
        return None, findings
    return curves, findings


def plasticity_curves(
    condition: Condition, scalars: Scalars
) -> tuple[dict[tuple[str, str], Curves], list[Finding]]:
    """Each ``plasticity/<network>/<metric>`` curve of a condition's runs, ``(runs, 1, frames)``.

    Networks (``actor``, ``critic``, ``qvalue``, ...) and metrics (``dormant_ratio``,
    ``srank``, ``fisher_trace``, ...) are found from the tags; per-layer tags are not used.

    Returns:
        ``{(network, metric): Curves}`` over the runs that logged it, and findings about runs
        that did not.

    Examples:
        >>> from torchrl_sparse.report.conditions import group_runs
        >>> from torchrl_sparse.report.runs import Run
        >>> run = Run(
        ...     path=Path("dense/seed0"), condition="dense", treatment="dense", seed=0,
        ...     algorithm="MultiTaskPPO", benchmark="minigrid", suite="MT3", arch="mtppo",
        ...     tasks=("a",), metric="success", final_eval={"a": 1.0}, frames=10,
        ...     total_frames=10, finished=True, sparsity=None, config_hash="h", has_events=True)
        >>> condition = group_runs([run]).conditions[0]
        >>> series = Series(np.array([5, 10]), np.array([0.1, 0.2]))
        >>> logged = {"plasticity/actor/srank": series, "plasticity/actor/srank/layer0": series}
        >>> curves, _ = plasticity_curves(condition, {run.path: logged})
        >>> list(curves)
        [('actor', 'srank')]
    """
    logged_by: dict[tuple[str, str], list] = {}
    for run in condition.runs:
        for tag in scalars.get(run.path, {}):
            match = _PLASTICITY_TAG.fullmatch(tag)
            if match:
                logged_by.setdefault((match[1], match[2]), []).append(run)
    curves, findings = {}, []
    for (network, metric), runs in sorted(logged_by.items()):
        tag = f"{PLASTICITY_PREFIX}{network}/{metric}"
        if len(runs) < len(condition.runs):
            findings.append(
                Finding(
                    "warning",
                    f"{condition.key}: {tag} logged by seeds {[run.seed for run in runs]} of "
                    f"{condition.seeds}; its curve uses those",
                )
            )
        try:
            frames, values, interpolated = align([scalars[run.path][tag] for run in runs])
        except ValueError as error:
            findings.append(Finding("warning", f"{condition.key}: no {tag} curve: {error}"))
            continue
        if interpolated:
            findings.append(_interpolation_finding(condition, tag, frames))
        try:
            curves[network, metric] = Curves(
                values[:, None, :], tuple(f"seed{run.seed}" for run in runs), (tag,), frames
            )
        except ValueError as error:  # e.g. a diverged run's non-finite Fisher trace
            findings.append(Finding("warning", f"{condition.key}: no {tag} curve: {error}"))
    return curves, findings
