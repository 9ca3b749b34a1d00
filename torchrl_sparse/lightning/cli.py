"""The ``torchrl-sparse`` command: LightningCLI over the recipes.

``torchrl-sparse fit --config recipes/<condition>.yaml`` trains one experimental condition.
Configuration comes from the typed ``__init__`` signatures of the LightningModules and
callbacks, so ``--print_config`` shows every option.

Recipe files may start with ``extends: <path>`` (or a list of paths, relative to the file) to
share the common parts: the bases are merged first, dictionaries key by key, lists
concatenated (so a condition adds its callbacks to the base's), and other values overridden by
the extending file. A recipe without a logger logs to TensorBoard under
``runs/<recipe path below recipes/>/seed<seed>``, with checkpoints in its ``checkpoints/``.
"""

from __future__ import annotations

import importlib
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

from torchrl_sparse.experiments.summary import summarize_module
from torchrl_sparse.lightning.callbacks import FrameCheckpoint

__all__ = ["load_recipe", "main", "run"]


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(override, list):
        return [*base, *override]
    return override


def load_recipe(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a recipe YAML, resolving ``extends`` recursively.

    Raises:
        FileNotFoundError: the recipe or a base does not exist.
        ValueError: ``extends`` forms a cycle.

    Examples:
        >>> recipe = load_recipe("recipes/minigrid/mt3/moore/gmp.yaml")  # doctest: +SKIP
        >>> recipe["model"]["class_path"]  # doctest: +SKIP
        'torchrl_sparse.lightning.MultiTaskPPO'
    """
    path = Path(path).resolve()
    if path in _seen:
        raise ValueError(f"Recipe {path} extends itself through {[str(p) for p in _seen]}.")
    if not path.is_file():
        raise FileNotFoundError(f"No recipe at {path}.")
    config = yaml.safe_load(path.read_text()) or {}
    bases = config.pop("extends", [])
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases:
        merged = _merge(merged, load_recipe(path.parent / base, (*_seen, path)))
    return _merge(merged, config)


_CONFIG_FLAGS = ("--config", "-c")


def _with_run_logger(recipe: dict[str, Any], path: str) -> dict[str, Any]:
    """The recipe loaded from ``path``, with a TensorBoard logger named after it unless it sets one.

    ``recipes/minigrid/mt3/moore/gmp.yaml`` logs to ``runs/minigrid/mt3/moore/gmp/seed<seed>``:
    a fixed directory per condition and seed, so ``--ckpt_path last`` finds the run again. The
    ``seed<seed>`` version is linked to the model's seed by the parser (see :class:`_CLI`).
    """
    trainer = recipe.setdefault("trainer", {}) or {}
    recipe["trainer"] = trainer
    if "logger" not in trainer:
        resolved = Path(path).resolve()
        parts = resolved.with_suffix("").parts
        name = (
            "/".join(parts[parts.index("recipes") + 1 :]) if "recipes" in parts else resolved.stem
        )
        trainer["logger"] = {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": "runs", "name": name},
        }
    return recipe


def _expand_configs(argv: list[str], workdir: Path) -> list[str]:
    """Replace every ``--config FILE`` by a merged copy (``extends`` resolved, run logger set).

    Only config files are read here; every other argument, the seed included, is left to
    LightningCLI's parser.
    """
    expanded: list[str] = []
    index = 0
    while index < len(argv):
        flag, has_value, value = argv[index].partition("=")
        if flag in _CONFIG_FLAGS and not has_value and index + 1 < len(argv):
            value = argv[index + 1]
            index += 1
        if flag in _CONFIG_FLAGS and value and Path(value).is_file():
            merged = workdir / f"{len(expanded)}_{Path(value).stem}.yaml"
            merged.write_text(
                yaml.safe_dump(_with_run_logger(load_recipe(value), value), sort_keys=False)
            )
            expanded += ["--config", str(merged)]
        elif flag in _CONFIG_FLAGS and value:
            expanded += ["--config", value]
        else:
            expanded.append(argv[index])
        index += 1
    return expanded


def main(args: list[str] | None = None) -> None:
    """Entry point of ``torchrl-sparse`` and ``python -m torchrl_sparse``.

    ``evaluate``, ``sweep`` and ``report`` are their own commands
    (:mod:`torchrl_sparse.lightning.evaluate`, :mod:`torchrl_sparse.experiments`,
    :mod:`torchrl_sparse.report`); everything else goes to LightningCLI. Exits with the
    command's status.
    """
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in _COMMANDS:
        module_name, function = _COMMANDS[argv[0]]
        sys.exit(getattr(importlib.import_module(module_name), function)(argv[1:]))
    run(args)


#: Commands that are not LightningCLI subcommands: name -> (module, function of argv -> status).
_COMMANDS = {
    "evaluate": ("torchrl_sparse.lightning.evaluate", "main"),
    "sweep": ("torchrl_sparse.experiments.cli", "main"),
    "report": ("torchrl_sparse.report.cli", "main"),
}


def run(args: list[str] | None = None, run: bool = True) -> LightningCLI:
    """Run the CLI on ``args`` (default: ``sys.argv``) and return the ``LightningCLI``.

    With ``run=False`` (as LightningCLI's own ``run``) ``args`` hold no subcommand and the
    model, trainer and callbacks are built but not run, e.g. to inspect a recipe.
    """
    from_command_line = args is None
    argv = list(sys.argv[1:] if from_command_line else args)
    with tempfile.TemporaryDirectory(prefix="torchrl_sparse_recipe_") as workdir:
        expanded = _expand_configs(argv, Path(workdir))
        if from_command_line:
            # LightningCLI reads sys.argv itself and warns when given both.
            sys.argv = [sys.argv[0], *expanded]
        try:
            return _run(expanded, from_command_line, run)
        except SIGTERMException:
            # Lightning stops on SIGTERM with a plain SystemExit; report it like the signal did.
            sys.exit(128 + signal.SIGTERM)


class _CLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # One seed: the model's seeds torch, the environments and ``seed_everything``, and names
        # the run directory (``runs/<recipe>/seed<seed>``).
        parser.link_arguments("model.init_args.seed", "seed_everything")
        parser.link_arguments(
            "model.init_args.seed", "trainer.logger.init_args.version", compute_fn=_seed_version
        )

    def before_fit(self) -> None:
        # Refuse to overwrite an earlier run before the trainer's setup rewrites its config.yaml.
        if self.config[self.subcommand].get("ckpt_path") is None:
            for callback in self.trainer.callbacks:
                if isinstance(callback, FrameCheckpoint):
                    callback.refuse_to_overwrite(callback.earlier_run(self.trainer))
        self._fit_started = time.perf_counter()

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


def _seed_version(seed: int) -> str:
    return f"seed{seed}"


def _run(expanded: list[str], from_command_line: bool, run: bool) -> LightningCLI:
    return _CLI(
        LightningModule,
        subclass_mode_model=True,
        args=None if from_command_line else expanded,
        run=run,
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
        },
    )
