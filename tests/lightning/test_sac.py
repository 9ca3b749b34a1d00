"""Multi-task SAC on MetaWorld MT10 through the real CLI: a tiny fit, resume, NaN guard, recipes.

Building MT10 takes about 8 s per process, so the fits are shared: one module-scoped run is
interrupted by SIGTERM at 400 frames (after two evaluations) and resumed to 500 frames, while
the NaN-guard run goes on in parallel.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict

from torchrl_sparse.envs import METAWORLD_SUITES
from torchrl_sparse.lightning import MultiTaskSAC
from torchrl_sparse.lightning.cli import load_recipe, main, run
from torchrl_sparse.lightning.figures import read_scalars

from .conftest import REPO, run_cli, write_recipe

TASKS = list(METAWORLD_SUITES["MT10"])
SAC_RECIPES = sorted(
    str(p.relative_to(REPO)) for p in (REPO / "recipes" / "metaworld" / "mt10").rglob("*.yaml")
)
# A tiny run: 100-frame batches (10 steps of the 10 tasks), 20-step episodes, 2 updates per batch
# on 20 transitions (2 per task), GMP on actor and critics reaching 90% at 300 frames.
TINY = {
    "width": 32,
    "num_layers": 2,
    "max_episode_steps": 20,
    "total_frames": 500,
    "frames_per_batch": 100,
    "learning_starts": 100,
    "utd_ratio": 0.2,
    "batch_size": 20,
    "buffer_size": 1_000,
    "eval_every_frames": 200,
    "eval_episodes_per_task": 1,
}
SPARSITY = {
    "class_path": "torchrl_sparse.lightning.SparsityCallback",
    "init_args": {
        "groups": {"actor_network.*": 0.9, "qvalue_network.*": 0.9},
        "method": {
            "class_path": "torchrl_sparse.sparse.GMP",
            "init_args": {
                "schedule": {
                    "class_path": "torchrl_sparse.sparse.CubicSchedule",
                    "init_args": {"start": 0, "end": 300, "update_every": 100},
                }
            },
        },
    },
}

MONITOR = {
    "class_path": "torchrl_sparse.lightning.PlasticityMonitorCallback",
    "init_args": {
        "metrics": ["dormant_ratio", "srank", "grad_norm", "fisher_trace"],
        "networks": ["actor", "critic"],
        "every_n_frames": 200,
        "batch_size": 64,
    },
}


def tiny_recipe(
    path: Path, callbacks: list[dict], name: str = "tiny", **model_args: float | str
) -> Path:
    """The base SAC recipe shrunk to ``TINY``, logging to ``<path's dir>/runs/<name>/seed0``."""
    return write_recipe(
        path,
        "_base/sac.yaml",
        model={"init_args": {**TINY, **model_args}},
        trainer={
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {
                    "save_dir": str(path.parent / "runs"),
                    "name": name,
                    "version": "seed0",
                },
            },
            "callbacks": callbacks,
        },
    )


@dataclass
class Runs:
    root: Path
    log_dir: Path
    checkpoint: Path
    killed: subprocess.CompletedProcess
    resumed: subprocess.CompletedProcess
    buffer_at_kill: Path
    checkpoint_at_kill: dict
    nan: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("sac")
    nan_dir = root / "nan"
    nan_dir.mkdir()
    # lr=1e30: the first Adam step moves every weight by ~1e30, the next losses overflow.
    nan_recipe = tiny_recipe(nan_dir / "nan.yaml", [], lr=1.0e30, eval_every_frames=0)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    nan_process = subprocess.Popen(
        [sys.executable, "-m", "torchrl_sparse", "fit", "--config", str(nan_recipe)],
        cwd=nan_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        signal_at_400 = {
            "class_path": "tests.lightning.signals.SignalAtFrames",
            "init_args": {"frames": 400, "signum": int(signal.SIGTERM)},
        }
        recipe = tiny_recipe(root / "tiny.yaml", [SPARSITY, MONITOR])
        interrupted = tiny_recipe(root / "interrupted.yaml", [SPARSITY, MONITOR, signal_at_400])
        killed = run_cli("fit", "--config", str(interrupted), cwd=root)
        log_dir = root / "runs" / "tiny" / "seed0"
        checkpoint = log_dir / "checkpoints" / "last.ckpt"
        buffer_at_kill = root / "buffer_at_kill"
        if (log_dir / "checkpoints" / "replay_buffer").exists():
            shutil.copytree(log_dir / "checkpoints" / "replay_buffer", buffer_at_kill)
        state = torch.load(checkpoint, weights_only=False) if checkpoint.exists() else {}
        resumed = run_cli("fit", "--config", str(recipe), "--ckpt_path", "last", cwd=root)
        stdout, stderr = nan_process.communicate(timeout=240)
    finally:
        if nan_process.poll() is None:
            nan_process.kill()
    return Runs(
        root=root,
        log_dir=log_dir,
        checkpoint=checkpoint,
        killed=killed,
        resumed=resumed,
        buffer_at_kill=buffer_at_kill,
        checkpoint_at_kill=state.get("torchrl_sparse", {}),
        nan=subprocess.CompletedProcess(nan_process.args, nan_process.returncode, stdout, stderr),
    )


def load_buffer_storage(path: Path) -> tuple[int, TensorDict]:
    length = json.loads((path / "storage" / "storage_metadata.json").read_text())["len"]
    return length, TensorDict.load_memmap(path / "storage")


def test_tiny_fit_logs_against_frames(runs: Runs) -> None:
    assert runs.killed.returncode != 0  # SIGTERM at 400 frames
    assert runs.resumed.returncode == 0, runs.resumed.stderr[-3000:]
    scalars = read_scalars(runs.log_dir)
    steps = {tag: [step for step, _ in values] for tag, values in scalars.items()}
    assert steps["sparsity/total"] == [100, 200, 300, 400, 500]
    assert scalars["sparsity/total"][-1][1] == pytest.approx(0.9, abs=0.01)
    assert steps["charts/sps"] == [100, 200, 300, 400, 500]
    for tag in ("losses/loss_actor", "losses/loss_qvalue", "losses/loss_alpha", "losses/alpha",
                "losses/entropy", f"charts/alpha/{TASKS[0]}"):  # fmt: skip
        assert steps[tag] == [100, 200, 300, 400, 500], tag
    # 20-step episodes: every task finishes one episode every 200 frames.
    for task in TASKS:
        assert steps[f"charts/episode_return/{task}"] == [200, 400]
        assert steps[f"charts/success/{task}"] == [200, 400]
        assert steps[f"charts/eval/success/{task}"] == [200, 400]
        assert all(0 <= v <= 1 for _, v in scalars[f"charts/eval/success/{task}"])
    assert steps["charts/eval/success_mean"] == [200, 400]
    # Plasticity of the actor and of the first online Q-network, under the sparsity masks.
    for network in ("actor", "critic"):
        for metric in ("dormant_ratio", "srank", "grad_norm"):
            assert steps[f"plasticity/{network}/{metric}"] == [200, 400], (network, metric)
        assert all(v > 0 for _, v in scalars[f"plasticity/{network}/grad_norm"])
    assert "plasticity/actor/fisher_trace" in steps
    assert "plasticity/critic/fisher_trace" not in steps
    # The per-task temperatures move apart (each is trained on its own task's samples).
    final_alphas = {scalars[f"charts/alpha/{task}"][-1][1] for task in TASKS}
    assert len(final_alphas) > 1


def test_checkpoint_references_the_replay_buffer(runs: Runs) -> None:
    info = runs.checkpoint_at_kill["replay_buffer"]
    assert runs.checkpoint_at_kill["frames"] == 400
    assert info["frames"] == 400 and info["length"] == 400
    assert Path(info["path"]) == runs.log_dir / "checkpoints" / "replay_buffer"
    length, storage = load_buffer_storage(runs.buffer_at_kill)
    assert length == 400
    # [rows, tasks] layout: column k holds task k's transitions.
    assert storage.shape == (100, 10)
    assert torch.equal(storage["task_id"][:40], torch.arange(10).expand(40, 10))


def test_resume_restores_the_replay_buffer(runs: Runs) -> None:
    assert runs.resumed.returncode == 0, runs.resumed.stderr[-3000:]
    sizes = dict(read_scalars(runs.log_dir)["charts/replay_buffer_size"])
    assert sizes[400] == 400 and sizes[500] == 500  # 400 restored + 100 collected
    final = torch.load(runs.checkpoint, weights_only=False)["torchrl_sparse"]
    assert final["frames"] == 500 and final["replay_buffer"]["length"] == 500
    _, before = load_buffer_storage(runs.buffer_at_kill)
    length, after = load_buffer_storage(Path(final["replay_buffer"]["path"]))
    assert length == 500
    for key in before.keys(include_nested=True, leaves_only=True):
        assert torch.equal(after[key][:40], before[key][:40]), key
    assert not torch.equal(after["observation"][40:50], before["observation"][40:50])


def test_nan_guard_names_the_loss_and_frame(runs: Runs) -> None:
    assert runs.nan.returncode != 0
    assert "FloatingPointError" in runs.nan.stderr
    message = next(line for line in runs.nan.stderr.splitlines() if "FloatingPointError:" in line)
    # Either a loss term is non-finite, or the actor's distribution refuses non-finite inputs.
    named = r"(loss_(qvalue|actor|alpha) is \S+|the SAC loss hit non-finite values)"
    assert re.search(named + r" at frame 100\b", message), message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"suite": "MT3"}, "Unknown MetaWorld suite 'MT3'; allowed: ['MT10', 'MT50'] or a list"),
        ({"suite": ["reach-v3", "fly-v3"]}, "unknown: ['fly-v3']"),
        ({"arch": "paco"}, "Unknown arch 'paco'; allowed: ['mtsac', 'moe', 'moore']"),
        ({"batch_size": 1285}, "batch_size=1285 must be a multiple of the number of tasks (10)"),
        ({"utd_ratio": 0.001}, "utd_ratio=0.001 gives 0 updates per batch of 1000 frames"),
        ({"tau": 0.0}, "tau must be in (0, 1], got 0.0"),
        ({"learning_starts": -1}, "learning_starts must be >= 0, got -1"),
    ],
)
def test_bad_model_config(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as error:
        MultiTaskSAC(**kwargs)
    assert message in str(error.value)


def test_module_defaults_are_the_papers() -> None:
    module = MultiTaskSAC()
    hp = module.hparams
    assert (hp.width, hp.num_layers, hp.num_qvalue_nets, hp.batch_size) == (400, 3, 2, 1280)
    assert (hp.buffer_size, hp.lr, hp.gamma, hp.tau, hp.max_grad_norm) == (
        1e6,
        3e-4,
        0.99,
        5e-3,
        1.0,
    )
    assert (hp.total_frames, hp.max_episode_steps, hp.eval_episodes_per_task) == (2e7, 500, 50)
    assert module.loss_module.log_alpha.shape == (10,)
    assert module.loss_module.qvalue_network_params.batch_size == (2,)
    assert module.updates_per_batch == 100  # one update per step of the 10 tasks
    wide = MultiTaskSAC(critic_width=800)
    critic = sum(p[0].numel() for p in wide.loss_module.qvalue_network_params.values(True, True))
    actor = sum(p.numel() for p in wide.actor.parameters())
    assert critic > 3 * actor  # the critic-only scaling widens only the critics


def test_sac_recipes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [
        f"recipes/metaworld/mt10/{name}.yaml"
        for name in (
            "dense",
            "gmp_actor",
            "gmp_actor_critic",
            "scaled_critic_only",
            "scaled_moore_width",
        )
    ] == SAC_RECIPES
    widths = {}
    for recipe in SAC_RECIPES:
        config = load_recipe(REPO / recipe)
        args = config["model"]["init_args"]
        widths[Path(recipe).stem] = (args["width"], args["critic_width"])
        sparsity = [c for c in config["trainer"]["callbacks"] if "Sparsity" in c["class_path"]]
        if "gmp" in recipe:
            (callback,) = sparsity
            schedule = callback["init_args"]["method"]["init_args"]["schedule"]["init_args"]
            assert schedule == {"start": 0.05, "end": 0.8, "update_every": 5000}
            groups = set(callback["init_args"]["groups"])
            critic = "qvalue_network.*" in groups
            assert critic == recipe.endswith("actor_critic.yaml")
            assert set(callback["init_args"]["groups"].values()) == {0.95}
        else:
            assert not sparsity
    assert widths["scaled_moore_width"] == (800, 800)
    assert widths["scaled_critic_only"] == (400, 800)
    monkeypatch.chdir(REPO)
    output = io.StringIO()
    with contextlib.redirect_stdout(output), pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "recipes/metaworld/mt10/gmp_actor_critic.yaml", "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "class_path: torchrl_sparse.lightning.MultiTaskSAC" in output.getvalue()


def test_ddp_two_ranks_hold_identical_masks_and_parameters(tmp_path: Path) -> None:
    dump = {
        "class_path": "tests.lightning.signals.DumpRankState",
        "init_args": {"dirpath": str(tmp_path)},
    }
    scratch = tmp_path / "scratch"
    recipe = tiny_recipe(
        tmp_path / "ddp.yaml",
        [SPARSITY, dump],
        name="ddp",
        total_frames=400,
        eval_every_frames=0,
        buffer_scratch_dir=str(scratch),
    )
    recipe = write_recipe(
        tmp_path / "ddp_2.yaml",
        str(recipe),
        trainer={"strategy": "ddp", "devices": 2, "accelerator": "cpu"},
    )
    result = run_cli("fit", "--config", str(recipe), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    assert rank0["frames"] == rank1["frames"] == 400  # 2 ranks x 2 batches of 100 frames
    # GMP reached 90% at 300 frames: masks on the actor and on both stacked critics.
    assert rank0["masks"] and rank0["masks"].keys() == rank1["masks"].keys()
    for name, mask in rank0["masks"].items():
        assert torch.equal(mask, rank1["masks"][name]), name
    # Online and target critics, temperatures and actor: all identical across ranks.
    assert any("target_qvalue" in name for name in rank0["params"])
    for name, value in rank0["params"].items():
        assert torch.equal(value, rank1["params"][name]), name
    # ... after real updates (rank 0 logs them, against the frames of both ranks).
    log_dir = tmp_path / "runs" / "ddp" / "seed0"
    assert [step for step, _ in read_scalars(log_dir)["losses/loss_qvalue"]] == [200, 400]
    # Each rank keeps its own replay buffer of its own environments.
    checkpoints = log_dir / "checkpoints"
    (len0, buffer0), (len1, buffer1) = (
        load_buffer_storage(checkpoints / f"replay_buffer_rank{rank}") for rank in (0, 1)
    )
    assert len0 == len1 == 200
    # ... also in memory: the shared scratch directory is split by rank.
    assert sorted(path.name for path in scratch.iterdir()) == ["rank0", "rank1"]
    assert not torch.equal(buffer0["observation"][:20], buffer1["observation"][:20])


def test_cpu_recipe_runs_two_named_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    cli = run(["--config", "recipes/metaworld/cpu/reach_window_close.yaml"], run=False)
    assert cli.model.task_names == ["reach-v3", "window-close-v3"]
    assert (cli.model.frames_per_batch, cli.model.updates_per_batch) == (1000, 500)
