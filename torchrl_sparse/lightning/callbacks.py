"""Lightning callbacks: sparsity, frame-based checkpoints, interruption, the summary figure.

Each callback keeps its state in ``state_dict`` so ``fit --ckpt_path last`` resumes it. They
expect the LightningModule to expose ``loss_module`` (a TorchRL loss), ``frames`` (environment
frames so far, over all ranks), ``frames_per_update`` (frames per training step, over all
ranks), ``total_frames`` and ``log_frames(dict)``, as
:class:`~torchrl_sparse.lightning.MultiTaskPPO` and :class:`~torchrl_sparse.lightning.MultiTaskSAC`
do.
"""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint

from torchrl_sparse.cadence import crossed_multiple
from torchrl_sparse.lightning.figures import Panel, draw_panels, read_scalars, select_panels
from torchrl_sparse.sparse import (
    LayerDistribution,
    SparseMethod,
    Sparsifier,
    SparsityGroup,
    flops_per_forward,
)

__all__ = ["FrameCheckpoint", "SparsityCallback", "SummaryFigure"]


class SparsityCallback(pl.Callback):
    """Sparsify the module's TorchRL loss with any method of :mod:`torchrl_sparse.sparse`.

    Steps count environment frames: schedules given as fractions resolve against
    ``total_frames`` and ``update_every`` is in frames (GMP every 500 frames on MiniGrid).
    Logs ``sparsity/<layer>``, ``sparsity/total`` and the parameter counts after every batch.

    Args:
        groups: ``{glob: sparsity}`` over layer names of the loss, e.g.
            ``{"actor_network.*": 0.95}`` (actor only) or add ``"critic_network.*"`` /
            ``"qvalue_network.*"`` for the critic.
        method: a :class:`~torchrl_sparse.sparse.SparseMethod` (default GMP).
        distribution: layer distribution (default uniform).
        scope: ``"layer"`` or ``"global"`` magnitude ranking.
        bias: ``"dense"``, ``"prune"`` or ``"remove"``.
        exclude: globs removed from every group (e.g. a task encoder).
        seed: the sparsifier's seed (the same on every rank).

    Examples:
        >>> from torchrl_sparse.lightning import SparsityCallback
        >>> from torchrl_sparse.sparse import GMP
        >>> callback = SparsityCallback({"actor_network.*": 0.95}, method=GMP())
        >>> callback.sparsifier is None  # built when the Trainer sets the module up
        True
    """

    def __init__(
        self,
        groups: dict[str, float],
        method: SparseMethod | None = None,
        distribution: LayerDistribution | None = None,
        scope: Literal["layer", "global"] = "layer",
        bias: Literal["dense", "prune", "remove"] = "dense",
        exclude: list[str] | None = None,
        seed: int = 0,
    ) -> None:
        self.groups = [
            SparsityGroup(pattern, sparsity, exclude=exclude or ())
            for pattern, sparsity in groups.items()
        ]
        self.method = method
        self.distribution = distribution
        self.scope = scope
        self.bias = bias
        self.seed = seed
        self.sparsifier: Sparsifier | None = None
        self._pending: dict[str, Any] | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(groups=[g.include_patterns for g in self.groups])

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.sparsifier is not None:
            return
        self.sparsifier = Sparsifier(
            pl_module.loss_module,
            self.groups,
            method=self.method,
            distribution=self.distribution,
            scope=self.scope,
            bias=self.bias,
            total_steps=pl_module.total_frames,
            seed=self.seed,
        )
        if self._pending is not None:
            self.sparsifier.load_state_dict(self._pending)
            self._pending = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self.sparsifier is not None
        self._check_gradients_available(pl_module)
        self.sparsifier.attach_optimizer(trainer.optimizers)
        self.sparsifier.apply_masks()

    def _check_gradients_available(self, pl_module: pl.LightningModule) -> None:
        """Refuse a gradient-based method whose first topology update precedes any gradient.

        Off-policy modules set ``first_gradient_frame``: the frame count at the end of the first
        batch with a gradient step (after the replay warm-up).
        """
        sparsifier = self.sparsifier
        assert sparsifier is not None
        first_gradient = getattr(pl_module, "first_gradient_frame", 0)
        schedule = sparsifier.schedule
        if not sparsifier.method.needs_dense_grads or schedule is None or not first_gradient:
            return
        step = pl_module.frames_per_update
        previous = sparsifier.step_count
        while previous + step < first_gradient:
            if schedule.is_update_step(previous, previous + step):
                raise ValueError(
                    f"{type(sparsifier.method).__name__} updates the topology at frame "
                    f"{previous + step} ({schedule}), but the first gradient step comes at frame "
                    f"{first_gradient} (after learning_starts): there is no gradient to grow "
                    f"by. Start the schedule at or after {first_gradient} frames (its start "
                    "argument)."
                )
            previous += step

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any
    ) -> None:
        assert self.sparsifier is not None
        self.sparsifier.step(pl_module.frames_per_update)
        pl_module.log_frames(self.sparsifier.stats())

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.sparsifier is not None:
            self.sparsifier.remove()

    def flops(self, module: Any, *inputs: Any) -> dict[str, float]:
        """Dense and sparse FLOPs of ``module`` (e.g. the actor) on example inputs."""
        return flops_per_forward(module, *inputs, sparsifier=self.sparsifier)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.sparsifier is None else self.sparsifier.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning restores callbacks after their setup, before or after on_fit_start
        # (DeepSpeed, FSDP: after): load at once, before or after the model's weights.
        if not state_dict:
            return
        if self.sparsifier is None:
            self._pending = state_dict  # loaded by hand before fit: applied at setup
        else:
            self.sparsifier.load_state_dict(state_dict)


class FrameCheckpoint(ModelCheckpoint):
    """Write ``last.ckpt`` every ``every_n_frames`` frames, at the end, and on SIGTERM/SIGINT.

    A fresh run (no ``ckpt_path``) refuses to start where a ``last.ckpt`` already exists, rather
    than overwrite an earlier run's checkpoint.

    A ``ModelCheckpoint`` subclass so ``fit --ckpt_path last`` finds ``dirpath/last.ckpt``.
    Lightning writes through an fsspec transaction (a temporary file moved into place), so an
    interrupted write never leaves a truncated checkpoint. On SIGTERM or SIGINT, the run
    finishes the current batch, writes ``last.ckpt`` and stops; ``interrupted_by`` then names
    the signal (the ``torchrl-sparse`` command exits with ``128 + signal``, 143 or 130).

    Args:
        dirpath: checkpoint directory; by default ``<logger dir>/checkpoints``.
        every_n_frames: checkpoint period in environment frames.

    Attributes:
        interrupted_by: the signal (SIGINT or SIGTERM) that stopped the run, else ``None``.

    Examples:
        >>> from torchrl_sparse.lightning import FrameCheckpoint
        >>> FrameCheckpoint("runs/demo/checkpoints", every_n_frames=50_000).every_n_frames
        50000
    """

    def __init__(self, dirpath: str | Path | None = None, every_n_frames: int = 50_000) -> None:
        if every_n_frames < 1:
            raise ValueError(f"every_n_frames must be a positive int, got {every_n_frames!r}.")
        super().__init__(dirpath=dirpath, save_last=True, save_top_k=0, every_n_epochs=0)
        self.every_n_frames = every_n_frames
        self.interrupted_by: signal.Signals | None = None
        self._last_saved = 0
        self._previous_handlers: dict[int, Any] = {}

    def earlier_run(self, trainer: pl.Trainer) -> Path | None:
        """The ``last.ckpt`` a fresh fit would overwrite, or ``None``.

        Before the trainer's setup the directory is resolved as ``ModelCheckpoint`` resolves it:
        ``dirpath``, else ``<save_dir>/<name>/<version>/checkpoints`` of the first logger, else
        ``<default_root_dir>/checkpoints``.
        """
        if self.dirpath is not None:
            directory = Path(self.dirpath)
        elif trainer.loggers:
            logger = trainer.loggers[0]
            version = logger.version
            version = version if isinstance(version, str) else f"version_{version}"
            root = logger.save_dir if logger.save_dir is not None else trainer.default_root_dir
            directory = Path(root) / str(logger.name) / version / "checkpoints"
        else:
            directory = Path(trainer.default_root_dir) / "checkpoints"
        last = self._last_in(directory)
        return last if last.exists() else None

    @staticmethod
    def refuse_to_overwrite(last: Path | None) -> None:
        """Raise a ``FileExistsError`` naming ``last`` and the ways out, unless it is ``None``."""
        if last is not None:
            raise FileExistsError(
                f"{last} holds the checkpoint of an earlier run, which this run would overwrite. "
                "Resume it with `fit --ckpt_path last` (Trainer.fit(ckpt_path='last')), or move "
                f"{last.parent.parent} away to start over."
            )

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The CLI checks before setup (which writes config.yaml); this covers Trainer.fit users.
        # Rank 0 decides, so ranks on unshared filesystems cannot split between raise and hang.
        if trainer.ckpt_path is None:
            self.refuse_to_overwrite(trainer.strategy.broadcast(self.earlier_run(trainer)))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_saved = pl_module.frames
        # Lightning itself only watches SIGTERM; SIGINT gets the same graceful stop.
        with contextlib.suppress(ValueError):  # not in the main thread: SIGINT stays Lightning's
            self._previous_handlers[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.interrupted_by = signal.Signals(signum)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any
    ) -> None:
        if trainer.received_sigterm:
            self.interrupted_by = signal.SIGTERM
        frames = pl_module.frames
        due = crossed_multiple(self._last_saved, frames, self.every_n_frames)
        if due or self.interrupted_by is not None:
            self.write_last(trainer)
            self._last_saved = frames
        if self.interrupted_by == signal.SIGINT:
            trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.write_last(trainer)
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    def _last_in(self, directory: str | Path) -> Path:
        return Path(directory) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"

    def write_last(self, trainer: pl.Trainer) -> Path:
        """Write ``dirpath/last.ckpt`` now."""
        assert self.dirpath is not None
        path = self._last_in(self.dirpath)
        trainer.save_checkpoint(path, weights_only=False)  # full state, to resume
        self.last_model_path = str(path)
        return path

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "last_saved_frames": self._last_saved}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_saved = state_dict.pop("last_saved_frames", 0)
        super().load_state_dict(state_dict)


class SummaryFigure(pl.Callback):
    """At the end of training, save a PNG summary of the run next to its TensorBoard logs.

    Panels (when logged), all against environment frames: the evaluation score per task (the
    normalised return on MiniGrid, the success rate on MetaWorld; the training score without
    evaluations), sparsity, and the dormant ratio and srank of each monitored network, titled
    with the :class:`~torchrl_sparse.lightning.PlasticityMonitorCallback`'s ``tau`` and
    ``delta`` (see :func:`~torchrl_sparse.lightning.figures.select_panels`). The path is printed.

    Args:
        filename: name of the PNG inside the logger's directory.

    Attributes:
        path: the PNG written at the end of training (``None`` before, or without data).
        panels: the :class:`~torchrl_sparse.lightning.figures.Panel` s drawn in it.

    Examples:
        >>> from torchrl_sparse.lightning import SummaryFigure
        >>> SummaryFigure().filename
        'summary.png'
    """

    def __init__(self, filename: str = "summary.png") -> None:
        self.filename = filename
        self.path: Path | None = None
        self.panels: list[Panel] = []

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from torchrl_sparse.lightning.plasticity import PlasticityMonitorCallback  # imports us

        if trainer.logger is None or trainer.logger.log_dir is None or not trainer.is_global_zero:
            return
        trainer.logger.save()
        log_dir = Path(trainer.logger.log_dir)
        print(f"TensorBoard logs: {log_dir}  (tensorboard --logdir {log_dir})")
        monitor = next(
            (c for c in trainer.callbacks if isinstance(c, PlasticityMonitorCallback)), None
        )
        self.panels = select_panels(
            read_scalars(log_dir),
            srank_delta=None if monitor is None else monitor.delta,
            dormant_tau=None if monitor is None else monitor.tau,
        )
        if not self.panels:
            print(f"Summary figure: nothing to plot in {log_dir}")
            return
        self.path = draw_panels(self.panels, log_dir / self.filename)
        print(f"Summary figure: {self.path}")
