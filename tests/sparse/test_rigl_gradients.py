"""RigL grows where the dense gradient of the step is largest, however the step is counted."""

import pytest
import torch
from torch import nn

from torchrl_sparse.sparse import GMP, SET, ConstantSchedule, CubicSchedule, RigL, Sparsifier

from .conftest import make_cnn_mlp


def one_grow_rigl(update_every: int) -> tuple[nn.Linear, torch.optim.Optimizer, Sparsifier]:
    """A 4x4 layer, half sparse, whose RigL updates drop and grow one weight each."""
    torch.manual_seed(0)
    layer = nn.Linear(4, 4, bias=False)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.0)
    method = RigL(drop_fraction=0.125, schedule=ConstantSchedule(update_every=update_every))
    return layer, optimizer, Sparsifier(layer, {"": 0.5}, method=method, optimizer=optimizer)


def backward_with_gradient(layer: nn.Linear, gradient: dict[tuple[int, int], float]) -> None:
    """A backward pass whose weight gradient is ``gradient`` (zero elsewhere)."""
    weight_grad = torch.zeros(4, 4)
    for position, value in gradient.items():
        weight_grad[position] = value
    (layer.weight * weight_grad).sum().backward()


def grown(before: torch.Tensor, after: torch.Tensor) -> list[tuple[int, int]]:
    return [tuple(p) for p in (after & ~before).nonzero().tolist()]


def test_growth_ranks_the_gradient_accumulated_over_the_step() -> None:
    layer, optimizer, sparsifier = one_grow_rigl(update_every=1)
    a, b = (tuple(p) for p in (~sparsifier.masks[0]).nonzero()[:2].tolist())
    before = sparsifier.masks[0].clone()
    optimizer.zero_grad()
    # Two accumulated micro-batches: |sum| is 1 at a and 11 at b; the last pass alone says a.
    backward_with_gradient(layer, {a: 10.0, b: 6.0})
    backward_with_gradient(layer, {a: -9.0, b: 5.0})
    assert torch.all(layer.weight.grad[~before] == 0)  # the optimizer still sees it sparse
    optimizer.step()
    sparsifier.step()
    assert grown(before, sparsifier.masks[0]) == [b]


def test_accumulation_restarts_at_each_optimizer_step() -> None:
    layer, optimizer, sparsifier = one_grow_rigl(update_every=2)
    a, b = (tuple(p) for p in (~sparsifier.masks[0]).nonzero()[:2].tolist())
    before = sparsifier.masks[0].clone()
    for gradient in ({a: 10.0}, {b: 1.0}):  # two optimizer steps, one sparsifier step
        optimizer.zero_grad()
        backward_with_gradient(layer, gradient)
        optimizer.step()
    sparsifier.step(2)
    assert grown(before, sparsifier.masks[0]) == [b]


@pytest.mark.parametrize(
    "increments",
    [
        [3, 3, 5],  # the last batch is longer than the ones before: no prediction would catch it
        [6, 1, 5],  # a short step between: the gradient of the 6 must not be used at 12
        [4, 4, 1, 1],
        [25],  # crossing two boundaries at once
    ],
)
def test_any_increments_grow_from_the_last_gradient(increments: list[int]) -> None:
    layer, optimizer, sparsifier = one_grow_rigl(update_every=10)
    inactive = [tuple(p) for p in (~sparsifier.masks[0]).nonzero().tolist()]
    before = sparsifier.masks[0].clone()
    for step, increment in enumerate(increments):
        optimizer.zero_grad()
        backward_with_gradient(layer, {inactive[step]: 1.0})
        optimizer.step()
        sparsifier.step(increment)
    assert grown(before, sparsifier.masks[0]) == [inactive[len(increments) - 1]]


def test_missing_backward_names_the_layer() -> None:
    sparsifier = one_grow_rigl(update_every=1)[2]
    with pytest.raises(RuntimeError, match=r"of 'weight' at step 1, but no backward pass"):
        sparsifier.step()


@pytest.mark.parametrize(
    ("method", "changes"),
    [
        (lambda: GMP(CubicSchedule(start=0, end=60, update_every=10)), [10, 22, 32, 62]),
        (lambda: SET(schedule=ConstantSchedule(update_every=10)), [10, 22, 32, 62, 80]),
        # RigL's drop fraction has decayed to zero by the update at 62.
        (lambda: RigL(schedule=ConstantSchedule(update_every=10, end=60)), [10, 22, 32]),
    ],
    ids=["gmp", "set", "rigl"],
)
def test_uneven_increments_update_at_every_boundary(method, changes: list[int]) -> None:
    model = make_cnn_mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    sparsifier = Sparsifier(model, {"*": 0.8}, method=method(), optimizer=optimizer, total_steps=80)
    generator = torch.Generator().manual_seed(0)
    updates: list[int] = []
    for increment in (7, 3, 12, 1, 9, 30, 2, 16):
        x, y = torch.randn(8, 3, 7, 7, generator=generator), torch.randn(8, 7, generator=generator)
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        before = [m.clone() for m in sparsifier.masks]
        sparsifier.step(increment)
        if any(not torch.equal(a, b) for a, b in zip(before, sparsifier.masks, strict=True)):
            updates.append(sparsifier.step_count)
        for target, mask in zip(sparsifier.targets, sparsifier.masks, strict=True):
            assert torch.all(target.param[~mask] == 0), target.name
    assert updates == changes
    assert sparsifier.stats()["sparsity/total"] == pytest.approx(0.8, abs=1e-3)
