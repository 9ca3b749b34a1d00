"""ReDo, Reset and shrink-and-perturb callbacks in tiny trainings through the CLI, and resume."""

from __future__ import annotations

import math
import signal
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from torchrl_sparse.lightning.cli import run

from .conftest import TINY_PPO, TINY_PPO_FRAMES_PER_BATCH, write_recipe


class Snapshot(pl.Callback):
    """Keeps the parameters and optimizer states of the latest batch end.

    Listed before an intervention, it holds what the intervention started from.
    """

    def __init__(self) -> None:
        self.params: dict[str, torch.Tensor] = {}
        self.moments: dict[str, dict[str, torch.Tensor]] = {}

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        self.params, self.moments = _state(trainer, pl_module)


def _state(
    trainer: pl.Trainer, pl_module: pl.LightningModule
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """Parameters by name, and the optimizer state tensors shaped like each of them."""
    params = dict(pl_module.named_parameters())
    moments = {}
    for optimizer in trainer.optimizers:
        for name, p in params.items():
            if p in optimizer.state:
                state = optimizer.state[p].items()
                moments[name] = {k: v.clone() for k, v in state if v.shape == p.shape}
    return {k: v.detach().clone() for k, v in params.items()}, moments


def _fit(
    tmp_path: Path, name: str, arch: str, batches: int, callbacks: list[dict], *extra: str
) -> tuple[object, Path]:
    """Fit the base PPO recipe through the CLI, shrunk to ``batches`` tiny batches."""
    recipe = write_recipe(
        tmp_path / f"{name}.yaml",
        "_base/ppo.yaml",
        model={
            "init_args": {
                "suite": "MT3",
                "arch": arch,
                "total_steps_per_task": 30 * batches,
                **TINY_PPO,
            }
        },
        trainer={"callbacks": callbacks},
    )
    cli = run(["fit", "--config", str(recipe), *extra])
    return cli, tmp_path / "runs" / name / "seed0"


def _callback(name: str, **init_args: object) -> dict:
    return {"class_path": f"torchrl_sparse.lightning.{name}", "init_args": init_args}


SNAPSHOT = {"class_path": "tests.lightning.test_interventions.Snapshot"}


@pytest.mark.parametrize("arch", ["mtppo", "moore"])
def test_redo_recycles_units_for_every_head(arch: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    # fires at the end of the second and last batch, so the final state is ReDo's output
    redo = _callback("ReDoCallback", every_n_frames=2 * TINY_PPO_FRAMES_PER_BATCH, tau=0.8)
    cli, _ = _fit(tmp_path, "redo", arch, 2, [SNAPSHOT, redo])
    module, trainer = cli.model, cli.trainer
    before = next(c for c in trainer.callbacks if isinstance(c, Snapshot))
    params, moments = _state(trainer, module)
    callback = next(c for c in trainer.callbacks if type(c).__name__ == "ReDoCallback")
    assert callback.state_dict()["actor"] == {"steps": 180, "next_at": 360, "count": 1}

    for network in ("actor", "critic"):
        prefix = "actor.module.0.module" if network == "actor" else "critic.module"
        if arch == "mtppo":
            layer, sources = "encoder.conv.4", ["encoder.conv.4"]
        else:
            layer = "encoder.activation"
            sources = [f"encoder.experts.{j}.conv.4" for j in range(2)]
        tag = f"plasticity/{network}/redo/{'0.' if network == 'actor' else ''}{layer}"
        recycled = int(module.latest[tag])
        assert recycled > 0
        # recycled units: bias zeroed, incoming weights re-initialised, their moments reset
        units = None
        for source in sources:
            w, b = f"{prefix}.{source}.weight", f"{prefix}.{source}.bias"
            rows = params[b] == 0
            units = rows if units is None else units
            assert torch.equal(rows, units) and int(rows.sum()) == recycled
            assert (params[w][rows] != before.params[w][rows]).all()
            # other units keep their weights, but for inputs from recycled units upstream
            kept = params[w][~rows]
            assert ((kept == before.params[w][~rows]) | (kept == 0)).all()
            for key, value in moments[w].items():
                assert (value[rows] == 0).all(), key
                assert (before.moments[w][key][rows] != 0).any(), key
        # the outgoing weights of every task head: zero, with zero moments (rows of recycled
        # head units are then re-initialised whole, as ReDo goes layer by layer)
        cols = units.repeat_interleave(16)  # 64 channels x 4 x 4 positions, flattened
        for task in range(3):
            w = f"{prefix}.head.heads.{task}.0.weight"
            kept = params[f"{prefix}.head.heads.{task}.0.bias"] != 0  # head units not recycled
            assert kept.any()
            now, old = params[w][kept], before.params[w][kept]
            assert (now[:, cols] == 0).all() and (old[:, cols] != 0).all()
            assert torch.equal(now[:, ~cols], old[:, ~cols])
            for key, value in moments[w].items():
                now, old = value[kept], before.moments[w][key][kept]
                assert (now[:, cols] == 0).all() and (old[:, cols] != 0).any(), key
                assert torch.equal(now[:, ~cols], old[:, ~cols]), key


def test_reset_reinitialises_every_head_output(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    reset = _callback("ResetCallback", every_n_frames=2 * TINY_PPO_FRAMES_PER_BATCH, max_resets=1)
    cli, _ = _fit(tmp_path, "reset", "moe", 2, [SNAPSHOT, reset])
    before = next(c for c in cli.trainer.callbacks if isinstance(c, Snapshot))
    params, moments = _state(cli.trainer, cli.model)
    callback = next(c for c in cli.trainer.callbacks if type(c).__name__ == "ResetCallback")
    assert callback.state_dict()["critic"] == {"steps": 180, "next_at": 360, "count": 1}
    outputs = {
        f"{prefix}.head.heads.{t}.2.{p}"
        for prefix in ("actor.module.0.module", "critic.module")
        for t in range(3)
        for p in ("weight", "bias")
    }
    assert outputs <= set(params)
    for name, value in params.items():
        if name in outputs:
            assert (value != before.params[name]).all(), name
            assert name not in moments  # optimizer state dropped: a fresh start
            bound = 1 / math.sqrt(128)  # the Linear(128, out) default initialisation
            assert value.abs().max() <= bound, name
        else:
            assert torch.equal(value, before.params[name]), name
            assert name in moments, name


def test_shrink_and_perturb_every_layer(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    snp = _callback(
        "ShrinkAndPerturbCallback",
        shrink=0.5,
        perturb=0.1,
        every_n_frames=2 * TINY_PPO_FRAMES_PER_BATCH,
    )
    cli, _ = _fit(tmp_path, "snp", "mtppo", 2, [SNAPSHOT, snp])
    before = next(c for c in cli.trainer.callbacks if isinstance(c, Snapshot))
    params, _ = _state(cli.trainer, cli.model)
    layers = {
        name: m
        for name, m in cli.model.named_modules()
        if isinstance(m, nn.Linear | nn.Conv2d) and name.startswith(("actor", "critic"))
    }
    assert len(layers) == 2 * (3 + 3 * 2)  # 3 convs and 3 two-layer heads, actor and critic
    for name, layer in layers.items():
        fan_in = layer.weight[0].numel()
        for p in ("weight", "bias"):
            # w <- 0.5 w + 0.1 w_fresh, w_fresh from the default init, |w_fresh| <= 1/sqrt(fan_in)
            noise = params[f"{name}.{p}"] - 0.5 * before.params[f"{name}.{p}"]
            assert 0 < noise.abs().max() <= 0.1 / math.sqrt(fan_in) * (1 + 1e-5), name


def _intervention_states(checkpoint: Path) -> dict[str, dict]:
    state = torch.load(checkpoint, weights_only=False)
    return {
        key.split("{")[0]: value
        for key, value in state["callbacks"].items()
        if "ReDo" in key or "Reset" in key or "ShrinkAndPerturb" in key
    }


def test_interventions_resume_where_they_left_off(tmp_path: Path, monkeypatch) -> None:
    # 4 batches; interrupted after the second: ReDo fires before and after, Reset and
    # shrink-and-perturb only after the resume
    interventions = [
        _callback("ReDoCallback", every_n_frames=2 * TINY_PPO_FRAMES_PER_BATCH, tau=0.8),
        _callback("ResetCallback", every_n_frames=3 * TINY_PPO_FRAMES_PER_BATCH, max_resets=1),
        _callback("ShrinkAndPerturbCallback", every_n_frames=4 * TINY_PPO_FRAMES_PER_BATCH),
    ]
    reference_dir, resumed_dir = tmp_path / "reference", tmp_path / "resumed"
    reference_dir.mkdir()
    resumed_dir.mkdir()
    monkeypatch.chdir(reference_dir)
    _, reference_log = _fit(reference_dir, "all", "moore", 4, interventions)
    expected = _intervention_states(reference_log / "checkpoints" / "last.ckpt")
    assert expected["ReDoCallback"]["actor"] == {"steps": 360, "next_at": 540, "count": 2}
    assert expected["ResetCallback"]["critic"] == {"steps": 360, "next_at": 540, "count": 1}
    assert expected["ShrinkAndPerturbCallback"]["actor"] == {
        "steps": 360,
        "next_at": 720,
        "count": 1,
    }

    monkeypatch.chdir(resumed_dir)
    stop = {
        "class_path": "tests.lightning.signals.SignalAtFrames",
        "init_args": {"frames": 2 * TINY_PPO_FRAMES_PER_BATCH, "signum": int(signal.SIGTERM)},
    }
    with pytest.raises(SystemExit):
        _fit(resumed_dir, "all", "moore", 4, [*interventions, stop])
    checkpoint = resumed_dir / "runs" / "all" / "seed0" / "checkpoints" / "last.ckpt"
    interrupted = _intervention_states(checkpoint)
    assert interrupted["ReDoCallback"]["actor"] == {"steps": 180, "next_at": 360, "count": 1}
    assert interrupted["ResetCallback"]["actor"] == {"steps": 180, "next_at": 270, "count": 0}
    _fit(resumed_dir, "all", "moore", 4, interventions, "--ckpt_path", "last")
    assert _intervention_states(checkpoint) == expected
    reference = torch.load(reference_log / "checkpoints" / "last.ckpt", weights_only=False)
    resumed = torch.load(checkpoint, weights_only=False)
    for name, value in reference["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], value), name
