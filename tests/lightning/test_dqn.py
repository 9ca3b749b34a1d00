"""DQN on MinAtar through the real CLI: a tiny fit, exact resume, every kind of condition, errors.

One module-scoped pair of runs shares the cost: an uninterrupted GMP run, and the same run
interrupted by SIGTERM at 576 frames then resumed, both started at once; the resumed run must
end bitwise identical (weights, target network, masks, optimizer, replay buffer, counters).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from tensordict import TensorDict

from torchrl_sparse.lightning import DQN, SparsityCallback
from torchrl_sparse.lightning.figures import read_scalars
from torchrl_sparse.sparse import GMP, RigL, Sparsifier

from .conftest import REPO, run_cli, write_recipe

# 16 batches of 64 frames (4 game copies x 16 steps), 16 updates per batch from frame 128,
# target copies every 256 frames, GMP to 90% between frames 0 and 768 (every 128 frames).
TINY = {
    "total_frames": 1024,
    "frames_per_batch": 64,
    "learning_starts": 128,
    "target_update_every_frames": 256,
    "buffer_size": 2048,
    "eps_decay_frames": 512,
    "eval_every_frames": 512,
    "eval_episodes": 1,
    "width": 0.5,
}
GMP_CALLBACK = {
    "class_path": "torchrl_sparse.lightning.SparsityCallback",
    "init_args": {
        "groups": {"value_network.*": 0.9},
        "distribution": {"class_path": "torchrl_sparse.sparse.ERK"},
        "method": {
            "class_path": "torchrl_sparse.sparse.GMP",
            "init_args": {
                "schedule": {
                    "class_path": "torchrl_sparse.sparse.CubicSchedule",
                    "init_args": {"start": 0, "end": 768, "update_every": 128},
                }
            },
        },
    },
}
MONITOR = {
    "class_path": "torchrl_sparse.lightning.PlasticityMonitorCallback",
    "init_args": {"metrics": ["dormant_ratio", "srank"], "every_n_frames": 512, "batch_size": 64},
}


def tiny_recipe(path: Path, name: str, callbacks: list[dict], **model_args) -> Path:
    return write_recipe(
        path,
        "dqn/minatar/breakout/dense.yaml",
        model={"init_args": {**TINY, **model_args}},
        trainer={
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": str(path.parent / "runs"), "name": name},
            },
            "callbacks": callbacks,
        },
    )


@dataclass
class Runs:
    root: Path
    full: subprocess.CompletedProcess
    killed: subprocess.CompletedProcess
    resumed: subprocess.CompletedProcess
    full_dir: Path
    resumed_dir: Path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("dqn")
    full_recipe = tiny_recipe(root / "full.yaml", "full", [GMP_CALLBACK, MONITOR])
    signal_at = {
        "class_path": "tests.lightning.signals.SignalAtFrames",
        "init_args": {"frames": 576, "signum": int(signal.SIGTERM)},
    }
    interrupted = tiny_recipe(root / "cut.yaml", "cut", [GMP_CALLBACK, MONITOR, signal_at])
    resumed_recipe = tiny_recipe(root / "resume.yaml", "cut", [GMP_CALLBACK, MONITOR])
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    full = subprocess.Popen(
        [sys.executable, "-m", "torchrl_sparse", "fit", "--config", str(full_recipe)],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        killed = run_cli("fit", "--config", str(interrupted), cwd=root)
        resumed = run_cli("fit", "--config", str(resumed_recipe), "--ckpt_path", "last", cwd=root)
        stdout, stderr = full.communicate(timeout=300)
    finally:
        if full.poll() is None:
            full.kill()
    return Runs(
        root=root,
        full=subprocess.CompletedProcess(full.args, full.returncode, stdout, stderr),
        killed=killed,
        resumed=resumed,
        full_dir=root / "runs" / "full" / "seed0",
        resumed_dir=root / "runs" / "cut" / "seed0",
    )


def final_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)


def test_tiny_fit_logs_against_frames(runs: Runs) -> None:
    assert runs.full.returncode == 0, runs.full.stderr[-3000:]
    scalars = read_scalars(runs.full_dir)
    steps = {tag: [step for step, _ in values] for tag, values in scalars.items()}
    every_batch = list(range(64, 1025, 64))
    for tag in ("charts/sps", "charts/epsilon", "charts/replay_buffer_size", "sparsity/total"):
        assert steps[tag] == every_batch, tag
    # Updates start with the batch that passes learning_starts=128 (frames 132, 136, ...).
    assert steps["losses/td_loss"] == every_batch[2:]
    assert steps["losses/q_value"] == every_batch[2:]
    assert dict(scalars["charts/updates"])[1024] == (1024 - 128) // 4
    epsilon = dict(scalars["charts/epsilon"])  # at each batch's start
    assert epsilon[64] == 1.0 and epsilon[128] == 1.0
    assert epsilon[512] == pytest.approx(1.0 - 0.99 * (448 - 128) / 512)
    assert epsilon[1024] == pytest.approx(0.01)
    assert steps["charts/eval/episode_return/Breakout"] == [512, 1024]
    assert steps["charts/eval/episode_return_mean"] == [512, 1024]
    assert "charts/episode_return/Breakout" in steps  # Breakout episodes are short
    for metric in ("dormant_ratio", "srank"):
        assert steps[f"plasticity/qvalue/{metric}"] == [512, 1024], metric
    assert scalars["sparsity/total"][-1][1] == pytest.approx(0.9, abs=0.01)
    summary = json.loads((runs.full_dir / "summary.json").read_text())
    assert summary["algorithm"] == "DQN" and summary["benchmark"] == "minatar"
    assert summary["metric"] == "episode_return" and summary["tasks"] == ["Breakout"]
    assert summary["arch"] == "minatar" and summary["finished"]
    assert summary["suite"] == "Breakout"  # reports group DQN runs by game


def test_target_network_shares_masks_and_follows_hard_copies(runs: Runs) -> None:
    state = final_state(runs.full_dir)
    weights = state["state_dict"]
    masks = next(v for k, v in state["callbacks"].items() if "SparsityCallback" in k)["masks"]
    online = {
        k.removeprefix("loss_module.value_network_params."): v
        for k, v in weights.items()
        if k.startswith("loss_module.value_network_params.")
    }
    target = {
        k.removeprefix("loss_module.target_value_network_params."): v
        for k, v in weights.items()
        if k.startswith("loss_module.target_value_network_params.")
    }
    assert online.keys() == target.keys() and len(online) == 6
    # The last update (frame 1024) is a multiple of 256: the target is an exact copy.
    for key in online:
        assert torch.equal(online[key], target[key]), key
    assert len(masks) == 3  # the weights of the convolution, the hidden and the output layer
    assert sum(int((~mask).sum()) for mask in masks.values()) > 0
    for name, mask in masks.items():
        weight = target[name.removeprefix("value_network.")]
        assert torch.all(weight[~mask] == 0), name


def test_sigterm_and_resume_is_bitwise_identical(runs: Runs) -> None:
    assert runs.killed.returncode == 143, runs.killed.stderr[-3000:]
    assert runs.resumed.returncode == 0, runs.resumed.stderr[-3000:]
    full, resumed = final_state(runs.full_dir), final_state(runs.resumed_dir)
    assert full["torchrl_sparse"]["frames"] == resumed["torchrl_sparse"]["frames"] == 1024
    assert full["torchrl_sparse"]["updates"] == resumed["torchrl_sparse"]["updates"] == 224
    for key, value in full["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    for a, b in zip(
        full["optimizer_states"][0]["state"].values(),
        resumed["optimizer_states"][0]["state"].values(),
        strict=True,
    ):
        for name in a:
            assert torch.equal(a[name], b[name]), name
    full_masks = next(v for k, v in full["callbacks"].items() if "SparsityCallback" in k)
    resumed_masks = next(v for k, v in resumed["callbacks"].items() if "SparsityCallback" in k)
    assert full_masks["masks"].keys() == resumed_masks["masks"].keys()
    for name, mask in full_masks["masks"].items():
        assert torch.equal(mask, resumed_masks["masks"][name]), name
    buffers = []
    for state in (full, resumed):
        path = Path(state["torchrl_sparse"]["replay_buffer"]["path"])
        buffers.append(TensorDict.load_memmap(path / "storage"))
    for key in buffers[0].keys(include_nested=True, leaves_only=True):
        assert torch.equal(buffers[0][key], buffers[1][key]), key
    assert buffers[0]["observation"].dtype == torch.uint8
    curves = [dict(read_scalars(d)["charts/eval/episode_return_mean"]) for d in
              (runs.full_dir, runs.resumed_dir)]  # fmt: skip
    assert curves[0] == curves[1]


def fit_in_process(module: DQN, callbacks: list[pl.Callback] | None = None) -> pl.Trainer:
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks or [],
    )
    trainer.fit(module)
    return trainer


def test_target_network_stays_until_its_first_copy() -> None:
    module = DQN(**{**TINY, "eval_every_frames": 0, "target_update_every_frames": 4096,
                    "total_frames": 256, "learning_starts": 0})  # fmt: skip
    before = module.loss_module.target_value_network_params.clone()
    fit_in_process(module)
    online = module.loss_module.value_network_params
    after = module.loss_module.target_value_network_params
    for key in before.keys(True, True):
        assert torch.equal(before[key], after[key]), key
    assert any(not torch.equal(online[k], after[k]) for k in before.keys(True, True))


def test_no_bias_network_has_no_bias_parameters() -> None:
    module = DQN(bias=False)
    names = [n for n, _ in module.q_network.named_parameters()]
    assert names and not any(n.endswith("bias") for n in names)
    assert sum(p.numel() for p in module.q_network.parameters()) == 576 + 131072 + 384


def test_exploration_follows_the_frame_schedule() -> None:
    module = DQN(**{**TINY, "eval_every_frames": 0, "total_frames": 320})
    seen: list[tuple[int, float]] = []

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, *args) -> None:
            seen.append((pl_module.frames, float(pl_module.exploration.eps)))

    fit_in_process(module, [Record()])
    assert [f for f, _ in seen] == list(range(0, 320, 64))
    assert [e for _, e in seen] == pytest.approx([module.epsilon(f) for f, _ in seen])
    assert module.epsilon(128) == 1.0 and module.epsilon(128 + 256) == pytest.approx(0.505)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"game": "Pong"}, "Unknown MinAtar game 'Pong'; allowed: ['Asterix', 'Breakout'"),
        ({"suite": "procgen"}, "Unknown suite 'procgen'; allowed: ['minatar', 'atari']"),
        ({"network": "impala"}, "Unknown Q-network 'impala'; allowed: ['minatar', 'nature']"),
        ({"network": "nature"}, "the Nature CNN reads [frames, 84, 84] observations"),
        ({"optimizer": "sgd"}, "Unknown optimizer 'sgd'; allowed: ['adam', 'rmsprop']"),
        ({"frames_per_batch": 60, "num_envs": 4, "update_every_frames": 8},
         "frames_per_batch=60 (a multiple of num_envs=4) must be a multiple of update_every"),
        ({"learning_starts": 10**8}, "learning_starts=100000000 must be below total_frames"),
        ({"eps_end": 0.5, "eps_start": 0.2}, "eps_end=0.5 must not exceed eps_start=0.2"),
        ({"width": 0}, "width must be > 0"),
    ],
)  # fmt: skip
def test_bad_model_config(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=None) as error:
        DQN(**kwargs)
    assert message in str(error.value)


def test_rigl_before_the_first_gradient_is_refused(tmp_path: Path) -> None:
    rigl = {
        "class_path": "torchrl_sparse.lightning.SparsityCallback",
        "init_args": {
            "groups": {"value_network.*": 0.9},
            "method": {
                "class_path": "torchrl_sparse.sparse.RigL",
                "init_args": {
                    "schedule": {
                        "class_path": "torchrl_sparse.sparse.ConstantSchedule",
                        "init_args": {"update_every": 100},
                    }
                },
            },
        },
    }
    recipe = tiny_recipe(tmp_path / "rigl.yaml", "rigl", [rigl], learning_starts=500)
    result = run_cli("fit", "--config", str(recipe), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: RigL updates the topology at frame 128"), last
    assert "the first gradient step comes at frame 512" in last
    assert not (tmp_path / "runs" / "rigl" / "seed0" / "checkpoints").exists()


def test_sparsifier_refuses_empty_layers_and_missing_biases() -> None:
    module = DQN(bias=False)
    with pytest.raises(ValueError, match="none of the selected layers has a bias"):
        Sparsifier(module.loss_module, {"value_network.*": 0.9}, bias="remove", total_steps=10)
    empty = r"0.999 \(Uniform.*'value_network.module.0.module.head' \(384 weights\) would keep no"
    with pytest.raises(ValueError, match=empty):
        Sparsifier(module.loss_module, {"value_network.*": 0.999}, method=GMP(), total_steps=10)


def test_rigl_grows_by_gradient_in_dqn() -> None:
    """RigL's topology moves after gradient steps, and the target network follows the masks."""
    module = DQN(**{**TINY, "eval_every_frames": 0, "total_frames": 512, "learning_starts": 0,
                    "target_update_every_frames": 64})  # fmt: skip
    from torchrl_sparse.sparse import ConstantSchedule

    callback = SparsityCallback(
        {"value_network.*": 0.8}, method=RigL(schedule=ConstantSchedule(update_every=128))
    )
    fit_in_process(module, [callback])
    sparsifier = callback.sparsifier
    assert sparsifier is not None and sparsifier.stats()["sparsity/total"] == pytest.approx(
        0.8, abs=0.01
    )
    target = module.loss_module.target_value_network_params
    for t, mask in zip(sparsifier.targets, sparsifier.masks, strict=True):
        key = tuple(t.name.removeprefix("value_network.").split("."))
        assert torch.all(target.get(key)[~mask] == 0), t.name


CONDITIONS = [
    "dense_nobias",
    "gmp_0.99_nobias",
    "rigl_0.8",
    "set_0.95_nobias",
    "static_0.9",
]


@pytest.mark.parametrize("condition", CONDITIONS)
def test_every_kind_of_condition_runs_smoke(condition: str, tmp_path: Path) -> None:
    recipe = REPO / "recipes" / "dqn" / "minatar" / "breakout" / f"{condition}.yaml"
    result = run_cli("fit", "--config", str(recipe), "--smoke", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary_path = next((tmp_path / "runs").rglob("summary.json"))
    summary = json.loads(summary_path.read_text())
    assert summary["frames"] == 2048 and summary["finished"]
    expected = 0.0 if condition.startswith("dense") else float(condition.split("_")[1])
    assert (summary["sparsity"] or 0.0) == pytest.approx(expected, abs=0.01)
    config = (summary_path.parent / "config.yaml").read_text()
    assert ("bias: false" in config) == condition.endswith("_nobias")
