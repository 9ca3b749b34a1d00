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

from torchrl_sparse.modules import make_ppo_actor
from torchrl_sparse.plasticity import (
    ALL_METRICS,
    ObservationReservoir,
    PlasticityMonitor,
    PlasticityTrainerHook,
    srank,
)

from .conftest import mt3_states


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


@pytest.mark.parametrize("arch", ["mtppo", "moe", "moore"])
def test_architectures_are_measured_on_the_same_kinds_of_layers(arch: str) -> None:
    torch.manual_seed(0)
    actor = make_ppo_actor("MT3", arch=arch)
    states = mt3_states()
    out = PlasticityMonitor(
        {"actor": actor}, ["dormant_ratio", "srank"], task_key="task_id"
    ).compute(states)
    layers = {
        k.removeprefix("plasticity/actor/dormant_ratio/")
        for k in sorted(out.keys())
        if k.startswith("plasticity/actor/dormant_ratio/") and "/task_" not in k
    }
    representation = "0.encoder.conv.4" if arch == "mtppo" else "0.encoder.activation"
    heads = {f"0.head.heads.{t}.0" for t in range(3)}
    convs = layers - heads - {representation}
    assert representation in layers and heads <= layers
    # hidden conv layers of the trunk (MTPPO) or of each of the 2 experts (MoE, MOORE)
    assert len(convs) == (2 if arch == "mtppo" else 4)
    assert all(".conv." in name for name in convs)
    # srank of the representation every head reads, without naming it
    net = actor.module[0].module
    features = net.features(states["observation"], states["task_id"])
    assert out["plasticity/actor/srank"] == srank(features)


def test_metrics_draw_from_their_own_checkpointed_generator() -> None:
    actor, critic = _actor_critic()
    batch = _batch(64)

    def monitor() -> PlasticityMonitor:
        return PlasticityMonitor(
            {"actor": actor, "critic": critic}, ["fisher_trace", "srank"], batch_size=16, seed=3
        )

    first = monitor()
    global_state = torch.get_rng_state()
    first.compute(batch)  # subsamples the batch and samples actions
    assert torch.equal(torch.get_rng_state(), global_state)
    resumed = monitor()
    resumed.load_state_dict(first.state_dict())
    expected = first.compute(batch)
    torch.manual_seed(123)  # the global generator plays no part
    assert (resumed.compute(batch) == expected).all()
    assert not (monitor().compute(batch) == expected).all()  # a fresh generator draws anew


def test_on_error_warn_logs_missing_once() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with torch.no_grad():
        net[0].weight[0, 0] = float("nan")  # the features hold NaN: no SVD
    metrics = ["dormant_ratio", "srank", "grad_norm"]
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        PlasticityMonitor({"net": net}, metrics).compute(torch.randn(8, 4))
    mon = PlasticityMonitor({"net": net}, metrics, on_error="warn")
    with pytest.warns(RuntimeWarning, match="srank could not be computed") as caught:
        out = mon.compute(torch.randn(8, 4))
        again = mon.compute(torch.randn(8, 4))
    assert len(caught) == 1
    for result in (out, again):
        assert result["plasticity/net/srank"].isnan()
        assert result["plasticity/net/dormant_ratio"].isnan()  # from the same forward pass
        assert result["plasticity/net/grad_norm"] == 0
    with pytest.raises(ValueError, match="on_error must be"):
        PlasticityMonitor({"net": net}, on_error="ignore")  # type: ignore[arg-type]
