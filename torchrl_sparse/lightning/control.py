"""Single-task PPO on gymnasium control tasks (CartPole, Acrobot, Pendulum), as a LightningModule.

The reinforcement-learning half of the lottery-ticket study (Vischer et al. 2022): the same
:class:`~torchrl_sparse.modules.control.ControlPolicy` is trained here by PPO and elsewhere by
behaviour cloning, so their tickets can be compared weight by weight. The policy network is
``module.policy_network``; pruning and rewinding act on it directly.

The whole algorithm reads top to bottom in :meth:`PPO.training_step`: collect a batch (an
endless TorchRL ``Collector`` over ``num_envs`` copies of the task), GAE, then ``epochs`` passes
of TorchRL's ``ClipPPOLoss`` (clipped objective, squared-error critic loss, entropy bonus) over
shuffled minibatches, one Adam step on actor and critic per minibatch. Defaults are CleanRL's
``ppo.py`` for classic control.

**Environments.** ``num_envs`` copies step together in a gymnasium ``SyncVectorEnv`` (in this
process: TorchRL's ``GymEnv(num_envs=...)`` would start one subprocess per copy, which costs
far more than stepping CartPole) wrapped by TorchRL's ``GymWrapper`` with auto-reset left to
TorchRL, so a ``("next", "observation")`` at a done step is the true last observation, and
truncated episodes (the time limit) are bootstrapped by GAE, terminated ones are not. Each step
carries ``"task_id"`` (always 0: the one task is task 0 of the multi-task base class) and, in
``"next"``, ``"episode_return"`` and ``"episode_length"`` of the running episode (final at done
steps).

**Units.** A *frame* is one step of one environment copy. Everything is logged against frames:
``charts/episode_return/<env_id>`` (training episodes), ``charts/eval/episode_return/<env_id>``,
``losses/`` and SPS; callbacks add ``sparsity/`` and ``plasticity/``.

:func:`evaluate_policy` scores any policy network (or TorchRL actor) on a task: the
behaviour-cloning module and the lottery study use it too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import nn
from torchrl.data import Bounded
from torchrl.envs import (
    Compose,
    DoubleToFloat,
    EnvBase,
    ExplorationType,
    GymWrapper,
    RewardSum,
    StepCounter,
    TensorDictPrimer,
    TransformedEnv,
    set_exploration_type,
)
from torchrl.modules import MLP, ValueOperator
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import GAE

from torchrl_sparse.lightning.base import MultiTaskRLModule
from torchrl_sparse.lightning.loader import CollectorLoader
from torchrl_sparse.modules.control import ControlPolicy, make_control_actor

__all__ = ["PPO", "evaluate_policy"]

LOSSES = ("loss_objective", "loss_critic", "loss_entropy")
# Also logged (means over the batch's minibatches) when the loss returns them.
DIAGNOSTICS = ("entropy", "kl_approx", "clip_fraction")


# ---------------------------------------------------------------------------------- environments
def gym_make(env_id: str) -> Any:
    """``gymnasium.make(env_id)``; MinAtar ids (``"MinAtar/Breakout-v1"``) are registered and
    their boolean ``(10, 10, C)`` grids flattened into float32 vectors for the MLP policy.

    Examples:
        >>> gym_make("MinAtar/Breakout-v1").observation_space.shape
        (400,)
    """
    import gymnasium as gym

    if not env_id.startswith("MinAtar/"):
        return gym.make(env_id, disable_env_checker=True)
    import minatar.gym
    import numpy as np

    if env_id not in gym.registry:
        minatar.gym.register_envs()
    env = gym.make(env_id, disable_env_checker=True)
    return gym.wrappers.DtypeObservation(gym.wrappers.FlattenObservation(env), np.float32)


def _gym_spaces(env_id: str) -> tuple[Any, Any]:
    """The observation and action spaces of ``env_id``, or a ``ValueError`` saying what is wrong.

    Only flat ``Box`` observations and ``Discrete`` or bounded rank-1 ``Box`` actions are
    supported (the :class:`~torchrl_sparse.modules.control.ControlPolicy`'s inputs and outputs).
    """
    import gymnasium as gym
    import numpy as np

    if not isinstance(env_id, str):
        raise ValueError(f"env_id must be a gymnasium id such as 'CartPole-v1', got {env_id!r}.")
    try:
        env = gym_make(env_id)
    except gym.error.Error as error:
        raise ValueError(
            f"Unknown env_id {env_id!r}: gymnasium cannot make it ({error}). Classic control "
            "ids: 'CartPole-v1', 'Acrobot-v1', 'Pendulum-v1', 'MountainCar-v0', "
            "'MountainCarContinuous-v0'."
        ) from error
    observation_space, action_space = env.observation_space, env.action_space
    env.close()
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise ValueError(
            f"{env_id} has {observation_space} observations; PPO supports only Box observations "
            "of rank 1 (flat vectors, as the classic control tasks)."
        )
    if isinstance(action_space, gym.spaces.Discrete):
        return observation_space, action_space
    bounded = isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1
    if not bounded or not (
        np.isfinite(action_space.low).all() and np.isfinite(action_space.high).all()
    ):
        raise ValueError(
            f"{env_id} has {action_space} actions; PPO supports Discrete actions and bounded Box "
            "actions of rank 1."
        )
    return observation_space, action_space


def _make_env(env_id: str, num_envs: int | None, seed: int | None) -> EnvBase:
    """``env_id`` as a TorchRL environment: one copy, or ``num_envs`` in a ``SyncVectorEnv``.

    The vectorised one (training) carries ``"task_id"``, ``"episode_return"`` and
    ``"episode_length"``; float64 observations are cast to float32.
    """
    import gymnasium as gym

    def make() -> Any:
        return gym_make(env_id)

    transforms: list[Any] = []
    if num_envs is None:
        env: EnvBase = GymWrapper(make(), categorical_action_encoding=True)
    else:
        vector = gym.vector.SyncVectorEnv(
            [make] * num_envs, autoreset_mode=gym.vector.AutoresetMode.DISABLED
        )
        env = GymWrapper(vector, categorical_action_encoding=True)
        transforms = [
            TensorDictPrimer(
                task_id=Bounded(0, 0, shape=(), dtype=torch.int64),
                default_value=0,
                expand_specs=True,
            ),
            RewardSum(in_keys=["reward"], out_keys=["episode_return"]),
            StepCounter(step_count_key="episode_length"),
        ]
    if env.observation_spec["observation"].dtype == torch.float64:
        transforms.insert(0, DoubleToFloat(in_keys=["observation"]))
    if transforms:
        env = TransformedEnv(env, Compose(*transforms))
    if seed is not None:
        env.set_seed(seed)
    return env


def evaluate_policy(
    actor: nn.Module,
    env_id: str,
    episodes: int,
    seed: int,
    deterministic: bool = True,
) -> list[float]:
    """Returns of ``episodes`` episodes of ``actor`` on one copy of ``env_id`` seeded ``seed``.

    The episodes follow each other on one environment seeded once, so they start from different
    states; the same arguments give the same returns. The torch generator is forked (and seeded
    with ``seed`` inside), so evaluating never changes a training run, and sampled actions are
    reproducible too.

    Args:
        actor: a TorchRL actor reading ``"observation"`` (such as :attr:`PPO.actor`), or a bare
            :class:`~torchrl_sparse.modules.control.ControlPolicy` (wrapped here for the task's
            action spec).
        env_id: a gymnasium id such as ``"CartPole-v1"``.
        episodes: number of episodes.
        seed: seed of the environment (and of sampled actions).
        deterministic: act with the mode (discrete) or mean-like deterministic action
            (continuous) instead of sampling.

    Raises:
        ValueError: for an unknown or unsupported ``env_id``, ``episodes < 1``, or a policy
            that does not fit the task's spaces.

    Examples:
        >>> policy = ControlPolicy(4, 2)
        >>> returns = evaluate_policy(policy, "CartPole-v1", episodes=2, seed=0)
        >>> len(returns), returns == evaluate_policy(policy, "CartPole-v1", episodes=2, seed=0)
        (2, True)
    """
    import gymnasium as gym

    if episodes < 1:
        raise ValueError(f"episodes must be a positive int, got {episodes!r}.")
    observation_space, _ = _gym_spaces(env_id)
    env = _make_env(env_id, num_envs=None, seed=seed)
    try:
        if not isinstance(actor, TensorDictModuleBase):
            if not isinstance(actor, ControlPolicy):
                raise ValueError(
                    "actor must be a TorchRL actor reading 'observation' or a ControlPolicy, "
                    f"got {type(actor).__name__}."
                )
            inputs = actor.encoder[0].in_features
            if inputs != observation_space.shape[0]:
                raise ValueError(
                    f"{env_id} has observations of size {observation_space.shape[0]}; the "
                    f"policy reads {inputs}."
                )
            actor = make_control_actor(actor, env.action_spec)
        exploration = ExplorationType.DETERMINISTIC if deterministic else ExplorationType.RANDOM
        max_steps = gym.spec(env_id).max_episode_steps or 100_000
        returns: list[float] = []
        with torch.random.fork_rng(), torch.no_grad(), set_exploration_type(exploration):
            torch.manual_seed(seed)
            while len(returns) < episodes:
                rollout = env.rollout(max_steps, policy=actor, break_when_any_done=True)
                returns.append(float(rollout["next", "reward"].sum()))
    finally:
        env.close()
    return returns


# ---------------------------------------------------------------------------------- the module
class PPO(MultiTaskRLModule):
    """PPO on one gymnasium control task with the lottery-ticket study's policy network.

    Defaults are CleanRL's ``ppo.py`` for classic control: 4 environment copies, batches of 512
    frames (128 steps of each copy), Adam lr 2.5e-4 (eps 1e-5, not annealed), 4 epochs of
    minibatches of 128, gamma 0.99, GAE lambda 0.95, clip 0.2, entropy 0.01, critic
    coefficient 0.5 on a squared error (no value clipping), advantages normalised per
    minibatch, gradients clipped to norm 0.5 (over actor and critic together). The policy is a
    :class:`~torchrl_sparse.modules.control.ControlPolicy` (``Linear``-``Tanh`` MLP, PyTorch's
    default initialisation, so PPO and behaviour cloning start from the same weights for one
    seed); the critic a separate MLP of the same hidden sizes. Continuous actions sample a
    ``TanhNormal`` squashed into the action bounds.

    Args:
        env_id: gymnasium id (``"CartPole-v1"``, ``"Acrobot-v1"``, ``"Pendulum-v1"``, ...):
            flat ``Box`` observations, ``Discrete`` or bounded ``Box`` actions.
        hidden_sizes: hidden widths of the policy and of the critic.
        num_envs: environment copies stepped together.
        total_frames: training length in frames.
        frames_per_batch: frames per collected batch and update (rounded up to a multiple of
            ``num_envs``).
        lr: Adam learning rate (actor and critic).
        epochs: passes over each batch.
        minibatch_size: frames per gradient step (at most ``frames_per_batch``; a smaller last
            minibatch takes the remainder).
        gamma: discount.
        gae_lambda: GAE lambda.
        clip_epsilon: PPO clipping.
        entropy_coef: entropy bonus.
        critic_coef: weight of the critic's squared error in the loss.
        max_grad_norm: gradient clipping (``None``: none).
        normalize_advantage: normalise advantages in each minibatch.
        eval_every_frames: evaluation period (``0`` disables evaluation).
        eval_episodes: evaluation episodes.
        eval_deterministic: act with the mode (mean) action in evaluation instead of sampling.
        seed: seed of the environments and of torch.

    Raises:
        ValueError: for an unknown or unsupported ``env_id``, or out-of-range numbers (named
            with the allowed range).

    Examples:
        >>> module = PPO("CartPole-v1", frames_per_batch=510)
        >>> module.task_names, module.frames_per_batch, type(module.policy_network).__name__
        (['CartPole-v1'], 512, 'ControlPolicy')
        >>> module.feature_modules()
        {'actor': 'encoder'}
        >>> PPO("Pendulum-v1", num_envs=1).policy_network.continuous
        True
    """

    benchmark = "gym"
    eval_metric = "episode_return"
    progress_keys = (
        ("charts/eval/episode_return_mean", "return"),
        ("charts/episode_return_mean", "return"),
    )

    def __init__(
        self,
        env_id: str = "CartPole-v1",
        hidden_sizes: Sequence[int] = (64, 64),
        num_envs: int = 4,
        total_frames: int = 200_000,
        frames_per_batch: int = 512,
        lr: float = 2.5e-4,
        epochs: int = 4,
        minibatch_size: int = 128,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_epsilon: float = 0.2,
        entropy_coef: float = 0.01,
        critic_coef: float = 0.5,
        max_grad_norm: float | None = 0.5,
        normalize_advantage: bool = True,
        eval_every_frames: int = 10_000,
        eval_episodes: int = 10,
        eval_deterministic: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value in {
            "num_envs": num_envs,
            "total_frames": total_frames,
            "frames_per_batch": frames_per_batch,
            "epochs": epochs,
            "minibatch_size": minibatch_size,
            "eval_episodes": eval_episodes,
        }.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        if isinstance(eval_every_frames, bool) or not isinstance(eval_every_frames, int):
            raise ValueError(f"eval_every_frames must be an int, got {eval_every_frames!r}.")
        if eval_every_frames < 0:
            raise ValueError(
                "eval_every_frames must be >= 0 (0 disables evaluation), got "
                f"{eval_every_frames!r}."
            )
        sizes = list(hidden_sizes) if isinstance(hidden_sizes, Sequence) else None
        if not sizes or not all(isinstance(s, int) and not isinstance(s, bool) for s in sizes):
            raise ValueError(
                f"hidden_sizes must be a non-empty list of ints, got {hidden_sizes!r}."
            )
        if min(sizes) < 1:
            raise ValueError(f"hidden_sizes must be positive, got {sizes!r}.")
        for name, value in {"gamma": gamma, "gae_lambda": gae_lambda}.items():
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}.")
        for name, value in {"lr": lr, "clip_epsilon": clip_epsilon}.items():
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}.")
        for name, value in {"entropy_coef": entropy_coef, "critic_coef": critic_coef}.items():
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}.")
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(
                f"max_grad_norm must be > 0 or None (no clipping), got {max_grad_norm!r}."
            )
        # A batch is whole steps of every copy: rounded up to num_envs, as MultiTaskSAC does.
        self.frames_per_batch = math.ceil(frames_per_batch / num_envs) * num_envs
        if self.frames_per_batch > total_frames:
            raise ValueError(
                f"frames_per_batch={frames_per_batch} (rounded up to {self.frames_per_batch}, a "
                f"multiple of num_envs={num_envs}) is larger than total_frames={total_frames}: "
                "one batch would overshoot the training length; allowed: frames_per_batch <= "
                "total_frames."
            )
        if minibatch_size > self.frames_per_batch:
            raise ValueError(
                f"minibatch_size={minibatch_size} is larger than frames_per_batch="
                f"{self.frames_per_batch}; allowed: 1 <= minibatch_size <= frames_per_batch."
            )
        observation_space, action_space = _gym_spaces(env_id)  # validates the task
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.task_names = [env_id]
        self.num_tasks = 1
        self.total_frames = total_frames
        self.eval_every_frames = eval_every_frames

        continuous = not hasattr(action_space, "n")
        obs_dim = int(observation_space.shape[0])
        action_dim = int(action_space.shape[0]) if continuous else int(action_space.n)
        probe = _make_env(env_id, num_envs=None, seed=None)
        action_spec = probe.action_spec
        probe.close()
        torch.manual_seed(seed)
        self.policy_network = ControlPolicy(obs_dim, action_dim, sizes, continuous=continuous)
        self.actor = make_control_actor(self.policy_network, action_spec)
        self.critic = ValueOperator(
            MLP(in_features=obs_dim, out_features=1, num_cells=sizes, activation_class=nn.Tanh),
            in_keys=["observation"],
        )
        # The loss's functional parameters are the networks' own parameter objects: what a
        # sparsifier on policy_network masks is what the optimizer trains.
        self.loss_module = ClipPPOLoss(
            self.actor,
            self.critic,
            clip_epsilon=clip_epsilon,
            entropy_coeff=entropy_coef,
            critic_coeff=critic_coef,
            loss_critic_type="l2",
            normalize_advantage=normalize_advantage,
        )
        self.advantage = GAE(
            gamma=gamma, lmbda=gae_lambda, value_network=self.critic, average_gae=False
        )
        self.observation_keys = ("observation",)

    # ------------------------------------------------------------------ data and optimizers
    def train_dataloader(self) -> CollectorLoader:
        batches = math.ceil(self.total_frames / self.frames_per_update)
        self._loader = CollectorLoader(
            lambda: _make_env(
                self.hparams.env_id,
                self.hparams.num_envs,
                seed=self.hparams.seed + 1000 * self.global_rank,
            ),
            self.actor,
            self.frames_per_batch,
            batches_per_epoch=batches,
        )
        return self._loader

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # One Adam over both networks, as CleanRL (eps 1e-5). Fused: one kernel per step, and
        # no slow path on the exact zeros of sparse layers' state.
        params = [
            *self.loss_module.actor_network_params.values(True, True),
            *self.loss_module.critic_network_params.values(True, True),
        ]
        return torch.optim.Adam(params, lr=self.hparams.lr, eps=1e-5, fused=True)

    @property
    def suite_name(self) -> str:
        """The task set run summaries and reports group by: the environment id."""
        return self.hparams.env_id

    def networks(self) -> dict[str, tuple[torch.nn.Module, int]]:
        """The policy network (``"actor"``), trained by the only optimizer."""
        return {"actor": (self.policy_network, 0)}

    # ------------------------------------------------------------------ training
    def training_step(self, batch: TensorDictBase, batch_idx: int) -> None:
        optimizer = self.optimizers()
        self.start_batch(
            batch, {"episode_return": "episode_return", "episode_length": "episode_length"}
        )
        with torch.no_grad():
            self.advantage(batch)
        # Minibatches copy only what the loss reads (not "next", episode statistics, ...).
        keys = self.loss_module.tensor_keys
        data = batch.reshape(-1).select(
            "observation", keys.action, keys.sample_log_prob, keys.advantage, keys.value_target
        )
        losses: dict[str, list[torch.Tensor]] = {}
        for _ in range(self.hparams.epochs):
            for index in torch.randperm(len(data)).split(self.hparams.minibatch_size):
                with self.non_finite_guard("the PPO loss"):
                    loss_td = self.loss_module(data[index])
                self.check_finite({k: loss_td[k] for k in LOSSES})
                optimizer.zero_grad()
                with self.no_sync():
                    self.manual_backward(sum(loss_td[k] for k in LOSSES))
                self.clip(optimizer)
                optimizer.step()
                for key in (*LOSSES, *DIAGNOSTICS):
                    if key in loss_td:
                        losses.setdefault(key, []).append(loss_td[key].detach())
        self.finish_batch(batch.numel(), losses, {})

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Play ``eval_episodes`` episodes with :func:`evaluate_policy`.

        Deterministic (mode/mean) actions with ``eval_deterministic``, else sampled; the torch
        generator is forked, so evaluating does not change the training run. Returns and logs
        ``charts/eval/episode_return/<env_id>`` and ``charts/eval/episode_return_mean``.
        """
        h = self.hparams
        returns = evaluate_policy(
            self.actor,
            h.env_id,
            h.eval_episodes,
            seed=h.seed + 10_000 + self.frames,
            deterministic=h.eval_deterministic,
        )
        return self.log_evaluation(
            {"episode_return": [returns]}, {"episode_return": "episode_return"}
        )
