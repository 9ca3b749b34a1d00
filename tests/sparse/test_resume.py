"""Resuming gives bitwise the run that was never interrupted, whatever the load order."""

import copy
import io
from collections.abc import Callable

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.data import Bounded
from torchrl.modules import MLP, ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import SACLoss, SoftUpdate

from torchrl_sparse.sparse import (
    GMP,
    SET,
    ConstantSchedule,
    CubicSchedule,
    RigL,
    Sparsifier,
    StaticSparse,
)

from .conftest import make_cnn_mlp, train_steps

# Updates at steps 5, 10, 15 and 20: checkpoints at 4, 5 and 7 fall right before an update,
# right after one, and between two.
METHODS = {
    "gmp": lambda: GMP(CubicSchedule(start=0, end=20, update_every=5)),
    "set": lambda: SET(zeta=0.3, schedule=ConstantSchedule(update_every=5)),
    "rigl": lambda: RigL(drop_fraction=0.3, schedule=ConstantSchedule(update_every=5, end=20)),
    "static": StaticSparse,
}


def build(method_name: str) -> tuple[nn.Module, torch.optim.Optimizer]:
    model = make_cnn_mlp()
    return model, torch.optim.Adam(model.parameters(), lr=1e-2)


def make_sparsifier(method_name: str, model: nn.Module, optimizer, seed: int = 3) -> Sparsifier:
    method = METHODS[method_name]()
    return Sparsifier(
        model, {"*": 0.8}, method=method, optimizer=optimizer, total_steps=30, seed=seed
    )


def save(**objects) -> dict:
    buffer = io.BytesIO()
    torch.save({k: v.state_dict() for k, v in objects.items()}, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def resume(method_name: str, checkpoint: dict, order: str):
    """A fresh process's resume: the three states loaded in ``order``.

    The resumed sparsifier gets another seed: the checkpoint restores its generator, so its
    own initial draw (another topology) must leave no trace.
    """
    model, optimizer = build(method_name)
    if order == "weights_first":  # model and optimizer, then build the sparsifier
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        sparsifier = make_sparsifier(method_name, model, optimizer, seed=4)
        sparsifier.load_state_dict(checkpoint["sparsifier"])
    elif order == "sparsifier_first":  # build and restore the sparsifier, then the weights
        sparsifier = make_sparsifier(method_name, model, optimizer, seed=4)
        sparsifier.load_state_dict(checkpoint["sparsifier"])
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
    else:  # build everything, then load in the order of the guide
        sparsifier = make_sparsifier(method_name, model, optimizer, seed=4)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        sparsifier.load_state_dict(checkpoint["sparsifier"])
    return model, optimizer, sparsifier


def assert_same_run(a: tuple, b: tuple) -> None:
    (model_a, _, sparsifier_a), (model_b, _, sparsifier_b) = a, b
    assert sparsifier_a.step_count == sparsifier_b.step_count
    for x, y in zip(sparsifier_a.masks, sparsifier_b.masks, strict=True):
        assert torch.equal(x, y)
    expected = model_b.state_dict()
    for name, value in model_a.state_dict().items():
        assert torch.equal(value, expected[name]), name


@pytest.mark.parametrize("order", ["weights_first", "sparsifier_first", "built_first"])
@pytest.mark.parametrize("at_step", [4, 5, 7])
@pytest.mark.parametrize("method_name", list(METHODS))
def test_resume_in_any_order_at_any_step(method_name: str, at_step: int, order: str) -> None:
    model, optimizer = build(method_name)
    sparsifier = make_sparsifier(method_name, model, optimizer)
    train_steps(model, optimizer, sparsifier, at_step)
    checkpoint = save(model=model, optimizer=optimizer, sparsifier=sparsifier)
    train_steps(model, optimizer, sparsifier, 17 - at_step)

    resumed = resume(method_name, checkpoint, order)
    train_steps(*resumed, 17 - at_step)
    assert_same_run(resumed, (model, optimizer, sparsifier))


def test_loading_masks_into_a_trained_model_keeps_its_weights() -> None:
    """Only weights as the initial draw left them are given back, never newer ones."""
    model, optimizer = build("set")
    sparsifier = make_sparsifier("set", model, optimizer)
    train_steps(model, optimizer, sparsifier, 1)
    trained = copy.deepcopy(model.state_dict())
    sparsifier.load_state_dict(sparsifier.state_dict())
    for name, value in model.state_dict().items():
        assert torch.equal(value, trained[name]), name


def make_sac_loss() -> SACLoss:
    torch.manual_seed(0)
    policy = nn.Sequential(MLP(in_features=3, out_features=2, num_cells=[16]))
    policy.append(NormalParamExtractor())
    actor = ProbabilisticActor(
        TensorDictModule(policy, ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        return_log_prob=True,
    )
    qvalue = ValueOperator(
        MLP(in_features=4, out_features=1, num_cells=[16, 16]), in_keys=["observation", "action"]
    )
    loss = SACLoss(actor, qvalue, num_qvalue_nets=2, action_spec=Bounded(-1.0, 1.0, (1,)))
    loss.make_value_estimator()  # now, not at the first call: the state_dict has its keys
    return loss


def sac_batch(step: int) -> TensorDict:
    generator = torch.Generator().manual_seed(step)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(16, *shape, generator=generator)

    done = torch.zeros(16, 1, dtype=torch.bool)
    return TensorDict(
        {
            "observation": rand(3),
            "action": rand(1) * 2 - 1,
            "next": {"observation": rand(3), "reward": rand(1), "done": done, "terminated": done},
        },
        batch_size=[16],
    )


def train_sac(loss: SACLoss, optimizer, updater: SoftUpdate, sparsifier: Sparsifier, steps: int):
    for _ in range(steps):
        torch.manual_seed(sparsifier.step_count)  # the actor samples actions
        losses = loss(sac_batch(sparsifier.step_count))
        optimizer.zero_grad()
        (losses["loss_actor"] + losses["loss_qvalue"] + losses["loss_alpha"]).backward()
        optimizer.step()
        updater.step()
        sparsifier.step()


@pytest.mark.parametrize("method", [SET, RigL])
def test_sac_stacked_q_networks_resume_with_weights_loaded_first(
    method: Callable[..., SET],
) -> None:
    def build_sac() -> tuple[SACLoss, torch.optim.Optimizer, SoftUpdate]:
        loss = make_sac_loss()
        return loss, torch.optim.Adam(loss.parameters(), lr=1e-2), SoftUpdate(loss, tau=0.5)

    def sparsify(loss: SACLoss, optimizer) -> Sparsifier:
        schedule = ConstantSchedule(update_every=3)
        return Sparsifier(loss, {"*": 0.8}, method=method(schedule=schedule), optimizer=optimizer)

    loss, optimizer, updater = build_sac()
    sparsifier = sparsify(loss, optimizer)
    train_sac(loss, optimizer, updater, sparsifier, 4)
    checkpoint = save(loss=loss, optimizer=optimizer, sparsifier=sparsifier)
    train_sac(loss, optimizer, updater, sparsifier, 4)

    resumed_loss, resumed_optimizer, resumed_updater = build_sac()
    resumed_loss.load_state_dict(checkpoint["loss"])
    resumed_optimizer.load_state_dict(checkpoint["optimizer"])
    resumed = sparsify(resumed_loss, resumed_optimizer)
    resumed.load_state_dict(checkpoint["sparsifier"])
    train_sac(resumed_loss, resumed_optimizer, resumed_updater, resumed, 4)

    stacked = [t for t in resumed.targets if t.stack_dims == 1 and t.copies]
    assert len(stacked) == 3  # both Q-networks' three layers, stacked, with target copies
    for a, b in zip(resumed.masks, sparsifier.masks, strict=True):
        assert torch.equal(a, b)
    for (name, a), b in zip(
        resumed_loss.state_dict().items(), loss.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
