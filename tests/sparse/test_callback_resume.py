"""Resuming through Lightning's ``--ckpt_path`` gives the masks and weights of one long run."""

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.strategies import SingleDeviceStrategy
from torch import nn
from torch.utils.data import DataLoader

from torchrl_sparse.lightning import SparsityCallback
from torchrl_sparse.sparse import SET, ConstantSchedule, RigL, StaticSparse

from .conftest import make_cnn_mlp

FRAMES_PER_BATCH = 8


class TinyModule(pl.LightningModule):
    """What :class:`SparsityCallback` needs of a module, on a regression task.

    Each batch is drawn from the step number, so a resumed run sees the same data whatever
    Lightning does with the data loader.
    """

    def __init__(self, total_frames: int = 80) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.total_frames = total_frames
        self.loss_module = make_cnn_mlp()

    @property
    def frames_per_update(self) -> int:
        return FRAMES_PER_BATCH

    def log_frames(self, scalars: dict[str, float]) -> None:
        pass

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.global_step)
        x = torch.randn(FRAMES_PER_BATCH, 3, 7, 7, generator=generator)
        y = torch.randn(FRAMES_PER_BATCH, 7, generator=generator)
        return nn.functional.mse_loss(self.loss_module(x), y)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(torch.zeros(10, 1), batch_size=1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2)


class RestoreAfterSetup(SingleDeviceStrategy):
    """Restores the checkpoint after ``on_fit_start``, as DeepSpeed and FSDP do."""

    @property
    def restore_checkpoint_after_setup(self) -> bool:
        return True


def fit(
    steps: int, method, ckpt_path: Path | None = None, restore_after_setup: bool = False
) -> tuple[pl.Trainer, SparsityCallback]:
    callback = SparsityCallback({"*": 0.8}, method=method(), seed=0)
    strategy = RestoreAfterSetup if restore_after_setup else SingleDeviceStrategy
    trainer = pl.Trainer(
        max_steps=steps,
        callbacks=[callback],
        strategy=strategy(torch.device("cpu")),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(TinyModule(), ckpt_path=ckpt_path)
    return trainer, callback


@pytest.mark.parametrize(
    "method",
    [
        lambda: SET(schedule=ConstantSchedule(update_every=2 * FRAMES_PER_BATCH)),
        lambda: RigL(schedule=ConstantSchedule(update_every=2 * FRAMES_PER_BATCH, end=64)),
        StaticSparse,
    ],
    ids=["set", "rigl", "static"],
)
@pytest.mark.parametrize("restore_after_setup", [False, True], ids=["restore", "restore_late"])
def test_ckpt_path_resume_matches_the_uninterrupted_run(
    method, restore_after_setup: bool, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    reference, reference_callback = fit(10, method)
    # Interrupted right after the update at 32 frames; the next comes at 48.
    torch.manual_seed(0)
    interrupted, _ = fit(4, method)
    interrupted.save_checkpoint(tmp_path / "last.ckpt")
    torch.manual_seed(1)  # a new process: another global seed, which the run must not need
    resumed, resumed_callback = fit(10, method, tmp_path / "last.ckpt", restore_after_setup)

    assert resumed_callback.sparsifier.step_count == 10 * FRAMES_PER_BATCH
    for a, b in zip(
        resumed_callback.sparsifier.masks, reference_callback.sparsifier.masks, strict=True
    ):
        assert torch.equal(a, b)
    expected = reference.lightning_module.state_dict()
    for name, value in resumed.lightning_module.state_dict().items():
        assert torch.equal(value, expected[name]), name
