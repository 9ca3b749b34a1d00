"""Configuration errors are one ``error:`` line and exit status 2; ``--debug`` shows more."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchrl_sparse.lightning import MultiTaskSAC
from torchrl_sparse.lightning.cli import main

from .conftest import REPO, run_cli

GMP = str(REPO / "recipes" / "minigrid" / "mt3" / "mtppo" / "gmp.yaml")
SAC = str(REPO / "recipes" / "metaworld" / "cpu" / "reach_window_close.yaml")


def error_of(args: list[str], capsys: pytest.CaptureFixture) -> str:
    """The stderr of ``torchrl-sparse ARGS`` in this process, which must exit with status 2."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    errors = capsys.readouterr().err
    assert exit_info.value.code == 2, errors
    return errors


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--model.init_args.suite", "MT4"],
            "error: Unknown suite 'MT4'; allowed: ['MT3', 'MT5', 'MT7'].",
        ),
        (
            ["--model.init_args.arch", "paco"],
            "error: model.init_args.arch: Expected a typing.Literal['mtppo', 'moe', 'moore']. "
            "Got value: paco",
        ),
        (
            ["--model.init_args.foo", "1"],
            "error: model.init_args: Option 'foo' is not accepted; allowed: suite, arch, ",
        ),
        (
            ["--model.init_args.total_steps_per_task", "0"],
            "error: total_steps_per_task must be a positive int, got 0.",
        ),
        (
            ["--model.init_args.lr", "fast"],
            "error: model.init_args.lr: Expected a <class 'float'>. Got value: fast",
        ),
        (
            ["--model.init_args.seed", "abc"],
            "error: model.init_args.seed: Expected a <class 'int'>. Got value: abc",
        ),
        (
            ["--trainer.max_epochs", "many"],
            "error: trainer.max_epochs: Expected a <class 'int'>. Got value: many",
        ),
        (
            ["--trainer.callbacks.SparsityCallback.groups", "{actor_network.*: 1.5}"],
            "error: sparsity of group ('actor_network.*',) must be a float in [0, 1), got 1.5.",
        ),
        (
            ["--trainer.callbacks.SparsityCallback.groups", "{nothing.*: 0.5}"],
            "error: Pattern 'nothing.*' matches no prunable layer. Available layers: [",
        ),
        (
            ["--trainer.callbacks.FrameCheckpoint.every_n_frames", "often"],
            "error: trainer.callbacks.FrameCheckpoint.every_n_frames: Expected a <class 'int'>. "
            "Got value: often",
        ),
        (
            ["--trainer.callbacks.Sparsity.groups", "{}"],
            "error: --trainer.callbacks.Sparsity.groups: the recipe has no callback Sparsity "
            "(callbacks: FrameCheckpoint, PlasticityMonitorCallback, SummaryFigure, "
            "SparsityCallback).",
        ),
        (
            ["--trainer.callbacks.SparsityCallback.sparsity", "0.9"],
            "error: --trainer.callbacks.SparsityCallback.sparsity: SparsityCallback has no "
            "argument 'sparsity'; arguments: groups, method, distribution, scope, bias, exclude, "
            "seed.",
        ),
        (
            ["--trainer.callbacks.SparsityCallback.groups", "{a: [}"],
            "error: --trainer.callbacks.SparsityCallback.groups: '{a: [}' is not YAML (line 1, "
            "column 6: ",
        ),
        (["--config", "nowhere.yaml"], "error: No recipe at nowhere.yaml."),
    ],
)
def test_a_config_error_is_one_line(
    args: list[str], line: str, capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    errors = error_of(["fit", "--config", GMP, *args], capsys)
    assert "Traceback" not in errors
    (error,) = [e for e in errors.splitlines() if e.startswith("error:")]
    assert error.startswith(line), error
    assert errors.endswith(error + "\n")
    assert not list(tmp_path.rglob("*.ckpt"))


def test_sac_refuses_a_batch_larger_than_the_run(capsys: pytest.CaptureFixture) -> None:
    message = (
        "frames_per_batch=1000 (rounded up to 1000, a multiple of the 2 tasks) is larger than "
        "total_frames=500: one batch would overshoot the training length."
    )
    errors = error_of(["fit", "--config", SAC, "--model.init_args.total_frames", "500"], capsys)
    assert f"error: {message}" in errors
    with pytest.raises(ValueError, match=r"frames_per_batch=1005 \(rounded up to 1010, a "):
        MultiTaskSAC(total_frames=1_000, frames_per_batch=1_005)


def test_a_yaml_syntax_error_names_the_file_and_what_extends_it(
    capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.yaml").write_text("model:\n  init_args: {lr: 0.1\ntrainer: {}\n")
    (tmp_path / "middle.yaml").write_text("extends: base.yaml\n")
    (tmp_path / "top.yaml").write_text("extends: [middle.yaml]\n")
    errors = error_of(["fit", "--config", "top.yaml"], capsys)
    assert errors == (
        "error: YAML syntax error in base.yaml (extended by middle.yaml, extended by top.yaml), "
        "line 3, column 8: expected ',' or '}', but got ':' (while parsing a flow mapping at "
        "line 2).\n"
    )


def test_a_missing_base_names_what_extends_it(
    capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "top.yaml").write_text("extends: gone.yaml\n")
    errors = error_of(["fit", "--config", "top.yaml"], capsys)
    assert errors == "error: No recipe at gone.yaml (extended by top.yaml).\n"


@pytest.mark.parametrize("switch", ["flag", "environment"])
def test_debug_shows_the_traceback(switch: str, capsys: pytest.CaptureFixture, monkeypatch) -> None:
    args = ["fit", "--config", GMP, "--model.init_args.suite", "MT4"]
    if switch == "flag":
        args.append("--debug")
    else:
        monkeypatch.setenv("TORCHRL_SPARSE_DEBUG", "1")
    errors = error_of(args, capsys)
    assert "Traceback (most recent call last)" in errors
    assert 'torchrl_sparse/lightning/ppo.py", line' in errors  # where the error was raised
    assert errors.endswith("error: Unknown suite 'MT4'; allowed: ['MT3', 'MT5', 'MT7'].\n")


def test_options_of_the_cli_need_a_recipe(capsys: pytest.CaptureFixture) -> None:
    assert error_of(["fit", "--smoke"], capsys) == (
        "error: --smoke needs a recipe: add --config recipes/<condition>.yaml.\n"
    )


def test_fit_is_the_only_lightning_subcommand(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out
    assert "{fit}" in usage
    assert "--smoke makes a run of a few thousand frames" in " ".join(usage.split())
    for unsupported in ("validate", "test", "predict"):
        assert unsupported not in usage
    errors = error_of(["validate", "--config", GMP], capsys)
    assert errors == "error: argument subcommand: invalid choice: 'validate' (choose from 'fit')\n"


def test_the_command_prints_only_the_error(tmp_path: Path) -> None:
    """As a user sees it: the installed command, its stderr and exit status."""
    result = run_cli(
        "fit", "--config", GMP, "--model.init_args.arch", "paco", cwd=tmp_path, console_script=True
    )
    assert result.returncode == 2
    assert result.stderr == (
        "error: model.init_args.arch: Expected a typing.Literal['mtppo', 'moe', 'moore']. "
        "Got value: paco\n"
    )
