"""Q-networks of the DQN studies: sizes, width multiplier, biases, TorchRL actor."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from torchrl_sparse.modules.qnets import MinAtarQNetwork, NatureQNetwork, make_qvalue_actor


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_sizes_are_the_papers() -> None:
    # Young & Tian: Conv(C,16,3) -> 16*8*8 -> 128 -> A; Mnih et al.: 32/64/64 convs, 512 hidden.
    assert count(MinAtarQNetwork(10, 6)) == (10 * 16 * 9 + 16) + (1024 * 128 + 128) + (128 * 6 + 6)
    nature = NatureQNetwork(18)
    assert count(nature) == 1_693_362
    assert nature.encoder[-2].in_features == 3136


def test_width_scales_every_hidden_layer() -> None:
    net = MinAtarQNetwork(4, 3, width=2.0)
    assert net.encoder[0].out_channels == 32 and net.head.in_features == 256
    nature = NatureQNetwork(4, width=0.5)
    assert [m.out_channels for m in nature.encoder if isinstance(m, torch.nn.Conv2d)] == [
        16,
        32,
        32,
    ]
    with pytest.raises(ValueError, match="width must be > 0"):
        MinAtarQNetwork(4, 3, width=0)


def test_inputs_are_cast_and_scaled() -> None:
    net = MinAtarQNetwork(4, 3)
    x = torch.randint(2, (5, 4, 10, 10))
    assert torch.equal(net(x.to(torch.uint8)), net(x.float()))
    nature = NatureQNetwork(4)
    pixels = torch.randint(256, (2, 4, 84, 84), dtype=torch.uint8)
    expected = nature.head(nature.encoder(pixels.float() / 255))
    assert torch.allclose(nature(pixels), expected)
    # Leading batch dimensions are kept.
    assert net(torch.zeros(2, 3, 4, 10, 10)).shape == (2, 3, 3)


def test_actor_without_biases() -> None:
    actor = make_qvalue_actor("minatar", (4, 10, 10), 3, bias=False)
    assert not any(name.endswith("bias") for name, _ in actor.named_parameters())
    td = actor(TensorDict({"observation": torch.zeros(4, 4, 10, 10)}, [4]))
    assert td["action"].dtype == torch.int64 and td["chosen_action_value"].shape == (4, 1)
    with pytest.raises(ValueError, match="MinAtar network reads"):
        make_qvalue_actor("minatar", (4, 84, 84), 3)
