"""Fisher trace: explicit formula, per-sample loop, categorical and TanhNormal policies."""

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torch.distributions import Categorical
from torchrl.modules import ProbabilisticActor, TanhNormal

from torchrl_sparse.plasticity import fisher_trace


def test_linear_softmax_policy_matches_closed_form() -> None:
    # logits = W x: grad_W log pi(a|x) = (e_a - p) x^T, so ||grad||^2 = ||e_a - p||^2 ||x||^2
    torch.manual_seed(0)
    policy = nn.Linear(3, 4, bias=False)
    x = torch.randn(16, 3)
    torch.manual_seed(1)
    got = fisher_trace(policy, x)
    torch.manual_seed(1)
    with torch.no_grad():
        p = torch.softmax(policy(x), -1)
        a = Categorical(probs=p).sample()
    e = nn.functional.one_hot(a, 4).float()
    expected = (((e - p) ** 2).sum(1) * (x**2).sum(1)).mean()
    assert got == pytest.approx(float(expected), rel=1e-5)


def test_cnn_categorical_policy_vmap_matches_loop() -> None:
    torch.manual_seed(0)
    policy = nn.Sequential(
        nn.Conv2d(3, 4, 2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4, 8), nn.Tanh(), nn.Linear(8, 7)
    )
    x = torch.randn(12, 3, 3, 3)
    torch.manual_seed(3)
    fast = fisher_trace(policy, x)
    torch.manual_seed(3)
    slow = fisher_trace(policy, x, method="loop")
    assert fast == pytest.approx(slow, rel=1e-4)


def test_tanh_normal_actor_vmap_matches_loop() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 4), NormalParamExtractor())
    actor = ProbabilisticActor(
        TensorDictModule(net, ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
    )
    td = TensorDict({"observation": torch.randn(10, 5)}, [10])
    torch.manual_seed(4)
    fast = fisher_trace(actor, td, chunk_size=4)
    torch.manual_seed(4)
    slow = fisher_trace(actor, td, method="loop")
    assert fast > 0
    assert fast == pytest.approx(slow, rel=1e-4)


def test_masks_and_frozen_parameters_are_left_out() -> None:
    torch.manual_seed(0)
    policy = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x = torch.randn(8, 3)
    zero = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in policy.named_parameters()}
    assert fisher_trace(policy, x, masks=zero) == 0.0
    for p in policy.parameters():
        p.requires_grad_(False)
    policy[2].weight.requires_grad_(True)
    torch.manual_seed(2)
    only_last = fisher_trace(policy, x)
    torch.manual_seed(2)
    assert only_last == pytest.approx(fisher_trace(policy, x, method="loop"), rel=1e-5)


def test_bad_input() -> None:
    policy = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="empty batch"):
        fisher_trace(policy, torch.zeros(0, 3))
    with pytest.raises(ValueError, match="method must be"):
        fisher_trace(policy, torch.zeros(2, 3), method="jacrev")  # type: ignore[arg-type]
