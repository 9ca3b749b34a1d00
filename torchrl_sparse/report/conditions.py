"""Grouping runs into conditions (a table cell) and checking they can be compared.

A **column** of the report's table is an architecture on a benchmark suite (``mtppo`` on
MiniGrid ``MT3``); a **condition** is a treatment (``dense``, ``gmp``, ...) in a column, and
its runs are its seeds. Runs that cannot be pooled or compared are left out with a
:class:`~torchrl_sparse.report.runs.Finding` that names them and says why:

- unfinished runs (``finished: false``) and runs without a final evaluation of every task;
- within a column, runs with another evaluation metric or task set than most of the column;
- a second run of the same seed in a condition.

Warnings, reported anyway: seeds of one condition with different configuration hashes, one
condition name spread over several columns, conditions with a single seed (a point value,
no confidence interval).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from torchrl_sparse.report.runs import Finding, Run
from torchrl_sparse.report.statistics import Scores

__all__ = ["Column", "Condition", "Grouping", "group_runs"]

# Task lists longer than this are abbreviated in a custom suite's column label.
_TASKS_IN_LABEL = 3


@dataclass(frozen=True, order=True)
class Column:
    """An architecture on a benchmark suite: a column of the table.

    A ``custom`` suite (an explicit task list) is keyed by its tasks too, so two different task
    lists make two columns.

    Examples:
        >>> Column("minigrid", "MT3", "mtppo").label
        'mtppo / minigrid MT3'
        >>> Column("metaworld", "custom", "mlp", ("reach-v3", "window-close-v3")).label
        'mlp / metaworld reach-v3+window-close-v3'
    """

    benchmark: str
    suite: str
    arch: str
    custom_tasks: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """How the table and figures name the column."""
        suite = self.suite
        if self.custom_tasks:
            shown = self.custom_tasks[:_TASKS_IN_LABEL]
            more = len(self.custom_tasks) - len(shown)
            suite = "+".join(shown) + (f"+{more} more" if more else "")
        return f"{self.arch} / {self.benchmark} {suite}"

    @property
    def slug(self) -> str:
        """The label as a file name part: ``mtppo_minigrid_MT3``."""
        return re.sub(r"[^A-Za-z0-9.+-]+", "_", self.label).strip("_")

    @classmethod
    def of(cls, run: Run) -> Column:
        """The column of a run."""
        custom = tuple(sorted(run.tasks)) if run.suite == "custom" else ()
        return cls(run.benchmark, run.suite, run.arch, custom)


@dataclass(frozen=True)
class Condition:
    """A treatment in a column, with the runs (seeds) that are compared.

    ``tasks`` and ``metric`` are those of every run; ``runs`` are sorted by seed.

    Examples:
        >>> from pathlib import Path
        >>> from torchrl_sparse.report import Run, group_runs
        >>> def run(seed):
        ...     return Run(
        ...         path=Path(f"gmp/seed{seed}"), condition="gmp", treatment="gmp", seed=seed,
        ...         algorithm="MultiTaskPPO", benchmark="minigrid", suite="MT3", arch="mtppo",
        ...         tasks=("a", "b"), metric="success", final_eval={"a": 0.5, "b": 1.0},
        ...         frames=10, total_frames=10, finished=True, sparsity=0.9, config_hash="h",
        ...         has_events=False)
        >>> condition = group_runs([run(1), run(0)]).conditions[0]
        >>> condition.key, condition.seeds, condition.metric, condition.tasks
        ('mtppo / minigrid MT3 | gmp', [0, 1], 'success', ('a', 'b'))
    """

    column: Column
    treatment: str
    metric: str
    tasks: tuple[str, ...]
    runs: tuple[Run, ...]

    @property
    def key(self) -> str:
        """A stable name of the condition, also the seed key of its bootstraps."""
        return f"{self.column.label} | {self.treatment}"

    @property
    def seeds(self) -> list[int]:
        """The seeds of the runs."""
        return [run.seed for run in self.runs]

    def scores(self) -> Scores:
        """Final scores, one row per run (seed order) and one column per task (``tasks`` order).

        Examples:
            >>> from pathlib import Path
            >>> def run(seed, a, b):
            ...     return Run(
            ...         path=Path(f"dense/seed{seed}"), condition="dense", treatment="dense",
            ...         seed=seed, algorithm="MultiTaskPPO", benchmark="minigrid", suite="MT3",
            ...         arch="mtppo", tasks=("a", "b"), metric="success",
            ...         final_eval={"b": b, "a": a}, frames=10, total_frames=10, finished=True,
            ...         sparsity=None, config_hash="h", has_events=False)
            >>> grouping = group_runs([run(1, 0.5, 0.6), run(0, 0.1, 0.2)])
            >>> grouping.conditions[0].scores().values.tolist()
            [[0.1, 0.2], [0.5, 0.6]]
        """
        values = np.array([[run.final_eval[task] for task in self.tasks] for run in self.runs])
        return Scores(values, tuple(f"seed{seed}" for seed in self.seeds), self.tasks)


@dataclass
class Grouping:
    """The conditions to report, in table order, and what was left out or needs care.

    Examples:
        >>> from pathlib import Path
        >>> from torchrl_sparse.report import Run, group_runs
        >>> def run(treatment, seed):
        ...     return Run(
        ...         path=Path(f"{treatment}/seed{seed}"), condition=treatment,
        ...         treatment=treatment, seed=seed, algorithm="MultiTaskPPO",
        ...         benchmark="minigrid", suite="MT3", arch="mtppo", tasks=("a",),
        ...         metric="success", final_eval={"a": 0.5}, frames=10, total_frames=10,
        ...         finished=True, sparsity=None, config_hash="h", has_events=False)
        >>> grouping = group_runs([run("dense", 0), run("dense", 1), run("gmp", 0)])
        >>> [column.label for column in grouping.columns], grouping.treatments(baseline="gmp")
        (['mtppo / minigrid MT3'], ['gmp', 'dense'])
        >>> grouping.condition(grouping.columns[0], "dense").seeds
        [0, 1]
        >>> print(grouping.findings[0])  # doctest: +NORMALIZE_WHITESPACE
        warning: mtppo / minigrid MT3 | gmp: one run (gmp/seed0): a point value,
        no confidence interval
    """

    conditions: list[Condition]
    findings: list[Finding]

    @property
    def columns(self) -> list[Column]:
        """The columns that hold at least one condition, sorted."""
        return sorted({condition.column for condition in self.conditions})

    def treatments(self, baseline: str) -> list[str]:
        """The treatments, the baseline first and then by name."""
        names = {condition.treatment for condition in self.conditions}
        return sorted(names, key=lambda name: (name != baseline, name))

    def condition(self, column: Column, treatment: str) -> Condition | None:
        """The condition of ``treatment`` in ``column``, if it was run."""
        for condition in self.conditions:
            if condition.column == column and condition.treatment == treatment:
                return condition
        return None


def _names(runs: Iterable[Run]) -> str:
    return ", ".join(str(run.path) for run in runs)


def _usable(runs: Sequence[Run], findings: list[Finding]) -> list[Run]:
    """Runs that finished and evaluated every task; the others are listed as excluded."""
    unfinished = [run for run in runs if not run.finished]
    if unfinished:
        details = "; ".join(f"{run.path} ({run.frames}/{run.total_frames})" for run in unfinished)
        findings.append(Finding("excluded", f"unfinished runs (frames trained/total): {details}"))
    usable = []
    for run in runs:
        if not run.finished:
            continue
        missing = [task for task in run.tasks if task not in run.final_eval]
        if missing:
            findings.append(
                Finding("excluded", f"{run.path}: no final evaluation of tasks {missing}")
            )
        else:
            usable.append(run)
    return usable


def _majority_in_column(column: Column, runs: list[Run], findings: list[Finding]) -> list[Run]:
    """The runs of the column's most common (metric, task set); the others are excluded."""
    counts = Counter((run.metric, frozenset(run.tasks)) for run in runs)
    # most runs first; ties broken by name so the choice does not depend on input order
    metric, tasks = min(counts, key=lambda kind: (-counts[kind], kind[0], sorted(kind[1])))
    kept = []
    for run in runs:
        if run.metric != metric:
            findings.append(
                Finding(
                    "excluded",
                    f"{run.path}: metric {run.metric!r}, but column {column.label!r} "
                    f"compares {metric!r}",
                )
            )
        elif frozenset(run.tasks) != tasks:
            findings.append(
                Finding(
                    "excluded",
                    f"{run.path}: tasks {sorted(run.tasks)}, but column {column.label!r} "
                    f"compares tasks {sorted(tasks)}",
                )
            )
        else:
            kept.append(run)
    return kept


def _one_run_per_seed(runs: list[Run], findings: list[Finding]) -> list[Run]:
    by_seed: dict[int, list[Run]] = defaultdict(list)
    for run in sorted(runs, key=lambda run: (run.seed, str(run.path))):
        by_seed[run.seed].append(run)
    for seed, same_seed in by_seed.items():
        if len(same_seed) > 1:
            findings.append(
                Finding(
                    "excluded",
                    f"seed {seed} of {same_seed[0].treatment!r} run twice: kept "
                    f"{same_seed[0].path}, left out {_names(same_seed[1:])}",
                )
            )
    return [same_seed[0] for same_seed in by_seed.values()]


def _condition_warnings(condition: Condition, findings: list[Finding]) -> None:
    hashes: dict[str | None, list[int]] = defaultdict(list)
    for run in condition.runs:
        hashes[run.config_hash].append(run.seed)
    if len(hashes) > 1:
        listed = "; ".join(f"{h}: seeds {seeds}" for h, seeds in sorted(hashes.items(), key=str))
        findings.append(
            Finding(
                "warning",
                f"{condition.key}: seeds have different configurations (config_hash {listed}); "
                "pooled anyway",
            )
        )
    names = sorted({run.condition for run in condition.runs})
    if len(names) > 1:
        findings.append(Finding("warning", f"{condition.key}: pools runs of conditions {names}"))
    if len(condition.runs) < 2:
        findings.append(
            Finding(
                "warning",
                f"{condition.key}: one run ({condition.runs[0].path}): a point value, "
                "no confidence interval",
            )
        )


def group_runs(runs: Sequence[Run]) -> Grouping:
    """Group runs into conditions, leaving out (and listing) runs that cannot be compared.

    Conditions are sorted by column, then treatment; runs by seed. The tasks of a column
    follow the order of its lowest seed's summary.

    Examples:
        >>> from pathlib import Path
        >>> def run(treatment, seed, finished=True):
        ...     return Run(
        ...         path=Path(f"{treatment}/seed{seed}"), condition=treatment,
        ...         treatment=treatment, seed=seed, algorithm="MultiTaskPPO",
        ...         benchmark="minigrid", suite="MT3", arch="mtppo", tasks=("a",),
        ...         metric="success", final_eval={"a": 0.5}, frames=10, total_frames=10,
        ...         finished=finished, sparsity=None, config_hash="h", has_events=False)
        >>> grouping = group_runs([run("dense", 0), run("dense", 1), run("gmp", 0, False)])
        >>> [(c.treatment, c.seeds) for c in grouping.conditions]
        [('dense', [0, 1])]
        >>> print(grouping.findings[0])
        excluded: unfinished runs (frames trained/total): gmp/seed0 (10/10)
    """
    findings: list[Finding] = []
    usable = _usable(runs, findings)
    by_column: dict[Column, list[Run]] = defaultdict(list)
    for run in usable:
        by_column[Column.of(run)].append(run)
    _warn_split_conditions(by_column, findings)

    conditions = []
    for column in sorted(by_column):
        comparable = _majority_in_column(column, by_column[column], findings)
        # one task order per column, so that conditions' score columns line up
        first = min(comparable, key=lambda run: (run.seed, str(run.path)))
        by_treatment: dict[str, list[Run]] = defaultdict(list)
        for run in comparable:
            by_treatment[run.treatment].append(run)
        for treatment in sorted(by_treatment):
            kept = _one_run_per_seed(by_treatment[treatment], findings)
            condition = Condition(column, treatment, first.metric, first.tasks, tuple(kept))
            _condition_warnings(condition, findings)
            conditions.append(condition)
    return Grouping(conditions, findings)


def _warn_split_conditions(by_column: dict[Column, list[Run]], findings: list[Finding]) -> None:
    """Warn when one condition name has runs in several columns (e.g. MT3 and MT5 seeds)."""
    columns_of: dict[str, dict[Column, list[int]]] = defaultdict(lambda: defaultdict(list))
    for column, runs in by_column.items():
        for run in runs:
            columns_of[run.condition][column].append(run.seed)
    for name, columns in sorted(columns_of.items()):
        if len(columns) > 1:
            where = "; ".join(
                f"{column.label!r}: seeds {sorted(seeds)}"
                for column, seeds in sorted(columns.items())
            )
            findings.append(
                Finding(
                    "warning",
                    f"condition {name!r} has runs on different suites or architectures ({where}); "
                    "reported in separate columns",
                )
            )
