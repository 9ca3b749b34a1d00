"""Making a report: run folders in, tables, figures and ``index.md`` out.

:func:`build_report` finds the runs, groups them into conditions, computes every estimate and
writes the report's files into one folder; nothing is ever written into a run folder.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torchrl_sparse.report._parallel import parallel_map
from torchrl_sparse.report.column_figures import (
    PROFILES,
    SECTIONS,
    ColumnJob,
    draw_column,
    metric_label,
)
from torchrl_sparse.report.conditions import Column, Grouping, group_runs
from torchrl_sparse.report.curves import EVAL_PREFIX, PLASTICITY_PREFIX, eval_tag
from torchrl_sparse.report.events import Series, read_scalars_of_runs
from torchrl_sparse.report.figures import line_styles
from torchrl_sparse.report.index import index_markdown, plural
from torchrl_sparse.report.runs import (
    Finding,
    ReportInputError,
    Run,
    holds_run_files,
    load_runs,
)
from torchrl_sparse.report.statistics import (
    BootstrapSettings,
    iqm,
    probability_of_improvement,
    require_rliable,
)
from torchrl_sparse.report.tables import EstimateTable

__all__ = ["FIGURES_DIR", "Report", "build_report"]

FIGURES_DIR = "figures"
_TAGS = rf"{EVAL_PREFIX}[^/]+/[^/]+|{PLASTICITY_PREFIX}[^/]+/[^/]+"

Scalars = dict[Path, dict[str, Series]]


@dataclass
class Report:
    """What a report holds and where its files are.

    Attributes:
        out: the report's folder.
        inputs: the paths the runs were found under.
        baseline: the treatment others are compared with.
        settings: the bootstrap's seed, resamples and coverage.
        metric: the metric every run was scored in, when it overrode the summaries'.
        grouping: the conditions reported.
        table: final score IQM per treatment and column.
        improvement: probability of improvement over the baseline per treatment and column.
        figures: ``{section: [PNG paths]}`` (each with a PDF next to it).
        notes: ``{section: [why something was not drawn]}``.
        findings: every skipped or excluded run and every warning.
        runs_found: run folders found under ``inputs``.
        seconds: how long building the report took.

    Examples:
        :func:`build_report` returns one; two seeds each of two treatments, summaries only:

        >>> import json, tempfile
        >>> from torchrl_sparse.report import BootstrapSettings, build_report
        >>> sweep = Path(tempfile.mkdtemp()) / "sweep"
        >>> common = dict(schema_version=1, algorithm="PPO", benchmark="minigrid", suite="MT3",
        ...               arch="mtppo", tasks=["a"], metric="success", frames=10,
        ...               total_frames=10, finished=True, sparsity=None, config_hash=None)
        >>> for name, seed, score in [("dense", 0, 0.4), ("dense", 1, 0.6),
        ...                           ("gmp", 0, 0.7), ("gmp", 1, 0.9)]:
        ...     (sweep / name / f"seed{seed}").mkdir(parents=True)
        ...     _ = (sweep / name / f"seed{seed}" / "summary.json").write_text(json.dumps(
        ...         {**common, "condition": name, "treatment": name, "seed": seed,
        ...          "final_eval": {"a": score}}))
        >>> report = build_report([sweep], sweep.parent / "report",
        ...                       settings=BootstrapSettings(seed=0, reps=100))
        >>> print(report.table.to_markdown())
        | treatment | mtppo / minigrid MT3 |
        |---|---|
        | dense | 0.50 [0.40, 0.60] |
        | gmp | **0.80** [0.70, 0.90] |
        >>> report.runs_found, report.index.is_file(), report.out.name
        (4, True, 'report')
    """

    out: Path
    inputs: list[str]
    baseline: str
    settings: BootstrapSettings
    metric: str | None
    grouping: Grouping
    table: EstimateTable
    improvement: EstimateTable
    figures: dict[str, list[Path]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    runs_found: int = 0
    seconds: float = 0.0

    @property
    def index(self) -> Path:
        """The report's ``index.md``."""
        return self.out / "index.md"


def _checked_out(out: Path, run_dirs: Sequence[Path]) -> Path:
    """``out`` resolved, refused when it lies in a run folder or is a file."""
    out = out.resolve()
    if out.exists() and not out.is_dir():
        raise ReportInputError(f"--out {out} is a file, not a folder")
    for folder in (out, *out.parents):
        if folder in run_dirs or holds_run_files(folder):
            raise ReportInputError(
                f"--out {out} is inside the run folder {folder}; a report never writes into "
                "run folders: choose a folder outside them"
            )
    return out


def _rescored(runs: list[Run], metric: str, scalars: Scalars) -> tuple[list[Run], list[Finding]]:
    """Runs scored in ``metric``: the last evaluation of each task in the events."""
    kept, findings = [], []
    for run in runs:
        if run.metric == metric:
            kept.append(run)
            continue
        logged = scalars.get(run.path, {})
        final = {
            task: logged[eval_tag(metric, task)].last
            for task in run.tasks
            if eval_tag(metric, task) in logged
        }
        if len(final) < len(run.tasks):
            findings.append(
                Finding(
                    "excluded",
                    f"{run.path}: --metric {metric}, but its events have no "
                    f"{eval_tag(metric, '<task>')} for tasks "
                    f"{[task for task in run.tasks if task not in final]}",
                )
            )
            continue
        kept.append(dataclasses.replace(run, metric=metric, final_eval=final))
    return kept, findings


def _score_table(
    grouping: Grouping, treatments: list[str], settings: BootstrapSettings
) -> EstimateTable:
    columns = grouping.columns
    cells = {
        (condition.treatment, condition.column): iqm(condition.scores(), settings, condition.key)
        for condition in grouping.conditions
    }
    metrics = _column_metrics(grouping)
    return EstimateTable(
        caption=(
            f"Final {_metrics_caption(metrics)}: IQM over runs x tasks "
            f"[{settings.confidence:.0%} stratified-bootstrap CI]; best per column in bold"
        ),
        statistic="iqm",
        columns=columns,
        rows=treatments,
        cells=cells,
        metrics=metrics,
        bold_best=True,
    )


def _column_metrics(grouping: Grouping) -> dict[Column, str]:
    return {condition.column: condition.metric for condition in grouping.conditions}


def _metrics_caption(metrics: dict[Column, str]) -> str:
    names = sorted(set(metrics.values()))
    if len(names) == 1:
        return metric_label(names[0])
    return ", ".join(
        f"{metric_label(metric)} ({column.label})" for column, metric in sorted(metrics.items())
    )


def _improvement_table(
    grouping: Grouping, treatments: list[str], baseline: str, settings: BootstrapSettings
) -> tuple[EstimateTable, list[str]]:
    """Probability of improvement of each treatment over the baseline, and why cells lack."""
    cells, notes = {}, []
    for column in grouping.columns:
        reference = grouping.condition(column, baseline)
        if reference is None:
            notes.append(f"{column.label}: no {baseline!r} runs, no probability of improvement")
            continue
        for condition in grouping.conditions:
            if condition.column != column or condition.treatment == baseline:
                continue
            cells[condition.treatment, column] = probability_of_improvement(
                condition.scores(),
                reference.scores(),
                settings,
                key=f"{condition.key} > {baseline}",
            )
    return (
        EstimateTable(
            caption=(
                f"Probability of improvement P(treatment > {baseline}) "
                f"[{settings.confidence:.0%} stratified-bootstrap CI]"
            ),
            statistic=f"probability_of_improvement_over_{baseline}",
            columns=grouping.columns,
            rows=[treatment for treatment in treatments if treatment != baseline],
            cells=cells,
            metrics=_column_metrics(grouping),
        ),
        notes,
    )


def _scores_csv(grouping: Grouping) -> str:
    """Every final score used: one line per (run, task)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["column", "treatment", "seed", "task", "metric", "score", "run"])
    for condition in grouping.conditions:
        for run in condition.runs:
            for task in condition.tasks:
                writer.writerow(
                    [
                        condition.column.label,
                        condition.treatment,
                        run.seed,
                        task,
                        condition.metric,
                        repr(run.final_eval[task]),
                        run.path,
                    ]
                )
    return buffer.getvalue()


def _column_jobs(
    grouping: Grouping,
    treatments: list[str],
    table: EstimateTable,
    scalars: Scalars,
    report: Report,
    profiles: bool,
) -> list[ColumnJob]:
    """One figure job per column, with only the event series of its runs."""
    styles = line_styles(treatments)
    jobs = []
    for column in grouping.columns:
        conditions = [grouping.condition(column, treatment) for treatment in treatments]
        in_column = [condition for condition in conditions if condition is not None]
        run_dirs = {run.path for condition in in_column for run in condition.runs}
        jobs.append(
            ColumnJob(
                column=column,
                conditions=in_column,
                scalars={path: scalars[path] for path in run_dirs if path in scalars},
                final_scores={c.treatment: table.cells[c.treatment, column] for c in in_column},
                baseline=report.baseline,
                settings=report.settings,
                styles=styles,
                folder=report.out / FIGURES_DIR,
                profiles=profiles,
            )
        )
    return jobs


#: Scores on one scale across tasks, so that pooling them over tasks is meaningful.
_BOUNDED_METRICS = ("normalized_return", "success")


def build_report(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    baseline: str = "dense",
    settings: BootstrapSettings | None = None,
    metric: str | None = None,
    profiles: bool = False,
    workers: int | None = None,
    expected: Sequence[str | Path] = (),
) -> Report:
    """Make a report of the runs under ``paths`` in the folder ``out``.

    Writes ``index.md``; ``table.{md,csv,tex}`` (final score IQM and 95% CIs);
    ``improvement.{md,csv,tex}`` (probability of improvement over ``baseline``); ``scores.csv``
    (every final score used); and under ``figures/``, per column, learning curves, plasticity
    curves, sparsity vs performance (when several sparsities were run) and, with ``profiles``,
    performance profiles, each as PNG and PDF.

    Args:
        paths: sweep roots, condition folders or run folders.
        out: the report's folder, created if needed; it must not lie in a run folder.
        baseline: the treatment others are compared with.
        settings: bootstrap seed, resamples and coverage; the same runs and settings give
            the same numbers.
        metric: score every run in this evaluation metric (the last ``charts/eval/<metric>/``
            value of each task in its events) instead of its summary's metric.
        profiles: also draw performance profiles.
        workers: processes reading event files and drawing columns (``None``: one per
            core).
        expected: run folders that should exist (e.g. every run of a sweep); those that do
            not are listed as not started.

    Returns:
        The report.

    Raises:
        ReportInputError: a path does not exist, ``out`` lies in a run folder, or no run can
            be reported (the message says why).
        ModuleNotFoundError: rliable or matplotlib is missing (the message names the extra).

    Examples:
        >>> import tempfile
        >>> build_report(["/nonexistent/sweep"], tempfile.mkdtemp())
        Traceback (most recent call last):
        ...
        torchrl_sparse.report.runs.ReportInputError: /nonexistent/sweep: no such folder
    """
    started = time.perf_counter()
    settings = settings or BootstrapSettings()
    require_rliable()
    loaded = load_runs(paths)
    run_dirs = loaded.run_dirs
    out = _checked_out(Path(out), run_dirs)
    findings = list(loaded.skipped)
    found = {path.resolve() for path in run_dirs}
    findings += [
        Finding("skipped", f"{path}: not started (no run folder)")
        for path in map(Path, expected)
        if path.resolve() not in found
    ]

    with_events = [run.path for run in loaded.runs if run.has_events]
    scalars = dict(
        zip(
            with_events,
            read_scalars_of_runs(with_events, [EVAL_PREFIX, PLASTICITY_PREFIX], _TAGS, workers),
            strict=True,
        )
    )
    runs = loaded.runs
    if metric is not None:
        runs, rescoring = _rescored(runs, metric, scalars)
        findings += rescoring
        if metric not in _BOUNDED_METRICS:
            findings.append(
                Finding(
                    "warning",
                    f"--metric {metric}: scores of tasks on different scales are pooled into "
                    f"one IQM; the papers pool {' or '.join(_BOUNDED_METRICS)} (0 to 1)",
                )
            )
    grouping = group_runs(runs)
    findings += grouping.findings
    if not grouping.conditions:
        kinds = ", ".join(
            f"{sum(f.kind == kind for f in findings)} {kind}" for kind in ("skipped", "excluded")
        )
        first = next((f.message for f in findings if f.kind != "warning"), "")
        raise ReportInputError(
            f"no run to report among {plural(len(run_dirs), 'run folder')} ({kinds}; "
            f"first: {first})"
        )

    treatments = grouping.treatments(baseline)
    if baseline not in treatments:
        findings.append(
            Finding(
                "warning",
                f"no runs of the baseline {baseline!r} (treatments: {treatments}); "
                "no probability of improvement (choose one with --baseline)",
            )
        )
    table = _score_table(grouping, treatments, settings)
    improvement, improvement_notes = _improvement_table(grouping, treatments, baseline, settings)
    report = Report(
        out,
        [str(p) for p in paths],
        baseline,
        settings,
        metric,
        grouping,
        table,
        improvement,
        runs_found=len(run_dirs),
    )
    report.notes["Probability of improvement"] = improvement_notes

    out.mkdir(parents=True, exist_ok=True)
    for name, estimates in (("table", table), ("improvement", improvement)):
        (out / f"{name}.md").write_text(estimates.to_markdown() + "\n")
        (out / f"{name}.csv").write_text(estimates.to_csv())
        (out / f"{name}.tex").write_text(estimates.to_latex() + "\n")
    (out / "scores.csv").write_text(_scores_csv(grouping))

    jobs = _column_jobs(grouping, treatments, table, scalars, report, profiles)
    for section in SECTIONS:
        if section != PROFILES or profiles:
            report.figures[section] = []
            report.notes.setdefault(section, [])
    for drawn in parallel_map(draw_column, jobs, workers):
        for section, png in drawn.pngs.items():
            report.figures[section].append(png)
        for section, why_not in drawn.not_drawn.items():
            report.notes[section].append(why_not)
        findings += drawn.findings

    report.findings = findings
    report.index.write_text(index_markdown(report))
    report.seconds = time.perf_counter() - started
    return report
