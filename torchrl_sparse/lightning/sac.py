"""Multi-task SAC on MetaWorld, as a LightningModule.

The whole algorithm reads top to bottom in :meth:`MultiTaskSAC.training_step`: collect a batch
(an endless TorchRL ``Collector`` over all tasks at once, one sub-environment per task), add it
to a TorchRL ``ReplayBuffer``, then ``utd_ratio`` gradient updates per environment step on
batches stratified by task (``batch_size / num_tasks`` transitions of every task, 128 in the
papers), each updating the twin critics, the actor and the per-task temperatures, followed by a
Polyak (``SoftUpdate``) step of the target critics.

The loss is :class:`~torchrl_sparse.objectives.multitask_sac.MultiTaskSACLoss` (TorchRL's
``SACLoss`` with one temperature per task). The twin critics stay stacked inside it, so a
sparsifier attached to ``module.loss_module`` reaches the actor as ``actor_network.*`` and both
critics and their targets as ``qvalue_network.*``.

The replay buffer lives in a TorchRL ``LazyMemmapStorage`` (memory-mapped on disk) laid out as
``[rows, num_tasks]``: column ``k`` holds task ``k``'s transitions (``buffer_size / num_tasks``
per task, like the papers' per-task buffers). Checkpoints carry it: every checkpoint first dumps
the buffer with ``ReplayBuffer.dumps`` into a directory next to the checkpoint
(``<checkpoint dir>/replay_buffer`` by default) and records that path and the frame count in the
checkpoint; ``fit --ckpt_path`` loads it back with ``ReplayBuffer.loads``.

Everything is logged against environment frames: ``charts/`` (training returns and success per
task, evaluation success rates, temperatures, SPS), ``losses/``; callbacks add ``sparsity/``
and ``plasticity/``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.data import Bounded, ReplayBuffer
from torchrl.data.replay_buffers.samplers import Sampler
from torchrl.data.replay_buffers.storages import Storage
from torchrl.envs import EnvBase
from torchrl.objectives import SoftUpdate, ValueEstimators

from torchrl_sparse.envs import make_metaworld_env, metaworld_task_names
from torchrl_sparse.lightning.base import MultiTaskRLModule
from torchrl_sparse.lightning.loader import CollectorLoader
from torchrl_sparse.lightning.replay import ReplayCheckpointMixin
from torchrl_sparse.modules import SAC_ARCHITECTURES, make_sac_actor, make_sac_qvalue
from torchrl_sparse.objectives.multitask_sac import MultiTaskSACLoss
from torchrl_sparse.objectives.stacked_view import StackedNetworkView

__all__ = ["MultiTaskSAC", "TaskStratifiedSampler"]

OBS_DIM = 39
ACTION_DIM = 4
# What the loss reads; the rest of the collected data (one-hots, episode statistics, the
# actor's distribution parameters) is not stored.
BUFFER_KEYS = (
    "observation",
    "task_id",
    "action",
    ("next", "observation"),
    ("next", "task_id"),
    ("next", "reward"),
    ("next", "done"),
    ("next", "terminated"),
    ("next", "truncated"),
)


class TaskStratifiedSampler(Sampler):
    """Sample ``batch_size / num_tasks`` transitions of every task from a ``[rows, tasks]`` storage.

    For a TorchRL storage with ``ndim=2`` whose second dimension is the task (a collector's
    ``[num_tasks, time]`` batches extended into it), each task contributes the same number of
    uniformly drawn transitions, as the multi-task SAC papers sample 128 per task.

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl.data import LazyMemmapStorage
        >>> rb = ReplayBuffer(
        ...     storage=LazyMemmapStorage(40, ndim=2),
        ...     sampler=TaskStratifiedSampler(),
        ...     batch_size=8,
        ... )
        >>> batch = TensorDict({"task_id": torch.arange(4).unsqueeze(-1).expand(4, 5)}, [4, 5])
        >>> _ = rb.extend(batch)  # [tasks, time] data fills the [rows, tasks] storage
        >>> sorted(rb.sample()["task_id"].tolist())
        [0, 0, 1, 1, 2, 2, 3, 3]
    """

    def sample(self, storage: Storage, batch_size: int) -> tuple[Any, dict]:
        if storage.ndim != 2:
            raise ValueError(
                f"TaskStratifiedSampler needs a storage with ndim=2 ([rows, tasks]), got "
                f"ndim={storage.ndim}."
            )
        if len(storage) == 0:
            raise RuntimeError("Cannot sample from an empty replay buffer.")
        rows, tasks = storage.shape
        if batch_size % tasks:
            raise ValueError(
                f"batch_size={batch_size} must be a multiple of the number of tasks ({tasks})."
            )
        per_task = batch_size // tasks
        row = torch.randint(rows, (tasks, per_task), generator=self._rng)
        task = torch.arange(tasks).unsqueeze(-1).expand(tasks, per_task)
        return (row.reshape(-1), task.reshape(-1)), {}

    def _empty(self) -> None:
        return

    def dumps(self, path: str | Path) -> None:
        return  # stateless

    def loads(self, path: str | Path) -> None:
        return

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        return


class _WarmupPolicy(TensorDictModuleBase):
    """The actor, with uniformly random actions while ``random()`` is true (the warm-up).

    The actor still runs during the warm-up so that every step carries the same keys.
    """

    def __init__(self, actor: TensorDictModuleBase, action_spec: Bounded, random: Any) -> None:
        super().__init__()
        self.actor = actor
        self.action_spec = action_spec
        self.random = random
        self.in_keys = list(actor.in_keys)
        self.out_keys = list(actor.out_keys)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        tensordict = self.actor(tensordict)
        if self.random():
            tensordict.set("action", self.action_spec.rand(tensordict.shape))
        return tensordict


class MultiTaskSAC(ReplayCheckpointMixin, MultiTaskRLModule):
    """Multi-task SAC (MT-SAC, MoE or MOORE networks) on MetaWorld MT10/MT50.

    Defaults are the papers' (McLean et al. 2025; Todorov et al.): multi-head networks of 3
    ReLU layers of 400 with the task one-hot appended (``"mtsac"``), twin critics, one entropy
    temperature per task, batch 1,280 (128 per task), replay buffer 1e6, Adam lr 3e-4, gamma
    0.99, tau 0.005, gradient clipping 1.0, 500-step episodes, 20M frames (2M per task),
    evaluation of 50 episodes per task (success: ``info["success"]`` was ever 1 in the
    episode), 4,000 steps of random warm-up (40,000 frames on MT10) and one update per step of
    the ``num_tasks`` environments.

    Frames count environment steps of single tasks: one step of MT10 is 10 frames. The critic
    loss is the squared TD error (summed over the twin critics, averaged over the batch) against
    the clipped double-Q soft target; episodes are only truncated, so every transition
    bootstraps.

    Args:
        suite: ``"MT10"``, ``"MT50"`` or a list of MetaWorld task names (e.g.
            ``["reach-v3", "window-close-v3"]``, a CPU-sized run of the same code).
        arch: ``"mtsac"`` (plain multi-head MLP), ``"moe"`` or ``"moore"``.
        width: hidden width of the actor (and of the critic unless ``critic_width`` is given).
        critic_width: hidden width of each critic (``None``: ``width``); the critic-only scaling
            study widens only this.
        num_layers: hidden layers of actor and critics.
        num_experts: experts for MoE/MOORE (default 4 on MT10, 6 on MT50).
        layer_norm: LayerNorm after hidden layers (a plasticity baseline).
        num_qvalue_nets: stacked critics (2: twin critics, clipped double-Q).
        max_episode_steps: episode length (training and evaluation).
        total_frames: training length in environment frames.
        frames_per_batch: frames per collected batch (rounded up to a multiple of the number of
            tasks); losses and SPS are logged once per batch.
        learning_starts: frames of uniformly random actions before the first update.
        utd_ratio: gradient updates per environment step of all tasks (per ``num_tasks``
            frames); ``frames_per_batch / num_tasks * utd_ratio`` updates follow each batch.
        batch_size: transitions per update, sampled equally from every task (a multiple of the
            number of tasks).
        buffer_size: replay-buffer capacity in transitions (``buffer_size / num_tasks`` per task).
        buffer_scratch_dir: directory of the memory-mapped replay buffer (``None``: a temporary
            directory, removed when the process exits normally or stops on SIGTERM/SIGINT).
            Under DDP every rank writes to its own ``rank<k>`` subdirectory.
        replay_buffer_dir: where checkpoints dump the replay buffer (``None``:
            ``<checkpoint dir>/replay_buffer``, or ``<default_root_dir>/replay_buffer`` without
            a checkpoint callback); ``""`` keeps the buffer out of checkpoints.
        lr: Adam learning rate of actor and critics.
        alpha_lr: Adam learning rate of the temperatures (``None``: ``lr``).
        weight_decay: Adam L2 weight decay of actor and critics (1e-6 is a plasticity baseline).
        gamma: discount.
        tau: Polyak coefficient of the target critics.
        alpha_init: initial temperature of every task.
        max_grad_norm: gradient clipping of actor and critics (``None`` for none).
        eval_every_frames: evaluation period (``0`` disables evaluation).
        eval_episodes_per_task: evaluation episodes per task.
        eval_deterministic: act with the policy's mean action in evaluation (the papers);
            ``False`` samples from the policy.
        seed: seed of the environments and of torch.

    Examples:
        >>> module = MultiTaskSAC(total_frames=100_000, frames_per_batch=1_000)
        >>> module.updates_per_batch, type(module.loss_module).__name__
        (100, 'MultiTaskSACLoss')
        >>> module.loss_module.log_alpha.shape
        torch.Size([10])
    """

    benchmark = "metaworld"
    eval_metric = "success"
    progress_keys = (("charts/eval/success_mean", "success"), ("charts/success_mean", "success"))

    def __init__(
        self,
        suite: str | list[str] = "MT10",
        arch: Literal["mtsac", "moe", "moore"] = "mtsac",
        width: int = 400,
        critic_width: int | None = None,
        num_layers: int = 3,
        num_experts: int | None = None,
        layer_norm: bool = False,
        num_qvalue_nets: int = 2,
        max_episode_steps: int = 500,
        total_frames: int = 20_000_000,
        frames_per_batch: int = 1_000,
        learning_starts: int = 40_000,
        utd_ratio: float = 1.0,
        batch_size: int = 1_280,
        buffer_size: int = 1_000_000,
        buffer_scratch_dir: str | None = None,
        replay_buffer_dir: str | None = None,
        lr: float = 3e-4,
        alpha_lr: float | None = None,
        weight_decay: float = 0.0,
        gamma: float = 0.99,
        tau: float = 0.005,
        alpha_init: float = 1.0,
        max_grad_norm: float | None = 1.0,
        eval_every_frames: int = 200_000,
        eval_episodes_per_task: int = 50,
        eval_deterministic: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        task_names = metaworld_task_names(suite)
        if arch not in SAC_ARCHITECTURES:
            raise ValueError(f"Unknown arch {arch!r}; allowed: {list(SAC_ARCHITECTURES)}.")
        for name, value in {
            "width": width,
            "critic_width": 1 if critic_width is None else critic_width,
            "num_layers": num_layers,
            "num_qvalue_nets": num_qvalue_nets,
            "max_episode_steps": max_episode_steps,
            "total_frames": total_frames,
            "frames_per_batch": frames_per_batch,
            "batch_size": batch_size,
            "buffer_size": buffer_size,
            "eval_episodes_per_task": eval_episodes_per_task,
        }.items():
            if value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        for name, value in {
            "learning_starts": learning_starts,
            "eval_every_frames": eval_every_frames,
        }.items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}.")
        if not 0 < tau <= 1:
            raise ValueError(f"tau must be in (0, 1], got {tau!r}.")
        if not 0 <= gamma <= 1:
            raise ValueError(f"gamma must be in [0, 1], got {gamma!r}.")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.task_names = list(task_names)
        self.num_tasks = len(self.task_names)
        if batch_size % self.num_tasks:
            raise ValueError(
                f"batch_size={batch_size} must be a multiple of the number of tasks "
                f"({self.num_tasks}): the batch is sampled equally from every task."
            )
        if buffer_size < self.num_tasks:
            raise ValueError(
                f"buffer_size={buffer_size} must hold at least one transition per task "
                f"(>= {self.num_tasks})."
            )
        self.frames_per_batch = math.ceil(frames_per_batch / self.num_tasks) * self.num_tasks
        if self.frames_per_batch > total_frames:
            raise ValueError(
                f"frames_per_batch={frames_per_batch} (rounded up to {self.frames_per_batch}, a "
                f"multiple of the {self.num_tasks} tasks) is larger than total_frames="
                f"{total_frames}: one batch would overshoot the training length."
            )
        self.total_frames = total_frames
        self.eval_every_frames = eval_every_frames
        self.updates_per_batch = round(utd_ratio * self.frames_per_batch / self.num_tasks)
        if self.updates_per_batch < 1:
            raise ValueError(
                f"utd_ratio={utd_ratio!r} gives {self.updates_per_batch} updates per batch of "
                f"{self.frames_per_batch} frames; allowed: utd_ratio >= "
                f"{self.num_tasks / (2 * self.frames_per_batch):.3g} (at least one update)."
            )

        torch.manual_seed(seed)
        net_kwargs = {
            "obs_dim": OBS_DIM,
            "action_dim": ACTION_DIM,
            "num_layers": num_layers,
            "arch": arch,
            "num_experts": num_experts,
            "layer_norm": layer_norm,
        }
        self.actor = make_sac_actor(self.num_tasks, width=width, **net_kwargs)
        qvalue = make_sac_qvalue(self.num_tasks, width=critic_width or width, **net_kwargs)
        self.loss_module = MultiTaskSACLoss(
            self.actor,
            qvalue,
            num_tasks=self.num_tasks,
            num_qvalue_nets=num_qvalue_nets,
            alpha_init=alpha_init,
            loss_function="l2",
        )
        self.loss_module.make_value_estimator(ValueEstimators.TD0, gamma=gamma)
        self.target_updater = SoftUpdate(self.loss_module, tau=tau)
        self.action_spec = Bounded(-1.0, 1.0, shape=(ACTION_DIM,))
        storage = self.make_storage(buffer_size, buffer_scratch_dir, ndim=2)
        self.replay_buffer = ReplayBuffer(
            storage=storage, sampler=TaskStratifiedSampler(), batch_size=batch_size
        )
        self.observation_keys = ("observation", "task_id")
        self._eval_env: EnvBase | None = None

    # ------------------------------------------------------------------ data and optimizers
    def train_dataloader(self) -> CollectorLoader:
        batches = math.ceil(self.total_frames / self.frames_per_update)
        policy = _WarmupPolicy(
            self.actor,
            self.action_spec,
            lambda: self.frames < self.hparams.learning_starts,
        )
        self._loader = CollectorLoader(
            lambda: make_metaworld_env(
                self.hparams.suite,
                seed=self.hparams.seed + 1000 * self.global_rank,
                max_episode_steps=self.hparams.max_episode_steps,
            ),
            policy,
            self.frames_per_batch,
            batches_per_epoch=batches,
        )
        return self._loader

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        # Fused Adam: one kernel per step, and no slow path on the exact zeros of sparse
        # layers' state (see benchmarks/bench_sparse_step.py).
        kwargs = {"lr": self.hparams.lr, "weight_decay": self.hparams.weight_decay, "fused": True}
        actor_params = list(self.loss_module.actor_network_params.values(True, True))
        critic_params = list(self.loss_module.qvalue_network_params.values(True, True))
        alpha_lr = self.hparams.alpha_lr if self.hparams.alpha_lr is not None else self.hparams.lr
        return [
            torch.optim.Adam(actor_params, **kwargs),
            torch.optim.Adam(critic_params, **kwargs),
            torch.optim.Adam([self.loss_module.log_alpha], lr=alpha_lr),
        ]

    def networks(self) -> dict[str, tuple[torch.nn.Module, int]]:
        """The networks interventions act on, with the index of their optimizer.

        Only the actor: the twin critics live stacked inside the loss (``qvalue_network.*``),
        where the sparsifier reaches them but ReDo/Reset (which reset per-parameter optimizer
        state) do not.
        """
        return {"actor": (self.actor, 0)}

    def monitored_networks(self) -> dict[str, torch.nn.Module]:
        """The actor and the first online Q-network (``"critic"``), scored on actions a ~ pi.

        The critic is a :class:`~torchrl_sparse.objectives.StackedNetworkView` of the loss's
        stacked Q-parameters: metrics see the live weights, masks and gradients of copy 0.
        """
        # A fresh view per call: one built earlier may alias storage that a later .to() replaced.
        critic = StackedNetworkView(self.loss_module, "qvalue_network", 0, action_source=self.actor)
        return {"actor": self.actor, "critic": critic}

    # ------------------------------------------------------------------ training
    def training_step(self, batch: TensorDictBase, batch_idx: int) -> None:
        actor_optimizer, critic_optimizer, alpha_optimizer = self.optimizers()
        self.start_batch(batch, {"episode_return": "episode_return", "episode_success": "success"})
        # [num_tasks, time] batches extend the [rows, num_tasks] storage along time.
        self.replay_buffer.extend(batch.select(*BUFFER_KEYS).detach())

        losses: dict[str, list[torch.Tensor]] = {}
        if self.frames >= self.hparams.learning_starts:
            for _ in range(self.updates_per_batch):
                sample = self.replay_buffer.sample()
                with self.non_finite_guard("the SAC loss"):
                    loss_td = self.loss_module(sample)
                terms = {k: loss_td[k] for k in ("loss_qvalue", "loss_actor", "loss_alpha")}
                self.check_finite(terms)
                actor_optimizer.zero_grad()
                critic_optimizer.zero_grad()
                alpha_optimizer.zero_grad()
                # The three terms touch disjoint parameters (SACLoss detaches the critics in the
                # actor loss and computes the target without gradients): one backward suffices.
                with self.no_sync():
                    self.manual_backward(sum(terms.values()))
                self.clip(critic_optimizer)
                self.clip(actor_optimizer)
                critic_optimizer.step()
                actor_optimizer.step()
                alpha_optimizer.step()
                self.target_updater.step()
                for key in (*terms, "alpha", "entropy"):
                    losses.setdefault(key, []).append(loss_td[key].detach())

        scalars = {"charts/replay_buffer_size": float(len(self.replay_buffer))}
        if losses:
            alphas = self.loss_module.task_alpha(torch.arange(self.num_tasks)).tolist()
            for name, value in zip(self.task_names, alphas, strict=True):
                scalars[f"charts/alpha/{name}"] = value
        self.finish_batch(batch.numel(), losses, scalars)

    # ------------------------------------------------------------------ logging
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Evaluate ``eval_episodes_per_task`` episodes of every task.

        Actions are the policy's mean (``eval_deterministic``, the default) or samples; the
        torch generator is forked, so evaluating does not change the training run. The
        evaluation environment is built once and reseeded at every evaluation. An episode
        succeeds if ``info["success"]`` was ever 1 in it. Returns and logs
        ``charts/eval/success/<task>`` (success rate), ``charts/eval/success_mean``,
        ``charts/eval/episode_return/<task>`` and ``charts/eval/episode_return_mean``.
        """
        if self._eval_env is None:  # building MetaWorld takes seconds: once per run
            self._eval_env = make_metaworld_env(
                self.hparams.suite,
                seed=self.hparams.seed + 10_000,
                max_episode_steps=self.hparams.max_episode_steps,
            )
        env = self._eval_env
        env.set_seed(self.hparams.seed + 10_000 + self.frames)
        values = self.run_episodes(env, ("episode_return", "episode_success"))
        return self.log_evaluation(
            values, {"episode_success": "success", "episode_return": "episode_return"}
        )

    def on_train_end(self) -> None:
        super().on_train_end()
        if self._eval_env is not None:
            self._eval_env.close()
            self._eval_env = None
