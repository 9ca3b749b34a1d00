"""Tests for the activation probes and the hidden-layer rule."""

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.modules import MLP

from torchrl_sparse.modules import make_minigrid_network, make_sac_network
from torchrl_sparse.plasticity import ActivationProbe, HiddenLayer, find_hidden_layers


def _no_hooks(module: nn.Module) -> bool:
    return all(not m._forward_hooks for m in module.modules())


def test_mlp_hidden_layers_exclude_output() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    assert find_hidden_layers(net) == [
        HiddenLayer("0", "1", ("0",), ("2",)),
        HiddenLayer("2", "3", ("2",), ("4",)),
    ]


def test_cnn_channels_are_units_and_flatten_maps_to_linear() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 4, 2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4, 5), nn.Tanh(), nn.Linear(5, 2)
    )
    layers = find_hidden_layers(net)
    assert [(h.sources, h.consumers) for h in layers] == [(("0",), ("3",)), (("3",), ("5",))]
    with ActivationProbe(net) as probe:
        net(torch.randn(2, 3, 3, 3))
    assert probe.activations["0"].shape == (2, 4, 2, 2)
    # a channel is one unit, in the conv layout and flattened channel-major alike
    act = probe.activations["0"]
    means = layers[0].unit_abs_mean(net, act)
    assert means.shape == (2, 4)
    torch.testing.assert_close(layers[0].unit_abs_mean(net, act.flatten(1)), means)
    torch.testing.assert_close(means, act.abs().mean((2, 3)))
    assert _no_hooks(net)


def test_layernorm_before_activation_maps_to_linear() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 1))
    assert find_hidden_layers(net) == [HiddenLayer("0", "2", ("0",), ("3",))]


def test_tensordict_module_names_are_readable() -> None:
    mlp = MLP(in_features=4, out_features=2, num_cells=[8, 8], activation_class=nn.ReLU)
    tdm = TensorDictModule(mlp, ["observation"], ["out"])
    names = [h.name for h in find_hidden_layers(tdm)]
    assert names == ["0", "2"]
    probe = ActivationProbe.capture(tdm, TensorDict({"observation": torch.randn(5, 4)}, [5]))
    assert set(probe.activations) == {"0", "2"}
    assert _no_hooks(tdm)


def test_hooks_removed_on_error() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(RuntimeError), ActivationProbe(net):
        net(torch.randn(2, 5))
    assert _no_hooks(net)


def test_no_hidden_layer_is_an_error() -> None:
    with pytest.raises(ValueError, match="no hidden layer"):
        ActivationProbe(nn.Linear(4, 2))


def _layers_by_name(module: nn.Module) -> dict[str, HiddenLayer]:
    return {h.name: h for h in find_hidden_layers(module)}


@pytest.mark.parametrize("arch", ["mtppo", "moe", "moore"])
def test_multi_task_networks_probe_the_shared_representation(arch: str) -> None:
    # The representation every task head reads is a hidden layer for all three architectures,
    # produced by the last conv of the trunk (MTPPO) or of every expert (MoE/MOORE) and
    # read by the first layer of every head.
    net = make_minigrid_network("MT3", 7, arch=arch)
    layers = _layers_by_name(net)
    heads = ("head.heads.0.0", "head.heads.1.0", "head.heads.2.0")
    if arch == "mtppo":
        representation = layers["encoder.conv.4"]
        assert representation.sources == ("encoder.conv.4",)
        convs = ["encoder.conv.0", "encoder.conv.2"]
    else:
        representation = layers["encoder.activation"]
        assert representation.sources == ("encoder.experts.0.conv.4", "encoder.experts.1.conv.4")
        convs = [f"encoder.experts.{j}.conv.{i}" for j in range(2) for i in (0, 2)]
    assert representation.consumers == heads
    assert sorted(layers) == sorted([*convs, representation.name, *heads])
    for head in heads:
        assert layers[head].consumers == (head[:-1] + "2",)
    # its activation is the network's features, 64 channel units of 16 positions
    obs, task = torch.randint(0, 11, (5, 3, 7, 7)).float(), torch.tensor([0, 1, 2, 2, 0])
    with ActivationProbe(net, [representation]) as probe:
        net(obs, task)
    act = probe.activations[representation.name]
    torch.testing.assert_close(act.reshape(5, -1), net.features(obs, task))
    assert representation.unit_view(net, act).shape[-2:] == (64, 16)


@pytest.mark.parametrize("arch", ["mtsac", "moe"])
def test_sac_networks_heads_read_the_representation(arch: str) -> None:
    net = make_sac_network(3, 5, 2, width=16, num_layers=2, arch=arch, num_experts=2)
    last = find_hidden_layers(net)[-1]
    assert last.consumers == ("head.heads.0", "head.heads.1", "head.heads.2")
    if arch == "moe":
        assert last.sources == ("encoder.experts.0.2", "encoder.experts.1.2")


def test_single_head_reads_features_before_the_one_hot() -> None:
    net = make_minigrid_network("MT3", 7, multi_head=False)
    assert _layers_by_name(net)["encoder.conv.4"].consumers == ("head.0",)
