"""The ``torchrl-sparse`` command: LightningCLI over the recipes.

``torchrl-sparse fit --config recipes/<condition>.yaml`` trains one experimental condition.
Configuration comes from the typed ``__init__`` signatures of the LightningModules and
callbacks, so ``--print_config`` shows every option. ``fit`` is the only LightningCLI
subcommand; ``evaluate``, ``sweep`` and ``report`` are commands of their own.

Recipes (``extends``, merging, the run folder ``runs/<recipe path below recipes/>/seed<seed>``
relative to the working directory) and the options read before LightningCLI
(``--trainer.callbacks.<Name>.<arg> VALUE``, ``--smoke``, ``--debug``) are in
:mod:`torchrl_sparse.lightning.recipes`. A configuration error is one ``error:`` line (exit
status 2); ``--debug`` or ``TORCHRL_SPARSE_DEBUG=1`` prints its traceback.

``--ckpt_path`` resumes only a run of the same settings: the checkpoint records the run's
configuration, and settings other than :data:`RESUMABLE_SETTINGS` must match it. A run resumed
with a longer training length trains on to the new length. A run stopped by SIGTERM or SIGINT
exits with 143 or 130 and prints the command that resumes it.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

from torchrl_sparse._compat import ended_epoch_loader_states
from torchrl_sparse.experiments.summary import summarize_module
from torchrl_sparse.lightning.callbacks import FrameCheckpoint
from torchrl_sparse.lightning.recipes import (
    DEBUG_FLAG,
    DEBUG_VARIABLE,
    ConfigError,
    class_name,
    display_path,
    expand_command_line,
    init_parameters,
    load_recipe,
)
from torchrl_sparse.lightning.resume import (
    RESUMABLE_SETTINGS,
    RunRecord,
    RunSettings,
    compare,
    json_safe,
    recorded_settings,
)

__all__ = ["RESUMABLE_SETTINGS", "ConfigError", "load_recipe", "main", "run"]

_HELP_EPILOG = (
    "torchrl-sparse's own options: --trainer.callbacks.<Name>.<argument> VALUE sets an argument "
    "of the recipe's callback of class <Name>; --smoke makes a run of a few thousand frames "
    "under runs/smoke/; --debug prints the traceback of a configuration error. See "
    "docs/guide/recipes.md."
)


# ------------------------------------------------------------------------ errors
def _causes(error: BaseException) -> list[BaseException]:
    """``error`` and the errors it was raised from, outermost first."""
    chain = [error]
    while True:
        link = chain[-1]
        cause = link.__cause__ or (None if link.__suppress_context__ else link.__context__)
        if cause is None or any(cause is seen for seen in chain):
            return chain
        chain.append(cause)


_PARSER_KEY = re.compile(r'^Parser key "([^"]+)":')
_CLASS_PROBLEM = re.compile(r"^Problem with given class_path '([^']+)':")
_UNKNOWN_OPTION = re.compile(r"^Option '([^']+)' is not accepted$")
_UNION_ERRORS = "Does not validate against any of the Union subtypes"


def _one_line(error: BaseException) -> str:
    """One line for a configuration error: the option it concerns and the innermost message.

    jsonargparse nests its messages (``Parser key "model"`` > ``Problem with given class_path``
    > ``Parser key "arch"`` > the problem); they give the option's name in the command line's
    form (``model.init_args.arch``, ``trainer.callbacks.FrameCheckpoint.every_n_frames``).
    """
    keys: list[str] = []
    class_path: str | None = None
    chain = _causes(error)
    for link in chain:
        text = str(link).strip()
        if key := _PARSER_KEY.match(text):
            if not keys or keys[-1] != key[1]:
                keys.append(key[1])
        elif problem := _CLASS_PROBLEM.match(text):
            class_path = problem[1]
            in_callbacks = bool(keys) and keys[-1] == "trainer.callbacks"
            keys.append(class_name(class_path) if in_callbacks else "init_args")
    innermost = chain[-1]
    lines = [line.strip() for line in str(innermost).splitlines() if line.strip()]
    if lines and lines[0].startswith(_UNION_ERRORS):
        # One error per type of the union: the first that is not "it is not None".
        items = [line[2:] for line in lines if line.startswith("- ") and "NoneType" not in line]
        lines = items[:1] or lines
    message = " ".join(" ".join(lines).split()) or type(innermost).__name__
    unknown = _UNKNOWN_OPTION.match(message)
    if unknown and class_path is not None and (allowed := init_parameters(class_path)):
        message = f"{message}; allowed: {', '.join(allowed)}"
    return f"{'.'.join(keys)}: {message}" if keys else message


def _debug_requested(argv: list[str]) -> bool:
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


class _CLI(LightningCLI):
    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # validate/test/predict need steps the RL modules do not define.
        return {"fit": LightningCLI.subcommands()["fit"]}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # One seed: the model's seeds torch, the environments and ``seed_everything``, and names
        # the run directory (``runs/<recipe>/seed<seed>``).
        parser.link_arguments("model.init_args.seed", "seed_everything")
        parser.link_arguments(
            "model.init_args.seed", "trainer.logger.init_args.version", compute_fn=_seed_version
        )

    def _parse_ckpt_path(self) -> None:
        """Keep the recipe's model (LightningCLI would load the checkpoint's hyperparameters).

        The recipe and command line say what to train; :meth:`before_fit` refuses a checkpoint
        of other settings (see ``torchrl_sparse._compat``).
        """

    def before_fit(self) -> None:
        config = self.config[self.subcommand]
        record = next(c for c in self.trainer.callbacks if isinstance(c, RunRecord))
        record.checkpoint_record = {
            "config": json_safe(config.as_dict()),
            "trainer": {"world_size": self.trainer.world_size, "precision": self.trainer.precision},
        }
        checkpoints = [c for c in self.trainer.callbacks if isinstance(c, FrameCheckpoint)]
        ckpt_path = config.get("ckpt_path")
        if ckpt_path is None:
            # Refuse to overwrite an earlier run before the trainer's setup rewrites config.yaml.
            for callback in checkpoints:
                callback.refuse_to_overwrite(callback.earlier_run(self.trainer))
        else:
            path = self._checkpoint_to_resume(str(ckpt_path), checkpoints)
            if path is not None:
                self._check_resume(path, record)
            self._drop_stale_hparams()
        self._fit_started = time.perf_counter()

    def _drop_stale_hparams(self) -> None:
        """Remove the resumed run's ``hparams.yaml``, so that the logger writes this fit's.

        TensorBoard's logger does not overwrite it, and a resumed run may have changed, e.g.,
        its training length (as ``config.yaml`` says).
        """
        if not self.trainer.is_global_zero:
            return
        for logger in self.trainer.loggers:
            log_dir = getattr(logger, "log_dir", None)
            if log_dir is not None:
                (Path(log_dir) / "hparams.yaml").unlink(missing_ok=True)

    def _checkpoint_to_resume(
        self, ckpt_path: str, checkpoints: list[FrameCheckpoint]
    ) -> Path | None:
        """The local checkpoint ``--ckpt_path`` names (``None``: none, or not a local file)."""
        if ckpt_path == "last":
            # As Lightning resolves it; none yet: a fresh run ("set and forget").
            existing = [p for c in checkpoints if (p := c.earlier_run(self.trainer)) is not None]
            return max(existing, key=lambda p: p.stat().st_mtime) if existing else None
        if Path(ckpt_path).is_file():
            return Path(ckpt_path)
        if ckpt_path in ("best", "hpc") or "://" in ckpt_path or ckpt_path.startswith("registry"):
            return None
        raise ConfigError(f"--ckpt_path {ckpt_path}: no checkpoint there.")

    def _check_resume(self, path: Path, record: RunRecord) -> None:
        """Refuse a checkpoint of other settings; prepare to train on from one of this run."""
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ConfigError(f"Cannot read the checkpoint {path}: {error}") from error
        assert record.checkpoint_record is not None
        current = RunSettings.of(
            record.checkpoint_record["config"], record.checkpoint_record["trainer"]
        )
        refused, noted = compare(recorded_settings(checkpoint, path), current)
        if refused:
            raise ConfigError(
                f"The checkpoint {display_path(path.absolute())} was trained with other settings "
                f"than this recipe and command line: {'; '.join(refused)}. Resume it with its "
                "own settings; a resumed run may change only "
                f"{', '.join(RESUMABLE_SETTINGS)}."
            )
        for note in noted:
            print(f"Resuming {display_path(path.absolute())} {note}.", file=sys.stderr)
        self._train_on(checkpoint, path, record)

    def _train_on(self, checkpoint: dict[str, Any], path: Path, record: RunRecord) -> None:
        """Let the fit train on from ``checkpoint`` to the module's ``total_frames``.

        A finished run's last checkpoint, and one stopped by SIGINT, is written after
        Lightning's single epoch ended: to train on (to a longer total, or the rest of the
        stopped run) the fit gets one more epoch, and the data loader (environments, collector,
        generator) its state from the checkpoint. A checkpoint inside its epoch (SIGTERM, or a
        periodic one) resumes as Lightning resumes it. Nothing left to train: a note when the
        total is the checkpoint's, an error when it is shorter.
        """
        frames = (checkpoint.get("torchrl_sparse") or {}).get("frames")
        hparams = dict(self.model.hparams)
        option = next((k for k in ("total_steps_per_task", "total_frames") if k in hparams), None)
        if frames is None or option is None:
            return
        where, total = display_path(path.absolute()), self.model.total_frames
        longer = f"a larger --model.init_args.{option} extends it"
        if frames >= total:
            if (checkpoint.get("hyper_parameters") or {}).get(option) == hparams[option]:
                print(
                    f"{where} has trained {frames:,} of {total:,} frames: nothing to train "
                    f"({longer}).",
                    file=sys.stderr,
                )
                return
            raise ConfigError(
                f"{where} has already trained {frames:,} frames, at least the {total:,} of "
                f"--model.init_args.{option} {hparams[option]}: nothing to train; {longer}."
            )
        loader_states = ended_epoch_loader_states(checkpoint)
        if loader_states is None:
            return
        epoch, max_epochs = int(checkpoint.get("epoch", 0)), self.trainer.max_epochs
        if max_epochs is not None and 0 <= max_epochs <= epoch:
            self.trainer.fit_loop.max_epochs = epoch + 1
        record.loader_states = loader_states

    def after_fit(self) -> None:
        # summary.json: what sweeps check for completion and reports tabulate.
        logger = self.trainer.logger
        if not self.trainer.is_global_zero or logger is None or logger.log_dir is None:
            return
        if not hasattr(self.model, "eval_metric"):
            return
        summarize_module(
            self.model,
            run_dir=logger.log_dir,
            condition=str(logger.name),
            seed=int(self.model.hparams.get("seed", 0)),
            config=self.config[self.subcommand].as_dict(),
            wall_time_s=time.perf_counter() - self._fit_started,
        )

    def interrupted_by(self) -> signal.Signals | None:
        """The signal that stopped the fit early, if one did."""
        return next(
            (
                c.interrupted_by
                for c in self.trainer.callbacks
                if isinstance(c, FrameCheckpoint) and c.interrupted_by is not None
            ),
            None,
        )


def _seed_version(seed: int) -> str:
    return f"seed{seed}"


# ------------------------------------------------------------------------ entry points
def main(args: list[str] | None = None) -> None:
    """``torchrl-sparse fit ...`` (the other commands: :mod:`torchrl_sparse.commands`).

    Everything goes to LightningCLI. A configuration error
    prints one ``error:`` line (with ``--debug`` or ``TORCHRL_SPARSE_DEBUG=1``, its traceback
    first) and exits with status 2; a run stopped by SIGTERM or SIGINT exits with 143 or 130.
    """
    argv = list(sys.argv[1:] if args is None else args)
    try:
        run(args)
    except ConfigError as error:
        if _debug_requested(argv):
            traceback.print_exception(error)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def run(args: list[str] | None = None, run: bool = True) -> LightningCLI:
    """Run the CLI on ``args`` (default: ``sys.argv``) and return the ``LightningCLI``.

    With ``run=False`` (as LightningCLI's own ``run``) ``args`` hold no subcommand and the
    model, trainer and callbacks are built but not run, e.g. to inspect a recipe.

    Raises:
        ConfigError: the recipes or command line cannot be trained; raised before the first
            training step, from the error that found it.
        SystemExit: 143 when SIGTERM, 130 when SIGINT stopped the fit (``last.ckpt`` written,
            ``summary.json`` too for SIGINT); the command that resumes the run is printed.
    """
    from_command_line = args is None
    argv = list(sys.argv[1:] if from_command_line else args)
    record = RunRecord()
    with tempfile.TemporaryDirectory(prefix="torchrl_sparse_recipe_") as workdir:
        try:
            expanded = expand_command_line(argv, Path(workdir))
            if from_command_line:
                # LightningCLI reads sys.argv itself and warns when given both.
                sys.argv = [sys.argv[0], *expanded]
            cli = _run(expanded, from_command_line, run, record)
        except SIGTERMException:
            # Lightning stops on SIGTERM with a plain SystemExit; report it like the signal did.
            record.report_stop(signal.SIGTERM, argv)
            sys.exit(128 + signal.SIGTERM)
        except ConfigError:
            raise
        except Exception as error:
            if record.training_started:
                raise
            raise ConfigError(_one_line(error)) from error
    stopped_by = cli.interrupted_by() if cli.subcommand is not None else None
    if stopped_by == signal.SIGINT:
        record.report_stop(stopped_by, argv)
        sys.exit(128 + signal.SIGINT)
    return cli


def _run(
    expanded: list[str], from_command_line: bool, run: bool, record: RunRecord
) -> LightningCLI:
    # Errors are raised, to be printed in one line.
    parser_kwargs = {"exit_on_error": False, "epilog": _HELP_EPILOG}
    return _CLI(
        LightningModule,
        subclass_mode_model=True,
        args=None if from_command_line else expanded,
        run=run,
        parser_kwargs={**parser_kwargs, "fit": parser_kwargs},
        save_config_kwargs={"overwrite": True},
        trainer_defaults={
            "max_epochs": 1,
            "num_sanity_val_steps": 0,
            "log_every_n_steps": 1,
            "enable_model_summary": False,
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": "runs"},
            },
            "callbacks": [record],
        },
    )
