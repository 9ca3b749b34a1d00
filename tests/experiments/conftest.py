import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lightning.conftest import REPO, TINY_PPO, write_recipe


@pytest.fixture
def tiny_recipes(tmp_path: Path):
    """Tiny MT3 PPO recipes under ``<tmp>/recipes/`` (so their conditions are their names)."""

    def make(*names: str, total_steps_per_task: int = 120, **model_args) -> list[Path]:
        (tmp_path / "recipes").mkdir(exist_ok=True)
        return [
            write_recipe(
                tmp_path / "recipes" / f"{name}.yaml",
                "minigrid/mt3/mtppo/dense.yaml",
                model={
                    "init_args": {
                        **TINY_PPO,
                        "total_steps_per_task": total_steps_per_task,
                        **model_args,
                    }
                },
            )
            for name in names
        ]

    return make


def sweep_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "torchrl_sparse", "sweep", *args]


def run_sweep(
    *args: str, cwd: Path, timeout: float = 300, path: str | None = None
) -> subprocess.CompletedProcess:
    """``torchrl-sparse sweep ARGS`` as a user runs it (``path``: its ``PATH``)."""
    env = sweep_environment()
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        sweep_command(*args),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def sweep_environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
