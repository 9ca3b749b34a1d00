"""Resuming through the CLI: refused for other settings, extended runs, SIGINT and SIGTERM.

Tiny dense MT3 runs (batches of 90 frames, no evaluation) fit in this process and are shared
by the tests: a reference of 4 batches; a run of 2 batches extended to 4; runs of 4 batches
stopped by SIGINT and by SIGTERM, then resumed with the command they print; and a tiny
two-task SAC run whose checkpoint a PPO recipe must refuse.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import yaml

from torchrl_sparse.lightning.cli import RESUMABLE_SETTINGS, main, run
from torchrl_sparse.lightning.figures import read_scalars

from .conftest import REPO, TINY_PPO, TINY_PPO_FRAMES_PER_BATCH, write_recipe

BATCHES = 4
TOTAL_FRAMES = BATCHES * TINY_PPO_FRAMES_PER_BATCH


class SignalAtFrame(pl.Callback):
    """Send ``signum`` to this process when the module's frames reach ``frames``.

    Only when they pass it in this process: the run resumed from that frame with the same
    recipe (the command the CLI prints) is not signalled again.
    """

    def __init__(self, frames: int, signum: int) -> None:
        self.frames = frames
        self.signum = signum
        self._previous = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._previous = pl_module.frames

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_) -> None:
        if self._previous < self.frames <= pl_module.frames:
            os.kill(os.getpid(), self.signum)
        self._previous = pl_module.frames


def tiny_recipe(
    root: Path, name: str, extends: str = "minigrid/mt3/mtppo/dense.yaml", **model_args: Any
) -> Path:
    """A tiny PPO recipe of ``BATCHES`` batches logging to ``root/runs/<name>/seed0``."""
    return write_recipe(
        root / f"{name}.yaml",
        extends,
        model={"init_args": {"total_steps_per_task": 30 * BATCHES, **TINY_PPO, **model_args}},
        trainer={
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": str(root / "runs"), "name": name, "version": "seed0"},
            },
        },
    )


def signal_at(root: Path, name: str, frames: int, signum: signal.Signals) -> Path:
    """A tiny recipe whose run gets ``signum`` at ``frames``."""
    callback = {
        "class_path": f"{__name__}.SignalAtFrame",
        "init_args": {"frames": frames, "signum": int(signum)},
    }
    return write_recipe(
        root / f"{name}_signalled.yaml",
        str(tiny_recipe(root, name)),
        trainer={"callbacks": [callback]},
    )


def run_dir(root: Path, name: str) -> Path:
    return root / "runs" / name / "seed0"


def final_state(root: Path, name: str) -> dict:
    return torch.load(run_dir(root, name) / "checkpoints" / "last.ckpt", weights_only=False)


@dataclass
class Stopped:
    """A fit stopped by a signal: its exit status, stderr and the resume command it printed."""

    status: int
    stderr: str
    summary: dict | None
    resume_command: list[str]


def fit_until_signal(args: list[str], log_dir: Path) -> Stopped:
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), pytest.raises(SystemExit) as stop:
        run(args)
    summary_file = log_dir / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else None
    command = shlex.split(errors.getvalue().strip().splitlines()[-1])
    return Stopped(stop.value.code, errors.getvalue(), summary, command)


@dataclass
class Runs:
    root: Path
    sigint: Stopped
    sigint_command: list[str]
    sigterm: Stopped
    sigterm_command: list[str]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("resume")
    run(["fit", "--config", str(tiny_recipe(root, "reference"))])

    short = tiny_recipe(root, "extended", total_steps_per_task=30 * 2)
    run(["fit", "--config", str(short)])
    run(
        ["fit", "--config", str(short), "--model.init_args.total_steps_per_task", str(30 * BATCHES),
         # Settings a resumed run may change, on the way.
         "--model.init_args.eval_episodes_per_task", "3",
         "--trainer.callbacks.FrameCheckpoint.every_n_frames", "90", "--ckpt_path", "last"]
    )  # fmt: skip

    sigint_command = ["fit", "--config", str(signal_at(root, "sigint", 180, signal.SIGINT))]
    sigint = fit_until_signal(sigint_command, run_dir(root, "sigint"))
    sigterm_command = ["fit", "--config", str(signal_at(root, "sigterm", 90, signal.SIGTERM))]
    sigterm = fit_until_signal(sigterm_command, run_dir(root, "sigterm"))
    for stopped in (sigint, sigterm):
        assert stopped.resume_command[0] == "torchrl-sparse", stopped.stderr
        run(stopped.resume_command[1:])
    return Runs(root, sigint, sigint_command, sigterm, sigterm_command)


def assert_same_training(actual: dict, expected: dict) -> None:
    assert actual["torchrl_sparse"]["frames"] == expected["torchrl_sparse"]["frames"]
    assert actual["state_dict"].keys() == expected["state_dict"].keys()
    for name, value in expected["state_dict"].items():
        assert torch.equal(actual["state_dict"][name], value), name


def test_extending_a_finished_run_trains_to_the_new_total(runs: Runs) -> None:
    extended = final_state(runs.root, "extended")
    assert extended["torchrl_sparse"]["frames"] == TOTAL_FRAMES
    # Exactly the extra batches, continuing the same episodes and generator: as one long run.
    assert_same_training(extended, final_state(runs.root, "reference"))
    log_dir = run_dir(runs.root, "extended")
    steps = [step for step, _ in read_scalars(log_dir)["charts/sps"]]
    assert steps == [TINY_PPO_FRAMES_PER_BATCH * (b + 1) for b in range(BATCHES)]
    # The run folder agrees with what was trained.
    config = yaml.safe_load((log_dir / "config.yaml").read_text())
    hparams = yaml.safe_load((log_dir / "hparams.yaml").read_text())
    assert config["model"]["init_args"]["total_steps_per_task"] == 30 * BATCHES
    assert hparams["total_steps_per_task"] == 30 * BATCHES
    summary = json.loads((log_dir / "summary.json").read_text())
    assert summary["finished"] and summary["frames"] == summary["total_frames"] == TOTAL_FRAMES


@pytest.mark.parametrize("name", ["sigint", "sigterm"])
def test_a_signal_stops_with_its_exit_status_and_the_resume_command(runs: Runs, name: str) -> None:
    stopped, command = (
        (runs.sigint, runs.sigint_command)
        if name == "sigint"
        else (runs.sigterm, runs.sigterm_command)
    )
    frame, status = (180, 130) if name == "sigint" else (90, 143)
    assert stopped.status == status
    checkpoint = run_dir(runs.root, name) / "checkpoints" / "last.ckpt"
    assert (
        f"Stopped by {name.upper()} at frame {frame} of {TOTAL_FRAMES}; checkpoint: {checkpoint}. "
        "Resume with:" in stopped.stderr
    )
    assert stopped.resume_command == ["torchrl-sparse", *command, "--ckpt_path", "last"]
    if name == "sigint":  # a normal end of fit: the summary says how far the run got
        assert stopped.summary is not None
        assert not stopped.summary["finished"] and stopped.summary["frames"] == frame
    # Resumed with that command, the run ends as if it had not stopped.
    assert_same_training(final_state(runs.root, name), final_state(runs.root, "reference"))


def refused(runs: Runs, capsys: pytest.CaptureFixture, *args: str) -> str:
    """Resume with ``args``: status 2 before training, the checkpoint untouched; the error."""
    checkpoint = run_dir(runs.root, "reference") / "checkpoints" / "last.ckpt"
    before = checkpoint.read_bytes()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args])
    errors = capsys.readouterr().err
    assert exit_info.value.code == 2, errors
    assert checkpoint.read_bytes() == before
    assert "Traceback" not in errors
    (line,) = [line for line in errors.splitlines() if line.startswith("error:")]
    return line


@pytest.mark.parametrize(
    ("recipe", "difference"),
    [
        (
            "minigrid/mt3/moore/dense.yaml",
            "model.init_args.arch (checkpoint: 'mtppo', now: 'moore')",
        ),
        (
            "minigrid/mt3/mtppo/gmp.yaml",
            "trainer.callbacks.SparsityCallback (checkpoint: 'absent', now: 'present')",
        ),
        (
            "minigrid/mt3/mtppo/layer_norm.yaml",
            "model.init_args.layer_norm (checkpoint: 'none', now: 'both')",
        ),
    ],
)
def test_resume_refuses_another_recipe(
    runs: Runs, capsys: pytest.CaptureFixture, tmp_path: Path, recipe: str, difference: str
) -> None:
    other = tiny_recipe(tmp_path, "other", extends=recipe)
    checkpoint = run_dir(runs.root, "reference") / "checkpoints" / "last.ckpt"
    line = refused(runs, capsys, "--config", str(other), "--ckpt_path", str(checkpoint))
    assert "was trained with other settings than this recipe and command line" in line
    assert difference in line
    assert not (tmp_path / "runs").exists()


def test_resume_refuses_changed_options_and_names_what_may_change(
    runs: Runs, capsys: pytest.CaptureFixture
) -> None:
    line = refused(
        runs, capsys, "--config", str(runs.root / "reference.yaml"), "--model.init_args.lr", "0.01",
        "--trainer.callbacks.PlasticityMonitorCallback.tau", "0.2", "--ckpt_path", "last",
    )  # fmt: skip
    assert "model.init_args.lr (checkpoint: 0.001, now: 0.01)" in line
    assert "trainer.callbacks.PlasticityMonitorCallback.tau (checkpoint: 0.1, now: 0.2)" in line
    assert "a resumed run may change only " + ", ".join(RESUMABLE_SETTINGS) in line


def test_resume_refuses_another_precision(runs: Runs, capsys: pytest.CaptureFixture) -> None:
    line = refused(
        runs, capsys, "--config", str(runs.root / "reference.yaml"),
        "--trainer.precision", "64-true", "--ckpt_path", "last",
    )  # fmt: skip
    assert "trainer.precision (checkpoint: '32-true', now: '64-true')" in line


@pytest.mark.parametrize("beside", ["config.yaml", "nothing"])
def test_a_checkpoint_without_its_configuration_is_checked_all_the_same(
    runs: Runs, capsys: pytest.CaptureFixture, tmp_path: Path, beside: str
) -> None:
    """Checkpoints of earlier versions: compared with the run folder's config.yaml, else with
    the model's hyperparameters."""
    reference = run_dir(runs.root, "reference")
    state = torch.load(reference / "checkpoints" / "last.ckpt", weights_only=False)
    del state["torchrl_sparse_config"]
    legacy = tmp_path / "legacy" / "seed0"
    (legacy / "checkpoints").mkdir(parents=True)
    torch.save(state, legacy / "checkpoints" / "last.ckpt")
    if beside == "config.yaml":
        (legacy / "config.yaml").write_bytes((reference / "config.yaml").read_bytes())
    other = tiny_recipe(tmp_path, "other", extends="minigrid/mt3/moore/dense.yaml", lr=0.01)
    line = refused(
        runs, capsys, "--config", str(other), "--ckpt_path", str(legacy / "checkpoints/last.ckpt")
    )
    assert "model.init_args.arch (checkpoint: 'mtppo', now: 'moore')" in line
    assert "model.init_args.lr (checkpoint: 0.001, now: 0.01)" in line


def test_a_checkpoint_of_the_python_api_resumes_with_its_settings(
    runs: Runs, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    """No configuration, no class path: the model's hyperparameters are compared."""
    state = final_state(runs.root, "reference")
    del state["torchrl_sparse_config"]
    for private in ("_class_path", "_instantiator"):
        del state["hyper_parameters"][private]
    checkpoint = tmp_path / "api.ckpt"
    torch.save(state, checkpoint)
    capsys.readouterr()
    cli = run(
        ["fit", "--config", str(tiny_recipe(tmp_path, "api")), "--ckpt_path", str(checkpoint)]
    )
    assert "nothing to train" in capsys.readouterr().err
    assert cli.model.frames == TOTAL_FRAMES


def test_resume_refuses_a_total_already_trained(runs: Runs, capsys: pytest.CaptureFixture) -> None:
    line = refused(
        runs, capsys, "--config", str(runs.root / "reference.yaml"),
        "--model.init_args.total_steps_per_task", "60", "--ckpt_path", "last",
    )  # fmt: skip
    assert f"has already trained {TOTAL_FRAMES} frames" in line
    assert "a larger --model.init_args.total_steps_per_task extends it" in line


def test_resuming_a_finished_run_with_its_total_trains_nothing(
    runs: Runs, capsys: pytest.CaptureFixture
) -> None:
    checkpoint = run_dir(runs.root, "reference") / "checkpoints" / "last.ckpt"
    before = checkpoint.read_bytes()
    capsys.readouterr()
    cli = run(["fit", "--config", str(runs.root / "reference.yaml"), "--ckpt_path", "last"])
    assert f"has trained {TOTAL_FRAMES} of {TOTAL_FRAMES} frames: nothing to train" in (
        capsys.readouterr().err
    )
    assert cli.model.frames == TOTAL_FRAMES
    assert checkpoint.read_bytes() == before


def test_a_callback_of_another_package_may_come_and_go_with_a_note(
    runs: Runs, capsys: pytest.CaptureFixture
) -> None:
    never = {"class_path": f"{__name__}.SignalAtFrame", "init_args": {"frames": 10**9, "signum": 2}}
    recipe = write_recipe(
        runs.root / "reference_observed.yaml",
        str(runs.root / "reference.yaml"),
        trainer={"callbacks": [never]},
    )
    capsys.readouterr()
    run(["fit", "--config", str(recipe), "--ckpt_path", "last"])
    checkpoint = run_dir(runs.root, "reference") / "checkpoints" / "last.ckpt"
    assert (
        f"Resuming {checkpoint} with the callback {__name__}.SignalAtFrame, which the "
        "checkpoint's run had not." in capsys.readouterr().err
    )


def test_a_sac_checkpoint_is_refused_by_a_ppo_recipe(
    runs: Runs, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    sac = write_recipe(
        tmp_path / "sac.yaml",
        "metaworld/cpu/reach_window_close.yaml",
        model={
            "init_args": {
                "width": 16, "num_layers": 1, "max_episode_steps": 10, "total_frames": 20,
                "frames_per_batch": 20, "learning_starts": 0, "utd_ratio": 0.1, "batch_size": 4,
                "buffer_size": 100, "eval_every_frames": 0,
            }
        },
        trainer={"logger": {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": str(tmp_path / "runs"), "name": "sac", "version": "seed0"},
        }},
    )  # fmt: skip
    run(["fit", "--config", str(sac)])
    checkpoint = tmp_path / "runs" / "sac" / "seed0" / "checkpoints" / "last.ckpt"
    ppo = tiny_recipe(tmp_path, "ppo", extends="minigrid/mt3/mtppo/gmp.yaml")
    line = refused(runs, capsys, "--config", str(ppo), "--ckpt_path", str(checkpoint))
    assert "model.class_path (checkpoint: 'MultiTaskSAC', now: 'MultiTaskPPO')" in line
    assert "matches no prunable layer" not in line


def test_missing_checkpoint_file(runs: Runs, capsys: pytest.CaptureFixture) -> None:
    line = refused(
        runs, capsys, "--config", str(runs.root / "reference.yaml"), "--ckpt_path", "nothing.ckpt"
    )
    assert line == "error: --ckpt_path nothing.ckpt: no checkpoint there."


def test_resumable_settings_are_documented() -> None:
    guide = (REPO / "docs" / "guide" / "recipes.md").read_text()
    for setting in RESUMABLE_SETTINGS:
        assert f"`{setting}`" in guide, setting
