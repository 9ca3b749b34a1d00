"""Tables in the papers' layout: cells, bold best per column, escaping, CSV."""

from __future__ import annotations

import csv
import io

from torchrl_sparse.report.conditions import Column
from torchrl_sparse.report.statistics import Estimate
from torchrl_sparse.report.tables import EstimateTable

MT3 = Column("minigrid", "MT3", "mtppo")
MT10 = Column("metaworld", "MT10", "moore")


def make_table() -> EstimateTable:
    return EstimateTable(
        caption="final score",
        statistic="iqm",
        columns=[MT3, MT10],
        rows=["dense", "layer_norm", "gmp"],
        cells={
            ("dense", MT3): Estimate(0.75, 0.7, 0.8, runs=3),
            ("layer_norm", MT3): Estimate(0.75, 0.6, 0.9, runs=3),
            ("gmp", MT3): Estimate(0.5, 0.25, 0.625, runs=3),
            ("dense", MT10): Estimate(0.4, runs=1),
        },
        metrics={MT3: "normalized_return", MT10: "success"},
        bold_best=True,
    )


def test_markdown_rows_are_treatments_and_ties_are_all_bold() -> None:
    assert make_table().to_markdown().splitlines() == [
        "| treatment | mtppo / minigrid MT3 | moore / metaworld MT10 |",
        "|---|---|---|",
        "| dense | **0.75** [0.70, 0.80] | **0.40** (1 run, no CI) |",
        "| layer_norm | **0.75** [0.60, 0.90] | – |",
        "| gmp | 0.50 [0.25, 0.62] | – |",
    ]


def test_latex_escapes_names_and_bolds_best() -> None:
    latex = make_table().to_latex()
    assert "\\begin{tabular}{lcc}" in latex and "\\toprule" in latex
    assert "layer\\_norm & \\textbf{0.75} [0.60, 0.90] & -- \\\\" in latex


def test_csv_has_one_line_per_cell_at_full_precision() -> None:
    rows = list(csv.DictReader(io.StringIO(make_table().to_csv())))
    assert [(row["column"], row["treatment"]) for row in rows] == [
        ("mtppo / minigrid MT3", "dense"),
        ("mtppo / minigrid MT3", "layer_norm"),
        ("mtppo / minigrid MT3", "gmp"),
        ("moore / metaworld MT10", "dense"),
    ]
    assert rows[2]["ci_high"] == "0.625" and rows[2]["best"] == "0"
    assert rows[3]["metric"] == "success" and rows[3]["ci_low"] == "" and rows[3]["best"] == "1"


def test_without_bold_best_no_cell_is_bold() -> None:
    table = make_table()
    plain = EstimateTable(table.caption, "p", table.columns, table.rows, table.cells, table.metrics)
    assert "**" not in plain.to_markdown() and "textbf" not in plain.to_latex()
