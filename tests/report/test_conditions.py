"""Grouping runs into conditions: what is pooled, what is left out, and the messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from torchrl_sparse.report.conditions import Column, group_runs

from .conftest import MT3, make_run, scores_of


def messages(grouping, kind: str) -> list[str]:
    return [finding.message for finding in grouping.findings if finding.kind == kind]


def test_conditions_are_columns_times_treatments_with_seeds_in_order() -> None:
    runs = [make_run("gmp", 1), make_run("dense", 2), make_run("dense", 0), make_run("gmp", 0)]
    grouping = group_runs(runs)
    assert [(c.treatment, c.seeds) for c in grouping.conditions] == [
        ("dense", [0, 2]),
        ("gmp", [0, 1]),
    ]
    assert grouping.columns == [Column("minigrid", "MT3", "mtppo")]
    assert grouping.treatments("gmp") == ["gmp", "dense"]
    assert grouping.findings == []


def test_scores_are_runs_by_tasks_in_one_task_order_per_column() -> None:
    # the same tasks listed in another order by one run: columns still line up by name
    shuffled = make_run("gmp", 0, tasks=MT3[::-1])
    grouping = group_runs([make_run("dense", 0), make_run("dense", 1), shuffled])
    dense, gmp = grouping.conditions
    assert dense.tasks == gmp.tasks == MT3
    values = dense.scores().values
    assert values.shape == (2, 3)  # (runs, tasks)
    np.testing.assert_array_equal(values[1], [scores_of(1, 0.2)[task] for task in MT3])
    np.testing.assert_array_equal(gmp.scores().values[0], [scores_of(0, 0.2)[t] for t in MT3])


def test_unfinished_runs_are_excluded_and_named_with_their_frames() -> None:
    stopped = make_run("gmp", 1, finished=False, frames=40)
    grouping = group_runs([make_run("gmp", 0), stopped])
    assert grouping.conditions[0].seeds == [0]
    (message,) = messages(grouping, "excluded")
    assert str(stopped.path) in message and "(40/100)" in message and "unfinished" in message


def test_runs_without_a_final_evaluation_of_every_task_are_excluded() -> None:
    partial = make_run("dense", 1, final_eval={"LavaGapS7": 0.5})
    grouping = group_runs([make_run("dense", 0), partial])
    assert grouping.conditions[0].seeds == [0]
    (message,) = messages(grouping, "excluded")
    assert str(partial.path) in message and "'RedBlueDoors-6x6', 'MemoryS11'" in message


def test_a_run_with_another_metric_is_excluded_from_its_column() -> None:
    other = make_run("gmp", 2, metric="episode_return")
    grouping = group_runs([make_run("dense", 0), make_run("gmp", 0), other])
    assert [c.seeds for c in grouping.conditions] == [[0], [0]]
    (message,) = messages(grouping, "excluded")
    assert str(other.path) in message
    assert "metric 'episode_return'" in message and "compares 'normalized_return'" in message


def test_a_run_with_another_task_set_is_excluded_from_its_column() -> None:
    tasks = ("LavaGapS7", "MemoryS11")
    other = make_run("dense", 5, tasks=tasks, final_eval={t: 0.5 for t in tasks})
    grouping = group_runs([make_run("dense", 0), make_run("dense", 1), other])
    assert grouping.conditions[0].seeds == [0, 1]
    (message,) = messages(grouping, "excluded")
    assert str(other.path) in message and "tasks ['LavaGapS7', 'MemoryS11']" in message


def test_one_condition_on_two_suites_is_split_into_columns_with_a_warning() -> None:
    mt5 = make_run("dense", 1, suite="MT5")
    grouping = group_runs([make_run("dense", 0), mt5])
    assert [c.column.suite for c in grouping.conditions] == ["MT3", "MT5"]
    warning = next(m for m in messages(grouping, "warning") if "different suites" in m)
    assert "minigrid/mt3/mtppo/dense" in warning
    assert "'mtppo / minigrid MT3': seeds [0]" in warning
    assert "'mtppo / minigrid MT5': seeds [1]" in warning


def test_custom_task_lists_are_separate_columns() -> None:
    first = make_run("dense", 0, suite="custom", tasks=("a", "b"), final_eval={"a": 1, "b": 0})
    second = make_run("dense", 1, suite="custom", tasks=("c",), final_eval={"c": 1.0})
    grouping = group_runs([first, second])
    assert [c.column.label for c in grouping.conditions] == [
        "mtppo / minigrid a+b",
        "mtppo / minigrid c",
    ]


def test_different_configurations_among_seeds_are_warned_and_pooled() -> None:
    runs = [make_run("dense", 0), make_run("dense", 1, config_hash="other"), make_run("dense", 2)]
    grouping = group_runs(runs)
    assert grouping.conditions[0].seeds == [0, 1, 2]
    warning = next(m for m in messages(grouping, "warning") if "config_hash" in m)
    assert "hash-dense: seeds [0, 2]" in warning and "other: seeds [1]" in warning


def test_a_single_seed_is_warned() -> None:
    grouping = group_runs([make_run("dense", 0)])
    (warning,) = messages(grouping, "warning")
    assert "one run" in warning and "no confidence interval" in warning


def test_a_seed_run_twice_is_kept_once() -> None:
    copy = make_run("dense", 0, path=Path("/runs/copy/dense/seed0"))
    grouping = group_runs([make_run("dense", 0), copy, make_run("dense", 1)])
    assert grouping.conditions[0].seeds == [0, 1]
    (message,) = messages(grouping, "excluded")
    assert "seed 0 of 'dense' run twice" in message and str(copy.path) in message
