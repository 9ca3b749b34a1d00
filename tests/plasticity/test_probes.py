"""Tests for the activation probes and the hidden-layer rule."""

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.modules import MLP

from torchrl_sparse.plasticity import ActivationProbe, HiddenLayer, find_hidden_layers


def _no_hooks(module: nn.Module) -> bool:
    return all(not m._forward_hooks for m in module.modules())


def test_mlp_hidden_layers_exclude_output() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    assert find_hidden_layers(net) == [
        HiddenLayer("0", "1", "0", "2"),
        HiddenLayer("2", "3", "2", "4"),
    ]


def test_cnn_channels_are_units_and_flatten_maps_to_linear() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 4, 2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4, 5), nn.Tanh(), nn.Linear(5, 2)
    )
    layers = find_hidden_layers(net)
    assert [(h.source, h.next) for h in layers] == [("0", "3"), ("3", "5")]
    assert layers[0].unit_dim(net) == -3
    with ActivationProbe(net) as probe:
        net(torch.randn(2, 3, 3, 3))
    assert probe.activations["0"].shape == (2, 4, 2, 2)
    assert _no_hooks(net)


def test_layernorm_before_activation_maps_to_linear() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 1))
    assert find_hidden_layers(net) == [HiddenLayer("0", "2", "0", "3")]


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
