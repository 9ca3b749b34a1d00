"""Actors and critics plugged into TorchRL losses on the real environments."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.objectives import ClipPPOLoss, SACLoss, SoftUpdate
from torchrl.objectives.value import GAE

from torchrl_sparse.envs import make_minigrid_env
from torchrl_sparse.modules import (
    TaskTemperature,
    count_parameters,
    make_minigrid_network,
    make_ppo_actor,
    make_ppo_critic,
    make_sac_actor,
    make_sac_qvalue,
)


@pytest.mark.parametrize("arch", ["mtppo", "moe", "moore"])
def test_ppo_on_minigrid(arch: str) -> None:
    torch.manual_seed(0)
    env = make_minigrid_env("MT3", envs_per_task=2, seed=0)
    actor, critic = make_ppo_actor("MT3", arch), make_ppo_critic("MT3", arch)
    with torch.no_grad():
        data = env.rollout(8, actor, break_when_any_done=False)
        GAE(gamma=0.99, lmbda=0.95, value_network=critic)(data)
    assert data["action"].dtype == torch.int64 and data["action"].shape == (6, 8)
    loss = ClipPPOLoss(actor, critic, clip_epsilon=0.2, entropy_coeff=0.01)
    losses = loss(data.reshape(-1))
    (losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]).backward()
    assert all(p.grad is not None for p in actor.parameters())


def test_single_head_and_layer_norm_variants() -> None:
    single = make_ppo_actor("MT5", multi_head=False)
    assert count_parameters(single) == 10544 + (1024 + 5 + 1) * 128 + 129 * 7
    td = TensorDict({"observation": torch.zeros(2, 3, 7, 7), "task_id": torch.tensor([0, 4])}, [2])
    assert single(td)["logits"].shape == (2, 7)
    normed = make_ppo_critic("MT3", layer_norm="both")
    assert count_parameters(normed) == 404_531 + 2 * 1024 + 3 * 2 * 128


@pytest.mark.parametrize("arch", ["mtppo", "moe", "moore"])
@pytest.mark.parametrize(
    ("placement", "representation", "heads"),
    [("none", False, False), ("representation", True, False), ("heads", False, True),
     ("both", True, True)],
)  # fmt: skip
def test_layer_norm_placements(
    arch: str, placement: str, representation: bool, heads: bool
) -> None:
    net = make_minigrid_network("MT3", 7, arch=arch, layer_norm=placement)
    norms = {n: m for n, m in net.named_modules() if isinstance(m, torch.nn.LayerNorm)}
    assert {n for n in norms if n.startswith("encoder")} == (
        {"encoder.norm"} if representation else set()
    )
    assert {n for n in norms if n.startswith("head")} == (
        {f"head.heads.{t}.1" for t in range(3)} if heads else set()
    )
    # The heads read the normalised representation: zero mean per sample.
    features = net.features(torch.randn(4, 3, 7, 7) * 3, torch.tensor([0, 1, 2, 0]))
    means = features.mean(-1).abs()
    assert bool((means < 1e-5).all()) == representation


def test_unknown_layer_norm_placement_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"Unknown layer_norm placement 'encoder'; allowed: \['none'"
    ):
        make_ppo_actor("MT3", layer_norm="encoder")


@pytest.mark.parametrize("arch", ["mtsac", "moore"])
def test_sac_loss_with_twin_multi_head_critics(arch: str) -> None:
    torch.manual_seed(0)
    actor = make_sac_actor("MT10", arch=arch, width=64)
    qvalue = make_sac_qvalue("MT10", arch=arch, width=64)
    task_id = torch.arange(8) % 10
    obs = torch.randn(8, 39)
    batch = TensorDict(
        {
            "observation": obs,
            "task_id": task_id,
            "action": torch.rand(8, 4) * 2 - 1,
            "next": {
                "observation": obs + 0.1,
                "task_id": task_id,
                "reward": torch.randn(8, 1),
                "done": torch.zeros(8, 1, dtype=torch.bool),
                "terminated": torch.zeros(8, 1, dtype=torch.bool),
            },
        },
        [8],
    )
    loss = SACLoss(actor, qvalue, num_qvalue_nets=2)
    updater = SoftUpdate(loss, tau=0.005)
    out = loss(batch)
    (out["loss_actor"] + out["loss_qvalue"] + out["loss_alpha"]).backward()
    assert loss.qvalue_network_params["module", "head", "heads", "0", "weight"].shape[0] == 2
    updater.step()
    sample = actor(batch.select("observation", "task_id"))
    assert sample["action"].abs().max() <= 1


def test_task_temperature() -> None:
    temp = TaskTemperature(10, init_alpha=0.5)
    task_id = torch.tensor([1, 1, 4])
    assert torch.allclose(temp.alpha(task_id), torch.full((3,), 0.5))
    temp.loss(torch.tensor([1.0, 2.0, 3.0]), task_id, target_entropy=-4.0).backward()
    assert temp.log_alpha.grad.nonzero().squeeze(-1).tolist() == [1, 4]
    with pytest.raises(ValueError, match="init_alpha must be > 0"):
        TaskTemperature(3, init_alpha=0.0)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: make_ppo_actor("MT4"), "allowed: \\['MT3', 'MT5', 'MT7', 'MT10', 'MT50'\\]"),
        (lambda: make_ppo_actor("MT3", arch="pcgrad"), "allowed: \\['mtppo', 'moe', 'moore'\\]"),
        (lambda: make_ppo_actor("MT3", arch="moe", num_experts=0), "num_experts \\(k\\)"),
        (lambda: make_ppo_actor(4, arch="moore"), "needs num_experts"),
        (lambda: make_sac_actor("MT10", arch="mtppo"), "allowed: \\['mtsac', 'moe', 'moore'\\]"),
        (lambda: make_sac_qvalue("MT10", width=0), "width and num_layers must be >= 1"),
    ],
)
def test_bad_input(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
