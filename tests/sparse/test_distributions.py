import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchrl_sparse.sparse import ER, ERK, Uniform

SHAPES = [
    torch.Size([16, 3, 2, 2]),
    torch.Size([32, 16, 2, 2]),
    torch.Size([128, 1024]),
    torch.Size([7, 128]),
]


def kept_fraction(densities: list[float], shapes: list[torch.Size]) -> float:
    return sum(d * s.numel() for d, s in zip(densities, shapes, strict=True)) / sum(
        s.numel() for s in shapes
    )


@given(sparsity=st.floats(min_value=0.0, max_value=0.99))
@settings(max_examples=50, deadline=None)
@pytest.mark.parametrize("distribution", [Uniform(), ER(), ERK()], ids=["uniform", "er", "erk"])
def test_group_target_is_met(distribution, sparsity: float) -> None:
    densities = distribution.densities(SHAPES, sparsity)
    assert all(0.0 <= d <= 1.0 + 1e-12 for d in densities)
    assert kept_fraction(densities, SHAPES) == pytest.approx(1.0 - sparsity, rel=1e-9, abs=1e-12)


def test_erk_caps_small_layers_and_redistributes() -> None:
    # The 3->16 first conv has a huge ERK score: it is capped at density 1 and the rest of the
    # budget goes to the other layers.
    densities = ERK().densities(SHAPES, 0.5)
    assert densities[0] == 1.0
    assert kept_fraction(densities, SHAPES) == pytest.approx(0.5)
    scaled = [d / ERK().score(s) for d, s in zip(densities, SHAPES, strict=True) if d < 1.0]
    assert scaled and all(r == pytest.approx(scaled[0]) for r in scaled)


def test_er_ignores_kernel_and_erk_uses_it() -> None:
    shape = torch.Size([32, 16, 2, 2])
    assert ER().score(shape) == pytest.approx((32 + 16) / (32 * 16))
    assert ERK().score(shape) == pytest.approx((32 + 16 + 2 + 2) / (32 * 16 * 4))


def test_set_epsilon_density() -> None:
    # Mocanu et al.: density = epsilon * (n_in + n_out) / (n_in * n_out), epsilon = 11.
    assert ER(epsilon=11).densities([torch.Size([400, 39])], 0.95) == [
        pytest.approx(11 * (400 + 39) / (400 * 39))
    ]
    assert ER(epsilon=11).densities([torch.Size([2, 2])], 0.95) == [1.0]


def test_bad_epsilon() -> None:
    with pytest.raises(ValueError, match="epsilon must be positive"):
        ERK(epsilon=0.0)
