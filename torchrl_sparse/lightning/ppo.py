"""Multi-task PPO on the MiniGrid suites, as a LightningModule.

The whole algorithm reads top to bottom in :meth:`MultiTaskPPO.training_step`: collect a batch
(an endless TorchRL ``Collector``), GAE, advantages normalised per task, then ``critic_epochs``
epochs of critic regression on the GAE value targets (one full-batch step per epoch by
default) and ``policy_epochs`` epochs of clipped-objective actor updates on minibatches
stratified by task (``policy_minibatch_per_task`` samples of every task), as in MOORE's PPO.

**Units.** A *step* is one step of every task's environment, as in the papers (MOORE's
multi-task core steps all task environments together): the papers' "2,000 steps per epoch,
400k steps" are 2,000 and 400k transitions *per task*. The options say so in their names
(``steps_per_task_per_batch``, ``total_steps_per_task``, ``eval_every_steps_per_task``); the
module derives the *frames* (transitions summed over tasks) that collectors, logs and callbacks
count: ``frames = steps per task x number of tasks`` (6,000 frames per batch on MT3, 10,000 on
MT5, 14,000 on MT7).

The actor loss is TorchRL's ``ClipPPOLoss`` (objective and entropy). The critic is fitted
separately with a mean-squared error on the GAE value targets over the full batch, because the
papers' PPO trains it with its own batch size; ``ClipPPOLoss`` is therefore built with
``critic_coeff=0`` but still holds the critic, so a sparsifier attached to
``module.loss_module`` reaches both networks as ``actor_network.*`` and ``critic_network.*``.

Under Lightning's DDP every rank collects its own batch (its own environment seeds), gradients
are averaged over ranks before every optimizer step, and frames count over all ranks.

Everything is logged against environment frames: ``charts/`` (training and evaluation returns
per task, normalised returns, SPS), ``losses/``; callbacks add ``sparsity/`` and ``plasticity/``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from tensordict import TensorDictBase
from torch.nn import functional as F
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import GAE

from torchrl_sparse.envs import MINIGRID_SUITES, make_minigrid_env
from torchrl_sparse.lightning.base import MultiTaskRLModule
from torchrl_sparse.lightning.loader import CollectorLoader
from torchrl_sparse.modules import make_ppo_actor, make_ppo_critic
from torchrl_sparse.objectives import PCGrad

__all__ = ["MultiTaskPPO"]

ARCHITECTURES = ("mtppo", "moe", "moore")
ACTOR_LOSSES = ("loss_objective", "loss_entropy")
DEFAULT_ENVS_PER_TASK = 8


class MultiTaskPPO(MultiTaskRLModule):
    """Multi-task PPO (MTPPO, MoE or MOORE networks) on MiniGrid MT3/MT5/MT7.

    Defaults are the papers' (Todorov et al. 2025, Table 2; MOORE's MiniGrid scripts): 400k
    steps per task in batches of 2,000 steps per task (200 updates), Adam lr 1e-3, gamma 0.99,
    GAE lambda 0.95, clip 0.2, entropy 0.01, 8 policy epochs, policy minibatch 256 per task,
    one critic epoch of one full-batch step (critic batch 2,000 per task), evaluation of 25
    episodes per task every 10k steps per task. One step is one step of every task: on MT3 a
    batch is 6,000 frames and a run 1.2M frames.

    Args:
        suite: ``"MT3"``, ``"MT5"`` or ``"MT7"``.
        arch: ``"mtppo"`` (shared CNN), ``"moe"`` or ``"moore"``.
        num_experts: experts for MoE/MOORE (default 2, 3, 4 for MT3, MT5, MT7).
        layer_norm: LayerNorm placement (a plasticity baseline): ``"none"``,
            ``"representation"`` (the shared features fed to the heads), ``"heads"`` (each
            head's hidden layer) or ``"both"`` (see
            :func:`~torchrl_sparse.modules.make_minigrid_network`).
        envs_per_task: sub-environments per task; several amortise the per-step cost of the
            policy and of TorchRL (8 by default; a batch stays ``steps_per_task_per_batch``
            steps of every task).
        task_sampling: ``"lockstep"`` (every task every step, as MOORE's code) or ``"random"``
            (a task drawn at each episode start; tasks then get ``frames / num_tasks`` steps on
            average).
        total_steps_per_task: training length in steps of every task (frames = this x number
            of tasks).
        steps_per_task_per_batch: steps of every task per collected batch and update (rounded
            up to a multiple of ``envs_per_task``); per rank under DDP, where an update sees
            ``world_size`` such batches and a run ``total_steps_per_task`` steps in all, so
            divide this by the number of ranks to keep the papers' update size.
        lr: Adam learning rate (actor and critic).
        weight_decay: Adam L2 weight decay (1e-6 is the papers' baseline).
        gamma: discount.
        gae_lambda: GAE lambda.
        clip_epsilon: PPO clipping.
        entropy_coef: entropy bonus.
        policy_epochs: actor epochs over each batch.
        policy_minibatch_per_task: actor minibatch samples per task (MOORE: 256 x number of
            tasks samples per minibatch, shuffled across tasks; here stratified).
        critic_epochs: critic epochs over each batch (MOORE: 1).
        critic_batch_per_task: critic minibatch samples per task; each critic epoch cuts the
            batch into ``steps_per_task_per_batch // critic_batch_per_task`` equal shuffled
            shares (the default 2,000 gives one step on the whole batch, as MOORE's full-batch
            critic fit).
        max_grad_norm: gradient clipping (``None`` for none).
        pcgrad: project conflicting per-task actor gradients (PCGrad, Yu et al. 2020).
        eval_every_steps_per_task: evaluation period in steps of every task (``0`` disables
            evaluation).
        eval_episodes_per_task: evaluation episodes per task.
        eval_deterministic: act greedily in evaluation instead of sampling from the policy.
        seed: seed of the environment and of torch.

    Examples:
        >>> module = MultiTaskPPO("MT3", arch="moore")
        >>> module.frames_per_batch, module.total_frames, module.eval_every_frames
        (6000, 1200000, 30000)
        >>> type(module.loss_module).__name__
        'ClipPPOLoss'
    """

    benchmark = "minigrid"
    eval_metric = "normalized_return"
    progress_keys = (
        ("charts/eval/normalized_return_mean", "return"),
        ("charts/normalized_return_mean", "return"),
    )

    def __init__(
        self,
        suite: str = "MT3",
        arch: Literal["mtppo", "moe", "moore"] = "mtppo",
        num_experts: int | None = None,
        layer_norm: Literal["none", "representation", "heads", "both"] = "none",
        envs_per_task: int = DEFAULT_ENVS_PER_TASK,
        task_sampling: Literal["lockstep", "random"] = "lockstep",
        total_steps_per_task: int = 400_000,
        steps_per_task_per_batch: int = 2_000,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_epsilon: float = 0.2,
        entropy_coef: float = 0.01,
        policy_epochs: int = 8,
        policy_minibatch_per_task: int = 256,
        critic_epochs: int = 1,
        critic_batch_per_task: int = 2_000,
        max_grad_norm: float | None = None,
        pcgrad: bool = False,
        eval_every_steps_per_task: int = 10_000,
        eval_episodes_per_task: int = 25,
        eval_deterministic: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if suite not in MINIGRID_SUITES:
            raise ValueError(f"Unknown suite {suite!r}; allowed: {list(MINIGRID_SUITES)}.")
        if arch not in ARCHITECTURES:
            raise ValueError(f"Unknown arch {arch!r}; allowed: {list(ARCHITECTURES)}.")
        for name, value in {
            "total_steps_per_task": total_steps_per_task,
            "steps_per_task_per_batch": steps_per_task_per_batch,
            "policy_epochs": policy_epochs,
            "policy_minibatch_per_task": policy_minibatch_per_task,
            "critic_epochs": critic_epochs,
            "critic_batch_per_task": critic_batch_per_task,
            "eval_episodes_per_task": eval_episodes_per_task,
            "envs_per_task": envs_per_task,
        }.items():
            if value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        if eval_every_steps_per_task < 0:
            raise ValueError(
                "eval_every_steps_per_task must be >= 0 (0 disables evaluation), got "
                f"{eval_every_steps_per_task!r}."
            )
        # A batch is whole steps of every sub-environment: rounded up to envs_per_task.
        steps_per_batch = math.ceil(steps_per_task_per_batch / envs_per_task) * envs_per_task
        if steps_per_batch > total_steps_per_task:
            raise ValueError(
                f"steps_per_task_per_batch={steps_per_task_per_batch} (rounded up to "
                f"{steps_per_batch}, a multiple of envs_per_task={envs_per_task}) is larger than "
                f"total_steps_per_task={total_steps_per_task}: one batch would overshoot the "
                "training length."
            )
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.num_tasks = len(MINIGRID_SUITES[suite])
        self.task_names = list(MINIGRID_SUITES[suite])
        # Frames are transitions summed over tasks: what collectors, logs and callbacks count.
        self.frames_per_batch = steps_per_batch * self.num_tasks
        self.total_frames = total_steps_per_task * self.num_tasks
        self.eval_every_frames = eval_every_steps_per_task * self.num_tasks
        torch.manual_seed(seed)
        self.actor = make_ppo_actor(suite, arch, num_experts, layer_norm)
        self.critic = make_ppo_critic(suite, arch, num_experts, layer_norm)
        self.loss_module = ClipPPOLoss(
            self.actor,
            self.critic,
            clip_epsilon=clip_epsilon,
            entropy_coeff=entropy_coef,
            critic_coeff=0,
            normalize_advantage=False,
        )
        self.advantage = GAE(
            gamma=gamma, lmbda=gae_lambda, value_network=self.critic, average_gae=False
        )
        self.observation_keys = ("observation", "task_id")
        self._pcgrad: PCGrad | None = None

    # ------------------------------------------------------------------ data and optimizers
    def train_dataloader(self) -> CollectorLoader:
        batches = math.ceil(self.total_frames / self.frames_per_update)
        self._loader = CollectorLoader(
            lambda: make_minigrid_env(
                self.hparams.suite,
                envs_per_task=self.hparams.envs_per_task,
                task_sampling=self.hparams.task_sampling,
                seed=self.hparams.seed + 1000 * self.global_rank,
            ),
            self.actor,
            self.frames_per_batch,
            batches_per_epoch=batches,
        )
        return self._loader

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        # Fused Adam: one kernel per step, and no slow path on the exact zeros of sparse
        # layers' state (see benchmarks/bench_sparse_step.py).
        kwargs = {"lr": self.hparams.lr, "weight_decay": self.hparams.weight_decay, "fused": True}
        actor_params = list(self.loss_module.actor_network_params.values(True, True))
        critic_params = list(self.loss_module.critic_network_params.values(True, True))
        return [torch.optim.Adam(actor_params, **kwargs), torch.optim.Adam(critic_params, **kwargs)]

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self._pcgrad = None
        if self.hparams.pcgrad:
            actor_optimizer = self.trainer.optimizers[0]
            self._pcgrad = PCGrad(
                self.loss_module,
                actor_optimizer,
                task_key="task_id",
                loss_keys=list(ACTOR_LOSSES),
                max_grad_norm=self.hparams.max_grad_norm,
            )

    def networks(self) -> dict[str, tuple[torch.nn.Module, int]]:
        """The networks plasticity tools act on, with the index of their optimizer."""
        return {"actor": (self.actor, 0), "critic": (self.critic, 1)}

    # ------------------------------------------------------------------ training
    def training_step(self, batch: TensorDictBase, batch_idx: int) -> None:
        actor_optimizer, critic_optimizer = self.optimizers()
        self.start_batch(batch, {k: k for k in ("episode_return", "normalized_return")})
        with torch.no_grad():
            self.advantage(batch)
        data = batch.reshape(-1)
        data.set("advantage", self._normalise_per_task(data["advantage"], data["task_id"]))
        # Minibatches copy only what the actor loss reads (not "next", episode statistics, ...).
        keys = self.loss_module.tensor_keys
        policy_data = data.select(
            *self.actor.in_keys, keys.action, keys.sample_log_prob, keys.advantage
        )
        critic_data = data.select(*self.critic.in_keys, "value_target")

        losses: dict[str, list[torch.Tensor]] = {}
        # The critic first, as MOORE's PPO (the value targets and advantages above already use
        # the critic before this update, so the order does not change either update).
        for _ in range(self.hparams.critic_epochs):
            for critic_batch in self._critic_batches(critic_data):
                value = self.critic(critic_batch)["state_value"]
                critic_loss = F.mse_loss(value, critic_batch["value_target"])
                self.check_finite({"loss_critic": critic_loss})
                critic_optimizer.zero_grad()
                with self.no_sync():
                    self.manual_backward(critic_loss)
                self.clip(critic_optimizer)
                critic_optimizer.step()
                losses.setdefault("loss_critic", []).append(critic_loss.detach())
        for _ in range(self.hparams.policy_epochs):
            for minibatch in self._stratified_minibatches(policy_data):
                if self._pcgrad is not None:
                    with self.non_finite_guard("the actor loss"), self.no_sync():
                        loss_td = self._pcgrad.step(minibatch)
                    self.check_finite({k: loss_td[k] for k in ACTOR_LOSSES})
                else:
                    with self.non_finite_guard("the actor loss"):
                        loss_td = self.loss_module(minibatch)
                    self.check_finite({k: loss_td[k] for k in ACTOR_LOSSES})
                    actor_optimizer.zero_grad()
                    with self.no_sync():
                        self.manual_backward(loss_td["loss_objective"] + loss_td["loss_entropy"])
                    self.clip(actor_optimizer)
                    actor_optimizer.step()
                for key in (
                    "loss_objective",
                    "loss_entropy",
                    "entropy",
                    "kl_approx",
                    "clip_fraction",
                ):
                    if key in loss_td:
                        losses.setdefault(key, []).append(loss_td[key].detach())

        self.finish_batch(batch.numel(), losses, {})

    def _critic_batches(self, data: TensorDictBase) -> list[TensorDictBase]:
        """``len(data) // (critic_batch_per_task x tasks)`` (at least one) equal shuffled shares.

        Equal shares rather than ``split``: a batch slightly larger than the critic batch gives
        one step on all of it, not a second step on the remainder.
        """
        count = max(1, len(data) // (self.hparams.critic_batch_per_task * self.num_tasks))
        if count == 1:
            return [data]
        return [data[idx] for idx in torch.randperm(len(data)).tensor_split(count)]

    def _normalise_per_task(self, advantage: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        advantage = advantage.clone()
        flat = advantage.view(len(task), -1)
        for t in task.unique():
            rows = task == t
            values = flat[rows]
            flat[rows] = (values - values.mean()) / (values.std(unbiased=False) + 1e-8)
        return advantage

    def _stratified_minibatches(self, data: TensorDictBase) -> list[TensorDictBase]:
        """Shuffled minibatches holding ``policy_minibatch_per_task`` samples of every task."""
        task = data["task_id"]
        size = self.hparams.policy_minibatch_per_task
        per_task = [(task == t).nonzero().view(-1) for t in task.unique()]
        count = max(math.ceil(len(idx) / size) for idx in per_task)
        chunks = [idx[torch.randperm(len(idx))].tensor_split(count) for idx in per_task]
        return [data[torch.cat([c[i] for c in chunks])] for i in range(count)]

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Evaluate ``eval_episodes_per_task`` episodes of every task on a fresh environment.

        The torch generator is forked, so evaluating does not change the training run.

        Returns and logs ``charts/eval/episode_return/<task>``,
        ``charts/eval/normalized_return/<task>`` and their means over tasks.
        """
        env = make_minigrid_env(
            self.hparams.suite,
            envs_per_task=min(self.hparams.eval_episodes_per_task, 5),
            seed=self.hparams.seed + 10_000 + self.frames,
        )
        keys = ("episode_return", "normalized_return")
        values = self.run_episodes(env, keys)
        env.close()
        return self.log_evaluation(values, {k: k for k in keys})
