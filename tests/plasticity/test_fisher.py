"""Fisher trace: closed form, and the ghost and vmap methods against the per-sample loop."""

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torch.distributions import Categorical
from torchrl.modules import ProbabilisticActor, TanhNormal

from torchrl_sparse.modules import make_ppo_actor, make_sac_actor
from torchrl_sparse.plasticity import fisher_trace

FAST = ["ghost", "vmap"]


def _check_against_loop(policy: nn.Module, batch, method: str, **kwargs) -> float:
    torch.manual_seed(3)
    fast = fisher_trace(policy, batch, method=method, **kwargs)
    torch.manual_seed(3)
    slow = fisher_trace(policy, batch, method="loop", **kwargs)
    assert fast > 0
    assert fast == pytest.approx(slow, rel=1e-4)
    return fast


def _minigrid_states(n: int) -> TensorDict:
    g = torch.Generator().manual_seed(0)
    return TensorDict(
        {
            "observation": torch.randint(0, 11, (n, 3, 7, 7), generator=g).float(),
            "task_id": torch.randint(0, 3, (n,), generator=g),
        },
        [n],
    )


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


@pytest.mark.parametrize("method", FAST)
def test_mlp_categorical_policy(method: str) -> None:
    torch.manual_seed(0)
    policy = nn.Sequential(nn.Linear(4, 16), nn.LayerNorm(16), nn.Tanh(), nn.Linear(16, 3))
    _check_against_loop(policy, torch.randn(20, 4), method)


@pytest.mark.parametrize("method", FAST)
def test_cnn_categorical_policy(method: str) -> None:
    torch.manual_seed(0)
    policy = nn.Sequential(
        nn.Conv2d(3, 4, 2),
        nn.ReLU(),
        nn.Conv2d(4, 8, 2, stride=2, padding=1, dilation=2),
        nn.Flatten(),
        nn.Linear(8 * 2 * 2, 8),
        nn.Tanh(),
        nn.Linear(8, 7),
    )
    _check_against_loop(policy, torch.randn(12, 3, 5, 5), method)


@pytest.mark.parametrize("method", FAST)
def test_mt3_moore_actor(method: str) -> None:
    # real MiniGrid-like observations; per-task heads each see a subset of the samples
    torch.manual_seed(0)
    actor = make_ppo_actor("MT3", arch="moore")
    _check_against_loop(actor, _minigrid_states(16), method)


def test_mt3_moore_actor_single_task_and_single_sample() -> None:
    torch.manual_seed(0)
    actor = make_ppo_actor("MT3", arch="moore")
    states = _minigrid_states(5)
    states["task_id"][:] = 1
    _check_against_loop(actor, states, "ghost")
    _check_against_loop(actor, states[:1], "ghost")


@pytest.mark.parametrize("arch", ["mtsac", "moore"])
def test_sac_tanh_normal_actor(arch: str) -> None:
    torch.manual_seed(0)
    actor = make_sac_actor(
        2,
        obs_dim=5,
        action_dim=2,
        width=16,
        num_layers=2,
        arch=arch,
        num_experts=2,
        layer_norm=True,
    )
    td = TensorDict({"observation": torch.randn(10, 5), "task_id": torch.tensor([0, 1] * 5)}, [10])
    _check_against_loop(actor, td, "ghost")


@pytest.mark.parametrize("method", FAST)
def test_tanh_normal_actor(method: str) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 4), NormalParamExtractor())
    actor = ProbabilisticActor(
        TensorDictModule(net, ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
    )
    td = TensorDict({"observation": torch.randn(10, 5)}, [10])
    _check_against_loop(actor, td, method, chunk_size=4)


def test_masked_layers() -> None:
    torch.manual_seed(0)
    cnn = nn.Sequential(
        nn.Conv2d(3, 4, 2), nn.ReLU(), nn.Conv2d(4, 8, 2), nn.Flatten(), nn.Linear(8, 3)
    )
    masks = {n: torch.rand_like(p) > 0.5 for n, p in cnn.named_parameters()}
    _check_against_loop(cnn, torch.randn(7, 3, 3, 3), "ghost", masks=masks)
    actor = make_ppo_actor("MT3", arch="moore")
    masks = {n: torch.rand_like(p) > 0.3 for n, p in actor.named_parameters() if p.ndim > 1}
    _check_against_loop(actor, _minigrid_states(8), "ghost", masks=masks)


class _Reused(nn.Module):
    """A Linear called twice, tokens (extra dims, or flattened into the batch), a LayerNorm over
    tokens, a tied weight, an in-place ReLU and a bare parameter (left to vmap)."""

    def __init__(self, flatten: bool) -> None:
        super().__init__()
        self.embed = nn.Linear(2, 6)
        self.twice = nn.Linear(6, 6)
        self.tied = nn.Linear(6, 6)
        self.tied.weight = self.twice.weight
        self.norm = nn.LayerNorm(6)
        self.scale = nn.Parameter(torch.ones(6))
        self.out = nn.Linear(6, 3)
        self.flatten = flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [N, 5 tokens, 2]
        h = torch.relu_(self.embed(x))
        if self.flatten:
            h = self.twice(torch.tanh(self.twice(h.reshape(-1, 6)))).reshape(x.shape[0], 5, 6)
        else:
            h = self.twice(torch.tanh(self.twice(h)))
        return self.out(self.norm(torch.tanh(self.tied(h))).mean(1) * self.scale)


@pytest.mark.parametrize("flatten", [False, True])
@pytest.mark.parametrize("method", FAST)
def test_reused_tied_and_token_layers(flatten: bool, method: str) -> None:
    torch.manual_seed(0)
    _check_against_loop(_Reused(flatten), torch.randn(9, 5, 2), method)


def test_masks_and_frozen_parameters_are_left_out() -> None:
    torch.manual_seed(0)
    policy = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x = torch.randn(8, 3)
    zero = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in policy.named_parameters()}
    assert fisher_trace(policy, x, masks=zero) == 0.0
    for p in policy.parameters():
        p.requires_grad_(False)
    assert fisher_trace(policy, x) == 0.0
    policy[2].weight.requires_grad_(True)
    _check_against_loop(policy, x, "ghost")


class _MixesSamples(nn.Module):
    """``lin`` has one row per sample and a last row, on the batch mean, read by every sample."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.lin(torch.cat([x, x.mean(0, keepdim=True)]))
        return rows[:-1] + rows[-1:]


def test_ghost_falls_back_to_vmap_when_rows_mix_samples() -> None:
    # vmap and the loop run each sample alone, as ghost does after the fallback
    torch.manual_seed(0)
    _check_against_loop(_MixesSamples(), torch.randn(6, 3), "ghost")
    bn = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="BatchNorm"):
        fisher_trace(bn, torch.randn(6, 3))
    bn.eval()
    _check_against_loop(bn, torch.randn(6, 3), "ghost")


@pytest.mark.parametrize("arch", ["mtppo", "moe", "moore"])
def test_near_deterministic_multi_head_policy(arch: str) -> None:
    # After long training some states have pi(a|s) = 1 - 1e-7 or closer: 1 - pi(a|s) is pure
    # float32 cancellation, so a head row's gradient is not proportional across weighted
    # backwards unless the weights are powers of two (this crashed a 1.1M-frame run).
    torch.manual_seed(0)
    actor = make_ppo_actor("MT3", arch=arch)
    with torch.no_grad():
        for head in actor.module[0].module.head.heads:
            head[2].weight.mul_(1000.0)
            head[2].bias.mul_(1000.0)
    states = _minigrid_states(48)
    with torch.no_grad():
        probs = actor.get_dist(states.copy()).probs.max(-1).values
    assert (probs == 1.0).any()  # saturated in float32
    torch.manual_seed(3)
    ghost = fisher_trace(actor, states)
    torch.manual_seed(3)
    reference = fisher_trace(actor, states, method="vmap")
    assert ghost == pytest.approx(reference, rel=1e-4)


def test_bad_input() -> None:
    policy = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="empty batch"):
        fisher_trace(policy, torch.zeros(0, 3))
    with pytest.raises(ValueError, match="method must be"):
        fisher_trace(policy, torch.zeros(2, 3), method="jacrev")  # type: ignore[arg-type]
