"""Finding run folders and reading summaries: what is skipped, and why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from torchrl_sparse.report.runs import ReportInputError, find_run_dirs, load_runs

from .conftest import MT3, scores_of, write_run


def test_finds_runs_under_a_sweep_a_condition_or_a_run(tmp_path: Path) -> None:
    first = write_run(tmp_path, "minigrid/mt3/mtppo/dense", 0, scores_of(0, 0.2), events=False)
    second = write_run(tmp_path, "minigrid/mt3/mtppo/gmp", 1, scores_of(1, 0.2), events=False)
    (first / "checkpoints" / "seed9").mkdir(parents=True)  # inside a run: not a run
    (tmp_path / ".hidden" / "seed0").mkdir(parents=True)
    (tmp_path / "config.yaml").write_text("")  # a sweep's or project's: not a run's
    (tmp_path / "checkpoints").mkdir()
    assert find_run_dirs([tmp_path]) == [first, second]
    assert find_run_dirs([first, tmp_path / "minigrid/mt3/mtppo/gmp", tmp_path]) == [first, second]


@pytest.mark.parametrize("make", ["missing", "file"])
def test_a_bad_path_is_an_input_error(tmp_path: Path, make: str) -> None:
    path = tmp_path / "runs"
    if make == "file":
        path.write_text("")
    with pytest.raises(ReportInputError, match=str(path)):
        find_run_dirs([path])


def test_a_path_without_runs_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(ReportInputError, match="no run folder under"):
        load_runs([tmp_path])


def test_reads_a_summary(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, "minigrid/mt3/mtppo/gmp", 2, scores_of(2, 0.2), sparsity=0.95)
    (run,) = load_runs([tmp_path]).runs
    assert (run.path, run.treatment, run.seed, run.tasks) == (run_dir, "gmp", 2, MT3)
    assert run.final_eval == scores_of(2, 0.2)
    assert (run.sparsity, run.finished, run.has_events) == (0.95, True, True)


def _skip_reason(tmp_path: Path) -> str:
    loaded = load_runs([tmp_path])
    assert loaded.runs == []
    (finding,) = loaded.skipped
    assert finding.kind == "skipped"
    return finding.message


def test_a_running_run_without_summary_is_skipped_and_named(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, "dense", 0, None)
    message = _skip_reason(tmp_path)
    assert message.startswith(str(run_dir)) and "events but no summary.json" in message


def test_an_empty_seed_folder_is_skipped_and_named(tmp_path: Path) -> None:
    (tmp_path / "dense" / "seed4").mkdir(parents=True)
    message = _skip_reason(tmp_path)
    assert "dense/seed4: no events and no summary.json" in message


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"schema_version": 2}, "schema_version is 2"),
        ({"seed": "zero"}, "'seed' is 'zero', expected int"),
        ({"seed": True}, "'seed' is True"),
        ({"tasks": []}, "'tasks' is []"),
        ({"final_eval": {"LavaGapS7": "high"}}, "final_eval['LavaGapS7'] is 'high'"),
        ({"finished": "yes"}, "'finished' is 'yes', expected bool"),
    ],
)
def test_a_wrong_summary_field_is_named(tmp_path: Path, change: dict, reason: str) -> None:
    write_run(tmp_path, "dense", 0, scores_of(0, 0.2), events=False, fields=change)
    assert reason in _skip_reason(tmp_path)


def test_a_missing_summary_field_is_named(tmp_path: Path) -> None:
    write_run(tmp_path, "dense", 0, scores_of(0, 0.2), events=False, drop=["metric"])
    assert "summary.json has no 'metric'" in _skip_reason(tmp_path)


def test_unreadable_json_is_skipped(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, "dense", 0, scores_of(0, 0.2), events=False)
    (run_dir / "summary.json").write_text("{")
    assert "summary.json is not readable JSON" in _skip_reason(tmp_path)
    (run_dir / "summary.json").write_text(json.dumps([1]))
    assert "holds a list, not an object" in _skip_reason(tmp_path)
