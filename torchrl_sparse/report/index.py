"""The report's ``index.md``: tables, runs, figures, statistics and every problem, on one page."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

from torchrl_sparse.report.runs import Finding

if TYPE_CHECKING:
    from torchrl_sparse.report.build import Report

__all__ = ["index_markdown", "plural"]

_FINDING_TITLES = {
    "skipped": "Skipped folders (not usable runs)",
    "excluded": "Excluded runs (left out of the table and curves)",
    "warning": "Warnings (reported anyway)",
}
_FIGURE_CAPTIONS = {
    "Learning curves": (
        "Evaluation score over environment frames: IQM over runs x tasks at each evaluation, "
        "with a pointwise {confidence} stratified-bootstrap band."
    ),
    "Plasticity": (
        "Plasticity metrics of each network over environment frames: IQM over runs, with a "
        "pointwise {confidence} bootstrap band."
    ),
    "Sparsity vs performance": (
        "Final score IQM with {confidence} CIs against the median final sparsity of each "
        "treatment's runs; the baseline is the horizontal line."
    ),
    "Performance profiles": (
        "Fraction of (run, task) final scores above each threshold, with pointwise {confidence} "
        "CIs (rliable's score distributions)."
    ),
}


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, in the plural unless there is one.

    Examples:
        >>> plural(1, "run"), plural(3, "condition")
        ('1 run', '3 conditions')
    """
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def _links(out: Path, stem: str) -> str:
    names = [f"{stem}.md", f"{stem}.csv", f"{stem}.tex"]
    return ", ".join(f"[{name}]({name})" for name in names if (out / name).exists())


def _runs_table(report: Report) -> list[str]:
    lines = [
        "| column | treatment | metric | tasks | runs | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for condition in report.grouping.conditions:
        seeds = ", ".join(map(str, condition.seeds))
        lines.append(
            f"| {condition.column.label} | {condition.treatment} | {condition.metric} | "
            f"{', '.join(condition.tasks)} | {len(condition.runs)} | {seeds} |"
        )
    return lines


def _findings(findings: list[Finding]) -> list[str]:
    if not findings:
        return ["None: every run folder found was reported."]
    lines = []
    for kind, title in _FINDING_TITLES.items():
        of_kind = [finding.message for finding in findings if finding.kind == kind]
        if of_kind:
            lines += [f"### {title}", "", *(f"- {message}" for message in of_kind), ""]
    return lines


def _scores_source(report: Report) -> str:
    if report.metric is None:
        source = "the final evaluation of each task (`final_eval` of each run's `summary.json`)"
    else:
        source = (
            f"the last `charts/eval/{report.metric}/<task>` value of each task in the events "
            f"(`--metric {report.metric}`), or `final_eval` where the summary's metric is "
            f"`{report.metric}`"
        )
    return f"- Scores: {source}; arrays are (runs, tasks): one row per seed, one column per task."


def index_markdown(report: Report) -> str:
    """The Markdown of ``index.md``; figures are linked relative to the report's folder.

    The page depends only on the runs and the settings (no dates, no timings), so the same
    runs and seed give the same page.
    """
    settings = report.settings
    confidence = f"{settings.confidence:.0%}"
    reported = sum(len(condition.runs) for condition in report.grouping.conditions)
    inputs = ", ".join(f"`{path}`" for path in report.inputs)
    lines = [
        f"# Report: {plural(reported, 'run')} in "
        f"{plural(len(report.grouping.conditions), 'condition')}",
        "",
        f"Made by `torchrl-sparse report` from {inputs}: {plural(report.runs_found, 'run folder')} "
        f"found, {reported} reported. Bootstrap: **seed {settings.seed}, "
        f"{settings.reps} resamples**, {confidence} percentile intervals.",
        "",
        "## Final scores",
        "",
        report.table.caption + ".",
        "",
        report.table.to_markdown(),
        "",
        f"Files: {_links(report.out, 'table')}; every score used: [scores.csv](scores.csv).",
        "",
        f"## Probability of improvement over `{report.baseline}`",
        "",
        report.improvement.caption + ": the probability that a run of the treatment scores "
        f"higher than a run of `{report.baseline}` on a task (ties count half), averaged over "
        "tasks.",
        "",
    ]
    if report.improvement.cells:
        lines += [report.improvement.to_markdown(), ""]
    notes = report.notes.get("Probability of improvement", [])
    if notes:
        lines += [*(f"- {note}" for note in notes), ""]
    lines += [
        f"Files: {_links(report.out, 'improvement')}.",
        "",
        "## Runs per condition",
        "",
        *_runs_table(report),
        "",
    ]
    for section, figures in report.figures.items():
        lines += [f"## {section}", "", _FIGURE_CAPTIONS[section].format(confidence=confidence), ""]
        for png in figures:
            relative = png.relative_to(report.out).as_posix()
            pdf = png.with_suffix(".pdf").relative_to(report.out).as_posix()
            lines += [f"![{png.stem}]({relative})", "", f"[PDF]({pdf})", ""]
        notes = report.notes.get(section, [])
        if not figures and not notes:
            lines += ["No figure: nothing to draw.", ""]
        lines += [f"- Not drawn: {note}" for note in notes]
        if notes:
            lines.append("")
    lines += [
        "## Statistics",
        "",
        f"From rliable {_package_version('rliable')} (Agarwal et al., 2021, *Deep RL at the "
        "Edge of the Statistical Precipice*):",
        "",
        _scores_source(report),
        "- IQM: `rliable.metrics.aggregate_iqm`, the mean of the middle 50% of all "
        "(run, task) scores.",
        f"- {confidence} CIs: `rliable.library.get_interval_estimates`, percentile intervals "
        "of a stratified bootstrap that resamples runs with replacement within each task, "
        f"{settings.reps} resamples.",
        "- Probability of improvement: `rliable.metrics.probability_of_improvement` "
        "(Mann-Whitney U / (n_x n_y) per task, averaged); its CIs resample the runs of both "
        "treatments independently.",
        f"- Reproducible: each estimate's bootstrap draws from NumPy's global generator seeded "
        f"with seed {settings.seed} mixed with the estimate's name; the same runs and seed "
        "give the same numbers.",
        "- Conditions with one run show a point value and no CI.",
        "",
        "## Skipped, excluded and warnings",
        "",
        *_findings(report.findings),
    ]
    return "\n".join(lines).rstrip() + "\n"
