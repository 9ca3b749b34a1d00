"""What a run shows its user: the summary figure's panels and the progress bar."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.tensorboard import SummaryWriter

from torchrl_sparse.lightning import MultiTaskPPO, PlasticityMonitorCallback, SummaryFigure
from torchrl_sparse.lightning.figures import read_scalars, select_panels, summary_figure

SAC_TASKS = ("reach-v3", "window-close-v3")


def _write_sac_like_run(log_dir: Path) -> None:
    """Events with the tags a MetaWorld SAC run logs, including its plasticity metrics."""
    with SummaryWriter(log_dir) as writer:
        for frames in (1_000, 2_000):
            for task in SAC_TASKS:
                writer.add_scalar(f"charts/eval/success/{task}", 0.5, frames)
                writer.add_scalar(f"charts/eval/episode_return/{task}", 120.0, frames)
                writer.add_scalar(f"charts/episode_return/{task}", 100.0, frames)
            writer.add_scalar("charts/eval/success_mean", 0.5, frames)
            writer.add_scalar("sparsity/total", frames / 4_000, frames)
            for network in ("actor", "critic"):
                writer.add_scalar(f"plasticity/{network}/dormant_ratio", 0.1, frames)
                writer.add_scalar(f"plasticity/{network}/srank", 20.0, frames)


def test_sac_panels_say_success_rate_and_srank(tmp_path: Path) -> None:
    _write_sac_like_run(tmp_path)
    panels = select_panels(read_scalars(tmp_path), srank_delta=0.01, dormant_tau=0.1)
    score, sparsity, dormant, rank = panels
    assert score.title == "evaluation: success rate per task"
    assert score.ylabel == "success rate (fraction of episodes)"
    assert (list(score.curves), score.legend_title) == (list(SAC_TASKS), "task")
    assert score.mean == [(1_000, 0.5), (2_000, 0.5)]
    assert "return" not in score.title + score.ylabel
    assert sparsity.title == "sparsity of the pruned layers"
    assert dormant.title == "dormant ratio (τ=0.1)"
    assert rank.title == "srank (effective rank, δ=0.01)"
    assert (list(rank.curves), rank.legend_title) == (["actor", "critic"], "network")
    assert summary_figure(tmp_path, tmp_path / "summary.png").stat().st_size > 10_000


def test_minigrid_panel_says_normalised_return(tmp_path: Path) -> None:
    with SummaryWriter(tmp_path) as writer:
        writer.add_scalar("charts/eval/normalized_return/LavaGapS7", 0.3, 600)
        writer.add_scalar("charts/normalized_return/LavaGapS7", 0.2, 600)
    (score,) = select_panels(read_scalars(tmp_path))
    assert score.title == "evaluation: normalised return per task"
    assert score.ylabel == "normalised return (return / best achievable)"
    assert list(score.curves) == ["LavaGapS7"] and score.mean is None


def test_training_scores_when_nothing_was_evaluated(tmp_path: Path) -> None:
    with SummaryWriter(tmp_path) as writer:
        writer.add_scalar("charts/success/reach-v3", 0.0, 100)
        writer.add_scalar("charts/episode_return/reach-v3", 3.0, 100)
    (score,) = select_panels(read_scalars(tmp_path))
    assert score.title == "training episodes: success rate per task"


def test_no_data_is_refused(tmp_path: Path) -> None:
    with SummaryWriter(tmp_path) as writer:
        writer.add_scalar("losses/loss_critic", 1.0, 100)
    with pytest.raises(ValueError, match=r"No scalar to plot .* \['losses/loss_critic'\]"):
        summary_figure(tmp_path, tmp_path / "summary.png")


class _RecordProgressBar(pl.Callback):
    """After every batch: the progress bar's score and the latest evaluation logged."""

    def __init__(self) -> None:
        self.shown: list[tuple[float | None, float | None]] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: MultiTaskPPO, *args) -> None:
        bar = trainer.progress_bar_metrics.get("return")
        self.shown.append((bar, pl_module.latest.get("charts/eval/normalized_return_mean")))


def test_progress_bar_and_figure_show_the_latest_evaluation(tmp_path: Path) -> None:
    """An evaluation after every batch: the bar shows it at once, not one batch later."""
    module = MultiTaskPPO(
        "MT3",
        envs_per_task=1,
        total_steps_per_task=60,
        steps_per_task_per_batch=30,
        policy_epochs=1,
        policy_minibatch_per_task=16,
        critic_batch_per_task=30,
        eval_every_steps_per_task=30,
        eval_episodes_per_task=1,
    )
    progress, figure = _RecordProgressBar(), SummaryFigure()
    monitor = PlasticityMonitorCallback(
        ["dormant_ratio", "srank"], every_n_frames=90, batch_size=64, tau=0.2, delta=0.05
    )
    trainer = pl.Trainer(
        max_epochs=1,
        logger=TensorBoardLogger(tmp_path, name="run", version="seed0"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[monitor, progress, figure],
    )
    trainer.fit(module)
    assert len(progress.shown) == 2
    for bar, evaluation in progress.shown:
        assert evaluation is not None and bar == pytest.approx(evaluation)
    assert figure.path is not None and figure.path.stat().st_size > 10_000
    titles = [panel.title for panel in figure.panels]
    assert titles[0] == "evaluation: normalised return per task"
    assert "dormant ratio (τ=0.2)" in titles and "srank (effective rank, δ=0.05)" in titles
