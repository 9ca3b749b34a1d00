"""Pruned entries stay exactly zero under every optimizer of ``torch.optim``."""

import inspect

import pytest
import torch
from torch import nn

from torchrl_sparse.sparse import SET, ConstantSchedule, Sparsifier

OPTIMIZERS = sorted(
    (
        cls
        for cls in vars(torch.optim).values()
        if inspect.isclass(cls)
        and issubclass(cls, torch.optim.Optimizer)
        and cls is not torch.optim.Optimizer
    ),
    key=lambda cls: cls.__name__,
)
# Settings that give the optimizer per-entry state where its defaults have none.
SETTINGS = {torch.optim.SGD: {"momentum": 0.9, "weight_decay": 1e-2}}


def test_every_optimizer_is_covered() -> None:
    names = {cls.__name__ for cls in OPTIMIZERS}
    assert {"Adam", "Adamax", "Rprop", "SGD", "LBFGS", "SparseAdam"} <= names


@pytest.mark.parametrize("optimizer_class", OPTIMIZERS, ids=lambda cls: cls.__name__)
def test_weights_and_state_stay_zero_at_pruned_entries(optimizer_class) -> None:
    torch.manual_seed(0)
    # 2-D weights only: Muon takes nothing else.
    model = nn.Sequential(nn.Linear(6, 8, bias=False), nn.Tanh(), nn.Linear(8, 3, bias=False))
    optimizer = optimizer_class(model.parameters(), **SETTINGS.get(optimizer_class, {}))
    method = SET(zeta=0.3, schedule=ConstantSchedule(update_every=3))
    sparsifier = Sparsifier(model, {"*": 0.5}, method=method, optimizer=optimizer)
    generator = torch.Generator().manual_seed(0)

    def closure() -> torch.Tensor:  # LBFGS evaluates it several times a step
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    for _ in range(7):  # two topology updates, steps after them
        x, y = torch.randn(16, 6, generator=generator), torch.randn(16, 3, generator=generator)
        if optimizer_class is torch.optim.SparseAdam:
            with pytest.raises(RuntimeError, match="does not support dense gradients"):
                optimizer.step(closure)
            return
        optimizer.step(closure)
        sparsifier.step()
        for target, mask in zip(sparsifier.targets, sparsifier.masks, strict=True):
            assert torch.all(target.param[~mask] == 0), target.name
            assert torch.all(target.param.grad[~mask] == 0), target.name
            for key, value in optimizer.state[target.param].items():
                # Per-entry state; factored (Adafactor) or flat (LBFGS) state has no entries.
                if torch.is_tensor(value) and value.shape == mask.shape:
                    assert torch.all(value[~mask] == 0), f"{target.name} state {key!r}"
