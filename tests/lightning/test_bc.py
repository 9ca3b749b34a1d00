"""Behaviour cloning: clones a scripted CartPole expert, trains on Pendulum, refuses bad input."""

from __future__ import annotations

import json
import shutil

import lightning.pytorch as pl
import pytest
import torch
from tensordict.nn import TensorDictModule

from torchrl_sparse.imitation import METADATA_FILE, collect_expert_dataset
from torchrl_sparse.lightning import BehaviourCloning
from torchrl_sparse.lightning.bc import make_gym_env
from torchrl_sparse.modules.control import ControlPolicy


def fit(module: BehaviourCloning, **trainer_args) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_args,
    )
    trainer.fit(module)
    return trainer


@pytest.fixture(scope="module")
def cartpole_dataset(tmp_path_factory) -> str:
    """2,000 transitions of a scripted expert that balances the pole for all 500 steps."""
    expert = TensorDictModule(
        lambda obs: (obs[..., 2] + obs[..., 3] > 0).long(), ["observation"], ["action"]
    )
    path = tmp_path_factory.mktemp("bc") / "cartpole"
    collect_expert_dataset(expert, make_gym_env("CartPole-v1"), 2_000, path, seed=0)
    return str(path)


@pytest.fixture(scope="module")
def pendulum_dataset(tmp_path_factory) -> str:
    expert = TensorDictModule(
        lambda obs: (-(5 * obs[..., 1:2] + obs[..., 2:3])).clamp(-2, 2),
        ["observation"],
        ["action"],
    )
    path = tmp_path_factory.mktemp("bc") / "pendulum"
    collect_expert_dataset(expert, make_gym_env("Pendulum-v1"), 400, path, seed=0)
    return str(path)


def test_clones_the_cartpole_expert(cartpole_dataset):
    module = BehaviourCloning(
        "CartPole-v1",
        cartpole_dataset,
        batch_size=64,
        lr=3e-3,
        eval_every_epochs=5,
        eval_episodes=3,
    )
    assert module.loss_name == "cross_entropy" and module.expert_return == 500.0
    # The PPO actor's network, under the same name.
    assert isinstance(module.policy_network, ControlPolicy)
    assert [name for name, _ in module.policy_network.named_parameters()] == [
        "encoder.0.weight",
        "encoder.0.bias",
        "encoder.2.weight",
        "encoder.2.bias",
        "head.weight",
        "head.bias",
    ]
    trainer = fit(module, max_epochs=10)
    metrics = trainer.callback_metrics
    # Measured: accuracy 0.90 and return 500 (the expert's) after 10 epochs of 32 steps.
    assert metrics["charts/accuracy"] > 0.85
    assert metrics["charts/eval/episode_return_mean"] > 150
    assert metrics["charts/eval/episode_return/CartPole-v1"] == module.last_eval_return
    assert metrics["losses/bc_loss"] < 0.4


def test_evaluates_on_schedule_and_at_the_end(cartpole_dataset, monkeypatch):
    module = BehaviourCloning("CartPole-v1", cartpole_dataset, eval_every_epochs=2, eval_episodes=1)
    epochs = []
    evaluate = module.evaluate

    def counting():
        epochs.append(module.current_epoch)
        return evaluate()

    monkeypatch.setattr(module, "evaluate", counting)
    fit(module, max_epochs=3)
    assert epochs == [1, 2]  # every 2 epochs, and after the last
    epochs.clear()
    fit(module, max_steps=2)  # stops mid-epoch: evaluated once, after the last step
    assert epochs == [0]
    assert module.last_eval_return is not None


@pytest.mark.parametrize(("loss", "expected"), [("auto", "gaussian"), ("mse", "mse")])
def test_pendulum_loss_decreases(pendulum_dataset, loss, expected):
    module = BehaviourCloning(
        "Pendulum-v1", pendulum_dataset, loss=loss, batch_size=50, lr=3e-3, eval_episodes=1
    )
    assert module.loss_name == expected
    with torch.no_grad():
        before, _ = module.bc_loss(module.observations, module.actions)
    fit(module, max_epochs=4)
    with torch.no_grad():
        after, _ = module.bc_loss(module.observations, module.actions)
    assert torch.isfinite(before) and after < before
    assert module.last_eval_return is not None and module.last_eval_return < 0


def test_seeded_runs_are_identical_and_evaluation_does_not_change_training(cartpole_dataset):
    def train(seed: int, eval_episodes: int) -> dict[str, torch.Tensor]:
        module = BehaviourCloning(
            "CartPole-v1",
            cartpole_dataset,
            eval_episodes=eval_episodes,
            eval_deterministic=False,  # sampled actions draw from torch's generator
            seed=seed,
        )
        fit(module, max_epochs=2)
        return module.policy_network.state_dict()

    first = train(0, eval_episodes=0)
    evaluated = train(0, eval_episodes=1)
    other = train(1, eval_episodes=0)
    for name, value in first.items():
        assert torch.equal(value, evaluated[name]), name
    assert not torch.equal(first["head.weight"], other["head.weight"])


def test_evaluation_forks_the_generator(cartpole_dataset):
    module = BehaviourCloning(
        "CartPole-v1", cartpole_dataset, eval_episodes=2, eval_deterministic=False
    )
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    scalars = module.evaluate()
    assert torch.equal(torch.rand(3), expected)
    assert scalars["charts/eval/episode_return_mean"] == module.last_eval_return
    assert module.evaluate() == scalars  # the same seeded episodes every time


def test_bad_inputs(cartpole_dataset, pendulum_dataset, tmp_path):
    with pytest.raises(ValueError, match=r"Unknown loss 'l1'; allowed: \['auto', 'cross_entropy'"):
        BehaviourCloning("CartPole-v1", cartpole_dataset, loss="l1")
    with pytest.raises(ValueError, match=r"loss='gaussian' does not fit the discrete actions"):
        BehaviourCloning("CartPole-v1", cartpole_dataset, loss="gaussian")
    with pytest.raises(ValueError, match=r"allowed: \['auto', 'gaussian', 'mse'\]"):
        BehaviourCloning("Pendulum-v1", pendulum_dataset, loss="cross_entropy")
    with pytest.raises(ValueError, match="dataset_dir is required"):
        BehaviourCloning("CartPole-v1")
    with pytest.raises(ValueError, match="holds no expert dataset"):
        BehaviourCloning("CartPole-v1", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        BehaviourCloning("CartPole-v1", cartpole_dataset, batch_size=0)
    with pytest.raises(ValueError, match="lr must be > 0"):
        BehaviourCloning("CartPole-v1", cartpole_dataset, lr=0.0)
    with pytest.raises(ValueError, match="Cannot make the environment 'NoSuchEnv-v0'"):
        BehaviourCloning("NoSuchEnv-v0", cartpole_dataset)
    # A CartPole dataset for Acrobot: refused before training.
    with pytest.raises(
        ValueError, match=r"observation_spec.shape: dataset \[4\], environment \[6\]"
    ):
        BehaviourCloning("Acrobot-v1", cartpole_dataset)
    # An empty dataset.
    empty = tmp_path / "empty"
    shutil.copytree(cartpole_dataset, empty)
    meta = json.loads((empty / METADATA_FILE).read_text())
    (empty / METADATA_FILE).write_text(json.dumps({**meta, "num_transitions": 0}))
    with pytest.raises(ValueError, match="has no transitions"):
        BehaviourCloning("CartPole-v1", str(empty))
