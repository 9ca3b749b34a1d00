"""PCGrad on hand-made gradients and around real ClipPPOLoss and SACLoss."""

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.data import Bounded
from torchrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import ClipPPOLoss, SACLoss

from torchrl_sparse.objectives import PCGrad, pcgrad_project
from torchrl_sparse.sparse import Sparsifier, StaticSparse


def test_two_conflicting_gradients() -> None:
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    # g1 . g2 = -1: g1' = g1 + g2 / 2 = [0.5, 0.5]; g2' = g2 + g1 = [0, 1]
    combined, conflicts = pcgrad_project([g1, g2], reduction="sum")
    torch.testing.assert_close(combined, torch.tensor([0.5, 1.5]))
    assert conflicts == 2
    mean, _ = pcgrad_project([g1, g2])
    torch.testing.assert_close(mean, torch.tensor([0.25, 0.75]))
    # each projected gradient no longer conflicts with the other task's gradient
    assert torch.tensor([0.5, 0.5]) @ g2 == 0 and torch.tensor([0.0, 1.0]) @ g1 == 0


def test_agreeing_gradients_are_averaged() -> None:
    grads = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    combined, conflicts = pcgrad_project(grads)
    torch.testing.assert_close(combined, torch.tensor([2.0, 1.0]))
    assert conflicts == 0
    with pytest.raises(ValueError, match="reduction must be"):
        pcgrad_project(grads, reduction="max")  # type: ignore[arg-type]


def _ppo_loss() -> ClipPPOLoss:
    torch.manual_seed(0)
    actor = ProbabilisticActor(
        TensorDictModule(
            nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)),
            ["observation"],
            ["logits"],
        ),
        in_keys=["logits"],
        distribution_class=torch.distributions.Categorical,
        return_log_prob=True,
    )
    critic = ValueOperator(nn.Linear(6, 1), in_keys=["observation"])
    return ClipPPOLoss(actor, critic)


def _ppo_batch(n: int = 24) -> TensorDict:
    g = torch.Generator().manual_seed(1)
    task = torch.arange(n) % 3
    obs = torch.cat([torch.randn(n, 3, generator=g), nn.functional.one_hot(task, 3).float()], -1)
    return TensorDict(
        {
            "observation": obs,
            "action": torch.randint(3, (n,), generator=g),
            "action_log_prob": torch.full((n,), -1.1),
            "advantage": torch.randn(n, 1, generator=g),
            "value_target": torch.randn(n, 1, generator=g),
            "task_id": task,
        },
        [n],
    )


def test_ppo_step_applies_projected_gradient() -> None:
    loss = _ppo_loss()
    batch = _ppo_batch()
    params = [p for p in loss.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    pcgrad = PCGrad(loss, torch.optim.SGD(params, lr=1.0), generator=torch.Generator())
    grads, _ = pcgrad.task_gradients(batch)
    expected, _ = pcgrad_project(grads, generator=torch.Generator())
    out = pcgrad.step(batch)
    delta = torch.cat([(b - p.detach()).reshape(-1) for b, p in zip(before, params, strict=True)])
    torch.testing.assert_close(delta, expected)
    assert {"loss_objective", "loss_critic", "pcgrad/conflicts", "pcgrad/num_tasks"} <= set(
        out.keys()
    )
    assert out["pcgrad/num_tasks"] == 3


def test_sparse_network_keeps_pruned_gradients_and_moments_zero() -> None:
    """The projected gradient goes through the sparsifier's gradient masks, as any backward."""
    loss = _ppo_loss()
    params = [p for p in loss.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    sparsifier = Sparsifier(
        loss, {"actor_network.*": 0.5}, method=StaticSparse(), optimizer=optimizer, seed=0
    )
    pcgrad = PCGrad(loss, optimizer, max_grad_norm=0.5, generator=torch.Generator())
    pcgrad.step(_ppo_batch())
    named = dict(loss.named_parameters())
    for name, mask in sparsifier.named_masks(loss).items():
        param, pruned = named[name], mask == 0
        assert pruned.any()
        assert not param.grad[pruned].any()
        state = optimizer.state[param]
        assert not state["exp_avg"][pruned].any() and not state["exp_avg_sq"][pruned].any()
        assert not param[pruned].any()


def test_ppo_missing_task_id_is_an_error() -> None:
    loss = _ppo_loss()
    pcgrad = PCGrad(loss, torch.optim.Adam(loss.parameters()), task_key="task")
    with pytest.raises(ValueError, match="PCGrad needs a task id under key 'task'"):
        pcgrad.step(_ppo_batch())


def test_sac_step() -> None:
    torch.manual_seed(0)
    n, obs_dim, act_dim = 16, 5, 2
    actor = ProbabilisticActor(
        TensorDictModule(
            nn.Sequential(
                nn.Linear(obs_dim, 16),
                nn.ReLU(),
                nn.Linear(16, 2 * act_dim),
                NormalParamExtractor(),
            ),
            ["observation"],
            ["loc", "scale"],
        ),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        spec=Bounded(-1.0, 1.0, (act_dim,)),
    )

    class Q(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(obs_dim + act_dim, 16), nn.ReLU(), nn.Linear(16, 1))

        def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
            return self.net(torch.cat([obs, act], -1))

    qvalue = ValueOperator(Q(), in_keys=["observation", "action"])
    loss = SACLoss(actor, qvalue, num_qvalue_nets=2)
    g = torch.Generator().manual_seed(0)
    batch = TensorDict(
        {
            "observation": torch.randn(n, obs_dim, generator=g),
            "action": torch.rand(n, act_dim, generator=g) * 2 - 1,
            "task_id": (torch.arange(n) % 2).unsqueeze(-1),
            "next": {
                "observation": torch.randn(n, obs_dim, generator=g),
                "reward": torch.randn(n, 1, generator=g),
                "done": torch.zeros(n, 1, dtype=torch.bool),
                "terminated": torch.zeros(n, 1, dtype=torch.bool),
            },
        },
        [n],
    )
    q_before = loss.qvalue_network_params.detach().clone()
    pcgrad = PCGrad(loss, torch.optim.Adam(loss.parameters(), lr=1e-2), max_grad_norm=1.0)
    out = pcgrad.step(batch)
    assert {"loss_actor", "loss_qvalue", "loss_alpha"} <= set(out.keys())
    assert out["pcgrad/num_tasks"] == 2
    assert (loss.qvalue_network_params.detach() != q_before).any()
