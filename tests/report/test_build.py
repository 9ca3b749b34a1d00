"""Reports of synthetic sweeps: numbers equal a direct computation, reproducibly; figures;
every bad input named in the report."""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from rliable import library, metrics

from torchrl_sparse.report.build import Report, build_report
from torchrl_sparse.report.runs import ReportInputError
from torchrl_sparse.report.statistics import BootstrapSettings, bootstrap_seed, global_numpy_seed

from .conftest import MT3, scores_of, write_run

SETTINGS = BootstrapSettings(seed=0, reps=300)
DENSE = "minigrid/mt3/mtppo/dense"
COLUMN = "mtppo / minigrid MT3"
OFFSETS = {"dense": 0.3, "gmp@sparsity=0.9": 0.35, "gmp@sparsity=0.95": 0.1}


def final_scores(treatment: str) -> np.ndarray:
    """The sweep fixture's final scores of a treatment: (runs, tasks)."""
    return np.array([[scores_of(seed, OFFSETS[treatment])[t] for t in MT3] for seed in range(3)])


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    return {row["treatment"]: row for row in csv.DictReader(path.open())}


@pytest.fixture(scope="module")
def report(sweep: Path, tmp_path_factory: pytest.TempPathFactory) -> Report:
    out = tmp_path_factory.mktemp("report")
    return build_report([sweep], out, settings=SETTINGS, profiles=True, workers=1)


def test_table_numbers_equal_a_direct_computation(report: Report) -> None:
    rows = read_csv(report.out / "table.csv")
    assert list(rows) == ["dense", "gmp@sparsity=0.9", "gmp@sparsity=0.95"]
    for treatment, row in rows.items():
        scores = final_scores(treatment)
        assert float(row["point"]) == scipy.stats.trim_mean(scores.ravel(), 0.25)
        # rliable's own interval, drawn from the same seed
        with global_numpy_seed(bootstrap_seed(SETTINGS.seed, f"{COLUMN} | {treatment}")):
            _, intervals = library.get_interval_estimates(
                {"x": scores}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=SETTINGS.reps
            )
        low, high = intervals["x"].ravel()
        assert float(row["ci_low"]) == pytest.approx(low, abs=1e-12)
        assert float(row["ci_high"]) == pytest.approx(high, abs=1e-12)
        assert (row["runs"], row["metric"], row["column"]) == ("3", "normalized_return", COLUMN)
    assert [row["best"] for row in rows.values()] == ["0", "1", "0"]
    markdown = (report.out / "table.md").read_text()
    assert re.search(r"\| gmp@sparsity=0.9 \| \*\*0\.\d\d\*\* \[0\.\d\d, 0\.\d\d\] \|", markdown)
    assert "\\textbf{" in (report.out / "table.tex").read_text()


def test_probability_of_improvement_over_dense(report: Report) -> None:
    rows = read_csv(report.out / "improvement.csv")
    assert list(rows) == ["gmp@sparsity=0.9", "gmp@sparsity=0.95"]
    for treatment, row in rows.items():
        expected = metrics.probability_of_improvement(
            final_scores(treatment), final_scores("dense")
        )
        assert float(row["point"]) == expected
        assert float(row["ci_low"]) <= expected <= float(row["ci_high"])
        assert row["statistic"] == "probability_of_improvement_over_dense"


def test_same_seed_same_bytes_other_seed_other_intervals(
    sweep: Path, report: Report, tmp_path: Path
) -> None:
    again = build_report([sweep], tmp_path / "again", settings=SETTINGS, profiles=True, workers=2)
    for name in ("table.csv", "improvement.csv", "scores.csv", "table.tex", "index.md"):
        assert (again.out / name).read_bytes() == (report.out / name).read_bytes(), name
    reseeded = BootstrapSettings(seed=1, reps=SETTINGS.reps)
    other = build_report([sweep], tmp_path / "other", settings=reseeded, workers=1)
    first, second = read_csv(report.out / "table.csv"), read_csv(other.out / "table.csv")
    assert all(first[t]["point"] == second[t]["point"] for t in first)
    assert any(first[t]["ci_low"] != second[t]["ci_low"] for t in first)


def test_figures_are_non_empty_png_and_pdf(report: Report) -> None:
    assert sorted(report.figures) == [
        "Learning curves",
        "Performance profiles",
        "Plasticity",
        "Sparsity vs performance",
    ]
    for section, pngs in report.figures.items():
        (png,) = pngs
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", section
        assert png.stat().st_size > 10_000, section
        pdf = png.with_suffix(".pdf")
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000, section


def test_index_shows_tables_runs_settings_and_figures(report: Report) -> None:
    index = report.index.read_text()
    assert (report.out / "table.md").read_text().strip() in index
    assert (report.out / "improvement.md").read_text().strip() in index
    assert "**seed 0, 300 resamples**" in index
    assert f"| {COLUMN} | dense | normalized_return | {', '.join(MT3)} | 3 | 0, 1, 2 |" in index
    links = re.findall(r"\]\((figures/[^)]+)\)", index)
    assert len(links) == 8  # four sections, PNG and PDF each
    assert all((report.out / link).is_file() for link in links)
    assert "### Skipped" not in index and "### Excluded" not in index


def test_partial_sweep_lists_what_is_missing(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for seed in range(2):
        write_run(sweep, DENSE, seed, scores_of(seed, 0.3), events=False)
    running = write_run(sweep, DENSE, 2, None)  # events, no summary yet
    stopped = write_run(
        sweep, DENSE, 3, scores_of(3, 0.3), events=False, finished=False, frames=40_000
    )
    never = sweep / DENSE / "seed4"
    never.mkdir()
    single = write_run(sweep, "minigrid/mt3/mtppo/gmp", 0, scores_of(0, 0.2), events=False)
    report = build_report([sweep], tmp_path / "out", settings=SETTINGS, workers=1)
    assert [c.seeds for c in report.grouping.conditions] == [[0, 1], [0]]
    index = report.index.read_text()
    section = index[index.index("## Skipped, excluded and warnings") :]
    assert f"- {running}: events but no summary.json" in section
    assert f"- {never}: no events and no summary.json" in section
    assert "unfinished runs" in section and f"{stopped} (40000/120000)" in section
    assert f"{single}): a point value, no confidence interval" in section
    assert "| gmp | 0.30 (1 run, no CI) |" in index
    assert "left out of the learning curves" in section  # summaries without events


def test_mixed_suites_metrics_and_configurations_are_reported(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for seed in range(2):
        write_run(sweep, DENSE, seed, scores_of(seed, 0.3), events=False)
    write_run(sweep, DENSE, 2, scores_of(2, 0.3), events=False, suite="MT5")
    success = write_run(
        sweep, "minigrid/mt3/mtppo/gmp", 0, scores_of(0, 0.3), events=False, metric="success"
    )
    write_run(sweep, "minigrid/mt3/mtppo/gmp", 1, scores_of(1, 0.3), events=False)
    write_run(sweep, "minigrid/mt3/mtppo/gmp", 2, scores_of(2, 0.3), events=False, config_hash="x")
    report = build_report([sweep], tmp_path / "out", settings=SETTINGS, workers=1)
    messages = [str(finding) for finding in report.findings]
    assert any(
        "different suites" in m and "'mtppo / minigrid MT5': seeds [2]" in m for m in messages
    )
    assert any(str(success) in m and "metric 'success'" in m for m in messages)
    assert any("config_hash" in m and "x: seeds [2]" in m for m in messages)
    assert [column.suite for column in report.grouping.columns] == ["MT3", "MT5"]


def test_metric_override_scores_runs_from_their_events(sweep: Path, tmp_path: Path) -> None:
    report = build_report(
        [sweep / DENSE], tmp_path / "out", settings=SETTINGS, metric="episode_return", workers=1
    )
    row = read_csv(report.out / "table.csv")["dense"]
    assert row["metric"] == "episode_return" and float(row["point"]) == 10.0
    assert "`--metric episode_return`" in report.index.read_text()
    assert any("different scales are pooled" in f.message for f in report.findings)


def test_no_reportable_run_is_an_input_error(tmp_path: Path) -> None:
    write_run(tmp_path / "sweep", DENSE, 0, None)
    with pytest.raises(ReportInputError, match=r"no run to report among 1 run folder \(1 skipped"):
        build_report([tmp_path / "sweep"], tmp_path / "out", settings=SETTINGS)


def test_out_inside_a_run_folder_is_refused_and_runs_are_untouched(sweep: Path) -> None:
    run_dir = sweep / DENSE / "seed0"

    def tree() -> dict[str, str]:
        files = sorted(p for p in sweep.rglob("*") if p.is_file())
        return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    before = tree()
    for out in (run_dir, run_dir / "report", run_dir / "checkpoints"):
        with pytest.raises(ReportInputError, match="inside the run folder"):
            build_report([sweep], out, settings=SETTINGS)
    assert tree() == before


def test_a_diverged_series_costs_its_curve_not_the_report(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for seed in range(2):
        write_run(sweep, DENSE, seed, scores_of(seed, 0.3))
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(sweep / DENSE / "seed1")) as writer:  # a Fisher trace that blew up
        for frames in (10_000, 20_000):
            writer.add_scalar("plasticity/actor/fisher_trace", float("nan"), frames)
    aside = sweep / DENSE / "seed0.attempt-1796000000"  # an earlier attempt a sweep moved aside
    aside.mkdir()
    (aside / "events.out.tfevents.1.host").write_bytes(b"")
    report = build_report([sweep], tmp_path / "out", settings=SETTINGS, workers=1)
    index = report.index.read_text()
    assert "| dense | " in index
    assert "no plasticity/actor/fisher_trace curve" in index
    assert "attempt" not in index
