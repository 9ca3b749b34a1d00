"""Test-only callbacks: signal the own process (as a cluster would), dump per-rank state."""

import os

import lightning.pytorch as pl


class SignalAtFrames(pl.Callback):
    """Send ``signum`` to this process once the module has collected ``frames`` frames."""

    def __init__(self, frames: int, signum: int) -> None:
        self.frames = frames
        self.signum = signum
        self.sent = False

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        if not self.sent and pl_module.frames >= self.frames:
            self.sent = True
            os.kill(os.getpid(), self.signum)


class DumpRankState(pl.Callback):
    """At the end of training, every rank saves its masks and parameters to ``dirpath``."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = dirpath

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        import torch

        from torchrl_sparse.lightning import SparsityCallback

        sparsity = next(c for c in trainer.callbacks if isinstance(c, SparsityCallback))
        state = {
            "masks": sparsity.sparsifier.state_dict()["masks"],
            "params": {k: v.detach().clone() for k, v in pl_module.state_dict().items()},
            "frames": pl_module.frames,
        }
        torch.save(state, os.path.join(self.dirpath, f"rank{trainer.global_rank}.pt"))
