"""The plasticity loss hook on a real ClipPPOLoss."""

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.modules import ProbabilisticActor, ValueOperator
from torchrl.objectives import ClipPPOLoss

from torchrl_sparse.objectives import PlasticityLossHook
from torchrl_sparse.plasticity import PlasticityMonitor


def test_loss_hook_adds_metrics_on_cadence() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    actor = ProbabilisticActor(
        TensorDictModule(net, ["observation"], ["logits"]),
        in_keys=["logits"],
        distribution_class=torch.distributions.Categorical,
        return_log_prob=True,
    )
    loss = ClipPPOLoss(actor, ValueOperator(nn.Linear(4, 1), in_keys=["observation"]))
    monitor = PlasticityMonitor({"actor": actor}, ["dormant_ratio", "fisher_trace"], every=2)
    handle = PlasticityLossHook(monitor).register(loss)
    batch = TensorDict(
        {
            "observation": torch.randn(8, 4),
            "action": torch.randint(2, (8,)),
            "action_log_prob": torch.full((8,), -0.7),
            "advantage": torch.randn(8, 1),
            "value_target": torch.randn(8, 1),
        },
        [8],
    )
    first, second = loss(batch), loss(batch)
    # TensorDict does not support `in`, so compare key sets
    assert "plasticity/actor/fisher_trace" not in set(first.keys())
    assert "plasticity/actor/fisher_trace" in set(second.keys())
    total = sum(v for k, v in second.items() if k.startswith("loss_"))
    total.backward()  # metric entries do not enter the loss
    handle.remove()
    assert "plasticity/actor/dormant_ratio" not in set(loss(batch).keys())
