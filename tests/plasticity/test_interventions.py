"""ReDo, Reset and shrink-and-perturb: effects on weights, masks and optimizer state."""

import copy

import pytest
import torch
from torch import nn

from torchrl_sparse.modules import make_ppo_actor
from torchrl_sparse.plasticity import (
    MaskProvider,
    ReDo,
    Reset,
    ShrinkAndPerturb,
    reset_optimizer_state,
)

from .conftest import mt3_states


def _net_with_dead_unit() -> tuple[nn.Sequential, torch.optim.Adam, dict[str, torch.Tensor]]:
    """Linear(3,4)-ReLU-Linear(4,2); unit 1 is dead, unit 3 has no incoming connection."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    mask = torch.ones(4, 3, dtype=torch.bool)
    mask[1, 0] = False  # pruned entry of the dead unit: must stay zero
    mask[3] = False  # unit 3 is fully pruned
    masks = {"0.weight": mask}
    with torch.no_grad():
        net[0].weight.mul_(mask)
        net[0].bias[1] = -100.0
        net[0].bias[3] = -1.0
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.randn(8, 3)).pow(2).sum().backward()
    opt.step()
    with torch.no_grad():  # what the sparsifier does after a step
        net[0].weight.mul_(mask)
        for v in opt.state[net[0].weight].values():
            if v.shape == mask.shape:
                v.mul_(mask)
    return net, opt, masks


@pytest.mark.parametrize("as_provider", [False, True])
def test_redo_weights_masks_and_adam_state(as_provider: bool) -> None:
    net, opt, masks = _net_with_dead_unit()
    before = copy.deepcopy(net.state_dict())
    state_before = {k: v.clone() for k, v in opt.state[net[0].weight].items()}
    next_before = {k: v.clone() for k, v in opt.state[net[2].weight].items()}
    mask_before = masks["0.weight"].clone()

    class Provider:
        def named_masks(self, module: nn.Module) -> dict[str, torch.Tensor]:
            return masks

    source = Provider() if as_provider else masks
    assert isinstance(Provider(), MaskProvider)
    redo = ReDo(net, opt, tau=0.0, every=1, masks=source)
    stats = redo.step(1, torch.randn(32, 3))
    # unit 3 is dormant too but has no incoming connection: left alone
    assert stats == {"redo/0": 1, "redo/total": 1}

    w = net[0].weight.detach()
    assert w[1, 0] == 0.0  # pruned connection not revived
    assert (w[1, 1:] != before["0.weight"][1, 1:]).all()  # active entries re-initialised
    assert (w[1, 1:] != 0).all()
    torch.testing.assert_close(w[[0, 2, 3]], before["0.weight"][[0, 2, 3]])
    assert net[0].bias[1] == 0.0
    torch.testing.assert_close(net[0].bias[[0, 2, 3]].detach(), before["0.bias"][[0, 2, 3]])
    nxt = net[2].weight.detach()
    assert (nxt[:, 1] == 0).all()
    torch.testing.assert_close(nxt[:, [0, 2, 3]], before["2.weight"][:, [0, 2, 3]])
    assert torch.equal(masks["0.weight"], mask_before)

    state = opt.state[net[0].weight]
    for key in ("exp_avg", "exp_avg_sq"):
        assert (state[key][1] == 0).all()
        torch.testing.assert_close(state[key][[0, 2, 3]], state_before[key][[0, 2, 3]])
        assert (opt.state[net[0].bias][key][1] == 0).all()
        assert (opt.state[net[2].weight][key][:, 1] == 0).all()
        torch.testing.assert_close(
            opt.state[net[2].weight][key][:, [0, 2, 3]], next_before[key][:, [0, 2, 3]]
        )
    assert state["step"] == state_before["step"]


def test_redo_conv_to_linear_zeroes_flattened_columns() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4, 3))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, 1.0]).view(2, 1, 1, 1))
        net[0].bias.copy_(torch.tensor([0.0, -100.0]))
    redo = ReDo(net, tau=0.0, every=1)
    assert redo.apply(torch.rand(4, 1, 2, 2))["redo/0"] == 1
    assert (net[3].weight[:, 4:] == 0).all()
    assert (net[3].weight[:, :4] != 0).all()


def test_redo_schedule_and_state_dict() -> None:
    net, opt, _ = _net_with_dead_unit()
    redo = ReDo(net, opt, every=5)
    fired = [redo.step(2, lambda: torch.randn(8, 3)) is not None for _ in range(6)]
    assert fired == [False, False, True, False, True, False]  # steps 2,4,6,8,10,12
    state = redo.state_dict()
    other = ReDo(net, opt, every=5)
    other.load_state_dict(state)
    assert other.state_dict() == state == {"steps": 12, "next_at": 15, "count": 2}


def test_reset_schedule_and_maximum() -> None:
    net, opt, _ = _net_with_dead_unit()
    first = net[0].weight.detach().clone()
    reset = Reset(net, ["2"], opt, every=10, max_resets=2)
    fired = []
    for _ in range(10):
        w = net[2].weight.detach().clone()
        out = reset.step(5)
        fired.append(out is not None)
        assert torch.equal(net[2].weight, w) != (out is not None)
    assert fired == [False, True, False, True] + [False] * 6
    assert reset.count == 2
    assert torch.equal(net[0].weight, first)  # other layers untouched
    assert net[2].weight not in opt.state and net[2].bias not in opt.state
    assert net[0].weight in opt.state
    restored = Reset(net, ["2"], opt, every=10, max_resets=2)
    restored.load_state_dict(reset.state_dict())
    assert restored.step(100) is None


def test_reset_respects_masks_and_patterns() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    mask = torch.rand(4, 3) > 0.5
    Reset(net, ["[0]"], every=1, masks={"0.weight": mask}).apply()
    assert (net[0].weight[~mask] == 0).all()
    with pytest.raises(ValueError, match="matches no submodule"):
        Reset(net, ["heads.*"])


def test_shrink_and_perturb() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(3, 2)
    w, b = lin.weight.detach().clone(), lin.bias.detach().clone()
    snp = ShrinkAndPerturb(lin, shrink=0.5, perturb=0.1, every=1)
    torch.manual_seed(7)
    snp.step(1)
    torch.manual_seed(7)
    fresh = copy.deepcopy(lin)
    fresh.reset_parameters()
    torch.testing.assert_close(lin.weight.detach(), 0.5 * w + 0.1 * fresh.weight.detach())
    torch.testing.assert_close(lin.bias.detach(), 0.5 * b + 0.1 * fresh.bias.detach())


def test_shrink_and_perturb_keeps_pruned_zero() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    mask = torch.rand(2, 4) > 0.5
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.randn(2, 3)).sum().backward()
    opt.step()
    ShrinkAndPerturb(net, opt, masks={"2.weight": mask}, reset_optimizer=True, every=1).apply()
    assert (net[2].weight[~mask] == 0).all()
    assert not opt.state[net[2].weight]


def test_reset_optimizer_state_columns_sgd() -> None:
    w = nn.Parameter(torch.ones(2, 3))
    opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    w.sum().backward()
    opt.step()
    reset_optimizer_state(opt, w, torch.tensor([False, True, False]), dim=1)
    buf = opt.state[w]["momentum_buffer"]
    assert (buf[:, 1] == 0).all() and (buf[:, [0, 2]] == 1).all()


def test_bad_arguments() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="tau must be"):
        ReDo(net, tau=-1.0)
    with pytest.raises(ValueError, match="every must be"):
        ReDo(net, every=0)
    with pytest.raises(ValueError, match="no hidden layer"):
        ReDo(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="shrink must lie"):
        ShrinkAndPerturb(net, shrink=1.5)
    with pytest.raises(ValueError, match="maximum count"):
        Reset(net, ["2"], max_resets=-1)
    with pytest.raises(ValueError, match="batch=None"):
        ReDo(net, every=1).step(1)
    with pytest.raises(ValueError, match="expected the parameter's shape"):
        ReDo(net, every=1, masks={"0.weight": torch.ones(2, 2, dtype=torch.bool)}).apply(
            torch.randn(2, 3)
        )


OPTIMIZERS = {
    "adam": lambda params: torch.optim.Adam(params, lr=1e-3),
    "sgd": lambda params: torch.optim.SGD(params, lr=1e-2, momentum=0.9),
    "rmsprop": lambda params: torch.optim.RMSprop(params, lr=1e-3, momentum=0.9),
}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("arch", ["mtppo", "moe", "moore"])
def test_redo_recycles_shared_units_for_every_expert_and_head(arch: str, optimizer: str) -> None:
    torch.manual_seed(0)
    actor = make_ppo_actor("MT3", arch=arch)
    net = actor.module[0].module
    opt = OPTIMIZERS[optimizer](actor.parameters())
    states = mt3_states()
    dist = actor.get_dist(states.copy())
    (-dist.log_prob(dist.sample()).mean()).backward()
    opt.step()  # every state tensor is non-zero now
    if arch == "mtppo":
        sources = {"encoder.conv.4": net.encoder.conv[4]}
    else:
        sources = {
            f"encoder.experts.{j}.conv.4": e.conv[4] for j, e in enumerate(net.encoder.experts)
        }
    masks = {
        f"module.0.module.{name}.weight": torch.rand_like(src.weight) > 0.3
        for name, src in sources.items()
    }
    dead = [3, 7]  # silence two channels of the representation: tanh(0) = 0 on every state
    with torch.no_grad():
        for name, src in sources.items():
            src.weight.mul_(masks[f"module.0.module.{name}.weight"])
            src.weight[dead] = 0.0
            src.bias[dead] = 0.0
    heads = [head[0] for head in net.head.heads]
    before = [head.weight.detach().clone() for head in heads]
    state_before = [{k: v.clone() for k, v in opt.state[h.weight].items()} for h in heads]

    stats = ReDo(actor, opt, tau=0.0, every=1, masks=masks).step(1, states)

    name = "0.encoder.conv.4" if arch == "mtppo" else "0.encoder.activation"
    assert stats[f"redo/{name}"] == 2
    cols = torch.zeros(1024, dtype=torch.bool)
    for channel in dead:  # a channel is 16 positions of the flattened 64 x 4 x 4 features
        cols[16 * channel : 16 * (channel + 1)] = True
    for head, w0, s0 in zip(heads, before, state_before, strict=True):
        assert (head.weight[:, cols] == 0).all()
        assert torch.equal(head.weight[:, ~cols], w0[:, ~cols])
        moments = [k for k, v in s0.items() if v.shape == w0.shape]
        assert moments
        for key in moments:
            assert (opt.state[head.weight][key][:, cols] == 0).all()
            assert (s0[key][:, cols] != 0).any()
            assert torch.equal(opt.state[head.weight][key][:, ~cols], s0[key][:, ~cols])
    for name, src in sources.items():
        mask = masks[f"module.0.module.{name}.weight"]
        assert (src.weight[dead][mask[dead]] != 0).all()  # re-initialised where active
        assert (src.weight[dead][~mask[dead]] == 0).all()  # pruned entries stay pruned
        assert (src.bias[dead] == 0).all()
        for key, value in opt.state[src.weight].items():
            if value.shape == src.weight.shape:
                assert (value[dead] == 0).all(), key


def test_reset_refuses_layers_without_parameters() -> None:
    """A head with LayerNorm shifts the indices: '*.2' is then a Tanh, not the output layer."""
    actor = make_ppo_actor("MT3", layer_norm="heads")
    with pytest.raises(ValueError, match="matches modules without parameters"):
        Reset(actor, ["*head.heads.*.2"], None, every=10)


def test_reset_callback_defaults_to_every_heads_last_linear() -> None:
    from torchrl_sparse.lightning.plasticity import head_output_layers

    for placement in ("none", "both"):
        actor = make_ppo_actor("MT3", layer_norm=placement)
        names = head_output_layers(actor)
        modules = dict(actor.named_modules())
        assert len(names) == 3
        assert all(isinstance(modules[n], torch.nn.Linear) for n in names)
        assert all(modules[n].out_features == 7 for n in names)
