"""StackedNetworkView: one live copy of SACLoss's stacked Q-networks for plasticity metrics."""

import pytest
import torch
from tensordict import TensorDict

from torchrl_sparse.objectives import MultiTaskSACLoss, StackedNetworkView
from torchrl_sparse.plasticity import PlasticityMonitor, dormant_ratio
from torchrl_sparse.plasticity.masks import resolve_masks
from torchrl_sparse.sparse import Sparsifier, StaticSparse

from .test_multitask_sac import make_batch, make_loss


def q_of_copy(loss: MultiTaskSACLoss, index: int, batch: TensorDict) -> torch.Tensor:
    """The loss's own functional evaluation of Q-network ``index``."""
    with loss.qvalue_network_params[index].to_module(loss.qvalue_network):
        return loss.qvalue_network(batch.copy())["state_action_value"]


@pytest.mark.parametrize("index", [0, 1])
def test_view_is_the_live_copy(index: int) -> None:
    loss = make_loss()
    view = StackedNetworkView(loss, "qvalue_network", index)
    batch = make_batch()
    torch.testing.assert_close(
        view(batch.copy())["state_action_value"], q_of_copy(loss, index, batch)
    )
    # An optimizer step on the loss changes what the view computes, with no copy in between.
    optimizer = torch.optim.SGD(loss.qvalue_network_params.values(True, True), lr=0.1)
    loss(batch)["loss_qvalue"].backward()
    optimizer.step()
    torch.testing.assert_close(
        view(batch.copy())["state_action_value"], q_of_copy(loss, index, batch)
    )
    assert all(not p.requires_grad for p in view.parameters())


def test_the_two_copies_differ_and_the_view_is_outside_the_loss() -> None:
    loss = make_loss()
    keys = set(loss.state_dict())
    views = [StackedNetworkView(loss, "qvalue_network", i) for i in (0, 1)]
    batch = make_batch()
    outputs = [v(batch.copy())["state_action_value"] for v in views]
    assert not torch.allclose(outputs[0], outputs[1])
    assert set(loss.state_dict()) == keys


def test_action_source_samples_missing_actions_only() -> None:
    loss = make_loss()
    view = StackedNetworkView(loss, "qvalue_network", 0, action_source=loss.actor_network)
    assert view.in_keys == ["observation", "task_id"]
    assert not any(name.startswith("actor") for name, _ in view.named_parameters())
    batch = make_batch()
    # With the action given, the actor is not consulted.
    torch.testing.assert_close(view(batch.copy())["state_action_value"], q_of_copy(loss, 0, batch))
    torch.manual_seed(3)
    states = batch.exclude("action")
    first = view(states.copy())
    torch.manual_seed(4)
    second = view(states.copy())
    assert first["action"].shape == batch["action"].shape
    assert first["action"].abs().max() <= 1
    assert not torch.equal(first["action"], second["action"])  # sampled, not the mean
    torch.testing.assert_close(first["state_action_value"], q_of_copy(loss, 0, first))


def test_gradients_and_masks_are_the_copy_slices() -> None:
    loss = make_loss()
    optimizer = torch.optim.Adam(loss.parameters(), lr=1e-3)
    sparsifier = Sparsifier(
        loss, {"qvalue_network.*": 0.7}, method=StaticSparse(), optimizer=optimizer
    )
    view = StackedNetworkView(loss, "qvalue_network", 1)
    loss(make_batch())["loss_qvalue"].backward()
    view.refresh_gradients()
    stacked = loss.qvalue_network_params["module", "encoder", "0", "weight"]
    weight = view.network.module.encoder[0].weight
    assert torch.equal(weight.grad, stacked.grad[1])
    masks = resolve_masks(view.masks_from(sparsifier), view)
    assert set(masks) == {
        n for n, p in view.named_parameters() if n.endswith("weight") and p.dim() == 2
    }
    (loss_name,) = [n for n, p in loss.named_parameters() if p is stacked]
    assert torch.equal(
        masks["network.module.encoder.0.weight"], sparsifier.named_masks(loss)[loss_name][1]
    )
    assert torch.all(weight[~masks["network.module.encoder.0.weight"]] == 0)
    # The dormant ratio accepts them (units without incoming connections are not counted).
    stats = dormant_ratio(view, make_batch(), tau=0.1, masks=masks)
    assert 0 <= stats.overall <= 1


def test_monitor_reports_the_critic() -> None:
    loss = make_loss()
    view = StackedNetworkView(loss, "qvalue_network", 0, action_source=loss.actor_network)
    monitor = PlasticityMonitor(
        {"critic": view},
        ["dormant_ratio", "srank", "weight_norm", "fisher_trace"],
        features={"critic": "network.module.encoder"},
        task_key="task_id",
    )
    out = monitor.compute(make_batch().exclude("action"))
    assert "plasticity/critic/dormant_ratio" in out
    assert "plasticity/critic/srank" in out
    assert "plasticity/critic/fisher_trace" not in out  # not a policy
    expected = sum(float(p.pow(2).sum()) for p in loss.qvalue_network_params[0].values(True, True))
    assert float(out["plasticity/critic/weight_norm"]) == pytest.approx(expected**0.5, rel=1e-5)


@pytest.mark.parametrize(
    ("network", "index", "error", "message"),
    [
        ("value_network", 0, ValueError, "has no functional network 'value_network'"),
        ("actor_network", 0, ValueError, r"must be stacked along one leading dimension"),
        ("qvalue_network", 2, IndexError, r"index 2 out of range; allowed: 0\.\.1"),
    ],
)
def test_bad_input(network: str, index: int, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        StackedNetworkView(make_loss(), network, index)
