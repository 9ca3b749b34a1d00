"""Drop-fraction decay of SET and RigL, bound to the schedule's end by the sparsifier."""

from __future__ import annotations

import math

import pytest
import torch

from torchrl_sparse.sparse import SET, ConstantSchedule, RigL, Sparsifier


def net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


@pytest.mark.parametrize("method_class", [SET, RigL])
def test_cosine_decay_ends_at_the_schedule_end(method_class: type) -> None:
    method = method_class(0.3, schedule=ConstantSchedule(update_every=10, end=0.8), decay="cosine")
    Sparsifier(net(), {"*": 0.5}, method=method, total_steps=1000)
    assert method.drop_fraction(0) == pytest.approx(0.3)
    assert method.drop_fraction(400) == pytest.approx(0.3 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert method.drop_fraction(800) == pytest.approx(0.0)


def test_cosine_without_end_decays_over_training() -> None:
    method = SET(0.3, schedule=ConstantSchedule(update_every=10), decay="cosine")
    Sparsifier(net(), {"*": 0.5}, method=method, total_steps=1000)
    assert method.drop_fraction(500) == pytest.approx(0.15)


def test_defaults_and_bad_decay() -> None:
    assert SET(0.3).drop_fraction(10**6) == 0.3  # Mocanu et al.: constant
    rigl = RigL(0.3, schedule=ConstantSchedule(update_every=10, end=100))
    Sparsifier(net(), {"*": 0.5}, method=rigl, total_steps=100)
    assert rigl.drop_fraction(50) == pytest.approx(0.15)  # Evci et al.: cosine
    with pytest.raises(ValueError, match="Unknown decay 'linear'; allowed: "):
        SET(0.3, decay="linear")


def test_cosine_decay_drops_fewer_connections_later() -> None:
    model = net()
    method = SET(0.5, schedule=ConstantSchedule(update_every=1), decay="cosine")
    sparsifier = Sparsifier(model, {"*": 0.5}, method=method, total_steps=10, seed=0)
    changed = []
    for _ in range(9):
        before = [m.clone() for m in sparsifier.masks]
        sparsifier.step()
        changed.append(
            sum(int((b != m).sum()) for b, m in zip(before, sparsifier.masks, strict=True))
        )
    assert changed[0] > changed[4] > changed[8]
