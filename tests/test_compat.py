"""The private APIs listed in ``torchrl_sparse._compat`` still exist in the installed versions."""

import importlib

import pytest
import torch
from torchrl.collectors import Collector
from torchrl.envs import GymEnv
from torchrl.envs.utils import RandomPolicy

from torchrl_sparse._compat import (
    OVERRIDDEN,
    collector_carrier,
    is_functorch_transformed,
    new_tensordict_unchecked,
)


@pytest.mark.parametrize(("owner", "method"), OVERRIDDEN)
def test_overridden_private_methods_exist(owner: str, method: str) -> None:
    module, name = owner.rsplit(".", 1)
    assert callable(getattr(getattr(importlib.import_module(module), name), method))


def test_helpers_reach_the_private_apis() -> None:
    td = new_tensordict_unchecked({"x": torch.ones(2, 1)}, torch.Size([2]), torch.device("cpu"))
    assert td["x"].shape == (2, 1)
    assert not is_functorch_transformed(torch.zeros(1))
    assert torch.func.vmap(lambda x: torch.tensor(is_functorch_transformed(x)))(
        torch.zeros(3)
    ).all()
    env = GymEnv("CartPole-v1")
    collector = Collector(env, RandomPolicy(env.action_spec), frames_per_batch=8, total_frames=-1)
    next(iter(collector))
    assert "observation" in collector_carrier(collector)
    collector.shutdown()
