"""Recipe files and the command-line options ``torchrl-sparse fit`` reads before LightningCLI.

Recipe files may start with ``extends: <path>`` (or a list of paths, relative to the file) to
share the common parts: the bases are merged first, dictionaries key by key, the callback list
callback by callback (a callback of a class the base already has overrides the base's
arguments key by key; one of a new class is added), other values (lists included) overridden
by the extending file. Several ``--config`` files merge the same way, in order. A recipe
without a logger logs to TensorBoard under ``runs/<recipe path below recipes/>/seed<seed>``
(relative to the working directory).

:func:`expand_command_line` applies ``--trainer.callbacks.<Name>.<arg> VALUE`` (an argument
of the recipe's callback of class ``<Name>``) and ``--smoke`` (any PPO, SAC or DQN recipe shrunk to
a run of a few thousand frames under ``runs/smoke/``), and drops ``--debug``.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ConfigError", "expand_command_line", "load_recipe", "resume_command"]

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
    # 32 batches of 64 frames, updates from the first, one evaluation of one episode.
    "DQN": {
        "total_frames": 2_048,
        "frames_per_batch": 64,
        "learning_starts": 0,
        "target_update_every_frames": 256,
        "buffer_size": 4_096,
        "eps_decay_frames": 1_024,
        "eval_every_frames": 2_048,
        "eval_episodes": 1,
    },
    # Control tasks: 4 batches of 512 frames, 2 epochs each, one evaluation of 2 episodes.
    "PPO": {
        "total_frames": 2_048,
        "frames_per_batch": 512,
        "epochs": 2,
        "minibatch_size": 128,
        "eval_every_frames": 2_048,
        "eval_episodes": 2,
    },
}
#: Callback arguments ``--smoke`` sets wherever a callback takes them: act at every batch,
#: measure plasticity on smaller samples.
_SMOKE_CALLBACK_ARGS: dict[str, Any] = {"every_n_frames": 1, "batch_size": 256}
#: Nested arguments ``--smoke`` sets wherever a recipe gives them (sparsity schedules).
_SMOKE_NESTED_ARGS: dict[str, Any] = {"update_every": 1}

_CONFIG_FLAGS = ("--config", "-c")
DEBUG_FLAG = "--debug"
DEBUG_VARIABLE = "TORCHRL_SPARSE_DEBUG"
_SMOKE_FLAG = "--smoke"
_CALLBACK_PREFIX = "--trainer.callbacks."
_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class ConfigError(ValueError):
    """A recipe or command line that cannot be trained, found before training starts.

    ``torchrl-sparse`` prints it as one ``error:`` line and exits with status 2; the error it
    was raised from (its ``__cause__``) has the details, and ``--debug`` prints its traceback.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> recipe = Path(tempfile.mkdtemp()) / "broken.yaml"
        >>> _ = recipe.write_text("model: {init_args: [}")
        >>> try:
        ...     load_recipe(recipe)
        ... except ConfigError as error:
        ...     print(str(error).startswith("YAML syntax error in"), "broken.yaml" in str(error))
        True True
    """


# ---------------------------------------------------------------------------------- recipes
def class_name(entry: Any) -> str:
    """The class an entry names (a dictionary's ``class_path``, or a string), without module."""
    class_path = entry.get("class_path") if isinstance(entry, dict) else entry
    return str(class_path).rsplit(".", 1)[-1]


def _merge_callbacks(base: list[Any], override: list[Any]) -> list[Any]:
    """The i-th callback of a class in ``override`` merges into the base's i-th of that class."""
    merged = list(base)
    positions: dict[str, list[int]] = {}
    for index, callback in enumerate(base):
        positions.setdefault(class_name(callback), []).append(index)
    seen: dict[str, int] = {}
    for callback in override:
        name = class_name(callback)
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
        if other_class and class_name(base) != class_name(override):
            return override
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base[key], value, (*key_path, key)) if key in base else value
        return merged
    if key_path == ("trainer", "callbacks") and isinstance(base, list):
        return _merge_callbacks(base, override if isinstance(override, list) else [override])
    return override


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _extended_by(seen: tuple[Path, ...]) -> str:
    """`` (extended by b.yaml, extended by c.yaml)`` for the chain of files that led here."""
    if not seen:
        return ""
    return " (extended by " + ", extended by ".join(display_path(p) for p in reversed(seen)) + ")"


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
            f"YAML syntax error in {display_path(path)}{_extended_by(seen)}, "
            f"{_yaml_problem(error)}."
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
        raise ConfigError(f"Recipe {display_path(path)} extends itself{_extended_by(_seen)}.")
    if not path.is_file():
        raise FileNotFoundError(f"No recipe at {display_path(path)}{_extended_by(_seen)}.")
    config = _parse_yaml(path, _seen)
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError(
            f"{display_path(path)}{_extended_by(_seen)} holds a {type(config).__name__}; a recipe "
            "is a YAML mapping (extends:, model:, trainer:)."
        )
    bases = config.pop("extends", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(
            f"extends in {display_path(path)} must be a path or a list of paths, got {bases!r}."
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


def init_parameters(class_path: Any) -> list[str] | None:
    """The ``__init__`` argument names of ``class_path``, or ``None`` when it cannot be found."""
    found = _import_class(class_path)
    if found is None:
        return None
    return [
        name
        for name, parameter in inspect.signature(found).parameters.items()
        if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    ]


def callback_labels(callbacks: list[Any]) -> list[str]:
    """How each callback is addressed: its class name, ``<Name>.<i>`` when several share it."""
    names = [class_name(c) for c in callbacks]
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
    labels = callback_labels(callbacks)
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
    allowed = init_parameters(callback.get("class_path"))
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
        accepted = init_parameters(callback.get("class_path")) or []
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


def expand_command_line(argv: list[str], workdir: Path) -> list[str]:
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
        if flag == DEBUG_FLAG and not has_value:
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


def resume_command(argv: list[str]) -> str:
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
