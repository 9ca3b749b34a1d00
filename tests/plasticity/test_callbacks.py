"""The plasticity monitor callback with a ready monitor, on a plain LightningModule."""

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from torchrl_sparse.lightning import PlasticityMonitorCallback
from torchrl_sparse.plasticity import PlasticityMonitor


class TinyRegressor(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2, weight_decay=1e-6)


def test_callback_logs_on_cadence(tmp_path) -> None:
    pl.seed_everything(0)
    model = TinyRegressor()
    monitor = PlasticityMonitor({"net": model.net}, ["dormant_ratio", "grad_norm"], every=16)
    callback = PlasticityMonitorCallback(monitor=monitor)
    data = TensorDataset(torch.randn(40, 4), torch.randn(40, 1))
    trainer = pl.Trainer(
        max_steps=5,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, DataLoader(data, batch_size=8))
    assert "plasticity/net/dormant_ratio" in trainer.callback_metrics
    assert trainer.callback_metrics["plasticity/net/grad_norm"] > 0
    assert callback.state_dict()["schedule"] == {"steps": 40, "next_at": 48, "count": 2}
