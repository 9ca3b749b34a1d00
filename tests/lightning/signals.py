"""A test callback that signals its own process, to test interruption like a cluster would."""

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
