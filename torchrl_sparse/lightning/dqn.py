"""DQN on MinAtar and Atari, as a LightningModule.

The whole algorithm reads top to bottom in :meth:`DQN.training_step`: collect a batch (an
endless TorchRL ``Collector`` over ``num_envs`` copies of the game, acting epsilon-greedily),
add it to a TorchRL ``ReplayBuffer``, then one gradient step of TorchRL's ``DQNLoss`` (double
DQN an option) on a uniformly sampled minibatch per ``update_every_frames`` frames, and a hard
copy of the online network into the target network every ``target_update_every_frames`` frames.

**Units.** A *frame* is one environment step of one game copy: one agent decision. On MinAtar
that is one game step; on Atari it is one agent step of 4 emulator frames (frame skip 4), so
the Atari literature's "200M frames" are 50M frames here. Every option ending in ``_frames``
counts these frames, as do the logs (``charts/``, ``losses/``, and the callbacks'
``sparsity/`` and ``plasticity/``).

The replay buffer stores observations as ``uint8`` (MinAtar's 0/1 channels and Atari's pixels
are exact in it; the networks cast) in a memory-mapped TorchRL ``LazyMemmapStorage``, and
checkpoints carry it (see :mod:`~torchrl_sparse.lightning.replay`). The exploration rate is a
function of the frame count, and the target network lives inside the loss (TorchRL's
``target_value_network_params``), so resuming restores replay buffer, masks, epsilon, target
network and counters exactly.

A sparsifier attached to ``module.loss_module`` reaches the Q-network as ``value_network.*``
and keeps the target network's pruned entries at zero with the online network's masks.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictSequential
from torchrl.data import ReplayBuffer
from torchrl.envs import EnvBase
from torchrl.modules import EGreedyModule
from torchrl.objectives import DQNLoss, HardUpdate, ValueEstimators

from torchrl_sparse.cadence import crossed_multiple
from torchrl_sparse.lightning.base import MultiTaskRLModule
from torchrl_sparse.lightning.loader import CollectorLoader
from torchrl_sparse.lightning.replay import ReplayCheckpointMixin
from torchrl_sparse.modules.qnets import make_qvalue_actor

__all__ = ["DQN", "DQN_SUITES"]

DQN_SUITES = ("minatar", "atari")
"""Benchmarks the DQN module runs on."""

# What the loss reads; the rest of the collected data is not stored.
BUFFER_KEYS = (
    "observation",
    "action",
    ("next", "observation"),
    ("next", "reward"),
    ("next", "done"),
    ("next", "terminated"),
)
OPTIMIZERS = ("adam", "rmsprop")


class DQN(ReplayCheckpointMixin, MultiTaskRLModule):
    """DQN (optionally double DQN) on one MinAtar or Atari game.

    Defaults are Dopamine's MinAtar DQN (Obando-Ceron & Castro 2021), the setting of the sparse
    DQN studies: the MinAtar network (one 3x3 convolution of 16 channels, 128 hidden units),
    batch 32, replay buffer 100k, Adam (lr 1e-4, eps 3.125e-4), gamma 0.99, Huber loss, one
    update per 4 frames, target network copied every 1,000 frames, 1,000 frames of random
    actions, then epsilon decayed linearly from 1 to 0.01 over 250k frames, 10M frames. Dopamine
    steps one environment; here ``num_envs=4`` copies step together, which keeps the ratio of
    one update per 4 frames and makes collection about 4x cheaper. Young & Tian's original
    MinAtar DQN is ``optimizer="rmsprop", lr=2.5e-4, optimizer_eps=0.01,
    update_every_frames=1, learning_starts=5000, eps_end=0.1, eps_decay_frames=100000``.
    Atari recipes set the Nature CNN and Dopamine's Atari settings.

    Args:
        suite: ``"minatar"`` or ``"atari"``.
        game: the game (MinAtar: ``"Asterix"``, ``"Breakout"``, ``"Freeway"``, ``"Seaquest"``,
            ``"SpaceInvaders"``; Atari: an ALE game name such as ``"Pong"``).
        network: ``"minatar"`` or ``"nature"`` (``None``: the suite's own).
        width: multiplier of the network's hidden sizes.
        bias: ``False`` builds the network without bias parameters (the "no bias" condition).
        num_envs: game copies stepped together by the collector.
        total_frames: training length in frames.
        frames_per_batch: frames per collected batch (rounded up to a multiple of
            ``num_envs``); losses and SPS are logged once per batch, and the policy acting in a
            batch is the one at its start.
        learning_starts: frames of uniformly random actions before the first update.
        update_every_frames: frames per gradient update (Young & Tian 1, Dopamine 4).
        target_update_every_frames: frames between hard target-network copies.
        batch_size: transitions per update.
        buffer_size: replay-buffer capacity in transitions.
        buffer_scratch_dir: directory of the memory-mapped replay buffer (``None``: a temporary
            directory removed at exit).
        replay_buffer_dir: where checkpoints dump the replay buffer (``None``:
            ``<checkpoint dir>/replay_buffer``; ``""`` keeps it out of checkpoints).
        optimizer: ``"rmsprop"`` (Young & Tian) or ``"adam"`` (Dopamine).
        lr: learning rate.
        optimizer_eps: the optimizer's epsilon (RMSprop: 0.01 = min squared gradient; Adam:
            Dopamine's 1.5e-4 or 3.125e-4).
        gamma: discount.
        double_dqn: use the online network to pick the target's action (van Hasselt 2016).
        loss_function: ``"smooth_l1"`` (Huber) or ``"l2"``.
        eps_start: exploration rate during the random warm-up.
        eps_end: final exploration rate.
        eps_decay_frames: frames of linear decay after ``learning_starts``.
        max_grad_norm: gradient clipping (``None``: none).
        game_kwargs: extra keyword arguments of the environment factory
            (:func:`~torchrl_sparse.envs.make_minatar_env` or
            :func:`~torchrl_sparse.envs.make_atari_env`), e.g. ``{"sticky_action_prob": 0}`` on
            MinAtar or ``{"repeat_action_probability": 0.0}`` on Atari.
        eval_every_frames: evaluation period (``0`` disables evaluation).
        eval_episodes: evaluation episodes.
        eval_epsilon: exploration rate in evaluation (Dopamine's 0.001; 0 is greedy).
        seed: seed of the environments and of torch.

    Raises:
        ValueError: for an unknown suite, game, network or optimizer, or out-of-range numbers
            (named with the allowed range).

    Examples:
        >>> module = DQN("minatar", "Breakout", total_frames=10_000, learning_starts=1_000)
        >>> module.task_names, module.updates_per_batch
        (['Breakout'], 16)
        >>> len(list(module.loss_module.value_network_params.keys(True, True)))  # 3 layers
        6
        >>> module.epsilon(0), module.epsilon(1_000 + 125_000), module.epsilon(10**6)
        (1.0, 0.505, 0.01)
    """

    eval_metric = "episode_return"
    progress_keys = (
        ("charts/eval/episode_return_mean", "return"),
        ("charts/episode_return_mean", "return"),
    )

    def __init__(
        self,
        suite: Literal["minatar", "atari"] = "minatar",
        game: str = "Breakout",
        network: Literal["minatar", "nature"] | None = None,
        width: float = 1.0,
        bias: bool = True,
        num_envs: int = 4,
        total_frames: int = 10_000_000,
        frames_per_batch: int = 64,
        learning_starts: int = 1_000,
        update_every_frames: int = 4,
        target_update_every_frames: int = 1_000,
        batch_size: int = 32,
        buffer_size: int = 100_000,
        buffer_scratch_dir: str | None = None,
        replay_buffer_dir: str | None = None,
        optimizer: Literal["adam", "rmsprop"] = "adam",
        lr: float = 1e-4,
        optimizer_eps: float = 3.125e-4,
        gamma: float = 0.99,
        double_dqn: bool = False,
        loss_function: Literal["smooth_l1", "l2"] = "smooth_l1",
        eps_start: float = 1.0,
        eps_end: float = 0.01,
        eps_decay_frames: int = 250_000,
        max_grad_norm: float | None = None,
        game_kwargs: dict | None = None,
        eval_every_frames: int = 100_000,
        eval_episodes: int = 10,
        eval_epsilon: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if suite not in DQN_SUITES:
            raise ValueError(f"Unknown suite {suite!r}; allowed: {list(DQN_SUITES)}.")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"Unknown optimizer {optimizer!r}; allowed: {list(OPTIMIZERS)}.")
        if loss_function not in ("smooth_l1", "l2"):
            raise ValueError(
                f"Unknown loss_function {loss_function!r}; allowed: ['smooth_l1', 'l2']."
            )
        for name, value in {
            "num_envs": num_envs,
            "total_frames": total_frames,
            "frames_per_batch": frames_per_batch,
            "update_every_frames": update_every_frames,
            "target_update_every_frames": target_update_every_frames,
            "batch_size": batch_size,
            "buffer_size": buffer_size,
            "eval_episodes": eval_episodes,
        }.items():
            if value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        for name, value in {
            "learning_starts": learning_starts,
            "eps_decay_frames": eps_decay_frames,
            "eval_every_frames": eval_every_frames,
        }.items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}.")
        for name, value in {
            "eps_start": eps_start,
            "eps_end": eps_end,
            "eval_epsilon": eval_epsilon,
        }.items():
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}.")
        if eps_end > eps_start:
            raise ValueError(f"eps_end={eps_end} must not exceed eps_start={eps_start}.")
        if not 0 <= gamma <= 1:
            raise ValueError(f"gamma must be in [0, 1], got {gamma!r}.")
        self.frames_per_batch = math.ceil(frames_per_batch / num_envs) * num_envs
        if self.frames_per_batch % update_every_frames:
            raise ValueError(
                f"frames_per_batch={self.frames_per_batch} (a multiple of num_envs={num_envs}) "
                f"must be a multiple of update_every_frames={update_every_frames}: every batch "
                "gets the same number of updates."
            )
        if self.frames_per_batch > total_frames:
            raise ValueError(
                f"frames_per_batch={self.frames_per_batch} is larger than total_frames="
                f"{total_frames}: one batch would overshoot the training length."
            )
        if learning_starts >= total_frames:
            raise ValueError(
                f"learning_starts={learning_starts} must be below total_frames={total_frames}: "
                "the run would never update the network."
            )
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.task_names = [game]
        self.num_tasks = 1
        self.total_frames = total_frames
        self.eval_every_frames = eval_every_frames
        self.updates_per_batch = self.frames_per_batch // update_every_frames
        self.updates = 0

        probe = self._make_env(num_envs=1, seed=seed)  # validates the game, gives the specs
        observation_shape = tuple(probe.observation_spec["observation"].shape[1:])
        num_actions = int(probe.action_spec.space.n)
        probe.close()
        torch.manual_seed(seed)
        network = network or ("minatar" if suite == "minatar" else "nature")
        self.q_network = make_qvalue_actor(network, observation_shape, num_actions, width, bias)
        self.loss_module = DQNLoss(
            self.q_network,
            loss_function=loss_function,
            delay_value=True,
            double_dqn=double_dqn,
            action_space="categorical",
        )
        self.loss_module.make_value_estimator(ValueEstimators.TD0, gamma=gamma)
        # Copies whenever step() is called: the frame cadence decides when (see training_step).
        self.target_updater = HardUpdate(self.loss_module, value_network_update_interval=0)
        self.exploration = EGreedyModule(
            probe.action_spec[0] if probe.action_spec.shape else probe.action_spec,
            eps_init=float(eps_start),
            eps_end=float(eps_start),
        )
        self.policy = TensorDictSequential(self.q_network, self.exploration)
        self.replay_buffer = ReplayBuffer(
            storage=self.make_storage(buffer_size, buffer_scratch_dir), batch_size=batch_size
        )
        self.observation_keys = ("observation",)
        self._eval_env: EnvBase | None = None
        self._resumed_atari = False

    @property
    def benchmark(self) -> str:  # type: ignore[override]
        return self.hparams.suite

    @property
    def suite_name(self) -> str:
        """The task set run summaries and reports group by: the game."""
        return self.hparams.game

    def _make_env(self, num_envs: int, seed: int | None) -> EnvBase:
        kwargs = dict(self.hparams.game_kwargs or {})
        suite, game = self.hparams.suite, self.hparams.game
        if suite == "minatar":
            from torchrl_sparse.envs.minatar import make_minatar_env

            return make_minatar_env(game, num_envs=num_envs, seed=seed, **kwargs)
        from torchrl_sparse.envs.atari import make_atari_env

        return make_atari_env([game], envs_per_game=num_envs, seed=seed, **kwargs)

    # ------------------------------------------------------------------ schedules
    def epsilon(self, frames: int) -> float:
        """Exploration rate after ``frames`` frames (Dopamine's linearly decaying epsilon).

        ``eps_start`` during the ``learning_starts`` warm-up, then linear to ``eps_end`` over
        ``eps_decay_frames`` frames, then ``eps_end``.
        """
        h = self.hparams
        if frames < h.learning_starts:
            return float(h.eps_start)
        if frames >= h.learning_starts + h.eps_decay_frames:
            return float(h.eps_end)
        progress = (frames - h.learning_starts) / h.eps_decay_frames
        return float(h.eps_start + progress * (h.eps_end - h.eps_start))

    # ------------------------------------------------------------------ data and optimizers
    def train_dataloader(self) -> CollectorLoader:
        batches = math.ceil(self.total_frames / self.frames_per_update)
        self._loader = CollectorLoader(
            lambda: self._make_env(
                self.hparams.num_envs, seed=self.hparams.seed + 1000 * self.global_rank
            ),
            self.policy,
            self.frames_per_batch,
            batches_per_epoch=batches,
        )
        return self._loader

    def configure_optimizers(self) -> torch.optim.Optimizer:
        h = self.hparams
        params = list(self.loss_module.value_network_params.values(True, True))
        if h.optimizer == "adam":
            # Fused: one kernel per step, and no slow path on the exact zeros of sparse layers.
            return torch.optim.Adam(params, lr=h.lr, eps=h.optimizer_eps, fused=True)
        return torch.optim.RMSprop(
            params, lr=h.lr, alpha=0.95, eps=h.optimizer_eps, centered=True, foreach=True
        )

    def networks(self) -> dict[str, tuple[torch.nn.Module, int]]:
        """The online Q-network (``"qvalue"``), trained by the only optimizer."""
        return {"qvalue": (self.q_network, 0)}

    @property
    def first_gradient_frame(self) -> int:
        """Frames at the end of the first batch with a gradient step (past ``learning_starts``)."""
        step = self.frames_per_update
        return (self.hparams.learning_starts // step + 1) * step

    def on_train_start(self) -> None:
        # The exploration rate of the first batch (or of the first batch after a resume).
        self.exploration.eps.fill_(self.epsilon(self.frames))

    # ------------------------------------------------------------------ training
    def training_step(self, batch: TensorDictBase, batch_idx: int) -> None:
        optimizer = self.optimizers()
        self.start_batch(
            batch,
            {"episode_return": "episode_return", "episode_length": "episode_length"},
            end_key=("next", "game_over") if ("next", "game_over") in batch.keys(True) else None,
        )
        if self._resumed_atari:
            # The Atari emulators cannot be restored: the first step after a resume ends every
            # game as truncated (see AtariMultiGameEnv). It is not a transition: not stored.
            self._resumed_atari = False
            batch = batch[..., 1:]
        stored = batch.reshape(-1).select(*BUFFER_KEYS).detach()
        # 0/1 channels and pixels are exact in uint8: 4x less memory than float.
        stored["observation"] = stored["observation"].to(torch.uint8)
        stored["next", "observation"] = stored["next", "observation"].to(torch.uint8)
        self.replay_buffer.extend(stored)

        losses: dict[str, list[torch.Tensor]] = {}
        h = self.hparams
        batch_start = self.frames - self.frames_per_update
        for k in range(self.updates_per_batch):
            # The frame at which this update falls, were updates interleaved with steps.
            frame = batch_start + (k + 1) * h.update_every_frames * self.trainer.world_size
            if frame <= h.learning_starts:
                continue
            sample = self.replay_buffer.sample()
            loss_td = self.loss_module(sample)
            self.check_finite({"loss": loss_td["loss"]})
            optimizer.zero_grad()
            with self.no_sync():
                self.manual_backward(loss_td["loss"])
            self.clip(optimizer)
            optimizer.step()
            self.updates += 1
            losses.setdefault("td_loss", []).append(loss_td["loss"].detach())
            previous = frame - h.update_every_frames * self.trainer.world_size
            if crossed_multiple(previous, frame, h.target_update_every_frames):
                self.target_updater.step()
        scalars = {
            "charts/epsilon": self.epsilon(batch_start),
            "charts/replay_buffer_size": float(len(self.replay_buffer)),
            "charts/updates": float(self.updates),
        }
        if losses:
            with torch.no_grad():
                scalars["losses/q_value"] = (
                    self.q_network(sample)["chosen_action_value"].mean().item()
                )
        self.finish_batch(batch.numel(), losses, scalars)
        self.exploration.eps.fill_(self.epsilon(self.frames))

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Play ``eval_episodes`` episodes with ``eval_epsilon``-greedy actions.

        The torch generator is forked, so evaluating does not change the training run. Logs
        ``charts/eval/episode_return/<game>`` and ``charts/eval/episode_return_mean`` (raw game
        score, unclipped), and ``charts/eval/episode_length...``.
        """
        if self._eval_env is None:
            self._eval_env = self._make_env(num_envs=1, seed=self.hparams.seed + 10_000)
        env = self._eval_env
        env.set_seed(self.hparams.seed + 10_000 + self.frames)
        greedy = EGreedyModule(
            self.exploration.spec,
            eps_init=float(self.hparams.eval_epsilon),
            eps_end=float(self.hparams.eval_epsilon),
        )
        policy = TensorDictSequential(self.q_network, greedy)
        episodes = self.hparams.eval_episodes
        values: dict[str, list[list[float]]] = {"episode_return": [[]], "episode_length": [[]]}
        td = env.reset()
        with torch.random.fork_rng():
            while len(values["episode_return"][0]) < episodes:
                td, next_td = env.step_and_maybe_reset(policy(td))
                if bool(self._episode_over(td).any()):
                    for key in values:
                        values[key][0].append(float(td["next", key].view(-1)[0]))
                td = next_td
        return self.log_evaluation(
            values, {"episode_return": "episode_return", "episode_length": "episode_length"}
        )

    @staticmethod
    def _episode_over(td: TensorDictBase) -> torch.Tensor:
        # Atari with terminal-on-life-loss ends the agent's episode at a life loss; the game's
        # score is complete only at game over.
        game_over = td.get(("next", "game_over"), None)
        return td["next", "done"] if game_over is None else game_over

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["torchrl_sparse"]["updates"] = self.updates

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.updates = checkpoint["torchrl_sparse"]["updates"]
        self._resumed_atari = self.hparams.suite == "atari"

    def on_train_end(self) -> None:
        super().on_train_end()
        if self._eval_env is not None:
            self._eval_env.close()
            self._eval_env = None
