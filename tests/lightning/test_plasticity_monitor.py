"""The plasticity monitor in real Lightning trainings: metrics do not change the run."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from torchrl_sparse.lightning import MultiTaskPPO, PlasticityMonitorCallback
from torchrl_sparse.plasticity import ALL_METRICS

from .conftest import TINY_PPO

# 4 batches of 30 steps per task (90 frames on MT3)
TINY = {**TINY_PPO, "total_steps_per_task": 120}


def _fit(root: Path, callbacks: list[pl.Callback], arch: str = "moe") -> MultiTaskPPO:
    module = MultiTaskPPO("MT3", arch=arch, **TINY)
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    trainer.fit(module)
    return module


def test_metrics_do_not_change_training(tmp_path: Path) -> None:
    reference = _fit(tmp_path, []).state_dict()
    every_batch = PlasticityMonitorCallback(list(ALL_METRICS), every_n_frames=90, batch_size=64)
    sparse_cadence = PlasticityMonitorCallback(
        ["dormant_ratio", "srank", "fisher_trace"], every_n_frames=180, batch_size=32, seed=1
    )
    for callback in (every_batch, sparse_cadence):
        trained = _fit(tmp_path, [callback]).state_dict()
        assert callback.monitor._schedule.count == 360 // callback.every_n_frames
        for key, value in reference.items():
            assert torch.equal(trained[key], value), key


def test_a_failing_metric_is_logged_missing_and_warned_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: object, **kwargs: object) -> float:
        raise ValueError("fisher_trace(method='ghost'): a layer's rows mix samples")

    monkeypatch.setattr("torchrl_sparse.plasticity.monitor.fisher_trace", crash)
    callback = PlasticityMonitorCallback(
        ["dormant_ratio", "fisher_trace"], networks=["actor"], every_n_frames=90, batch_size=32
    )
    with pytest.warns(RuntimeWarning, match="fisher_trace could not be computed") as caught:
        module = _fit(tmp_path, [callback], arch="mtppo")
    assert module.frames == 360  # the run went on
    assert len([w for w in caught if "fisher_trace" in str(w.message)]) == 1
    assert callback.monitor._schedule.count == 4
    assert math.isnan(module.latest["plasticity/actor/fisher_trace"])
    assert 0 <= module.latest["plasticity/actor/dormant_ratio"] <= 1
