"""The sparsifier attached to real TorchRL losses, trained on real gymnasium environments."""

import pytest
import torch
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.envs import GymEnv
from torchrl.modules import MLP, ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import ClipPPOLoss, SACLoss, SoftUpdate
from torchrl.objectives.value import GAE

from torchrl_sparse.sparse import SET, ConstantSchedule, Sparsifier, num_active


@pytest.fixture(scope="module")
def cartpole_rollout():
    torch.manual_seed(0)
    env = GymEnv("CartPole-v1")
    env.set_seed(0)
    return env, env.rollout(64, break_when_any_done=False)


def make_ppo_loss(env) -> ClipPPOLoss:
    torch.manual_seed(0)
    n_obs = env.observation_spec["observation"].shape[-1]
    n_act = env.action_spec.shape[-1]
    actor = ProbabilisticActor(
        TensorDictModule(
            MLP(in_features=n_obs, out_features=n_act, num_cells=[64, 64]),
            ["observation"],
            ["logits"],
        ),
        in_keys=["logits"],
        distribution_class=torch.distributions.OneHotCategorical,
        spec=env.action_spec,
        return_log_prob=True,
    )
    critic = ValueOperator(
        MLP(in_features=n_obs, out_features=1, num_cells=[64, 64]), in_keys=["observation"]
    )
    return ClipPPOLoss(actor, critic, entropy_coeff=0.01)


def test_ppo_actor_and_critic_with_own_targets(cartpole_rollout) -> None:
    env, rollout = cartpole_rollout
    loss = make_ppo_loss(env)
    optimizer = torch.optim.Adam(loss.parameters(), lr=1e-3)
    sparsifier = Sparsifier(
        loss,
        {"actor_network.*": 0.95, "critic_network.*": 0.5},
        method=SET(schedule=ConstantSchedule(update_every=2)),
        optimizer=optimizer,
    )
    gae = GAE(gamma=0.99, lmbda=0.95, value_network=loss.critic_network)
    for _ in range(6):
        batch = rollout.clone()
        with torch.no_grad():
            loss.actor_network(batch)
            gae(batch)
        losses = loss(batch)
        optimizer.zero_grad()
        (losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]).backward()
        optimizer.step()
        sparsifier.step()

    # PPO's functional params are the module's own: the actor module itself is sparse.
    actor_masks = sparsifier.named_masks(loss.actor_network)
    assert len(actor_masks) == 3
    for name, param in loss.actor_network.named_parameters():
        if name in actor_masks:
            mask = actor_masks[name]
            assert torch.all(param[~mask] == 0)
            assert int(mask.sum()) == num_active(0.05, mask.numel())
    stats = sparsifier.stats()
    critic_layers = [k for k in stats if k.startswith("sparsity/critic_network")]
    assert len(critic_layers) == 3
    assert all(stats[k] == pytest.approx(0.5, abs=1e-2) for k in critic_layers)
    for target, mask in zip(sparsifier.targets, sparsifier.masks, strict=True):
        for value in optimizer.state[target.param].values():
            if value.shape == mask.shape:
                assert torch.all(value[~mask] == 0)


def make_sac_loss(env) -> SACLoss:
    torch.manual_seed(0)
    n_obs = env.observation_spec["observation"].shape[-1]
    n_act = env.action_spec.shape[-1]
    actor = ProbabilisticActor(
        TensorDictModule(
            nn.Sequential(
                MLP(in_features=n_obs, out_features=2 * n_act, num_cells=[32, 32]),
                NormalParamExtractor(),
            ),
            ["observation"],
            ["loc", "scale"],
        ),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        spec=env.action_spec,
        return_log_prob=True,
    )

    class QValue(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = MLP(in_features=n_obs + n_act, out_features=1, num_cells=[32, 32])

        def forward(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
            return self.net(torch.cat([observation, action], -1))

    qvalue = ValueOperator(QValue(), in_keys=["observation", "action"])
    return SACLoss(actor, qvalue, num_qvalue_nets=2)


def test_sac_stacked_and_target_q_networks() -> None:
    env = GymEnv("Pendulum-v1")
    env.set_seed(0)
    torch.manual_seed(0)
    rollout = env.rollout(64, break_when_any_done=False)
    loss = make_sac_loss(env)
    updater = SoftUpdate(loss, tau=0.5)
    optimizer = torch.optim.Adam(loss.parameters(), lr=1e-2)
    sparsifier = Sparsifier(
        loss,
        {"qvalue_network.*": 0.8, "actor_network.*": 0.5},
        method=SET(schedule=ConstantSchedule(update_every=2)),
        optimizer=optimizer,
    )
    q_targets = [t for t in sparsifier.targets if t.layer.startswith("qvalue_network")]
    assert q_targets and all(t.stack_dims == 1 and len(t.copies) == 1 for t in q_targets)
    for _ in range(7):
        losses = loss(rollout.clone())
        optimizer.zero_grad()
        (losses["loss_actor"] + losses["loss_qvalue"] + losses["loss_alpha"]).backward()
        optimizer.step()
        updater.step()
        sparsifier.step()
        for target, mask in zip(sparsifier.targets, sparsifier.masks, strict=True):
            assert torch.all(target.param[~mask] == 0), target.name
            for copy_ in target.copies:  # the target Q-networks, through SoftUpdate
                assert torch.all(copy_[~mask] == 0), target.name
    for target, mask in zip(
        q_targets, [sparsifier.masks[sparsifier.targets.index(t)] for t in q_targets], strict=True
    ):
        # Each stacked Q-network is sparse on its own, with its own topology.
        per_copy = mask.reshape(2, -1).sum(1).tolist()
        assert per_copy == [num_active(0.2, target.unit_numel)] * 2
        assert not torch.equal(mask[0], mask[1])
        assert target.copies[0].abs().sum() > 0
