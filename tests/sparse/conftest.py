import pytest
import torch
from torch import nn


def make_cnn_mlp(seed: int = 0) -> nn.Module:
    """A small MiniGrid-shaped network: 2 convs, flatten, 2 linears (Conv and Linear layers)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 2),
        nn.ReLU(),
        nn.Conv2d(8, 8, 2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 5 * 5, 32),
        nn.Tanh(),
        nn.Linear(32, 7),
    )


@pytest.fixture
def cnn_mlp() -> nn.Module:
    return make_cnn_mlp()


def train_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    sparsifier,
    steps: int,
    seed: int = 0,
) -> None:
    """A deterministic regression loop on random inputs shaped for ``make_cnn_mlp``."""
    generator = torch.Generator().manual_seed(seed + sparsifier.step_count)
    for _ in range(steps):
        x = torch.randn(16, 3, 7, 7, generator=generator)
        y = torch.randn(16, 7, generator=generator)
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        sparsifier.step()
