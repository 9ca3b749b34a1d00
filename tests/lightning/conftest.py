import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


# Batches of 30 steps per task (90 frames on MT3), one short epoch each, no evaluation.
TINY_PPO = {
    "steps_per_task_per_batch": 30,
    "envs_per_task": 1,
    "policy_epochs": 1,
    "policy_minibatch_per_task": 16,
    "critic_batch_per_task": 30,
    "eval_every_steps_per_task": 0,
}
TINY_PPO_FRAMES_PER_BATCH = 90


def write_recipe(path: Path, extends: str, **overrides) -> Path:
    """A test recipe extending a shipped one (``extends`` relative to ``recipes/``)."""
    recipe = {"extends": str(REPO / "recipes" / extends), **overrides}
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def run_cli(
    *args: str, cwd: Path, timeout: float = 240, console_script: bool = False
) -> subprocess.CompletedProcess:
    """Run ``python -m torchrl_sparse`` (or the installed ``torchrl-sparse``) as a user would."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "torchrl_sparse"]
    if console_script:
        command = [str(Path(sys.executable).parent / "torchrl-sparse")]
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def tiny_ppo(tmp_path: Path):
    """A tiny MT3 PPO run: 4 batches of 100 steps per task (300 frames), GMP actor+critic."""

    def make(name: str = "tiny.yaml", **model_args) -> Path:
        init_args = {
            "total_steps_per_task": 400,
            "steps_per_task_per_batch": 100,
            "envs_per_task": 2,
            "policy_epochs": 2,
            "policy_minibatch_per_task": 64,
            "critic_batch_per_task": 100,
            "eval_every_steps_per_task": 200,
            "eval_episodes_per_task": 1,
            **model_args,
        }
        return write_recipe(
            tmp_path / name,
            "minigrid/mt3/mtppo/gmp.yaml",
            model={"init_args": init_args},
            trainer={
                "logger": {
                    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                    "init_args": {"save_dir": "runs", "name": "tiny", "version": "seed0"},
                },
                "callbacks": [
                    {
                        "class_path": "torchrl_sparse.lightning.PlasticityMonitorCallback",
                        "init_args": {
                            "every_n_frames": 600,
                            "batch_size": 256,
                            "metrics": ["dormant_ratio", "srank", "fisher_trace"],
                        },
                    }
                ],
            },
        )

    return make
