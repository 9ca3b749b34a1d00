"""``torchrl-sparse report``: exit codes, one-line errors, what it prints."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from torchrl_sparse.report.cli import main

from .conftest import scores_of, write_run

DENSE = "minigrid/mt3/mtppo/dense"


@pytest.fixture
def small_sweep(tmp_path: Path) -> Path:
    sweep = tmp_path / "sweep"
    for seed in range(2):
        write_run(sweep, DENSE, seed, scores_of(seed, 0.3), events=False)
    write_run(sweep, DENSE, 2, None, events=False)  # a run folder not finished: no summary
    return sweep


def test_a_report_exits_0_and_says_where_it_is(
    small_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert main([str(small_sweep), "--out", str(out), "--reps", "100", "--workers", "1"]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith(f"report: {out / 'index.md'} (2 runs in 1 condition, ")
    assert printed.err.splitlines()[0].startswith(f"skipped: {small_sweep / DENSE / 'seed2'}")
    assert (out / "table.md").is_file()


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    printed = capsys.readouterr()
    lines = printed.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), printed.err
    assert printed.out == ""
    return lines[0]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["{tmp}/missing", "--out", "{tmp}/out"], "missing: no such folder"),
        (["{sweep}"], "the following arguments are required: --out"),
        (["--out", "{tmp}/out"], "the following arguments are required: RUN_DIR"),
        (["{sweep}", "--out", "{tmp}/out", "--reps", "0"], "0 is not a positive number"),
        (["{sweep}", "--out", "{tmp}/out", "--seed", "one"], "invalid int value: 'one'"),
        (["{sweep}", "--out", "{sweep}/" + DENSE + "/seed0/report"], "inside the run folder"),
        (["{sweep}/" + DENSE + "/seed2", "--out", "{tmp}/out"], "no run to report"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(
    small_sweep: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    expected: str,
) -> None:
    argv = [a.format(tmp=tmp_path, sweep=small_sweep) for a in arguments]
    assert main(argv) == 2
    assert expected in one_line_error(capsys)


def test_missing_rliable_names_the_extra(
    small_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setitem(sys.modules, "rliable", None)
    assert main([str(small_sweep), "--out", str(tmp_path / "out")]) == 1
    assert "pip install 'torchrl-sparse[report]'" in one_line_error(capsys)


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: torchrl-sparse report")


def test_runs_of_the_sweep_file_not_started_are_listed(
    small_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from torchrl_sparse.experiments.sweep import Sweep

    recipe = tmp_path / "recipes" / DENSE
    recipe.parent.mkdir(parents=True)
    recipe.with_suffix(".yaml").write_text("{}")
    Sweep([str(recipe.with_suffix(".yaml"))], seeds=[0, 1, 2, 3], out=str(small_sweep)).save(
        tmp_path / "sweep.yaml"
    )
    args = ["--out", str(tmp_path / "report"), "--reps", "100", "--workers", "1"]
    assert main([str(small_sweep), *args, "--sweep", str(tmp_path / "sweep.yaml")]) == 0
    err = capsys.readouterr().err
    assert f"{small_sweep / DENSE / 'seed3'}: not started" in err
    assert "seed2: not started" not in err  # it has a folder: listed as unfinished instead
    assert main([str(small_sweep), *args, "--sweep", str(tmp_path / "nope.yaml")]) == 2
    assert "--sweep" in capsys.readouterr().err
