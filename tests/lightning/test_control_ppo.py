"""Single-task PPO on control tasks: a CartPole fit, sparsity on the policy network, Pendulum,
evaluate_policy, the --smoke CLI and bad configurations."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from torchrl_sparse.lightning import PPO, SparsityCallback
from torchrl_sparse.lightning.control import evaluate_policy
from torchrl_sparse.lightning.figures import read_scalars
from torchrl_sparse.modules.control import ControlPolicy
from torchrl_sparse.sparse import Sparsifier, StaticSparse

from .conftest import REPO, run_cli

# 8 batches of 512 frames (4 copies x 128 steps), 16 minibatch steps each, 2 evaluations.
TINY = {"total_frames": 4_096, "eval_every_frames": 2_048, "eval_episodes": 2}


def trainer(**kwargs) -> pl.Trainer:
    options = {
        "max_epochs": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        **kwargs,
    }
    return pl.Trainer(**options)


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters() if n.endswith("weight")}


def test_cartpole_fit_logs_against_frames_and_keeps_actor_sparsity(tmp_path: Path) -> None:
    module = PPO("CartPole-v1", **TINY)
    # The loss trains the policy network's own parameters (no copy).
    trained = {id(p) for p in module.loss_module.actor_network_params.values(True, True)}
    assert {id(p) for p in module.policy_network.parameters()} <= trained
    sparsity = SparsityCallback({"actor_network.*": 0.8}, method=StaticSparse())
    logger = TensorBoardLogger(tmp_path, name="run", version="seed0")
    before = weights(module.policy_network)
    trainer(logger=logger, callbacks=[sparsity]).fit(module)

    assert module.frames == 4_096
    steps = {tag: [s for s, _ in v] for tag, v in read_scalars(logger.log_dir).items()}
    batches = list(range(512, 4_097, 512))
    for tag in ("losses/loss_objective", "losses/loss_critic", "losses/loss_entropy",
                "charts/sps", "sparsity/total"):  # fmt: skip
        assert steps[tag] == batches, tag
    assert steps["charts/eval/episode_return/CartPole-v1"] == [2_048, 4_096]
    assert steps["charts/eval/episode_return_mean"] == [2_048, 4_096]
    assert steps["charts/episode_return/CartPole-v1"]  # training episodes ended
    assert module.latest["charts/eval/episode_return/CartPole-v1"] >= 8  # CartPole's minimum

    # Pruned entries of every policy layer stayed zero through training; the rest trained.
    after = weights(module.policy_network)
    for name, weight in after.items():
        zeros = weight == 0
        assert zeros.float().mean().item() == pytest.approx(0.8, abs=0.01), name
        assert not torch.equal(weight[~zeros], before[name][~zeros]), name
    critic = weights(module.critic)
    assert all((w != 0).all() for w in critic.values())  # actor_network.* only


class PolicySparsifier(pl.Callback):
    """A sparsifier on ``module.policy_network`` itself, as the lottery study prunes it."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: PPO) -> None:
        self.sparsifier = Sparsifier(
            pl_module.policy_network,
            {"*": 0.8},
            method=StaticSparse(),
            optimizer=trainer.optimizers,
        )
        self.sparsifier.apply_masks()
        self.masks = {n: m.clone() for n, m in self.sparsifier.named_masks().items()}


def test_sparsifier_on_policy_network_keeps_pruned_weights_zero() -> None:
    module = PPO("CartPole-v1", total_frames=1_024, eval_every_frames=0, seed=1)
    assert module.networks() == {"actor": (module.policy_network, 0)}
    assert module.monitored_networks() == {"actor": module.policy_network}
    assert module.feature_modules() == {"actor": "encoder"}
    callback = PolicySparsifier()
    before = weights(module.policy_network)
    trainer(callbacks=[callback]).fit(module)
    assert module.frames == 1_024
    assert set(callback.masks) == {"encoder.0.weight", "encoder.2.weight", "head.weight"}
    after = dict(module.policy_network.named_parameters())
    for name, mask in callback.masks.items():
        assert mask.float().mean().item() == pytest.approx(0.2, abs=0.01)
        assert torch.all(after[name][~mask] == 0), name
        assert not torch.equal(after[name][mask], before[name][mask]), name


def test_pendulum_smoke_fit() -> None:
    module = PPO(
        "Pendulum-v1",
        num_envs=1,
        total_frames=1_024,
        frames_per_batch=512,
        epochs=2,
        eval_every_frames=1_024,
        eval_episodes=1,
    )
    assert module.policy_network.continuous
    log_std = module.policy_network.log_std.detach().clone()
    trainer().fit(module)
    assert module.frames == 1_024
    score = module.latest["charts/eval/episode_return/Pendulum-v1"]
    assert -2_000 < score < 0  # 200 steps of rewards in [-16.3, 0]
    assert not torch.equal(module.policy_network.log_std.detach(), log_std)


def test_evaluate_policy_is_reproducible_and_leaves_the_rng_alone() -> None:
    torch.manual_seed(0)
    policy = ControlPolicy(3, 1, continuous=True)
    state = torch.get_rng_state()
    first = evaluate_policy(policy, "Pendulum-v1", episodes=2, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert first == evaluate_policy(policy, "Pendulum-v1", episodes=2, seed=3)
    assert len(first) == 2 and first[0] != first[1]  # consecutive episodes, other starts
    assert first != evaluate_policy(policy, "Pendulum-v1", episodes=2, seed=4)
    sampled = evaluate_policy(policy, "Pendulum-v1", episodes=1, seed=3, deterministic=False)
    assert sampled == evaluate_policy(
        policy, "Pendulum-v1", episodes=1, seed=3, deterministic=False
    )
    # A module's TorchRL actor works too.
    module = PPO("CartPole-v1")
    returns = evaluate_policy(module.actor, "CartPole-v1", episodes=3, seed=0)
    assert returns == evaluate_policy(module.policy_network, "CartPole-v1", episodes=3, seed=0)
    assert all(r >= 8 for r in returns)


def test_smoke_cli_writes_a_summary(tmp_path: Path) -> None:
    recipe = REPO / "recipes" / "control" / "cartpole" / "ppo.yaml"
    result = run_cli("fit", "--config", str(recipe), "--smoke", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    log_dir = tmp_path / "runs" / "smoke" / "control" / "cartpole" / "ppo" / "seed0"
    summary = json.loads((log_dir / "summary.json").read_text())
    assert summary["finished"] and summary["frames"] == 2_048
    assert (summary["algorithm"], summary["benchmark"]) == ("PPO", "gym")
    assert list(summary["final_eval"]) == ["CartPole-v1"]
    tags = read_scalars(log_dir)
    assert [s for s, _ in tags["plasticity/actor/dormant_ratio"]] == [512, 1_024, 1_536, 2_048]
    assert (log_dir / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"env_id": "NoSuchTask-v9"}, "Unknown env_id 'NoSuchTask-v9'"),
        ({"env_id": "FrozenLake-v1"}, "only Box observations of rank 1"),
        ({"num_envs": 0}, "num_envs must be a positive int, got 0"),
        ({"total_frames": 500}, r"frames_per_batch=512 .* larger than total_frames=500"),
        ({"frames_per_batch": 10, "total_frames": 10}, r"rounded up to 12.*total_frames=10"),
        ({"minibatch_size": 1_024}, r"minibatch_size=1024 .*allowed: 1 <= minibatch_size"),
        ({"gamma": 1.5}, r"gamma must be in \[0, 1\], got 1.5"),
        ({"lr": 0.0}, "lr must be > 0, got 0.0"),
        ({"hidden_sizes": []}, "hidden_sizes must be a non-empty list"),
        ({"max_grad_norm": 0.0}, "max_grad_norm must be > 0 or None"),
        ({"eval_every_frames": -1}, "eval_every_frames must be >= 0"),
    ],
)
def test_bad_configurations_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PPO(**kwargs)


def test_frames_per_batch_is_rounded_up_to_the_copies() -> None:
    assert PPO(num_envs=3, frames_per_batch=500).frames_per_batch == 501
    with pytest.raises(ValueError, match="episodes must be a positive int"):
        evaluate_policy(ControlPolicy(4, 2), "CartPole-v1", episodes=0, seed=0)
    with pytest.raises(ValueError, match="2 discrete actions"):
        evaluate_policy(ControlPolicy(4, 3), "CartPole-v1", episodes=1, seed=0)
    with pytest.raises(ValueError, match="observations of size 4; the policy reads 6"):
        evaluate_policy(ControlPolicy(6, 2), "CartPole-v1", episodes=1, seed=0)
