"""Monitor keys, cadence, state and the TorchRL Trainer hook."""

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.collectors import Collector
from torchrl.envs import GymEnv
from torchrl.modules import ProbabilisticActor, ValueOperator
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import GAE
from torchrl.trainers import Trainer

from torchrl_sparse.plasticity import (
    ALL_METRICS,
    ObservationReservoir,
    PlasticityMonitor,
    PlasticityTrainerHook,
)


class TwoTaskTrunk(nn.Module):
    """Shared trunk plus one head per task, selected by the one-hot task id."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 8), nn.Tanh())
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3)) for _ in range(2)
        )

    def forward(self, obs: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        z = self.trunk(obs)
        logits = torch.stack([h(z) for h in self.heads], -2)
        return (logits * task.unsqueeze(-1)).sum(-2)


def _actor_critic() -> tuple[ProbabilisticActor, ValueOperator]:
    torch.manual_seed(0)
    actor = ProbabilisticActor(
        TensorDictModule(TwoTaskTrunk(), ["observation", "task"], ["logits"]),
        in_keys=["logits"],
        distribution_class=torch.distributions.Categorical,
        return_log_prob=True,
    )
    critic = ValueOperator(
        nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)), in_keys=["observation"]
    )
    return actor, critic


def _batch(n: int = 32) -> TensorDict:
    task = torch.nn.functional.one_hot(torch.arange(n) % 2, 2).float()
    return TensorDict({"observation": torch.randn(n, 4), "task": task}, [n])


def test_keys_for_actor_and_critic() -> None:
    actor, critic = _actor_critic()
    mon = PlasticityMonitor(
        {"actor": actor, "critic": critic},
        features={"actor": "module.0.module.trunk"},
        task_key="task",
        batch_size=16,
    )
    out = mon.compute(_batch(32))
    keys = set(out.keys())
    actor_layers = {"0.trunk.0", "0.trunk.2", "0.heads.0.0", "0.heads.1.0"}
    expected = {f"plasticity/actor/{m}" for m in ALL_METRICS}
    expected |= {f"plasticity/critic/{m}" for m in ALL_METRICS if m != "fisher_trace"}
    expected |= {f"plasticity/actor/dormant_ratio/{layer}" for layer in actor_layers}
    expected |= {f"plasticity/actor/dormant_ratio/task_{t}" for t in (0, 1)}
    expected |= {"plasticity/critic/dormant_ratio/0", "plasticity/critic/dormant_ratio/task_0"}
    expected |= {"plasticity/critic/dormant_ratio/task_1"}
    assert keys == expected
    assert out["plasticity/actor/srank"] <= 8  # the trunk's 8 features, not the 3 logits
    assert out["plasticity/actor/weight_drift"] == 0
    assert 0 <= out["plasticity/actor/dormant_ratio"] <= 1


def test_masks_change_counted_units() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    with torch.no_grad():
        net[0].bias[:2] = -100.0  # units 0 and 1 dead
    mask = torch.ones(4, 4, dtype=torch.bool)
    mask[0] = False
    mon = PlasticityMonitor({"q": net}, ["dormant_ratio"], masks={"q": {"0.weight": mask}})
    out = mon.compute(torch.randn(64, 4))
    assert out["plasticity/q/dormant_ratio"] == pytest.approx(1 / 3)


def test_cadence_state_dict_and_reservoir() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    reservoir = ObservationReservoir(capacity=50)
    reservoir.record(_batch(40))
    mon = PlasticityMonitor(
        {"net": net}, ["weight_drift", "srank"], every=100, reservoir=reservoir, batch_size=16
    )
    assert mon.step(60) is None
    with torch.no_grad():
        net[0].weight.add_(1.0)
    out = mon.step(60)  # batch comes from the reservoir
    assert out is not None
    assert out["plasticity/net/weight_drift"] == pytest.approx(8**0.5 * 4**0.5)
    state = mon.state_dict()
    fresh = PlasticityMonitor({"net": net}, ["weight_drift"], every=100, reservoir=reservoir)
    fresh.load_state_dict(state)
    assert fresh.step(79) is None and fresh.step(1) is not None
    assert fresh.compute()["plasticity/net/weight_drift"] > 0


def test_bad_arguments() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match="unknown metrics"):
        PlasticityMonitor({"net": net}, ["dormancy"])
    with pytest.raises(ValueError, match="delta must lie"):
        PlasticityMonitor({"net": net}, delta=1.0)
    with pytest.raises(ValueError, match="tau must be"):
        PlasticityMonitor({"net": net}, tau=-1)
    with pytest.raises(ValueError, match="unknown modules"):
        PlasticityMonitor({"net": net}, policies=["actor"])
    with pytest.raises(ValueError, match="no hidden layer"):
        PlasticityMonitor({"lin": nn.Linear(2, 2)}, ["dormant_ratio"])
    with pytest.raises(ValueError, match="empty"):
        PlasticityMonitor({"net": net}, ["srank"]).compute(torch.zeros(0, 4))


def test_trainer_hook_logs_on_cadence() -> None:
    torch.manual_seed(0)
    env = GymEnv("CartPole-v1")
    env.set_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    actor = ProbabilisticActor(
        TensorDictModule(net, ["observation"], ["logits"]),
        in_keys=["logits"],
        distribution_class=torch.distributions.Categorical,
        return_log_prob=True,
        spec=env.action_spec,
    )
    critic = ValueOperator(nn.Linear(4, 1), in_keys=["observation"])
    loss = ClipPPOLoss(actor, critic)
    trainer = Trainer(
        collector=Collector(env, actor, frames_per_batch=32, total_frames=128),
        total_frames=128,
        frame_skip=1,
        optim_steps_per_batch=1,
        loss_module=loss,
        optimizer=torch.optim.Adam(loss.parameters()),
        progress_bar=False,
        save_trainer_file=None,
    )
    gae = GAE(gamma=0.99, lmbda=0.95, value_network=critic)
    trainer.register_op("batch_process", gae)
    hook = PlasticityTrainerHook(
        PlasticityMonitor({"actor": actor}, ["dormant_ratio", "fisher_trace"], every=64)
    )
    hook.register(trainer)
    trainer.train()
    logged = trainer._log_dict
    assert len(logged["plasticity/actor/fisher_trace"]) == 2  # frames 64 and 128
    assert "plasticity/actor/dormant_ratio/0.0" in logged
    assert hook.state_dict()["schedule"]["steps"] == 128
