"""The figures of one column of the table, as one job that may run in a worker process.

A column (an architecture on a benchmark suite) gets learning curves, plasticity curves,
sparsity vs performance when several sparsities were run, and optionally performance
profiles. Its curve bootstraps and drawings do not depend on other columns, so columns are
drawn in parallel; every bootstrap is seeded by its own key, so the result does not depend on
which process draws it.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from torchrl_sparse.report.conditions import Column, Condition
from torchrl_sparse.report.curves import PLASTICITY_PREFIX, evaluation_curves, plasticity_curves
from torchrl_sparse.report.events import Series
from torchrl_sparse.report.figures import (
    LineStyle,
    learning_curves_figure,
    performance_profiles_figure,
    plasticity_figure,
    sparsity_figure,
)
from torchrl_sparse.report.runs import Finding
from torchrl_sparse.report.statistics import (
    BootstrapSettings,
    CurveEstimate,
    Estimate,
    iqm_curve,
    iqm_curves,
    performance_profile,
)

__all__ = ["SECTIONS", "ColumnFigures", "ColumnJob", "draw_column", "metric_label"]

LEARNING_CURVES = "Learning curves"
PLASTICITY = "Plasticity"
SPARSITY = "Sparsity vs performance"
PROFILES = "Performance profiles"
SECTIONS = (LEARNING_CURVES, PLASTICITY, SPARSITY, PROFILES)
_PROFILE_THRESHOLDS = 101
# Sparsities equal to this many decimals are one level of the sparsity-vs-performance figure.
_SPARSITY_DECIMALS = 3


@dataclass(frozen=True)
class ColumnJob:
    """What drawing one column needs.

    Attributes:
        column: the column.
        conditions: its conditions, in the table's treatment order.
        scalars: ``{run folder: {tag: Series}}`` of the conditions' runs.
        final_scores: ``{treatment: final score IQM}`` of the column (the table's cells).
        baseline: the baseline treatment.
        settings: the bootstrap settings.
        styles: every treatment's line style.
        folder: where the figures go.
        profiles: whether to draw performance profiles.
    """

    column: Column
    conditions: list[Condition]
    scalars: Mapping[Path, Mapping[str, Series]]
    final_scores: Mapping[str, Estimate]
    baseline: str
    settings: BootstrapSettings
    styles: Mapping[str, LineStyle]
    folder: Path
    profiles: bool


@dataclass
class ColumnFigures:
    """The PNGs drawn for one column by section, why others were not, and findings."""

    pngs: dict[str, Path] = field(default_factory=dict)
    not_drawn: dict[str, str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


def metric_label(metric: str) -> str:
    """How axes and captions name a metric.

    Examples:
        >>> metric_label("normalized_return")
        'normalized return'
    """
    return metric.replace("_", " ")


def _learning_curves(job: ColumnJob, result: ColumnFigures) -> None:
    estimates: dict[str, CurveEstimate] = {}
    for condition in job.conditions:
        curves, findings = evaluation_curves(condition, job.scalars)
        result.findings += findings
        if curves is not None:
            key = f"{condition.key} curve"
            estimates[condition.treatment] = iqm_curve(curves, job.settings, key)
    if not estimates:
        result.not_drawn[LEARNING_CURVES] = f"{job.column.label}: no evaluation curves"
        return
    stem = job.folder / f"learning_curves_{job.column.slug}"
    ylabel = metric_label(job.conditions[0].metric)
    result.pngs[LEARNING_CURVES] = learning_curves_figure(
        job.column.label, estimates, ylabel, stem, job.styles
    )[0]


def _plasticity(job: ColumnJob, result: ColumnFigures) -> None:
    panels: dict[tuple[str, str], dict[str, CurveEstimate]] = {}
    for condition in job.conditions:
        curves, findings = plasticity_curves(condition, job.scalars)
        result.findings += findings
        # one bootstrap for the curves logged by the same runs (most often all of them)
        by_runs: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        for name, values in curves.items():
            by_runs.setdefault(values.runs, []).append(name)
        for names in by_runs.values():
            key = f"{condition.key} {PLASTICITY_PREFIX}" + ",".join("/".join(n) for n in names)
            estimates = iqm_curves([curves[name] for name in names], job.settings, key)
            for name, estimate in zip(names, estimates, strict=True):
                panels.setdefault(name, {})[condition.treatment] = estimate
    if not panels:
        result.not_drawn[PLASTICITY] = f"{job.column.label}: no plasticity/<network>/<metric> tags"
        return
    stem = job.folder / f"plasticity_{job.column.slug}"
    result.pngs[PLASTICITY] = plasticity_figure(job.column.label, panels, stem, job.styles)[0]


def _sparsity(job: ColumnJob, result: ColumnFigures) -> None:
    points = []
    for condition in job.conditions:
        sparsities = [run.sparsity for run in condition.runs if run.sparsity]
        if sparsities:
            median = statistics.median(sparsities)
            points.append((condition.treatment, median, job.final_scores[condition.treatment]))
    levels = sorted({round(sparsity, _SPARSITY_DECIMALS) for _, sparsity, _ in points})
    if len(levels) < 2:
        found = f"only {levels[0]}" if levels else "none"
        result.not_drawn[SPARSITY] = (
            f"{job.column.label}: needs runs at two or more final sparsities (found {found})"
        )
        return
    reference = job.final_scores.get(job.baseline)
    stem = job.folder / f"sparsity_{job.column.slug}"
    result.pngs[SPARSITY] = sparsity_figure(
        job.column.label,
        points,
        None if reference is None else (job.baseline, reference),
        metric_label(job.conditions[0].metric),
        stem,
        job.styles,
    )[0]


def _profiles(job: ColumnJob, result: ColumnFigures) -> None:
    scores = {condition.treatment: condition.scores() for condition in job.conditions}
    every_score = np.concatenate([s.values.ravel() for s in scores.values()])
    thresholds = np.linspace(
        min(0.0, every_score.min()), max(1.0, every_score.max()), _PROFILE_THRESHOLDS
    )
    profiles = {
        condition.treatment: (
            thresholds,
            *performance_profile(
                scores[condition.treatment], thresholds, job.settings, f"{condition.key} profile"
            ),
        )
        for condition in job.conditions
    }
    stem = job.folder / f"profiles_{job.column.slug}"
    metric = metric_label(job.conditions[0].metric)
    result.pngs[PROFILES] = performance_profiles_figure(
        job.column.label, profiles, metric, stem, job.styles
    )[0]


def draw_column(job: ColumnJob) -> ColumnFigures:
    """Compute and draw every figure of one column.

    Returns:
        The PNG of each section drawn (a PDF lies next to each), why a section was not drawn,
        and findings about runs left out of the curves.
    """
    result = ColumnFigures()
    _learning_curves(job, result)
    _plasticity(job, result)
    _sparsity(job, result)
    if job.profiles:
        _profiles(job, result)
    return result
