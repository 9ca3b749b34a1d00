"""What the multi-task RL LightningModules share: frames, logging, guards, DDP, checkpoints.

:class:`MultiTaskRLModule` is the contract the callbacks rely on (``loss_module``, ``frames``,
``frames_per_update``, ``log_frames``, ``networks()``, ``monitored_networks()``,
``feature_modules()``). The algorithms themselves stay whole in their own modules
(:mod:`.ppo`, :mod:`.sac`).
"""

from __future__ import annotations

import contextlib
import math
import time
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from tensordict import TensorDictBase
from torchrl.envs import EnvBase, ExplorationType, set_exploration_type

from torchrl_sparse.cadence import crossed_multiple
from torchrl_sparse.envs.stats import per_task_mean
from torchrl_sparse.lightning.distributed import (
    average_gradients_on_step,
    gradient_sync_disabled,
)
from torchrl_sparse.lightning.loader import CollectorLoader

__all__ = ["MultiTaskRLModule"]


class MultiTaskRLModule(pl.LightningModule):
    """Base class of :class:`MultiTaskPPO` and :class:`MultiTaskSAC`.

    Subclasses set ``frames_per_batch``, ``total_frames``, ``eval_every_frames`` (all in
    environment frames, summed over tasks), ``loss_module``, ``actor``, ``task_names`` and
    ``num_tasks``, build their loader in ``train_dataloader`` (kept in ``self._loader``),
    implement :meth:`networks` and :meth:`evaluate`, and call :meth:`start_batch` at the start
    and :meth:`finish_batch` at the end of each training step.
    ``hparams`` must hold ``max_grad_norm``, ``eval_episodes_per_task`` and
    ``eval_deterministic``.
    """

    frames_per_batch: int
    total_frames: int
    eval_every_frames: int
    #: Benchmark family, for run summaries: ``"minigrid"`` or ``"metaworld"``.
    benchmark: str
    #: Evaluation score logged as ``charts/eval/<eval_metric>/<task>`` and ``..._mean``.
    eval_metric: str
    #: ``(tag, label)`` pairs; the first tag already logged is shown in the progress bar.
    progress_keys: tuple[tuple[str, str], ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.frames = 0
        self.latest: dict[str, float] = {}
        self._last_eval = 0
        self._loader: CollectorLoader | None = None
        self._clock = time.perf_counter()

    # ------------------------------------------------------------------ the callbacks' contract
    @property
    def frames_per_update(self) -> int:
        """Frames collected per training step over all ranks."""
        world_size = self.trainer.world_size if self._trainer is not None else 1
        return self.frames_per_batch * world_size

    @abstractmethod
    def networks(self) -> dict[str, tuple[torch.nn.Module, int]]:
        """The networks interventions act on, with the index of their optimizer."""

    def monitored_networks(self) -> dict[str, torch.nn.Module]:
        """The networks plasticity metrics are computed for (by default :meth:`networks`)."""
        return {name: module for name, (module, _) in self.networks().items()}

    def feature_modules(self) -> dict[str, str]:
        """Submodule whose output is each monitored network's shared representation.

        The network's ``encoder``: its output is what every task head reads (after the shared
        CNN's ``Tanh``, or the ``tanh`` after mixing for MoE/MOORE, and any representation
        LayerNorm).
        """
        return {
            name: next(n for n, _ in module.named_modules() if n.endswith("encoder"))
            for name, module in self.monitored_networks().items()
        }

    def log_frames(self, scalars: dict[str, float]) -> None:
        """Log ``scalars`` to every logger against environment frames."""
        self.latest.update(scalars)
        for logger in self.loggers:
            logger.log_metrics(scalars, step=self.frames)

    @abstractmethod
    def evaluate(self) -> dict[str, float]:
        """Evaluate the current policy and log ``charts/eval/...``."""

    # ------------------------------------------------------------------ training plumbing
    def on_fit_start(self) -> None:
        # Under DDP every rank collects its own data; the optimizers average the gradients over
        # ranks before each step (see .distributed), so parameters stay equal.
        for optimizer in self.trainer.optimizers:
            average_gradients_on_step(optimizer)

    def no_sync(self) -> contextlib.AbstractContextManager[None]:
        """Context for backward passes: gradients are averaged by the optimizers' hooks."""
        return gradient_sync_disabled(self.trainer.model)

    def clip(self, optimizer: Any) -> None:
        """Clip the optimizer's gradients to ``hparams.max_grad_norm`` when set."""
        if self.hparams.max_grad_norm is not None:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.max_grad_norm)

    @contextlib.contextmanager
    def non_finite_guard(self, what: str) -> Iterator[None]:
        """Turn torch's errors on NaN/inf inputs (a distribution of NaN logits) into ours."""
        try:
            yield
        except (RuntimeError, ValueError) as error:
            message = str(error)
            if "nan" not in message and "inf" not in message:
                raise
            raise FloatingPointError(
                f"{what} hit non-finite values at frame {self.frames} ({message}): stopping; "
                "the last checkpoint written before this frame is intact."
            ) from error

    def check_finite(self, terms: dict[str, torch.Tensor], what: str = "") -> None:
        """Raise a ``FloatingPointError`` naming the first non-finite term and the frame."""
        for name, value in terms.items():
            if not torch.isfinite(value).all():
                bad = value[~torch.isfinite(value)].flatten()[0].item()
                raise FloatingPointError(
                    f"{what}{name} is {bad} at frame {self.frames}: stopping; the last "
                    "checkpoint written before this frame is intact."
                )

    def finish_batch(
        self, batch_frames: int, losses: dict[str, list[torch.Tensor]], scalars: dict[str, float]
    ) -> None:
        """End of a training step: parameter guard, logging, progress bar, evaluation, stop."""
        self.check_finite(dict(self.named_parameters()), what="parameter ")
        now = time.perf_counter()
        sps = batch_frames / max(now - self._clock, 1e-9)
        self._clock = now
        logged = {f"losses/{k}": torch.stack(v).mean().item() for k, v in losses.items()}
        self.log_frames({**logged, **scalars, "charts/sps": sps})
        every = self.eval_every_frames
        if every and crossed_multiple(self._last_eval, self.frames, every):
            self._last_eval = self.frames
            if self.trainer.is_global_zero:
                self.evaluate()
        self._show_progress(sps)
        if self.frames >= self.total_frames:
            self.trainer.should_stop = True

    def _show_progress(self, sps: float) -> None:
        """Show SPS and the latest score of ``progress_keys`` in the progress bar.

        Called after this step's evaluation, so the bar shows that evaluation, not the previous.
        """
        self.log("fps", sps, prog_bar=True, logger=False, batch_size=1)
        for key, label in self.progress_keys:
            if key in self.latest:
                self.log(label, self.latest[key], prog_bar=True, logger=False, batch_size=1)
                break

    def start_batch(
        self,
        batch: TensorDictBase,
        episode_tags: dict[str, str],
        end_key: tuple[str, str] | None = None,
    ) -> None:
        """Count a collected batch's frames (over all ranks) and log its finished episodes.

        ``episode_tags`` maps a ``("next", key)`` episode statistic to its tag: each task's mean
        over the episodes that ended in the batch goes to ``charts/<tag>/<task>``, and the mean
        over tasks to ``charts/<tag>_mean`` when every task finished an episode. Episodes end
        where ``end_key`` (default ``("next", "done")``) is true; Atari's ``("next",
        "game_over")`` keeps life losses out of the game scores.
        """
        self.frames += batch.numel() * self.trainer.world_size
        done = batch[end_key or ("next", "done")].squeeze(-1)
        if not done.any():
            return
        task = batch["task_id"]
        scalars: dict[str, float] = {}
        for key, tag in episode_tags.items():
            means = per_task_mean(batch["next", key], task, self.num_tasks, mask=done)
            for name, value in zip(self.task_names, means.tolist(), strict=True):
                if not math.isnan(value):
                    scalars[f"charts/{tag}/{name}"] = value
            if not means.isnan().any():
                scalars[f"charts/{tag}_mean"] = means.mean().item()
        self.log_frames(scalars)

    def log_evaluation(
        self, values: dict[str, list[list[float]]], tags: dict[str, str]
    ) -> dict[str, float]:
        """Log per-task means of :meth:`run_episodes` values as ``charts/eval/<tag>/<task>``.

        Also logs their means over tasks, ``charts/eval/<tag>_mean``, and returns everything.
        """
        scalars: dict[str, float] = {}
        for key, tag in tags.items():
            per_task = [sum(v) / len(v) for v in values[key]]
            for name, value in zip(self.task_names, per_task, strict=True):
                scalars[f"charts/eval/{tag}/{name}"] = value
            scalars[f"charts/eval/{tag}_mean"] = sum(per_task) / len(per_task)
        self.log_frames(scalars)
        return scalars

    @torch.no_grad()
    def run_episodes(self, env: EnvBase, keys: tuple[str, ...]) -> dict[str, list[list[float]]]:
        """Run ``hparams.eval_episodes_per_task`` episodes of every task on ``env``.

        Returns ``{key: per-task lists of the final ("next", key) value of each episode}``.
        Actions are greedy with ``hparams.eval_deterministic``, else sampled; the torch
        generator is forked, so evaluating does not change the training run.
        """
        episodes = self.hparams.eval_episodes_per_task
        values: dict[str, list[list[float]]] = {k: [[] for _ in self.task_names] for k in keys}
        counts = values[keys[0]]
        exploration = (
            ExplorationType.DETERMINISTIC
            if self.hparams.eval_deterministic
            else ExplorationType.RANDOM
        )
        td = env.reset()
        with torch.random.fork_rng(), set_exploration_type(exploration):
            while min(len(c) for c in counts) < episodes:
                td, next_td = env.step_and_maybe_reset(self.actor(td))
                done = td["next", "done"].view(-1)
                for slot in done.nonzero().view(-1).tolist():
                    task = int(td["task_id"][slot])
                    if len(counts[task]) < episodes:
                        for key in keys:
                            values[key][task].append(float(td["next", key][slot]))
                td = next_td
        return values

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The torch generator travels with the CollectorLoader's state, restored right before
        # the next batch is collected.
        checkpoint["torchrl_sparse"] = {"frames": self.frames, "last_eval": self._last_eval}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["torchrl_sparse"]
        self.frames = state["frames"]
        self._last_eval = state["last_eval"]

    def on_train_end(self) -> None:
        if self._loader is not None:
            self._loader.shutdown()
