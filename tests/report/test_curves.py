"""Curves of a condition: common frames, interpolation, runs without curves, plasticity tags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from torchrl_sparse.report.conditions import group_runs
from torchrl_sparse.report.curves import align, evaluation_curves, plasticity_curves
from torchrl_sparse.report.events import Series, read_scalars

from .conftest import MT3, make_run, scores_of, write_run


def series(steps: list[int], values: list[float]) -> Series:
    return Series(np.array(steps), np.array(values, dtype=float))


def test_identical_frames_are_used_as_they_are() -> None:
    frames, values, interpolated = align([series([1, 2], [0, 1]), series([1, 2], [2, 3])])
    assert frames.tolist() == [1, 2] and values.tolist() == [[0, 1], [2, 3]]
    assert not interpolated


def test_series_without_common_frames_are_refused() -> None:
    with pytest.raises(ValueError, match="share no frames"):
        align([series([1, 2], [0, 1]), series([3, 4], [0, 1])])


def test_evaluation_curves_are_runs_by_tasks_by_frames(tmp_path: Path) -> None:
    paths = [write_run(tmp_path, "dense", seed, scores_of(seed, 0.2)) for seed in (0, 1)]
    runs = [make_run("dense", seed, path=path, has_events=True) for seed, path in enumerate(paths)]
    (condition,) = group_runs(runs).conditions
    scalars = {path: read_scalars(path, ["charts/eval/"]) for path in paths}
    curves, findings = evaluation_curves(condition, scalars)
    assert findings == []
    assert curves.values.shape == (2, 3, 4)
    np.testing.assert_allclose(curves.values[1, :, -1], [scores_of(1, 0.2)[t] for t in MT3])


def test_runs_at_other_frames_are_interpolated_and_said_so(tmp_path: Path) -> None:
    first = write_run(tmp_path, "dense", 0, scores_of(0, 0.2), eval_frames=(10, 20, 30, 40))
    second = write_run(tmp_path, "dense", 1, scores_of(1, 0.2), eval_frames=(15, 25, 35, 45))
    runs = [make_run("dense", 0, path=first), make_run("dense", 1, path=second)]
    (condition,) = group_runs(runs).conditions
    scalars = {path: read_scalars(path, ["charts/eval/"]) for path in (first, second)}
    curves, (finding,) = evaluation_curves(condition, scalars)
    assert curves.frames.tolist() == [15, 20, 25, 30, 35, 40]
    assert "different frames" in finding.message and "6 frames from 15 to 40" in finding.message


def test_runs_without_curves_are_left_out_of_them_and_named() -> None:
    runs = [make_run("dense", 0), make_run("dense", 1)]
    (condition,) = group_runs(runs).conditions
    curves, (finding,) = evaluation_curves(condition, {})
    assert curves is None
    assert (
        str(runs[0].path) in finding.message
        and "left out of the learning curves" in finding.message
    )


def test_plasticity_curves_are_found_by_tag_and_partial_metrics_warned(tmp_path: Path) -> None:
    with_fisher = write_run(
        tmp_path, "sac", 0, scores_of(0, 0.2), networks=("qvalue",), fisher=True
    )
    without = write_run(tmp_path, "sac", 1, scores_of(1, 0.2), networks=("qvalue",))
    runs = [make_run("sac", 0, path=with_fisher), make_run("sac", 1, path=without)]
    (condition,) = group_runs(runs).conditions
    scalars = {path: read_scalars(path, ["plasticity/"]) for path in (with_fisher, without)}
    curves, (finding,) = plasticity_curves(condition, scalars)
    assert sorted(curves) == [
        ("qvalue", "dormant_ratio"),
        ("qvalue", "fisher_trace"),
        ("qvalue", "srank"),
    ]
    assert curves["qvalue", "srank"].values.shape == (2, 1, 3)
    assert curves["qvalue", "fisher_trace"].runs == ("seed0",)
    assert "plasticity/qvalue/fisher_trace logged by seeds [0] of [0, 1]" in finding.message
