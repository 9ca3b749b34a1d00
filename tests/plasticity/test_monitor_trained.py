"""The monitor measures the networks being trained, not the stale copies TorchRL losses leave.

``SACLoss`` stacks its Q-networks into ``loss.qvalue_network_params`` and trains those: the
Q-network module given to it never changes. With ``trained_by`` the monitor refuses it and
names the live copy, :class:`StackedNetworkView`, whose metrics follow training.
"""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from tensordict import TensorDictBase
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.envs import GymEnv
from torchrl.modules import MLP, ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import SACLoss

from torchrl_sparse.lightning import MultiTaskSAC, PlasticityMonitorCallback
from torchrl_sparse.objectives import StackedNetworkView
from torchrl_sparse.plasticity import PlasticityMonitor

METRICS = ["dormant_ratio", "srank", "weight_norm"]


@pytest.fixture
def sac() -> tuple[ProbabilisticActor, ValueOperator, SACLoss, TensorDictBase]:
    """A plain TorchRL SAC on Pendulum, as the guide builds it, and 64 random transitions."""
    torch.manual_seed(0)
    env = GymEnv("Pendulum-v1")
    env.set_seed(0)
    actor = ProbabilisticActor(
        TensorDictModule(
            nn.Sequential(MLP(in_features=3, out_features=2, num_cells=[32, 32]),
                          NormalParamExtractor()),
            ["observation"], ["loc", "scale"],
        ),
        in_keys=["loc", "scale"], distribution_class=TanhNormal, spec=env.action_spec,
    )  # fmt: skip
    qvalue = ValueOperator(
        MLP(in_features=4, out_features=1, num_cells=[32, 32]), ["observation", "action"]
    )
    loss = SACLoss(actor, qvalue, num_qvalue_nets=2)
    return actor, qvalue, loss, env.rollout(64).reshape(-1)


def _train(loss: SACLoss, optimizer: torch.optim.Optimizer, data: TensorDictBase) -> None:
    for _ in range(5):
        losses = loss(data)
        optimizer.zero_grad()
        (losses["loss_qvalue"] + losses["loss_actor"] + losses["loss_alpha"]).backward()
        optimizer.step()


@pytest.mark.parametrize("trained_by", ["optimizer", "loss"])
def test_the_q_network_given_to_sacloss_is_refused(sac, trained_by: str) -> None:
    actor, qvalue, loss, _ = sac
    optimizer = torch.optim.Adam(loss.parameters(), lr=1e-3)
    source = optimizer if trained_by == "optimizer" else loss
    with pytest.raises(ValueError, match=r"'critic' holds none of the parameters") as error:
        PlasticityMonitor({"actor": actor, "critic": qvalue}, METRICS, trained_by=source)
    assert "StackedNetworkView(loss, 'qvalue_network', 0, action_source=actor)" in str(error.value)
    if trained_by == "loss":  # the loss tells which of its networks copied the module
        assert "SACLoss trains a copy of it, loss.qvalue_network_params" in str(error.value)


def test_the_stale_copy_never_changes_while_the_live_view_does(sac) -> None:
    actor, qvalue, loss, data = sac
    optimizer = torch.optim.Adam(loss.parameters(), lr=1e-2)
    critic = StackedNetworkView(loss, "qvalue_network", 0, action_source=actor)
    monitor = PlasticityMonitor(
        {"actor": actor, "critic": critic}, METRICS, trained_by=optimizer, every=1
    )
    stale = PlasticityMonitor({"critic": qvalue}, METRICS)  # what the guide's users got
    states, transitions = data.select("observation"), data.select("observation", "action")
    before, stale_before = monitor.compute(states), stale.compute(transitions)
    _train(loss, optimizer, data)
    after, stale_after = monitor.compute(states), stale.compute(transitions)

    assert (
        stale_after["plasticity/critic/weight_norm"]
        == stale_before["plasticity/critic/weight_norm"]
    )
    for name in ("actor", "critic"):
        assert after[f"plasticity/{name}/weight_norm"] != before[f"plasticity/{name}/weight_norm"]
    live_norm = torch.cat([p.flatten() for p in loss.qvalue_network_params[0].values(True, True)])
    assert float(after["plasticity/critic/weight_norm"]) == pytest.approx(
        live_norm.norm().item(), rel=1e-5
    )
    assert after["plasticity/critic/srank"] >= 1


def test_a_module_trained_by_one_of_several_optimizers_passes(sac) -> None:
    actor, _, loss, _ = sac
    actor_optimizer = torch.optim.Adam(loss.actor_network_params.values(True, True))
    critic_optimizer = torch.optim.Adam(loss.qvalue_network_params.values(True, True))
    critic = StackedNetworkView(loss, "qvalue_network", 1, action_source=actor)
    monitor = PlasticityMonitor(
        {"actor": actor, "critic": critic}, METRICS, trained_by=[actor_optimizer, critic_optimizer]
    )
    assert set(monitor.modules) == {"actor", "critic"}
    with pytest.raises(ValueError, match="'actor' holds none"):
        PlasticityMonitor({"actor": actor}, METRICS, trained_by=critic_optimizer)
    with pytest.raises(TypeError, match="trained_by must be optimizers or modules"):
        PlasticityMonitor({"actor": actor}, METRICS, trained_by=[actor_optimizer, "critic"])


class _SACMonitoringItsLossCopy(MultiTaskSAC):
    """Monitors ``loss_module.qvalue_network``, the Q-network SACLoss copied but never trains."""

    def monitored_networks(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.loss_module.qvalue_network}


def test_the_lightning_callback_refuses_a_network_its_optimizers_do_not_train() -> None:
    module = _SACMonitoringItsLossCopy(
        ["reach-v3"], width=16, num_layers=1, total_frames=100, frames_per_batch=100,
        batch_size=10, buffer_size=100, eval_every_frames=0,
    )  # fmt: skip
    trainer = pl.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[PlasticityMonitorCallback(["weight_norm"])],
    )  # fmt: skip
    with pytest.raises(
        ValueError, match=r"'critic' holds none of the parameters .* StackedNetworkView"
    ):
        trainer.fit(module)


def test_without_trained_by_a_network_that_never_changes_is_flagged(sac) -> None:
    import warnings

    actor, qvalue, loss, data = sac
    optimizer = torch.optim.Adam(loss.parameters(), lr=1e-2)
    critic = StackedNetworkView(loss, "qvalue_network", 0, action_source=actor)
    live = PlasticityMonitor({"actor": actor, "critic": critic}, METRICS)
    stale = PlasticityMonitor({"critic": qvalue}, METRICS)  # the guide's users' mistake
    states, transitions = data.select("observation"), data.select("observation", "action")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            live.compute(states)
            stale.compute(transitions)
            _train(loss, optimizer, data)
    flagged = [str(w.message) for w in caught if "have not changed" in str(w.message)]
    assert len(flagged) == 1  # the stale critic, once; the trained networks never
    assert flagged[0].startswith("The weights of 'critic' have not changed")
    assert "StackedNetworkView(loss, 'qvalue_network'" in flagged[0]
