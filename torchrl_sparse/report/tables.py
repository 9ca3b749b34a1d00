"""Tables of estimates in the papers' layout, as Markdown, LaTeX and CSV.

Rows are treatments, columns are architecture x benchmark suite, and each cell is a point
estimate with its 95% confidence interval, ``0.75 [0.70, 0.80]``. In the final-score table the
best point estimate of each column is in bold. The CSV is long (one line per cell) with full
precision, for other tools.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass

from torchrl_sparse.report.conditions import Column
from torchrl_sparse.report.statistics import Estimate

__all__ = ["EstimateTable"]

_CSV_FIELDS = [
    "column",
    "benchmark",
    "suite",
    "arch",
    "treatment",
    "metric",
    "statistic",
    "runs",
    "point",
    "ci_low",
    "ci_high",
    "best",
]
_LATEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"} | {
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
}


@dataclass(frozen=True)
class EstimateTable:
    """Estimates by treatment (rows) and column: what the table files show.

    Args:
        caption: what the cells are (statistic, metric, interval).
        statistic: the statistic's name in the CSV (``iqm``, ``probability_of_improvement``).
        columns: the table's columns, in order.
        rows: the treatments, in order.
        cells: ``{(treatment, column): Estimate}``; a missing cell shows as a dash.
        metrics: the evaluation metric of each column.
        bold_best: whether the best point estimate of each column is in bold.

    Examples:
        >>> column = Column("minigrid", "MT3", "mtppo")
        >>> table = EstimateTable(
        ...     caption="IQM", statistic="iqm", columns=[column], rows=["dense", "gmp"],
        ...     cells={("dense", column): Estimate(0.75, 0.7, 0.8, runs=3),
        ...            ("gmp", column): Estimate(0.5, runs=1)},
        ...     metrics={column: "normalized_return"}, bold_best=True)
        >>> print(table.to_markdown())
        | treatment | mtppo / minigrid MT3 |
        |---|---|
        | dense | **0.75** [0.70, 0.80] |
        | gmp | 0.50 (1 run, no CI) |
    """

    caption: str
    statistic: str
    columns: list[Column]
    rows: list[str]
    cells: dict[tuple[str, Column], Estimate]
    metrics: dict[Column, str]
    bold_best: bool = False

    def is_best(self, row: str, column: Column) -> bool:
        """Whether the cell holds its column's best point estimate (ties are all best)."""
        if not self.bold_best or (row, column) not in self.cells:
            return False
        points = [self.cells[r, column].point for r in self.rows if (r, column) in self.cells]
        return self.cells[row, column].point == max(points)

    def _text(self, row: str, column: Column, bold: Callable[[str], str], missing: str) -> str:
        estimate = self.cells.get((row, column))
        if estimate is None:
            return missing
        point = f"{estimate.point:.2f}"
        if self.is_best(row, column):
            point = bold(point)
        if not estimate.has_interval:
            runs = f"{estimate.runs} run" + ("s" if estimate.runs != 1 else "")
            return f"{point} ({runs}, no CI)"
        return f"{point} [{estimate.low:.2f}, {estimate.high:.2f}]"

    def to_markdown(self) -> str:
        """A Markdown table; best cells in ``**bold**``."""

        def escape(text: str) -> str:
            return text.replace("|", r"\|")

        lines = [
            "| treatment | " + " | ".join(escape(c.label) for c in self.columns) + " |",
            "|---|" + "---|" * len(self.columns),
        ]
        for row in self.rows:
            cells = [self._text(row, column, "**{}**".format, "–") for column in self.columns]
            lines.append(f"| {escape(row)} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def to_latex(self) -> str:
        r"""A LaTeX ``tabular`` with booktabs rules; best cells in ``\textbf``."""

        def escape(text: str) -> str:
            return "".join(_LATEX_SPECIAL.get(c, c) for c in text)

        lines = [
            f"% {escape(self.caption)}",
            "\\begin{tabular}{l" + "c" * len(self.columns) + "}",
            "\\toprule",
            "Treatment & " + " & ".join(escape(c.label) for c in self.columns) + " \\\\",
            "\\midrule",
        ]
        for row in self.rows:
            # cells hold only numbers and words: nothing to escape
            cells = [
                self._text(row, column, "\\textbf{{{}}}".format, "--") for column in self.columns
            ]
            lines.append(f"{escape(row)} & " + " & ".join(cells) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}"]
        return "\n".join(lines)

    def to_csv(self) -> str:
        """One line per cell, full precision; empty interval bounds without a CI."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, _CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for column in self.columns:
            for row in self.rows:
                estimate = self.cells.get((row, column))
                if estimate is None:
                    continue
                writer.writerow(
                    {
                        "column": column.label,
                        "benchmark": column.benchmark,
                        "suite": column.suite,
                        "arch": column.arch,
                        "treatment": row,
                        "metric": self.metrics[column],
                        "statistic": self.statistic,
                        "runs": estimate.runs,
                        "point": repr(estimate.point),
                        "ci_low": "" if estimate.low is None else repr(estimate.low),
                        "ci_high": "" if estimate.high is None else repr(estimate.high),
                        "best": int(self.is_best(row, column)),
                    }
                )
        return buffer.getvalue()
