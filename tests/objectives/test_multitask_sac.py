"""MultiTaskSACLoss: per-task temperatures checked against hand computations on a tiny batch."""

import math

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs import ExplorationType, set_exploration_type
from torchrl.objectives import SoftUpdate

from torchrl_sparse.modules import make_sac_actor, make_sac_qvalue
from torchrl_sparse.objectives.multitask_sac import MultiTaskSACLoss
from torchrl_sparse.sparse import GMP, CubicSchedule, Sparsifier

NUM_TASKS = 3
ALPHAS = torch.tensor([0.5, 2.0, 4.0])
TASKS = torch.tensor([0, 0, 1, 2, 2, 2])


def make_loss(**kwargs) -> MultiTaskSACLoss:
    torch.manual_seed(0)
    actor = make_sac_actor(NUM_TASKS, width=16, num_layers=2)
    qvalue = make_sac_qvalue(NUM_TASKS, width=16, num_layers=2)
    loss = MultiTaskSACLoss(actor, qvalue, num_tasks=NUM_TASKS, **kwargs)
    with torch.no_grad():
        loss.log_alpha.copy_(ALPHAS.log())
    return loss


def make_batch(tasks: torch.Tensor = TASKS) -> TensorDict:
    g = torch.Generator().manual_seed(1)
    n = len(tasks)
    return TensorDict(
        {
            "observation": torch.randn(n, 39, generator=g),
            "task_id": tasks.clone(),
            "action": torch.rand(n, 4, generator=g) * 2 - 1,
            "next": {
                "observation": torch.randn(n, 39, generator=g),
                "task_id": tasks.clone(),
                "reward": torch.randn(n, 1, generator=g),
                "done": torch.tensor([[False], [True], [False], [False], [True], [False]])[:n],
                "terminated": torch.tensor([[False], [True], [False], [False], [False], [False]])[
                    :n
                ],
            },
        },
        [n],
    )


def sample_with_log_prob(loss: MultiTaskSACLoss, td: TensorDict, seed: int):
    torch.manual_seed(seed)
    with set_exploration_type(ExplorationType.RANDOM):
        dist = loss.actor_network.get_dist(td.select("observation", "task_id"))
        action = dist.rsample()
        return action, dist.log_prob(action)


def q_values(loss: MultiTaskSACLoss, td: TensorDict, action, params) -> torch.Tensor:
    values = []
    for j in range(loss.num_qvalue_nets):
        with params[j].to_module(loss.qvalue_network):
            q_td = td.select("observation", "task_id").set("action", action)
            values.append(loss.qvalue_network(q_td)["state_action_value"].squeeze(-1))
    return torch.stack(values)


def test_log_alpha_is_per_task_and_target_entropy_is_minus_action_dim() -> None:
    loss = make_loss()
    assert loss.log_alpha.shape == (NUM_TASKS,)
    assert isinstance(loss.log_alpha, torch.nn.Parameter)
    assert loss.target_entropy.item() == -4.0
    assert loss.qvalue_network_params.batch_size == (2,)  # the twin critics stay stacked
    assert torch.allclose(loss.task_alpha(TASKS), ALPHAS[TASKS])
    fixed = make_loss(fixed_alpha=True)
    assert "log_alpha" in dict(fixed.named_buffers())


def test_actor_loss_uses_each_samples_task_alpha() -> None:
    loss = make_loss()
    td = make_batch()
    torch.manual_seed(5)
    loss_actor, metadata = loss.actor_loss(td.clone())

    action, log_prob = sample_with_log_prob(loss, td, seed=5)
    min_q = q_values(loss, td, action, loss.qvalue_network_params.detach()).min(0).values
    expected = (ALPHAS[TASKS] * log_prob - min_q).mean()
    torch.testing.assert_close(metadata["log_prob"], log_prob.detach())
    torch.testing.assert_close(loss_actor, expected)
    # A scalar (mean) temperature would give a different loss on this batch.
    scalar = (ALPHAS.mean() * log_prob - min_q).mean()
    assert not torch.allclose(loss_actor, scalar)


def test_q_target_uses_each_samples_task_alpha() -> None:
    loss = make_loss()
    td = make_batch()
    torch.manual_seed(7)
    target = loss._compute_target_v2(td.clone())

    next_td = td["next"]
    with torch.no_grad():
        action, log_prob = sample_with_log_prob(loss, next_td, seed=7)
        next_q = q_values(loss, next_td, action, loss.target_qvalue_network_params)
        soft_value = (next_q - ALPHAS[TASKS] * log_prob).min(0).values
    not_terminal = (~next_td["terminated"]).float().squeeze(-1)
    expected = next_td["reward"].squeeze(-1) + 0.99 * not_terminal * soft_value
    torch.testing.assert_close(target, expected)


def test_alpha_loss_per_task_hand_computation_and_gradients() -> None:
    loss = make_loss()
    log_prob = torch.tensor([-1.0, -3.0, 2.0, -4.0, 0.0, -6.0])
    per_sample = loss.alpha_loss(log_prob, TASKS)
    log_alpha = ALPHAS.log()
    expected = torch.stack(
        [-log_alpha[t] * (lp + -4.0) for lp, t in zip(log_prob, TASKS.tolist(), strict=True)]
    )
    torch.testing.assert_close(per_sample, expected)
    per_sample.mean().backward()
    # d/dlog_alpha[k] = -sum_{i in task k} (log_prob_i - 4) / N
    grad = torch.tensor([-((-1 - 4) + (-3 - 4)), -(2 - 4), -((-4 - 4) + (0 - 4) + (-6 - 4))]) / 6
    torch.testing.assert_close(loss.log_alpha.grad, grad)


def test_forward_outputs_and_only_present_tasks_get_alpha_gradient() -> None:
    loss = make_loss()
    td = make_batch(torch.tensor([0, 0, 1, 1, 0, 1]))  # no sample of task 2
    out = loss(td)
    assert set(out.keys()) == {"loss_actor", "loss_qvalue", "loss_alpha", "alpha", "entropy"}
    assert out["alpha"].item() == pytest.approx(ALPHAS.mean().item(), rel=1e-6)
    out["loss_alpha"].backward()
    grad = loss.log_alpha.grad
    assert grad[0] != 0 and grad[1] != 0 and grad[2] == 0
    # loss_alpha is the batch mean of the per-task terms, with the actor's own log-probs.
    log_alpha = ALPHAS.log()
    assert math.isfinite(out["loss_alpha"].item())
    assert out["loss_alpha"].item() != pytest.approx(
        -(log_alpha.mean() * (-out["entropy"] - 4.0)).item()
    )


def test_errors_name_the_bad_value() -> None:
    actor = make_sac_actor(NUM_TASKS, width=8, num_layers=1)
    qvalue = make_sac_qvalue(NUM_TASKS, width=8, num_layers=1)
    with pytest.raises(ValueError, match="num_tasks must be >= 1, got 0"):
        MultiTaskSACLoss(actor, qvalue, num_tasks=0)
    with pytest.raises(ValueError, match="alpha_init must be > 0, got -1"):
        MultiTaskSACLoss(actor, qvalue, num_tasks=3, alpha_init=-1.0)
    loss = make_loss()
    with pytest.raises(ValueError, match=r"task ids must lie in \[0, 3\)"):
        loss.task_alpha(torch.tensor([0, 5]))
    with pytest.raises(KeyError, match="task_id"):
        loss.actor_loss(make_batch().exclude("task_id"))


def test_sparsifier_masks_stacked_and_target_q_networks() -> None:
    loss = make_loss()
    updater = SoftUpdate(loss, tau=0.5)
    optimizer = torch.optim.Adam(loss.parameters(), lr=1e-2)
    sparsifier = Sparsifier(
        loss,
        {"actor_network.*": 0.5, "qvalue_network.*": 0.8},
        method=GMP(CubicSchedule(start=0, end=2, update_every=1)),
        total_steps=3,
        optimizer=optimizer,
    )
    sparsifier.apply_masks()
    q_targets = [t for t in sparsifier.targets if t.layer.startswith("qvalue_network")]
    assert q_targets and all(t.stack_dims == 1 for t in q_targets)
    for _ in range(3):
        out = loss(make_batch())
        optimizer.zero_grad()
        (out["loss_actor"] + out["loss_qvalue"] + out["loss_alpha"]).backward()
        optimizer.step()
        updater.step()
        sparsifier.step()
    for target, mask in zip(sparsifier.targets, sparsifier.masks, strict=True):
        assert torch.all(target.param[~mask] == 0), target.name
        for copy_ in target.copies:
            assert torch.all(copy_[~mask] == 0), target.name
    stats = sparsifier.stats()
    q_layers = [k for k in stats if k.startswith("sparsity/qvalue_network")]
    assert q_layers and all(stats[k] == pytest.approx(0.8, abs=0.02) for k in q_layers)


def test_fresh_loss_loads_a_trained_state_dict_strictly() -> None:
    trained = make_loss()
    trained(make_batch())
    container = torch.nn.ModuleDict({"loss": make_loss()})
    container.load_state_dict({f"loss.{k}": v for k, v in trained.state_dict().items()})
    assert "_target_entropy" in dict(container["loss"].named_buffers())
