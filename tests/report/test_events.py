"""Reading scalar series from event files: every point, only wanted tags, resumed runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torch.utils.tensorboard import SummaryWriter

from torchrl_sparse.report import events
from torchrl_sparse.report.events import event_files, read_scalars, read_scalars_of_runs


def _write(run_dir: Path, name: str, points: dict[str, list[tuple[int, float]]]) -> None:
    """An event file named ``name`` (its wall time orders it among the run's files)."""
    scratch = run_dir / f"scratch-{name}"
    with SummaryWriter(str(scratch)) as writer:
        for tag, series in points.items():
            for step, value in series:
                writer.add_scalar(tag, value, step)
    (written,) = scratch.iterdir()
    written.rename(run_dir / name)
    scratch.rmdir()


def test_reads_every_point_past_event_accumulators_default(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    count = 10_050
    _write(
        tmp_path,
        "events.out.tfevents.1000.host.1.0",
        {"sparsity/total": [(step, step / count) for step in range(count)]},
    )
    series = read_scalars(tmp_path, ["sparsity/"])["sparsity/total"]
    assert len(series.steps) == count
    np.testing.assert_allclose(series.values, np.arange(count) / count, rtol=1e-6)
    default = EventAccumulator(str(tmp_path))  # keeps 10,000 points per tag
    default.Reload()
    assert len(default.Scalars("sparsity/total")) < count


def test_reads_only_matching_tags(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "events.out.tfevents.1000.host.1.0",
        {
            "plasticity/actor/srank": [(10, 5.0)],
            "plasticity/actor/srank/encoder.0": [(10, 1.0)],
            "charts/eval/success/reach-v3": [(10, 0.5)],
            "losses/loss_actor": [(10, 2.0)],
        },
    )
    read = read_scalars(
        tmp_path, ["plasticity/", "charts/eval/"], r"plasticity/[^/]+/[^/]+|.*/reach-v3"
    )
    assert sorted(read) == ["charts/eval/success/reach-v3", "plasticity/actor/srank"]
    assert read["plasticity/actor/srank"].last == 5.0


def test_resumed_run_drops_the_orphaned_points(tmp_path: Path) -> None:
    # the first process logged up to 300, the resumed one restarts from its checkpoint at 200
    _write(
        tmp_path, "events.out.tfevents.1000.host.1.0", {"t": [(100, 1.0), (200, 2.0), (300, 3.0)]}
    )
    _write(tmp_path, "events.out.tfevents.2000.host.2.0", {"t": [(200, 20.0), (400, 40.0)]})
    assert [p.name[:24] for p in event_files(tmp_path)] == [
        "events.out.tfevents.1000",
        "events.out.tfevents.2000",
    ]
    series = read_scalars(tmp_path, ["t"])["t"]
    assert series.steps.tolist() == [100, 200, 400]
    assert series.values.tolist() == [1.0, 20.0, 40.0]


def test_a_record_cut_short_ends_the_file(tmp_path: Path) -> None:
    _write(tmp_path, "events.out.tfevents.1000.host.1.0", {"t": [(1, 1.0), (2, 2.0)]})
    (path,) = event_files(tmp_path)
    path.write_bytes(path.read_bytes()[:-7])  # a run still writing its last record
    assert read_scalars(tmp_path, ["t"])["t"].steps.tolist() == [1]


def test_a_folder_without_events_reads_as_empty(tmp_path: Path) -> None:
    assert read_scalars(tmp_path, ["t"]) == {}


def test_worker_processes_read_the_same_as_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dirs = []
    for seed in range(3):
        run_dir = tmp_path / f"seed{seed}"
        run_dir.mkdir()
        _write(run_dir, "events.out.tfevents.1000.host.1.0", {"t": [(1, float(seed))]})
        run_dirs.append(run_dir)
    monkeypatch.setattr(events, "_MIN_RUNS_PER_POOL", 1)
    pooled = read_scalars_of_runs(run_dirs, ["t"], workers=2)
    serial = read_scalars_of_runs(run_dirs, ["t"], workers=1)
    assert [r["t"].values.tolist() for r in pooled] == [[0.0], [1.0], [2.0]]
    assert [r["t"].values.tolist() for r in serial] == [[0.0], [1.0], [2.0]]
