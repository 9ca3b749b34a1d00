"""The ``torchrl-sparse`` command: LightningCLI over the recipes.

``torchrl-sparse fit --config recipes/<condition>.yaml`` trains one experimental condition.
Configuration comes from the typed ``__init__`` signatures of the LightningModules and
callbacks, so ``--print_config`` shows every option. ``fit`` is the only LightningCLI
subcommand; ``evaluate``, ``sweep`` and ``report`` are commands of their own.

Recipe files may start with ``extends: <path>`` (or a list of paths, relative to the file) to
share the common parts: the bases are merged first, dictionaries key by key, the callback list
callback by callback (a callback of a class the base already has overrides the base's
arguments key by key; one of a new class is added), other values (lists included) overridden
by the extending file. Several ``--config`` files merge the same way, in order (each one over
the options given before it). A recipe without a logger logs to TensorBoard under
``runs/<recipe path below recipes/>/seed<seed>`` (relative to the working directory), with
checkpoints in its ``checkpoints/``.

Before LightningCLI parses the command line, this module reads and strips its own options:

- ``--trainer.callbacks.<Name>.<arg> VALUE`` sets an argument of the recipe's callback of class
  ``<Name>`` (``<Name>.<i>`` when it has several), e.g.
  ``--trainer.callbacks.SparsityCallback.groups '{actor_network.*: 0.9}'``;
- ``--smoke`` shrinks any PPO or SAC recipe to a run of a few thousand frames, every callback
  acting at every batch, logged under ``runs/smoke/``;
- ``--debug`` (or ``TORCHRL_SPARSE_DEBUG=1``) prints the traceback of configuration errors,
  which are otherwise one ``error:`` line (exit status 2).

``--ckpt_path`` resumes only a run of the same settings: the checkpoint records the run's
configuration, and settings other than :data:`RESUMABLE_SETTINGS` must match it. A run resumed
with a longer training length trains on to the new length. A run stopped by SIGTERM or SIGINT
exits with 143 or 130 and prints the command that resumes it.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib
import inspect
import json
import os
import re
import shlex
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import yaml
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

from torchrl_sparse._compat import ended_epoch_loader_states
from torchrl_sparse.experiments.summary import summarize_module
from torchrl_sparse.lightning.callbacks import FrameCheckpoint

__all__ = ["RESUMABLE_SETTINGS", "ConfigError", "load_recipe", "main", "run"]

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

#: The model options ``--smoke`` sets, by LightningModule class name.
_SMOKE_MODEL_ARGS: dict[str, dict[str, Any]] = {
    # MT3: 4 batches of 256 steps per task (3,072 frames), 2 evaluations of 2 episodes per task.
    "MultiTaskPPO": {
        "total_steps_per_task": 1_000,
        "steps_per_task_per_batch": 250,
        "policy_epochs": 2,
        "policy_minibatch_per_task": 128,
        "critic_batch_per_task": 250,
        "eval_every_steps_per_task": 500,
        "eval_episodes_per_task": 2,
    },
    # 5 batches of 200 frames, updates from the second, 50-step episodes, one evaluation.
    "MultiTaskSAC": {
        "total_frames": 1_000,
        "frames_per_batch": 200,
        "learning_starts": 400,
        "utd_ratio": 0.25,
        "buffer_size": 10_000,
        "max_episode_steps": 50,
        "eval_every_frames": 1_000,
        "eval_episodes_per_task": 1,
    },
}
#: Callback arguments ``--smoke`` sets wherever a callback takes them: act at every batch,
#: measure plasticity on smaller samples.
_SMOKE_CALLBACK_ARGS: dict[str, Any] = {"every_n_frames": 1, "batch_size": 256}
#: Nested arguments ``--smoke`` sets wherever a recipe gives them (sparsity schedules).
_SMOKE_NESTED_ARGS: dict[str, Any] = {"update_every": 1}

_CONFIG_FLAGS = ("--config", "-c")
_DEBUG_FLAG = "--debug"
_DEBUG_VARIABLE = "TORCHRL_SPARSE_DEBUG"
_SMOKE_FLAG = "--smoke"
_CALLBACK_PREFIX = "--trainer.callbacks."
_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
#: Where checkpoints hold the configuration of the run that wrote them.
_CONFIG_KEY = "torchrl_sparse_config"
_HELP_EPILOG = (
    "torchrl-sparse's own options: --trainer.callbacks.<Name>.<argument> VALUE sets an argument "
    "of the recipe's callback of class <Name>; --smoke makes a run of a few thousand frames "
    "under runs/smoke/; --debug prints the traceback of a configuration error. See "
    "docs/guide/recipes.md."
)


class ConfigError(ValueError):
    """A recipe or command line that cannot be trained, found before training starts.

    ``torchrl-sparse`` prints it as one ``error:`` line and exits with status 2; the error it
    was raised from (its ``__cause__``) has the details, and ``--debug`` prints its traceback.

    Examples:
        >>> try:
        ...     run(["fit", "--smoke"])
        ... except ConfigError as error:
        ...     print(error)
        --smoke needs a recipe: add --config recipes/<condition>.yaml.
    """


# ---------------------------------------------------------------------------------- recipes
def _class_name(entry: Any) -> str:
    """The class an entry names (a dictionary's ``class_path``, or a string), without module."""
    class_path = entry.get("class_path") if isinstance(entry, dict) else entry
    return str(class_path).rsplit(".", 1)[-1]


def _merge_callbacks(base: list[Any], override: list[Any]) -> list[Any]:
    """The i-th callback of a class in ``override`` merges into the base's i-th of that class."""
    merged = list(base)
    positions: dict[str, list[int]] = {}
    for index, callback in enumerate(base):
        positions.setdefault(_class_name(callback), []).append(index)
    seen: dict[str, int] = {}
    for callback in override:
        name = _class_name(callback)
        occurrence = seen.get(name, 0)
        seen[name] = occurrence + 1
        same_class = positions.get(name, [])
        if occurrence < len(same_class):
            index = same_class[occurrence]
            merged[index] = _merge(merged[index], callback)
        else:
            merged.append(callback)
    return merged


def _merge(base: Any, override: Any, key_path: tuple[str, ...] = ()) -> Any:
    """``override`` over ``base``: dictionaries key by key, callbacks by class, else override.

    Two dictionaries naming different ``class_path`` s do not merge: the override replaces.
    """
    if isinstance(base, dict) and isinstance(override, dict):
        other_class = "class_path" in base and "class_path" in override
        if other_class and _class_name(base) != _class_name(override):
            return override
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base[key], value, (*key_path, key)) if key in base else value
        return merged
    if key_path == ("trainer", "callbacks") and isinstance(base, list):
        return _merge_callbacks(base, override if isinstance(override, list) else [override])
    return override


def _display(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _extended_by(seen: tuple[Path, ...]) -> str:
    """`` (extended by b.yaml, extended by c.yaml)`` for the chain of files that led here."""
    if not seen:
        return ""
    return " (extended by " + ", extended by ".join(_display(p) for p in reversed(seen)) + ")"


def _yaml_problem(error: yaml.YAMLError) -> str:
    """``line 5, column 3: <problem> (<context> at line 4)``, in one line."""
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return " ".join(str(error).split())
    mark = error.problem_mark
    context = ""
    if error.context is not None and error.context_mark is not None:
        context = f" ({error.context} at line {error.context_mark.line + 1})"
    return f"line {mark.line + 1}, column {mark.column + 1}: {error.problem}{context}"


def _parse_yaml(path: Path, seen: tuple[Path, ...]) -> Any:
    """The YAML in ``path``; a syntax error names the file, its line and the extends chain."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(
            f"YAML syntax error in {_display(path)}{_extended_by(seen)}, {_yaml_problem(error)}."
        ) from error


def load_recipe(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a recipe YAML, resolving ``extends`` recursively.

    The bases merge first, in order, then the file itself: dictionaries key by key; in
    ``trainer.callbacks`` the i-th callback of a class merges into the base's i-th callback of
    that class (its ``init_args`` key by key) and callbacks of other classes are added; any
    other value (a list too) replaces the base's. A dictionary with another ``class_path``
    than the base's replaces it whole.

    Raises:
        FileNotFoundError: the recipe or a base does not exist.
        ConfigError: a file is not valid YAML or not a mapping, or ``extends`` forms a cycle
            (the message names the file and the files that extend it).

    Examples:
        >>> recipe = load_recipe("recipes/minigrid/mt3/moore/gmp.yaml")  # doctest: +SKIP
        >>> recipe["model"]["class_path"]  # doctest: +SKIP
        'torchrl_sparse.lightning.MultiTaskPPO'
    """
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"Recipe {_display(path)} extends itself{_extended_by(_seen)}.")
    if not path.is_file():
        raise FileNotFoundError(f"No recipe at {_display(path)}{_extended_by(_seen)}.")
    config = _parse_yaml(path, _seen)
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError(
            f"{_display(path)}{_extended_by(_seen)} holds a {type(config).__name__}; a recipe "
            "is a YAML mapping (extends:, model:, trainer:)."
        )
    bases = config.pop("extends", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(
            f"extends in {_display(path)} must be a path or a list of paths, got {bases!r}."
        )
    merged: dict[str, Any] = {}
    for base in bases:
        merged = _merge(merged, load_recipe(path.parent / base, (*_seen, path)))
    return _merge(merged, config)


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


# ------------------------------------------------------------------------ the command line
def _import_class(class_path: Any) -> type | None:
    """The class a dotted ``class_path`` names, or ``None`` when it names none."""
    module_name, _, name = str(class_path).rpartition(".")
    if not module_name:
        return None
    try:
        found = getattr(importlib.import_module(module_name), name, None)
    except ImportError:
        return None
    return found if isinstance(found, type) else None


def _init_parameters(class_path: Any) -> list[str] | None:
    """The ``__init__`` argument names of ``class_path``, or ``None`` when it cannot be found."""
    found = _import_class(class_path)
    if found is None:
        return None
    return [
        name
        for name, parameter in inspect.signature(found).parameters.items()
        if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    ]


def _callback_labels(callbacks: list[Any]) -> list[str]:
    """How each callback is addressed: its class name, ``<Name>.<i>`` when several share it."""
    names = [_class_name(c) for c in callbacks]
    counts = {name: names.count(name) for name in names}
    seen: dict[str, int] = {}
    labels = []
    for name in names:
        if counts[name] > 1:
            labels.append(f"{name}.{seen.get(name, 0)}")
            seen[name] = seen.get(name, 0) + 1
        else:
            labels.append(name)
    return labels


def _parse_value(option: str, text: str) -> Any:
    """A command-line value read as YAML (numbers like ``1e-3`` included)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{option}: {text!r} is not YAML ({_yaml_problem(error)}).") from error
    if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value):
        return float(value)  # YAML 1.1 (PyYAML) reads 1e-3 as a string
    return value


def _set_nested(init_args: dict[str, Any], keys: list[str], value: Any) -> None:
    """Set ``init_args[k0][k1]...`` to ``value``; nested classes' ``init_args`` may be skipped.

    Below the argument ``k0``, a key may hold dots (a glob such as ``actor_network.*``): the
    longest run of ``keys`` naming an existing key is taken, else all of them.
    """
    target, key, rest = init_args, keys[0], keys[1:]
    while rest:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
        if "class_path" in target and rest[0] not in ("class_path", "init_args"):
            if not isinstance(target.get("init_args"), dict):
                target["init_args"] = {}
            target = target["init_args"]
        joined = next(
            (n for n in range(len(rest), 0, -1) if ".".join(rest[:n]) in target), len(rest)
        )
        key, rest = ".".join(rest[:joined]), rest[joined:]
    target[key] = value


def _override_callback(callbacks: list[Any], option: str, text: str) -> None:
    """Apply ``--trainer.callbacks.<Name>[.<i>][.init_args].<arg>[.<key>...] VALUE``."""
    labels = _callback_labels(callbacks)
    present = ", ".join(labels) or "none"
    parts = option[len(_CALLBACK_PREFIX) :].split(".")
    name, rest = parts[0], parts[1:]
    if rest and rest[0].isdigit():
        indexed = f"{name}.{rest[0]}"
        # <Name>.0 also addresses the only callback of a class.
        name = name if indexed not in labels and rest[0] == "0" else indexed
        rest = rest[1:]
    if name not in labels:
        several = [label for label in labels if label.startswith(f"{name}.")]
        hint = f"; address one of {', '.join(several)}" if several else ""
        raise ConfigError(
            f"{option}: the recipe has no callback {name}{hint} (callbacks: {present})."
        )
    callback = callbacks[labels.index(name)]
    if not isinstance(callback, dict):
        callback = {"class_path": callback}
        callbacks[labels.index(name)] = callback
    if rest and rest[0] == "init_args":
        rest = rest[1:]
    allowed = _init_parameters(callback.get("class_path"))
    if not rest or (allowed is not None and rest[0] not in allowed):
        named = f"has no argument {rest[0]!r}" if rest else "needs an argument name"
        listing = f"; arguments: {', '.join(allowed)}" if allowed is not None else ""
        raise ConfigError(f"{option}: {name} {named}{listing}.")
    init_args = callback.get("init_args")
    if not isinstance(init_args, dict):
        init_args = callback["init_args"] = {}
    _set_nested(init_args, rest, _parse_value(option, text))


def _set_everywhere(tree: Any, values: dict[str, Any]) -> None:
    """Set every key of ``values`` found anywhere in ``tree`` (dictionaries and lists)."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key in values and not isinstance(value, dict | list):
                tree[key] = values[key]
            else:
                _set_everywhere(value, values)
    elif isinstance(tree, list):
        for item in tree:
            _set_everywhere(item, values)


def _smoke(recipe: dict[str, Any]) -> dict[str, Any]:
    """What ``--smoke`` changes in ``recipe``: its length, callback periods and run folder.

    A few thousand frames, every callback at every batch, logged under ``smoke/`` in the
    logger's save directory, apart from the real run.
    """
    model = recipe.get("model") or {}
    module_class = _import_class(model.get("class_path"))
    lineage = [k.__name__ for k in module_class.__mro__] if module_class is not None else []
    preset = next((_SMOKE_MODEL_ARGS[n] for n in lineage if n in _SMOKE_MODEL_ARGS), None)
    if preset is None:
        raise ConfigError(
            f"{_SMOKE_FLAG} has presets for {' and '.join(_SMOKE_MODEL_ARGS)} recipes; this one "
            f"trains {model.get('class_path')!r}."
        )
    trainer = copy.deepcopy(recipe["trainer"])
    callbacks = trainer.get("callbacks") or []
    for callback in callbacks:
        if not isinstance(callback, dict):
            continue
        args = callback.get("init_args")
        args = callback["init_args"] = args if isinstance(args, dict) else {}
        accepted = _init_parameters(callback.get("class_path")) or []
        args.update({k: v for k, v in _SMOKE_CALLBACK_ARGS.items() if k in accepted})
        _set_everywhere(args, _SMOKE_NESTED_ARGS)
    smoke: dict[str, Any] = {"model": {"init_args": dict(preset)}, "trainer": {}}
    if callbacks:
        smoke["trainer"]["callbacks"] = callbacks
    logger = trainer.get("logger")
    if isinstance(logger, dict) and isinstance(logger.get("init_args"), dict):
        logger["init_args"]["name"] = f"smoke/{logger['init_args'].get('name') or 'run'}"
        smoke["trainer"]["logger"] = logger
    return smoke


def _expand_command_line(argv: list[str], workdir: Path) -> list[str]:
    """LightningCLI's arguments for ``argv``, with this module's own options applied.

    Every ``--config FILE`` is replaced by a copy of it with ``extends`` resolved, the run
    logger set, and the callbacks of all configs so far merged by class (so that a later file
    overrides a callback instead of replacing the list). ``--smoke`` and
    ``--trainer.callbacks.<Name>.<arg> VALUE`` make a further config, right after the last
    one, and ``--debug`` is dropped. Every other argument, the seed included, is left to
    LightningCLI, in place: a later config overrides options given before it. Expanding the
    result again (as Lightning's DDP launcher reruns the command line) changes nothing.

    Raises:
        ConfigError: a recipe or one of these options is wrong.
        FileNotFoundError: a recipe does not exist.
    """
    configs: list[tuple[int, str]] = []  # (position among the other arguments, path)
    callback_overrides: list[tuple[str, str]] = []
    smoke = False
    rest: list[str] = []
    index = 0
    while index < len(argv):
        flag, has_value, value = argv[index].partition("=")
        takes_value = flag in _CONFIG_FLAGS or (
            flag.startswith(_CALLBACK_PREFIX) and flag != f"{_CALLBACK_PREFIX}help"
        )
        if takes_value and not has_value:
            if index + 1 >= len(argv):
                raise ConfigError(f"{flag} needs a value.")
            index += 1
            value = argv[index]
        if flag == _DEBUG_FLAG and not has_value:
            pass
        elif flag == _SMOKE_FLAG and not has_value:
            smoke = True
        elif flag in _CONFIG_FLAGS:
            configs.append((len(rest), value))
        elif takes_value:
            callback_overrides.append((flag, value))
        else:
            rest.append(argv[index])
        index += 1
    if not configs:
        if smoke or callback_overrides:
            used = _SMOKE_FLAG if smoke else callback_overrides[0][0]
            raise ConfigError(f"{used} needs a recipe: add --config recipes/<condition>.yaml.")
        return rest
    files: list[tuple[int, dict[str, Any]]] = []
    merged: dict[str, Any] = {}
    for position, path in configs:
        recipe = _with_run_logger(load_recipe(path), path)
        merged = _merge(merged, recipe)
        if "callbacks" in recipe["trainer"]:
            recipe["trainer"]["callbacks"] = copy.deepcopy(merged["trainer"]["callbacks"])
        files.append((position, recipe))
    if smoke or callback_overrides:
        overlay = _smoke(merged) if smoke else {"trainer": {}}
        callbacks = overlay["trainer"].get("callbacks")
        if callbacks is None:
            callbacks = copy.deepcopy(merged["trainer"].get("callbacks") or [])
        for option, value in callback_overrides:
            _override_callback(callbacks, option, value)
        if callback_overrides:
            overlay["trainer"]["callbacks"] = callbacks
        # Its own logger: expanded again (other DDP ranks rerun this command line), the overlay
        # must not get one named after it.
        overlay["trainer"].setdefault("logger", copy.deepcopy(merged["trainer"]["logger"]))
        files.append((configs[-1][0], overlay))
    expanded = list(rest)
    for number, (position, recipe) in reversed(list(enumerate(files))):
        written = workdir / f"{number}_recipe.yaml"
        written.write_text(yaml.safe_dump(recipe, sort_keys=False))
        expanded[position:position] = ["--config", str(written)]
    return expanded


def _resume_command(argv: list[str]) -> str:
    """The command that resumes the run of ``argv``: the same, with ``--ckpt_path last``."""
    kept: list[str] = []
    skip_value = False
    for arg in argv:
        flag, has_value, _ = arg.partition("=")
        if skip_value:
            skip_value = False
        elif flag == "--ckpt_path":
            skip_value = not has_value
        else:
            kept.append(arg)
    return shlex.join(["torchrl-sparse", *kept, "--ckpt_path", "last"])


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
            keys.append(_class_name(class_path) if in_callbacks else "init_args")
    innermost = chain[-1]
    lines = [line.strip() for line in str(innermost).splitlines() if line.strip()]
    if lines and lines[0].startswith(_UNION_ERRORS):
        # One error per type of the union: the first that is not "it is not None".
        items = [line[2:] for line in lines if line.startswith("- ") and "NoneType" not in line]
        lines = items[:1] or lines
    message = " ".join(" ".join(lines).split()) or type(innermost).__name__
    unknown = _UNKNOWN_OPTION.match(message)
    if unknown and class_path is not None and (allowed := _init_parameters(class_path)):
        message = f"{message}; allowed: {', '.join(allowed)}"
    return f"{'.'.join(keys)}: {message}" if keys else message


def _debug_requested(argv: list[str]) -> bool:
    return _DEBUG_FLAG in argv or os.environ.get(_DEBUG_VARIABLE, "") not in ("", "0")


# ------------------------------------------------------------------------ resuming
@dataclass
class _RunSettings:
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
    def of(cls, config: dict[str, Any], trainer: dict[str, Any] | None = None) -> _RunSettings:
        """The settings of a configuration (as ``config.yaml``), with resolved trainer facts."""
        values: dict[str, Any] = {}
        _flatten("model", config.get("model") or {}, values)
        callbacks = (config.get("trainer") or {}).get("callbacks") or []
        labels = _callback_labels(callbacks)
        for label, callback in zip(labels, callbacks, strict=True):
            if isinstance(callback, dict):
                for key, value in (callback.get("init_args") or {}).items():
                    _flatten(f"trainer.callbacks.{label}.{key}", value, values)
        values.update({f"trainer.{key}": value for key, value in (trainer or {}).items()})
        class_paths = [c.get("class_path") if isinstance(c, dict) else c for c in callbacks]
        return cls(values, dict(zip(labels, map(str, class_paths), strict=True)))

    @classmethod
    def of_hyperparameters(cls, hparams: dict[str, Any]) -> _RunSettings:
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
        into[f"{prefix}.class_path"] = _class_name(value)  # the class, wherever imported
        for key, arg in (value.get("init_args") or {}).items():
            _flatten(f"{prefix}.init_args.{key}", arg, into)
    else:
        into[prefix] = value


def _compare(recorded: _RunSettings, current: _RunSettings) -> tuple[list[str], list[str]]:
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


def _json_safe(value: Any) -> Any:
    """``value`` as plain JSON types (what ``torch.load(weights_only=True)`` reads back)."""
    return json.loads(json.dumps(value, default=str))


class _RunRecord(pl.Callback):
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
        written = f"; checkpoint: {_display(Path(last).absolute())}" if last else ""
        print(
            f"Stopped by {signum.name}{where}{written}. Resume with:\n  {_resume_command(argv)}",
            file=sys.stderr,
        )


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
        record = next(c for c in self.trainer.callbacks if isinstance(c, _RunRecord))
        record.checkpoint_record = {
            "config": _json_safe(config.as_dict()),
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

    def _check_resume(self, path: Path, record: _RunRecord) -> None:
        """Refuse a checkpoint of other settings; prepare to train on from one of this run."""
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ConfigError(f"Cannot read the checkpoint {path}: {error}") from error
        assert record.checkpoint_record is not None
        current = _RunSettings.of(
            record.checkpoint_record["config"], record.checkpoint_record["trainer"]
        )
        refused, noted = _compare(_recorded_settings(checkpoint, path), current)
        if refused:
            raise ConfigError(
                f"The checkpoint {_display(path.absolute())} was trained with other settings "
                f"than this recipe and command line: {'; '.join(refused)}. Resume it with its "
                "own settings; a resumed run may change only "
                f"{', '.join(RESUMABLE_SETTINGS)}."
            )
        for note in noted:
            print(f"Resuming {_display(path.absolute())} {note}.", file=sys.stderr)
        self._train_on(checkpoint, path, record)

    def _train_on(self, checkpoint: dict[str, Any], path: Path, record: _RunRecord) -> None:
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
        where, total = _display(path.absolute()), self.model.total_frames
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


def _recorded_settings(checkpoint: dict[str, Any], path: Path) -> _RunSettings:
    """The settings the checkpoint was trained with.

    From the configuration the CLI writes into checkpoints; for older checkpoints, from the
    ``config.yaml`` of the run folder they sit in, else from the model's hyperparameters.
    """
    record = checkpoint.get(_CONFIG_KEY)
    if record is not None:
        return _RunSettings.of(record["config"], record.get("trainer"))
    config_file = path.absolute().parent.parent / "config.yaml"
    if config_file.is_file():
        return _RunSettings.of(yaml.safe_load(config_file.read_text()) or {})
    return _RunSettings.of_hyperparameters(dict(checkpoint.get("hyper_parameters") or {}))


def _seed_version(seed: int) -> str:
    return f"seed{seed}"


# ------------------------------------------------------------------------ entry points
def main(args: list[str] | None = None) -> None:
    """Entry point of ``torchrl-sparse`` and ``python -m torchrl_sparse``.

    ``evaluate``, ``sweep`` and ``report`` are their own commands
    (:mod:`torchrl_sparse.lightning.evaluate`, :mod:`torchrl_sparse.experiments`,
    :mod:`torchrl_sparse.report`); everything else goes to LightningCLI. A configuration error
    prints one ``error:`` line (with ``--debug`` or ``TORCHRL_SPARSE_DEBUG=1``, its traceback
    first) and exits with status 2; a run stopped by SIGTERM or SIGINT exits with 143 or 130.
    """
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in _COMMANDS:
        module_name, function = _COMMANDS[argv[0]]
        sys.exit(getattr(importlib.import_module(module_name), function)(argv[1:]))
    try:
        run(args)
    except ConfigError as error:
        if _debug_requested(argv):
            traceback.print_exception(error)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


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

    Raises:
        ConfigError: the recipes or command line cannot be trained; raised before the first
            training step, from the error that found it.
        SystemExit: 143 when SIGTERM, 130 when SIGINT stopped the fit (``last.ckpt`` written,
            ``summary.json`` too for SIGINT); the command that resumes the run is printed.
    """
    from_command_line = args is None
    argv = list(sys.argv[1:] if from_command_line else args)
    record = _RunRecord()
    with tempfile.TemporaryDirectory(prefix="torchrl_sparse_recipe_") as workdir:
        try:
            expanded = _expand_command_line(argv, Path(workdir))
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
    expanded: list[str], from_command_line: bool, run: bool, record: _RunRecord
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
