"""What a run resumed with ``--ckpt_path`` may change, and the check that refuses the rest.

Every checkpoint the CLI writes records its run's configuration (:class:`RunRecord`); before a
resumed fit trains, its settings are compared with the checkpoint's (:func:`compare`), and
any difference outside :data:`RESUMABLE_SETTINGS` is refused, naming the settings.
"""

from __future__ import annotations

import fnmatch
import json
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import yaml

from torchrl_sparse.lightning.callbacks import FrameCheckpoint
from torchrl_sparse.lightning.recipes import (
    callback_labels,
    class_name,
    display_path,
    resume_command,
)

__all__ = ["RESUMABLE_SETTINGS", "RunRecord", "RunSettings", "compare", "recorded_settings"]


#: Settings that a run resumed with ``--ckpt_path`` may change (patterns over the dotted names
#: the resume check reports; one naming a callback covers all its arguments): the training
#: length, evaluation cadence and episodes, where scratch and replay-buffer files go, the
#: checkpoint period, and callbacks that only report (summary figure, progress bars, learning
#: rate and device monitors, model summaries, a time limit). Other trainer options (logger,
#: accelerator, ...) are not compared. Any other difference from the checkpoint's run is
#: refused before training.
RESUMABLE_SETTINGS: tuple[str, ...] = (
    "model.init_args.total_steps_per_task",
    "model.init_args.total_frames",
    "model.init_args.eval_every_steps_per_task",
    "model.init_args.eval_every_frames",
    "model.init_args.eval_episodes_per_task",
    "model.init_args.buffer_scratch_dir",
    "model.init_args.replay_buffer_dir",
    "trainer.callbacks.FrameCheckpoint.every_n_frames",
    "trainer.callbacks.SummaryFigure",
    "trainer.callbacks.*ProgressBar",
    "trainer.callbacks.LearningRateMonitor",
    "trainer.callbacks.DeviceStatsMonitor",
    "trainer.callbacks.*ModelSummary",
    "trainer.callbacks.Timer",
)

#: Where checkpoints hold the configuration of the run that wrote them.
_CONFIG_KEY = "torchrl_sparse_config"


# ------------------------------------------------------------------------ resuming
@dataclass
class RunSettings:
    """A run's settings as the resume check compares them.

    Attributes:
        values: dotted setting name (``model.init_args.arch``,
            ``trainer.callbacks.SparsityCallback.groups``) -> value.
        callbacks: each callback's label -> its ``class_path``; ``None`` when unknown (a
            checkpoint without its configuration).
    """

    values: dict[str, Any]
    callbacks: dict[str, str] | None

    @classmethod
    def of(cls, config: dict[str, Any], trainer: dict[str, Any] | None = None) -> RunSettings:
        """The settings of a configuration (as ``config.yaml``), with resolved trainer facts."""
        values: dict[str, Any] = {}
        _flatten("model", config.get("model") or {}, values)
        callbacks = (config.get("trainer") or {}).get("callbacks") or []
        labels = callback_labels(callbacks)
        for label, callback in zip(labels, callbacks, strict=True):
            if isinstance(callback, dict):
                for key, value in (callback.get("init_args") or {}).items():
                    _flatten(f"trainer.callbacks.{label}.{key}", value, values)
        values.update({f"trainer.{key}": value for key, value in (trainer or {}).items()})
        class_paths = [c.get("class_path") if isinstance(c, dict) else c for c in callbacks]
        return cls(values, dict(zip(labels, map(str, class_paths), strict=True)))

    @classmethod
    def of_hyperparameters(cls, hparams: dict[str, Any]) -> RunSettings:
        """The model settings of a checkpoint's ``hyper_parameters`` (callbacks unknown)."""
        init_args = {k: v for k, v in hparams.items() if not k.startswith("_")}
        model = {"class_path": hparams.get("_class_path"), "init_args": init_args}
        values: dict[str, Any] = {}
        _flatten("model", model, values)
        if model["class_path"] is None:
            del values["model.class_path"]
        return cls(values, None)


def _flatten(prefix: str, value: Any, into: dict[str, Any]) -> None:
    """Flatten nested classes (``class_path`` and ``init_args``) into dotted names."""
    if isinstance(value, dict) and "class_path" in value:
        into[f"{prefix}.class_path"] = class_name(value)  # the class, wherever imported
        for key, arg in (value.get("init_args") or {}).items():
            _flatten(f"{prefix}.init_args.{key}", arg, into)
    else:
        into[prefix] = value


def compare(recorded: RunSettings, current: RunSettings) -> tuple[list[str], list[str]]:
    """How a resumed run's settings differ from its checkpoint's: ``(refused, noted)``.

    Refused: a setting not in :data:`RESUMABLE_SETTINGS` with another value, or a callback of
    torchrl_sparse added or removed. Noted: a callback of another package added or removed.
    """
    differences: list[tuple[str, Any, Any]] = []
    classes = recorded.values.get("model.class_path"), current.values.get("model.class_path")
    if None not in classes and classes[0] != classes[1]:
        # Another algorithm: its options differ as a consequence.
        differences.append(("model.class_path", *classes))
    else:
        for key in sorted(recorded.values.keys() & current.values.keys()):
            if recorded.values[key] != current.values[key]:
                differences.append((key, recorded.values[key], current.values[key]))
    noted = []
    if recorded.callbacks is not None and current.callbacks is not None:
        for label in sorted(recorded.callbacks.keys() ^ current.callbacks.keys()):
            had = label in recorded.callbacks
            class_path = (recorded.callbacks if had else current.callbacks)[label]
            if class_path.startswith("torchrl_sparse."):
                absent_present = ("present", "absent") if had else ("absent", "present")
                differences.append((f"trainer.callbacks.{label}", *absent_present))
            elif not _resumable(f"trainer.callbacks.{label}"):
                noted.append(
                    f"without the callback {class_path}, which the checkpoint's run had"
                    if had
                    else f"with the callback {class_path}, which the checkpoint's run had not"
                )
    refused = [
        f"{key} (checkpoint: {old!r}, now: {new!r})"
        for key, old, new in differences
        if not _resumable(key)
    ]
    return refused, noted


def _resumable(setting: str) -> bool:
    """Whether :data:`RESUMABLE_SETTINGS` lets a resumed run change ``setting``."""
    return any(
        fnmatch.fnmatchcase(setting, pattern) or fnmatch.fnmatchcase(setting, f"{pattern}.*")
        for pattern in RESUMABLE_SETTINGS
    )


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON types (what ``torch.load(weights_only=True)`` reads back)."""
    return json.loads(json.dumps(value, default=str))


class RunRecord(pl.Callback):
    """The CLI's own part of a fit.

    It writes the run's configuration into every checkpoint (for the resume check), gives the
    data loader its state when a run goes on past the end of its checkpoint's epoch (Lightning
    restores it only inside an epoch), and tells whether training started: errors before the
    first training step (setting up the sparsifier, building the environments) are
    configuration errors, later ones training errors.
    """

    def __init__(self) -> None:
        self.checkpoint_record: dict[str, Any] | None = None
        self.loader_states: list[dict[str, Any]] = []
        self.trainer: pl.Trainer | None = None
        self.module: pl.LightningModule | None = None
        self.training_started = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.trainer, self.module = trainer, pl_module
        if self.loader_states:
            # Before the first batch is drawn: the collector applies it when it is built.
            loaders = trainer.train_dataloader
            loaders = list(loaders) if isinstance(loaders, list | tuple) else [loaders]
            stateful = [loader for loader in loaders if hasattr(loader, "load_state_dict")]
            for loader, state in zip(stateful, self.loader_states, strict=True):
                loader.load_state_dict(state)

    def on_train_batch_start(self, *args: Any) -> None:
        self.training_started = True

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self.checkpoint_record is not None:
            checkpoint[_CONFIG_KEY] = self.checkpoint_record

    def report_stop(self, signum: signal.Signals, argv: list[str]) -> None:
        """Print (on rank 0) where the stopped run is and the command that resumes it."""
        trainer, module = self.trainer, self.module
        if trainer is None or module is None or not trainer.is_global_zero:
            return
        where = ""
        if hasattr(module, "frames") and hasattr(module, "total_frames"):
            where = f" at frame {module.frames:,} of {module.total_frames:,}"
        last = next(
            (c.last_model_path for c in trainer.callbacks if isinstance(c, FrameCheckpoint)), ""
        )
        written = f"; checkpoint: {display_path(Path(last).absolute())}" if last else ""
        print(
            f"Stopped by {signum.name}{where}{written}. Resume with:\n  {resume_command(argv)}",
            file=sys.stderr,
        )


def recorded_settings(checkpoint: dict[str, Any], path: Path) -> RunSettings:
    """The settings the checkpoint was trained with.

    From the configuration the CLI writes into checkpoints; for older checkpoints, from the
    ``config.yaml`` of the run folder they sit in, else from the model's hyperparameters.
    """
    record = checkpoint.get(_CONFIG_KEY)
    if record is not None:
        return RunSettings.of(record["config"], record.get("trainer"))
    config_file = path.absolute().parent.parent / "config.yaml"
    if config_file.is_file():
        return RunSettings.of(yaml.safe_load(config_file.read_text()) or {})
    return RunSettings.of_hyperparameters(dict(checkpoint.get("hyper_parameters") or {}))
