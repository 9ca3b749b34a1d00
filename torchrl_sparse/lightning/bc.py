"""Behaviour cloning of an expert's dataset, as a LightningModule.

The lottery-ticket study (Vischer et al. 2022) prunes the same policy network trained two ways:
by reinforcement learning (PPO) and by behaviour cloning of an expert on the same task. This
module is the second: :class:`BehaviourCloning` trains a
:class:`~torchrl_sparse.modules.control.ControlPolicy` (the architecture of the PPO actor,
under the same attribute name ``policy_network``) by supervised learning on an
:class:`~torchrl_sparse.imitation.ExpertDataset`, and reports the cloned policy's return in the
environment.

Training is plain supervised learning: a Lightning *epoch* is one shuffled pass over the
dataset (``Trainer(max_epochs=...)``), and everything is logged per epoch with ``self.log``
(``losses/bc_loss``, ``charts/accuracy`` for discrete actions, ``charts/eval/...``); unlike the
RL modules, nothing here counts environment frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from tensordict import TensorDict
from torch.utils.data import DataLoader, TensorDataset
from torchrl.data import Categorical, OneHot
from torchrl.envs import GymWrapper

from torchrl_sparse.imitation.dataset import METADATA_FILE, ExpertDataset
from torchrl_sparse.lightning.control import evaluate_policy
from torchrl_sparse.modules.control import ControlPolicy, make_control_actor

__all__ = ["BC_LOSSES", "BehaviourCloning", "make_gym_env"]

BC_LOSSES = ("auto", "cross_entropy", "gaussian", "mse")
"""Values of ``BehaviourCloning(loss=...)``."""

DISCRETE_LOSSES = ("cross_entropy",)
CONTINUOUS_LOSSES = ("gaussian", "mse")

ACTION_MARGIN = 1e-3
"""Expert actions are clamped this fraction of the half-range inside the action bounds before
the Gaussian loss inverts the tanh (a saturated action has no finite log-likelihood)."""


def make_gym_env(env_id: str) -> GymWrapper:
    """The environment :class:`BehaviourCloning` clones and evaluates in (integer actions).

    Raises:
        ValueError: if gymnasium does not know ``env_id``.
    """
    from torchrl_sparse.lightning.control import gym_make

    try:
        return GymWrapper(gym_make(env_id), categorical_action_encoding=True)
    except Exception as error:  # gymnasium's NameNotFound, VersionNotFound, ...
        raise ValueError(f"Cannot make the environment {env_id!r}: {error}") from error


class BehaviourCloning(pl.LightningModule):
    """Behaviour cloning of an expert dataset into the PPO actor's network, on a gym control task.

    The environment (:func:`make_gym_env`: integer actions, MinAtar grids flattened) gives the specs:
    the dataset (written by :func:`~torchrl_sparse.imitation.collect_expert_dataset` in an
    environment with the same specs) is checked against them before anything trains.
    ``policy_network`` is a :class:`~torchrl_sparse.modules.control.ControlPolicy` and
    ``actor`` the TorchRL actor over it (:func:`~torchrl_sparse.modules.control.make_control_actor`),
    as in the PPO module, so the two trainings prune the same weights.

    Losses: ``"cross_entropy"`` of the logits against the expert's actions (discrete actions);
    ``"gaussian"``, the negative log-likelihood of the expert's action under the actor's
    ``TanhNormal`` (actions clamped :data:`ACTION_MARGIN` inside the bounds), or ``"mse"``
    between the expert's action and the squashed mean (the deterministic action), for continuous
    actions. ``"auto"`` picks ``"cross_entropy"`` or ``"gaussian"``.

    Evaluation runs ``eval_episodes`` episodes of the cloned policy every ``eval_every_epochs``
    epochs and after the last epoch, on the same environment seeds each time (so that epochs
    and pruning rounds compare on equal episodes), with the torch generator forked (evaluation
    does not change training). It logs ``charts/eval/episode_return_mean`` and
    ``charts/eval/episode_return/<env_id>`` and keeps the mean in :attr:`last_eval_return`.

    Args:
        env_id: gymnasium id of the task (``"CartPole-v1"``, ``"Acrobot-v1"``, ``"Pendulum-v1"``).
        dataset_dir: directory of the expert dataset.
        hidden_sizes: hidden widths of the policy network.
        loss: ``"auto"``, ``"cross_entropy"``, ``"gaussian"`` or ``"mse"``.
        batch_size: transitions per gradient step.
        lr: Adam's learning rate.
        eval_every_epochs: epochs between evaluations (``0``: only after the last epoch).
        eval_episodes: episodes per evaluation (``0``: no evaluation).
        eval_deterministic: evaluate the policy's deterministic action (the mode of the logits,
            the squashed mean) rather than sampled actions.
        seed: seeds the network's initialisation, the minibatch order and the evaluation.

    Attributes:
        last_eval_return: mean return of the latest evaluation (``None`` before the first).

    Raises:
        ValueError: for an unknown loss or one that does not fit the action space, a missing or
            empty dataset, a dataset whose specs differ from the environment's, or out-of-range
            numbers (each named with the allowed values).

    Examples:
        >>> import tempfile
        >>> from tensordict.nn import TensorDictModule
        >>> from torchrl_sparse.imitation import collect_expert_dataset
        >>> expert = TensorDictModule(
        ...     lambda obs: (obs[..., 2] + obs[..., 3] > 0).long(), ["observation"], ["action"]
        ... )
        >>> path = tempfile.mkdtemp()
        >>> env = make_gym_env("CartPole-v1")
        >>> _ = collect_expert_dataset(expert, env, 512, path, seed=0)
        >>> module = BehaviourCloning("CartPole-v1", path, eval_episodes=1)
        >>> module.loss_name, type(module.policy_network).__name__
        ('cross_entropy', 'ControlPolicy')
        >>> trainer = pl.Trainer(
        ...     max_epochs=1, logger=False, enable_checkpointing=False,
        ...     enable_progress_bar=False, enable_model_summary=False,
        ... )
        >>> trainer.fit(module)
        >>> sorted(trainer.callback_metrics)[:3]
        ['charts/accuracy', 'charts/eval/episode_return/CartPole-v1', 'charts/eval/episode_return_mean']
        >>> module.last_eval_return is not None
        True
    """  # noqa: E501

    def __init__(
        self,
        env_id: str = "CartPole-v1",
        dataset_dir: str = "",
        hidden_sizes: Sequence[int] = (64, 64),
        loss: Literal["auto", "cross_entropy", "gaussian", "mse"] = "auto",
        batch_size: int = 256,
        lr: float = 1e-3,
        eval_every_epochs: int = 1,
        eval_episodes: int = 10,
        eval_deterministic: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if loss not in BC_LOSSES:
            raise ValueError(f"Unknown loss {loss!r}; allowed: {list(BC_LOSSES)}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}.")
        for name, value in {
            "eval_every_epochs": eval_every_epochs,
            "eval_episodes": eval_episodes,
        }.items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}.")
        if not dataset_dir:
            raise ValueError(
                "dataset_dir is required: the directory of an expert dataset written by "
                "torchrl_sparse.imitation.collect_expert_dataset."
            )
        if not (Path(dataset_dir) / METADATA_FILE).is_file():
            raise ValueError(
                f"dataset_dir={dataset_dir!r} holds no expert dataset ({METADATA_FILE} is "
                "missing): write one with torchrl_sparse.imitation.collect_expert_dataset."
            )
        self.save_hyperparameters()

        env = make_gym_env(env_id)
        try:
            action_spec = env.action_spec
            discrete = isinstance(action_spec, Categorical | OneHot)
            allowed = DISCRETE_LOSSES if discrete else CONTINUOUS_LOSSES
            self.loss_name = loss if loss != "auto" else allowed[0]
            if self.loss_name not in allowed:
                kind = "discrete" if discrete else "continuous"
                raise ValueError(
                    f"loss={loss!r} does not fit the {kind} actions of {env_id}; allowed: "
                    f"{['auto', *allowed]}."
                )
            observation_shape = env.observation_spec["observation"].shape
            if len(observation_shape) != 1:
                raise ValueError(
                    f"BehaviourCloning's MLP policy needs flat observations; {env_id} has "
                    f"observations of shape {tuple(observation_shape)}."
                )
            dataset = ExpertDataset.load(dataset_dir, env=env)  # refuses other specs
        finally:
            env.close()
        if len(dataset) == 0:
            raise ValueError(f"The expert dataset at {dataset_dir} has no transitions.")
        self.expert_return = dataset.expert_return
        self.discrete = discrete
        self.observations = dataset.observations.float()
        actions = dataset.actions
        if isinstance(action_spec, OneHot):
            actions = actions.argmax(-1)
        self.actions = actions.long() if discrete else actions.float()

        action_dim = int(action_spec.space.n) if discrete else int(action_spec.shape[-1])
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.policy_network = ControlPolicy(
                observation_shape[0], action_dim, hidden_sizes, continuous=not discrete
            )
        self.actor = make_control_actor(self.policy_network, action_spec)
        if not discrete:
            space = action_spec.space
            self.register_buffer("action_low", space.low.detach().clone(), persistent=False)
            self.register_buffer("action_high", space.high.detach().clone(), persistent=False)
        self.last_eval_return: float | None = None
        self._evaluated_step: int | None = None

    # ------------------------------------------------------------------ data and optimizer
    def train_dataloader(self) -> DataLoader:
        """Shuffled minibatches of ``(observation, action)``, in an order fixed by ``seed``."""
        generator = torch.Generator().manual_seed(self.hparams.seed)
        return DataLoader(
            TensorDataset(self.observations, self.actions),
            batch_size=self.hparams.batch_size,
            shuffle=True,
            generator=generator,
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.policy_network.parameters(), lr=self.hparams.lr)

    # ------------------------------------------------------------------ loss
    def bc_loss(
        self, observations: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The cloning loss of a minibatch, and the accuracy of the argmax (discrete actions)."""
        if self.discrete:
            logits = self.policy_network(observations)
            loss = F.cross_entropy(logits, actions.reshape(-1))
            accuracy = (logits.argmax(-1) == actions.reshape(-1)).float().mean()
            return loss, accuracy
        td = TensorDict({"observation": observations}, batch_size=observations.shape[:1])
        dist = self.actor.get_dist(td)
        if self.loss_name == "mse":
            return F.mse_loss(dist.deterministic_sample, actions), None
        margin = ACTION_MARGIN * (self.action_high - self.action_low) / 2
        inside = actions.clamp(self.action_low + margin, self.action_high - margin)
        return -dist.log_prob(inside).mean(), None

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        observations, actions = batch
        loss, accuracy = self.bc_loss(observations, actions)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"The behaviour-cloning loss is {loss.item()} at epoch {self.current_epoch}, "
                f"step {batch_idx}: lower lr={self.hparams.lr}."
            )
        size = observations.shape[0]
        self.log("losses/bc_loss", loss.detach(), on_step=False, on_epoch=True, batch_size=size)
        if accuracy is not None:
            self.log("charts/accuracy", accuracy, on_step=False, on_epoch=True, batch_size=size)
        return loss

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, float]:
        """Run ``eval_episodes`` episodes of the cloned policy; returns the logged scalars.

        Uses :func:`~torchrl_sparse.lightning.control.evaluate_policy`, the PPO module's
        evaluation, so that cloned and RL-trained policies are scored alike: one environment
        seeded ``seed + 10_000`` (the same episodes at every evaluation), torch's generator
        forked. Sets :attr:`last_eval_return`.
        """
        h = self.hparams
        was_training = self.policy_network.training
        self.policy_network.eval()
        try:
            with torch.random.fork_rng(), torch.no_grad():
                returns = evaluate_policy(
                    self.actor, h.env_id, h.eval_episodes, h.seed + 10_000, h.eval_deterministic
                )
        finally:
            self.policy_network.train(was_training)
        mean = sum(returns) / len(returns)
        self.last_eval_return = mean
        self._evaluated_step = self.global_step
        return {
            "charts/eval/episode_return_mean": mean,
            f"charts/eval/episode_return/{h.env_id}": mean,
        }

    def _last_epoch(self) -> bool:
        trainer = self.trainer
        if trainer.should_stop:
            return True
        max_epochs = trainer.max_epochs
        if max_epochs is not None and max_epochs >= 0 and self.current_epoch + 1 >= max_epochs:
            return True
        max_steps = trainer.max_steps
        return max_steps is not None and max_steps >= 0 and self.global_step >= max_steps

    def on_train_epoch_end(self) -> None:
        h = self.hparams
        if h.eval_episodes == 0:
            return
        periodic = h.eval_every_epochs > 0 and (self.current_epoch + 1) % h.eval_every_epochs == 0
        if periodic or self._last_epoch():
            self.log_dict(self.evaluate(), on_step=False, on_epoch=True)

    def on_train_end(self) -> None:
        # Training stopped before an epoch ended (max_steps mid-epoch, an interruption): the
        # final weights still get their evaluation, logged straight to the loggers.
        if self.hparams.eval_episodes and self._evaluated_step != self.global_step:
            scalars = self.evaluate()
            for logger in self.loggers:
                logger.log_metrics(scalars, step=self.global_step)
