"""``torchrl-sparse evaluate`` on real tiny runs: PPO through the CLI, SAC through Trainer.fit.

One sparse MT3 PPO run (the CLI, GMP to 95%) serves the PPO tests; the SAC test trains its own
two-task MetaWorld run in process, as a Python API user would, so its checkpoint records no
class path and no config.yaml sits next to it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from PIL import Image

from torchrl_sparse.commands import main as cli_main
from torchrl_sparse.lightning import FrameCheckpoint, MultiTaskPPO, MultiTaskSAC
from torchrl_sparse.lightning.evaluate import evaluate_checkpoint, load_module
from torchrl_sparse.sparse.targets import find_layers

from .conftest import REPO, run_cli, write_recipe

TASKS = ["LavaGapS7", "RedBlueDoors-6x6", "MemoryS11"]


@dataclass
class Run:
    folder: Path
    checkpoint: Path


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """4 batches of 100 steps per task (1,200 frames) of MT3 MTPPO, GMP to 95% sparsity."""
    root = tmp_path_factory.mktemp("ppo")
    recipe = write_recipe(
        root / "tiny.yaml",
        "minigrid/mt3/mtppo/gmp.yaml",
        model={
            "init_args": {
                "total_steps_per_task": 400,
                "steps_per_task_per_batch": 100,
                "envs_per_task": 2,
                "policy_epochs": 2,
                "policy_minibatch_per_task": 64,
                "critic_batch_per_task": 100,
                "eval_every_steps_per_task": 0,
            }
        },
        trainer={
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": "runs", "name": "tiny", "version": "seed0"},
            }
        },
    )
    result = run_cli("fit", "--config", str(recipe), cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = root / "runs" / "tiny" / "seed0"
    return Run(folder, folder / "checkpoints" / "last.ckpt")


def _evaluate(*args: str) -> int:
    """``torchrl-sparse evaluate ARGS`` in process; its exit status."""
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["evaluate", *args])
    return exit_info.value.code


def _files(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_ppo_run_folder_gives_the_modules_own_evaluation(ppo_run: Run, capsys) -> None:
    before = _files(ppo_run.folder)
    status = _evaluate(str(ppo_run.folder), "--episodes", "3", "--no-deterministic", "--seed", "7")
    out = capsys.readouterr().out
    assert status == 0
    report_path = ppo_run.folder / "eval" / "last-frame1200-sampled-seed7-3ep.json"
    report = json.loads(report_path.read_text())
    assert (report["algorithm"], report["frames"], report["tasks"]) == ("MultiTaskPPO", 1200, TASKS)
    assert (report["episodes_per_task"], report["deterministic"], report["seed"]) == (3, False, 7)

    # The module's own evaluation, loaded by hand with the same settings and seed.
    module = MultiTaskPPO.load_from_checkpoint(
        ppo_run.checkpoint, eval_episodes_per_task=3, eval_deterministic=False, seed=7
    )
    torch.manual_seed(7)
    assert report["scalars"] == module.evaluate()
    assert set(report["scalars"]) == {
        *(f"charts/eval/{tag}/{task}" for tag in ("normalized_return", "episode_return")
          for task in TASKS),
        "charts/eval/normalized_return_mean",
        "charts/eval/episode_return_mean",
    }  # fmt: skip
    mean = report["scalars"]["charts/eval/normalized_return_mean"]
    mean_row = next(line for line in out.splitlines() if line.startswith("mean over tasks"))
    assert mean_row.split()[3] == f"{mean:.3f}"  # the module's metric first
    assert "3 episodes per task, sampled actions, seed 7" in out
    assert f"Written: {report_path}" in out
    # The run itself is untouched: events, checkpoints, config, summary.
    after = _files(ppo_run.folder)
    assert {p: b for p, b in after.items() if p != report_path} == before


def test_sparse_checkpoint_is_evaluated_with_its_pruned_weights_at_zero(ppo_run: Run) -> None:
    module, sparsity = load_module(ppo_run.checkpoint)
    summary = json.loads((ppo_run.folder / "summary.json").read_text())
    assert sparsity == pytest.approx(summary["sparsity"]) and sparsity == pytest.approx(0.95, 1e-3)
    saved = torch.load(ppo_run.checkpoint, weights_only=True)["callbacks"]
    masks = next(state["masks"] for key, state in saved.items() if "SparsityCallback" in key)
    # The weights as stored (plain Lightning loading) and as evaluated.
    for loaded in (MultiTaskPPO.load_from_checkpoint(ppo_run.checkpoint), module):
        tensors = {
            f"{layer.name}.{kind}": param
            for layer in find_layers(loaded.loss_module)
            for kind, param in layer.params.items()
        }
        assert masks and set(masks) <= set(tensors)
        for name, mask in masks.items():
            assert not tensors[name][~mask].any(), name
            assert tensors[name][mask].any(), name


def test_ppo_videos_of_every_task(ppo_run: Run, tmp_path: Path, capsys) -> None:
    status = _evaluate(
        "--ckpt_path", str(ppo_run.checkpoint), "--episodes", "1", "--video", str(tmp_path / "v"),
        "--out", str(tmp_path / "eval.json"),
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "eval.json").read_text())
    assert sorted(video["task"] for video in report["videos"]) == sorted(TASKS)
    for video in report["videos"]:
        path = Path(video["path"])
        assert path == tmp_path / "v" / f"{video['task']}-episode0.gif"
        assert path.stat().st_size > 0
        with Image.open(path) as gif:
            # The reset and every step, 100 ms each (Pillow merges repeated frames).
            durations = []
            for index in range(gif.n_frames):
                gif.seek(index)
                durations.append(gif.info["duration"])
            assert sum(durations) == 100 * (video["steps"] + 1)
            assert gif.size[0] >= 7 * 16  # the env's own rendering, 16 pixels per cell
    assert "Video: " in capsys.readouterr().out


def test_sac_checkpoint_repeats_the_evaluation_training_logged(tmp_path: Path, capsys) -> None:
    """Deterministic SAC evaluation at the checkpoint's frame, without its replay buffer."""
    module = MultiTaskSAC(
        ["reach-v3", "window-close-v3"], width=32, num_layers=2, max_episode_steps=20,
        total_frames=200, frames_per_batch=100, learning_starts=100, utd_ratio=0.2,
        batch_size=20, buffer_size=1_000, eval_every_frames=100, eval_episodes_per_task=2,
    )  # fmt: skip
    trainer = pl.Trainer(
        max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[FrameCheckpoint(tmp_path / "checkpoints")],
    )  # fmt: skip
    trainer.fit(module)
    logged = {k: v for k, v in module.latest.items() if k.startswith("charts/eval/")}
    assert module._last_eval == module.frames == 200  # the last evaluation was at the end
    shutil.rmtree(tmp_path / "checkpoints" / "replay_buffer")  # not needed to evaluate

    report = evaluate_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert (report["algorithm"], report["metric"], report["frames"]) == (
        "MultiTaskSAC",
        "success",
        200,
    )
    assert report["scalars"] == logged
    assert logged["charts/eval/episode_return_mean"] != 0.0

    assert _evaluate(str(tmp_path), "--video", str(tmp_path / "v")) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: --video records MiniGrid episodes") and error.count("\n") == 1
    assert not (tmp_path / "v").exists() and not (tmp_path / "eval").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give a run folder or checkpoint, or --ckpt_path, exactly once"),
        (["RUN", "--ckpt_path", "RUN/checkpoints/last.ckpt"], "exactly once"),
        (["RUN/missing"], "RUN/missing does not exist."),
        (["RUN/empty"], "No checkpoint in RUN/empty: expected RUN/empty/checkpoints/last.ckpt"),
        (["RUN", "--episodes", "0"], "argument --episodes: must be >= 1, got 0"),
        (["RUN", "--episodes", "many"], "argument --episodes: expected a positive integer"),
        (["RUN", "--video_episodes", "-1"], "argument --video_episodes: must be >= 1, got -1"),
        (["RUN/config.yaml"], "RUN/config.yaml is not a readable checkpoint"),
    ],
)
def test_bad_input_is_one_error_line(ppo_run: Run, capsys, args: list[str], message: str) -> None:
    (ppo_run.folder / "empty").mkdir(exist_ok=True)
    args = [arg.replace("RUN", str(ppo_run.folder)) for arg in args]
    assert _evaluate(*args) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert message.replace("RUN", str(ppo_run.folder)) in error


def test_console_script_error(tmp_path: Path) -> None:
    result = run_cli("evaluate", str(tmp_path), cwd=tmp_path, console_script=True)
    assert result.returncode == 2
    assert result.stderr == (
        f"error: No checkpoint in {tmp_path}: expected {tmp_path}/checkpoints/last.ckpt (a run "
        "folder) or a .ckpt file.\n"
    )


def test_a_trainer_fit_ppo_checkpoint_evaluates_without_metaworld(tmp_path: Path) -> None:
    """No class path recorded: the hyper-parameters tell PPO, and SAC is never imported."""
    trainer = pl.Trainer(logger=False, enable_checkpointing=False)
    trainer.strategy.connect(MultiTaskPPO("MT3", eval_episodes_per_task=1))
    trainer.save_checkpoint(tmp_path / "untrained.ckpt")
    shadow = tmp_path / "shadow" / "metaworld"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError('no', name='metaworld')\n")
    script = (
        "import sys\n"
        "from torchrl_sparse.lightning.evaluate import main\n"
        f"assert main(['{tmp_path / 'untrained.ckpt'}', '--deterministic']) == 0\n"
        "print('metaworld modules:', [m for m in sys.modules if m.startswith('metaworld')])\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'shadow'}{os.pathsep}{REPO}",
           "PYTHONWARNINGS": "ignore"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MultiTaskPPO checkpoint" in result.stdout and "metaworld modules: []" in result.stdout
    assert (tmp_path / "eval" / "untrained-frame0-deterministic-seed0-1ep.json").is_file()
