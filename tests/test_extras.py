"""Extras install alone: the MiniGrid PPO path runs with MetaWorld unimportable."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PPO_WITHOUT_METAWORLD = """
import contextlib, io, sys
from torchrl_sparse.lightning import MultiTaskPPO
from torchrl_sparse.lightning.cli import main

module = MultiTaskPPO("MT3", envs_per_task=1, steps_per_task_per_batch=10)
batch = next(iter(module.train_dataloader()))
assert batch.numel() == 30, batch.numel()
module._loader.shutdown()
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        main(["fit", "--config", "recipes/minigrid/mt3/moore/gmp.yaml", "--print_config"])
    except SystemExit as error:
        assert error.code in (0, None), error.code
assert "MultiTaskPPO" in out.getvalue()
import torchrl_sparse.envs as envs
try:
    envs.make_metaworld_env
except ModuleNotFoundError as error:
    assert "pip install 'torchrl-sparse[metaworld]'" in str(error), error
else:
    raise AssertionError("MetaWorld imported although it is unimportable")
print("loaded:", sorted(m for m in sys.modules if m.startswith("metaworld")))
"""


def test_minigrid_ppo_path_runs_without_metaworld(tmp_path: Path) -> None:
    shadow = tmp_path / "metaworld"
    shadow.mkdir()
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError('metaworld made unimportable', name='metaworld')\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-c", PPO_WITHOUT_METAWORLD],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loaded: []" in result.stdout


def test_lazy_packages_list_their_names() -> None:
    import torchrl_sparse.envs as envs
    import torchrl_sparse.lightning as lightning

    assert "MultiTaskPPO" in dir(lightning) and "make_minigrid_env" in dir(envs)
    assert lightning.MultiTaskPPO.__name__ == "MultiTaskPPO"
