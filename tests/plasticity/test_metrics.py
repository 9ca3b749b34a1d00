"""Hand-computed values for dormant ratio, ranks and norms."""

import math

import pytest
import torch
from torch import nn

from torchrl_sparse.plasticity import (
    ActivationProbe,
    active_unit_fraction,
    dormant_ratio,
    entropy_effective_rank,
    feature_norm,
    grad_norm,
    singular_values,
    srank,
    stable_rank,
    unit_scores,
    weight_drift,
    weight_norm,
)


def _known_net() -> nn.Sequential:
    """Two hidden layers with known activations on an all-ones input.

    Layer 0 outputs [1, 0, 2, 0.05]: mean 0.7625, scores [1.31, 0, 2.62, 0.066], so units 1
    and 3 are dormant at tau = 0.1. Layer 2 outputs [3.05, 0]: unit 1 is dormant.
    """
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0], [2.0, 0.0], [0.05, 0.0]]))
        net[0].bias.copy_(torch.tensor([0.0, -1.0, 0.0, 0.0]))
        net[2].weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [-1.0, -1.0, -1.0, -1.0]]))
        net[2].bias.zero_()
    return net


def test_unit_scores_formula() -> None:
    scores = unit_scores(torch.tensor([[1.0, 0.0, 2.0, 0.05]]))
    expected = torch.tensor([1.0, 0.0, 2.0, 0.05]) / (0.7625 + 1e-9)
    torch.testing.assert_close(scores, expected)


def test_dormant_ratio_dead_relu_units() -> None:
    stats = dormant_ratio(_known_net(), torch.ones(5, 2), tau=0.1)
    assert stats.per_layer == {"0": 0.5, "2": 0.5}
    assert stats.overall == pytest.approx(3 / 6)
    # tau = 0 only counts exactly silent units
    assert dormant_ratio(_known_net(), torch.ones(5, 2), tau=0.0).overall == pytest.approx(2 / 6)


def test_dormant_ratio_counts_only_units_with_incoming_connections() -> None:
    net = _known_net()
    mask = torch.ones(4, 2, dtype=torch.bool)
    mask[1] = False  # unit 1 has no incoming connection any more
    mask[0, 1] = False  # a pruned entry does not make unit 0 disconnected
    stats = dormant_ratio(net, torch.ones(5, 2), tau=0.1, masks={"0.weight": mask})
    assert stats.per_layer["0"] == pytest.approx(1 / 3)
    assert stats.alive == {"0": 3, "2": 2}
    assert stats.overall == pytest.approx(2 / 5)


def test_conv_channel_is_one_unit() -> None:
    net = nn.Sequential(nn.Conv2d(1, 3, 1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, 0.0, -1.0]).view(3, 1, 1, 1))
        net[0].bias.zero_()
    stats = dormant_ratio(net, torch.rand(4, 1, 2, 2) + 0.1, tau=0.1)
    assert stats.per_layer == {"0": pytest.approx(2 / 3)}


def test_per_task_dormant_ratio() -> None:
    net = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        net[0].bias.zero_()
    x = torch.tensor([[1.0], [2.0], [-1.0], [-2.0]])
    task = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # one-hot
    stats = dormant_ratio(net, x, tau=0.1, task_ids=task)
    assert stats.overall == 0.0
    assert stats.per_task == {0: 0.5, 1: 0.5}
    with pytest.raises(ValueError, match="task_ids has 3 entries but the hidden"):
        dormant_ratio(net, x, tau=0.1, task_ids=torch.tensor([0, 1, 1]))


def test_active_unit_fraction() -> None:
    net = _known_net()
    probe = ActivationProbe.capture(net, torch.ones(3, 2))
    assert active_unit_fraction(net, probe) == pytest.approx(4 / 6)


@pytest.mark.parametrize("tau", [-0.1, float("nan"), float("inf")])
def test_bad_tau(tau: float) -> None:
    with pytest.raises(ValueError, match="tau must be"):
        dormant_ratio(_known_net(), torch.ones(2, 2), tau=tau)


def test_empty_batch() -> None:
    with pytest.raises(ValueError, match="empty"):
        dormant_ratio(_known_net(), torch.ones(0, 2))
    with pytest.raises(ValueError, match="empty"):
        srank(torch.ones(0, 3))


def _with_singular_values(s: list[float], n: int = 8, d: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(n, len(s), generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(d, len(s), generator=g, dtype=torch.float64))
    return u @ torch.diag(torch.tensor(s, dtype=torch.float64)) @ v.T


def test_ranks_from_known_singular_values() -> None:
    s = [10.0, 5.0, 1.0, 0.1, 0.01]
    feats = _with_singular_values(s)
    # cumulative sums 10, 15, 16, 16.1, 16.11; 0.99 * 16.11 = 15.95 -> k = 3
    assert srank(feats, delta=0.01) == 3
    assert srank(feats, delta=0.1) == 2  # 0.9 * 16.11 = 14.5
    p = [x / sum(s) for x in s]
    assert entropy_effective_rank(feats) == pytest.approx(
        math.exp(-sum(q * math.log(q) for q in p)), rel=1e-5
    )
    assert stable_rank(feats) == pytest.approx(126.0101 / 100, rel=1e-5)


@pytest.mark.parametrize("shape", [(64, 24), (24, 64)])
def test_singular_values_match_a_float64_svd(shape: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(0)
    full = torch.tanh(torch.randn(*shape, generator=g))
    rank_3 = torch.randn(shape[0], 3, generator=g) @ torch.randn(3, shape[1], generator=g)
    for feats in (full, rank_3):
        reference = torch.linalg.svdvals(feats.double()).float()
        got = singular_values(feats)
        assert got.shape == reference.shape and got.dtype == torch.float32
        torch.testing.assert_close(got, reference, rtol=0, atol=1e-6 * float(reference[0]))
    assert srank(rank_3) == 3


def test_ranks_of_non_finite_features_raise() -> None:
    feats = torch.ones(4, 3)
    feats[1, 2] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        srank(feats)


def test_srank_threshold_hit_exactly() -> None:
    # sum 100, 1 - delta = 0.5: the first value covers exactly half
    assert srank(torch.diag(torch.tensor([50.0, 30.0, 20.0])), delta=0.5) == 1


def test_ranks_of_zero_features() -> None:
    z = torch.zeros(4, 3)
    assert (srank(z), entropy_effective_rank(z), stable_rank(z)) == (0, 0.0, 0.0)


@pytest.mark.parametrize("delta", [0.0, 1.0, -0.5, 1.5])
def test_bad_delta(delta: float) -> None:
    with pytest.raises(ValueError, match=r"delta must lie in the open interval \(0, 1\)"):
        srank(torch.eye(3), delta=delta)


def test_norms_and_drift() -> None:
    lin = nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 0.0]]))
        lin.bias.fill_(4.0)
    init = {n: p.detach().clone() for n, p in lin.named_parameters()}
    assert weight_norm(lin) == pytest.approx(5.0)
    with torch.no_grad():
        lin.weight.add_(torch.tensor([[0.0, 2.0]]))
    assert weight_drift(lin, init) == pytest.approx(2.0)
    assert grad_norm(lin) == 0.0
    lin(torch.tensor([[1.0, 1.0]])).sum().backward()
    assert grad_norm(lin) == pytest.approx(math.sqrt(3.0))
    assert feature_norm(torch.tensor([[3.0, 4.0], [6.0, 8.0]])) == pytest.approx(7.5)
