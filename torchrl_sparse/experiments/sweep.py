"""A sweep: every (condition, seed) of a grid, each a ``torchrl-sparse fit`` in its own run folder.

A condition is a recipe, optionally with grid overrides (``model.init_args.lr=3e-4``). Its runs
log to ``<out>/<condition>/seed<N>/`` (the recipe's path below ``recipes/``, then
``@key=value`` for each grid override), so a sweep's folders read like the CLI's own
``runs/`` tree and a re-run finds them again. The state of a run is read from its folder:

* ``finished``: its ``summary.json`` says so (written by every fit that returned normally);
* ``running``: a live process holds its ``sweep.lock``;
* ``failed``: its last attempt exited with an error (``sweep_status.json``);
* ``interrupted``: it has ``checkpoints/last.ckpt`` (stopped by a signal, a time-out, a crash
  of the machine): the next attempt resumes from it;
* ``queued``: nothing yet.

:class:`Sweep` is also a YAML file (:meth:`Sweep.save`, :meth:`Sweep.load`), so a sweep can be
re-run and shared.
"""

from __future__ import annotations

import dataclasses
import glob
import itertools
import json
import os
import re
import shutil
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from torchrl_sparse.experiments.summary import read_summary, write_json

__all__ = ["RunState", "Sweep", "SweepRun", "parse_grid", "parse_seeds"]

RunState = Literal["finished", "running", "failed", "interrupted", "queued"]

LOG_FILE = "sweep.log"
LOCK_FILE = "sweep.lock"
STATUS_FILE = "sweep_status.json"
#: Seconds after which a lock from another host that was not refreshed is stale.
REMOTE_LOCK_TIMEOUT_S = 15 * 60
#: Exit statuses of a fit stopped by a signal (SIGINT, SIGTERM, as ``128 + n`` or ``-n``): the
#: run is interrupted, not failed, and resumes from its checkpoint.
STOPPED_BY_SIGNAL = frozenset({130, 143, -signal.SIGINT, -signal.SIGTERM})


def parse_seeds(text: str) -> list[int]:
    """Seeds from ``"0-9"``, ``"0,3,5"`` or ``"0-2,7"``.

    Raises:
        ValueError: not a list of non-negative integers and ranges.

    Examples:
        >>> parse_seeds("0-2,7")
        [0, 1, 2, 7]
    """
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None or (match[2] is not None and int(match[2]) < int(match[1])):
            raise ValueError(
                f"seeds {text!r}: {part!r} is not a seed or a range; allowed: non-negative "
                "integers and ranges such as '0-9' or '0,3,5'."
            )
        last = int(match[2]) if match[2] is not None else int(match[1])
        seeds += range(int(match[1]), last + 1)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {text!r} repeat a seed.")
    return seeds


def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    """Grid overrides from ``["model.init_args.lr=1e-3,3e-4", ...]``.

    Keys are LightningCLI option names without the leading ``--``; values are the
    comma-separated settings, passed to the CLI as written.

    Raises:
        ValueError: an item is not ``key=value[,value...]`` or repeats a key.

    Examples:
        >>> parse_grid(["model.init_args.lr=1e-3,3e-4"])
        {'model.init_args.lr': ['1e-3', '3e-4']}
    """
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip().removeprefix("--")
        settings = [v.strip() for v in values.split(",")]
        if not sep or not key or not all(settings):
            raise ValueError(
                f"grid {item!r}: expected KEY=VALUE[,VALUE...], e.g. model.init_args.lr=1e-3,3e-4."
            )
        if key in grid:
            raise ValueError(f"grid key {key!r} is given twice; list all its values once.")
        grid[key] = settings
    return grid


def _holder(pid: int) -> dict[str, Any]:
    return {"pid": pid, "host": socket.gethostname(), "since": time.time()}


def _condition_of(recipe: Path) -> str:
    """The run folder name the CLI gives ``recipe``: its path below ``recipes/``, or its stem."""
    parts = recipe.resolve().with_suffix("").parts
    return "/".join(parts[parts.index("recipes") + 1 :]) if "recipes" in parts else recipe.stem


@dataclasses.dataclass(frozen=True)
class SweepRun:
    """One (condition, seed) of a sweep.

    Args:
        recipe: the recipe file.
        condition: the run folder below ``out``, without ``seed<N>``.
        seed: the seed (``--model.init_args.seed``).
        overrides: ``(option, value)`` pairs added to the command line.
        out: the save directory of the TensorBoard logger.

    Examples:
        >>> run = SweepRun(Path("recipes/a.yaml"), "a", 3, (("model.init_args.lr", "3e-4"),),
        ...                Path("runs"))
        >>> str(run.run_dir), run.command(python="python")[4:8]
        ('runs/a/seed3', ['--config', 'recipes/a.yaml', '--model.init_args.lr', '3e-4'])
    """

    recipe: Path
    condition: str
    seed: int
    overrides: tuple[tuple[str, str], ...]
    out: Path

    @property
    def name(self) -> str:
        """``<condition>/seed<N>``."""
        return f"{self.condition}/seed{self.seed}"

    @property
    def run_dir(self) -> Path:
        """``<out>/<condition>/seed<N>``: events, checkpoints, summary, sweep log."""
        return self.out / self.condition / f"seed{self.seed}"

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "checkpoints" / "last.ckpt"

    @property
    def log(self) -> Path:
        return self.run_dir / LOG_FILE

    def command(self, resume: bool = True, python: str = sys.executable) -> list[str]:
        """The ``torchrl-sparse fit`` command of the next attempt.

        With ``resume`` (the default) it resumes from ``checkpoints/last.ckpt`` when there is one.
        """
        command = [python, "-m", "torchrl_sparse", "fit", "--config", str(self.recipe)]
        for key, value in self.overrides:
            command += [f"--{key}", value]
        command += [
            "--model.init_args.seed",
            str(self.seed),
            "--trainer.logger.init_args.save_dir",
            str(self.out),
            "--trainer.logger.init_args.name",
            self.condition,
        ]
        if resume and self.checkpoint.is_file():
            command += ["--ckpt_path", str(self.checkpoint)]
        return command

    def state(self) -> RunState:
        """What the run folder says about this run (see the module docstring)."""
        summary = read_summary(self.run_dir)
        if summary is not None and summary.get("finished"):
            return "finished"
        if self.lock_holder() is not None:
            return "running"
        status = self.last_status()
        if status is not None and status["returncode"] not in {0, *STOPPED_BY_SIGNAL}:
            return "failed"
        if self.checkpoint.is_file():
            return "interrupted"
        return "queued"

    def last_status(self) -> dict[str, Any] | None:
        """``sweep_status.json`` of the last attempt, or ``None``.

        Raises:
            ValueError: the file is not JSON, naming it.
        """
        path = self.run_dir / STATUS_FILE
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error}); remove it to retry.") from error

    def lock_holder(self) -> dict[str, Any] | None:
        """Who holds ``sweep.lock``: a live local process or any other host, else ``None``.

        A lock of a dead local process is stale and ignored. A lock from another host counts as
        held while its holder refreshes it (a SLURM task does every minute): after
        :data:`REMOTE_LOCK_TIMEOUT_S` without a refresh (a node that died) it is stale too. A
        SLURM task not started yet (``host: slurm``) holds its run until it starts.
        """
        path = self.run_dir / LOCK_FILE
        if not path.is_file():
            return None
        try:
            holder = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
        if holder.get("host") == "slurm":
            return holder
        if holder.get("host") != socket.gethostname():
            fresh = time.time() - float(holder.get("since", 0)) < REMOTE_LOCK_TIMEOUT_S
            return holder if fresh else None
        try:
            os.kill(int(holder["pid"]), 0)
        except PermissionError:
            return holder  # it exists, under another user
        except (ProcessLookupError, ValueError, KeyError):
            return None
        return holder

    def claim(self) -> bool:
        """Take ``sweep.lock`` for this process, atomically; ``False`` when someone holds it.

        Two sweeps over the same folders never start the same run: the lock file is created
        exclusively, and a stale one (its process is gone) is replaced.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / LOCK_FILE
        for _ in range(2):
            try:
                descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if self.lock_holder() is not None:
                    return False
                path.unlink(missing_ok=True)
                continue
            with os.fdopen(descriptor, "w") as handle:
                json.dump(_holder(os.getpid()), handle)
            return True
        return False

    def release(self) -> None:
        """Give ``sweep.lock`` back without recording an attempt."""
        (self.run_dir / LOCK_FILE).unlink(missing_ok=True)

    def prepare_attempt(self) -> None:
        """Make the run folder; a fresh start moves an earlier attempt's files aside.

        An attempt that logged events but left no checkpoint cannot be resumed; its files go to
        ``seed<N>.attempt-<unix time>`` (kept, never deleted) so the new attempt's curves are
        not mixed with the old ones.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.checkpoint.is_file() and any(self.run_dir.glob("events.out.*")):
            aside = self.run_dir.with_name(f"{self.run_dir.name}.attempt-{int(time.time())}")
            aside.mkdir()
            for path in self.run_dir.iterdir():
                if path.name != LOCK_FILE:
                    shutil.move(str(path), aside / path.name)

    def hold_lock(self, pid: int, **details: Any) -> None:
        """Mark the run as running in process ``pid`` on this host (or as ``details`` say)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.run_dir / LOCK_FILE, {**_holder(pid), **details})

    def record_exit(self, returncode: int, started: float) -> None:
        """Write ``sweep_status.json`` and release the lock."""
        previous = self.last_status() or {}
        status = {
            "returncode": returncode,
            "attempts": int(previous.get("attempts", 0)) + 1,
            "wall_time_s": round(time.time() - started, 1),
            "log": str(self.log),
        }
        write_json(self.run_dir / STATUS_FILE, status)
        (self.run_dir / LOCK_FILE).unlink(missing_ok=True)


@dataclasses.dataclass
class Sweep:
    """Recipes x grid overrides x seeds, logged under ``out``.

    Args:
        recipes: recipe files or globs (``recipes/minigrid/mt3/*/{dense,gmp}.yaml`` needs the
            shell's brace expansion; ``*`` and ``**`` are expanded here).
        seeds: the seeds of every condition.
        grid: ``{option: [values]}``; every combination is a condition of every recipe.
        out: the save directory (run folders ``<out>/<condition>/seed<N>``), relative to the
            working directory unless absolute.
        overrides: fixed ``{option: value}`` settings added to every run (e.g. a shorter budget).

    Raises:
        ValueError: no recipe matches, a recipe is missing, no seeds, or two recipes map to one
            condition.

    Examples:
        >>> import tempfile
        >>> recipe = Path(tempfile.mkdtemp()) / "recipes" / "dense.yaml"
        >>> recipe.parent.mkdir()
        >>> _ = recipe.write_text("extends: minigrid/mt3/mtppo/dense.yaml")
        >>> grid = {"model.init_args.lr": ["1e-3", "3e-4"]}
        >>> sweep = Sweep([str(recipe)], seeds=[0, 1], grid=grid)
        >>> [run.name for run in sweep.runs()]  # doctest: +NORMALIZE_WHITESPACE
        ['dense@lr=1e-3/seed0', 'dense@lr=1e-3/seed1', 'dense@lr=3e-4/seed0',
         'dense@lr=3e-4/seed1']
        >>> sweep.runs()[0].state()
        'queued'
    """

    recipes: list[str]
    seeds: list[int]
    grid: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    out: str = "runs"
    overrides: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("A sweep needs at least one seed (e.g. --seeds 0-2).")
        if any(not isinstance(s, int) or s < 0 for s in self.seeds):
            raise ValueError(f"seeds {self.seeds!r}: allowed are non-negative integers.")
        values = [v for vs in self.grid.values() for v in vs] + list(self.overrides.values())
        if any("/" in value for value in values):
            raise ValueError(
                f"setting values name run folders and may not hold '/': {values!r}; use a "
                "recipe file for such settings."
            )
        for key in [*self.grid, *self.overrides]:
            if key.endswith((".seed", "logger.init_args.save_dir", "logger.init_args.name")):
                raise ValueError(
                    f"{key!r} is set by the sweep itself (use --seeds and --out), not by a grid "
                    "or an override."
                )
        self.recipe_paths()

    def recipe_paths(self) -> list[Path]:
        """The recipe files, globs expanded, in the order given."""
        paths: list[Path] = []
        for pattern in self.recipes:
            matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else []
            if glob.has_magic(pattern) and not matches:
                raise ValueError(f"recipe pattern {pattern!r} matches no file.")
            for match in matches or [pattern]:
                path = Path(match)
                if not path.is_file():
                    raise ValueError(f"No recipe at {str(path)!r}.")
                if path.suffix not in {".yaml", ".yml"}:
                    raise ValueError(f"Recipe {str(path)!r} is not a .yaml file.")
                if path not in paths:
                    paths.append(path)
        if not paths:
            raise ValueError("A sweep needs at least one recipe.")
        return paths

    def runs(self) -> list[SweepRun]:
        """Every (condition, seed), conditions in recipe then grid order, seeds innermost.

        A condition is the recipe's run folder name, then ``@<option>=<value>`` for every
        ``overrides`` and grid setting: runs of other settings never share folders, so a
        finished run is only skipped for the settings it was trained with.
        """
        runs: list[SweepRun] = []
        conditions: dict[str, Path] = {}
        combos = list(itertools.product(*self.grid.values()))
        # Labels name an option by its last part unless two options share it.
        keys = [*self.overrides, *self.grid]
        last = [key.split(".")[-1] for key in keys]
        label_of = {key: key if last.count(k) > 1 else k for key, k in zip(keys, last, strict=True)}
        fixed = "".join(f"@{label_of[key]}={value}" for key, value in self.overrides.items())
        for recipe in self.recipe_paths():
            for combo in combos:
                chosen = tuple(zip(self.grid, combo, strict=True))
                label = fixed + "".join(f"@{label_of[key]}={value}" for key, value in chosen)
                condition = _condition_of(recipe) + label
                if conditions.setdefault(condition, recipe) != recipe:
                    raise ValueError(
                        f"Recipes {str(conditions[condition])!r} and {str(recipe)!r} would share "
                        f"the run folders of condition {condition!r}; keep recipes under "
                        "recipes/ or give them different names."
                    )
                overrides = (*self.overrides.items(), *chosen)
                for seed in self.seeds:
                    runs.append(SweepRun(recipe, condition, seed, overrides, Path(self.out)))
        return runs

    def save(self, path: str | Path) -> None:
        """Write the sweep as YAML (what :meth:`load` reads)."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(yaml.safe_dump(dataclasses.asdict(self), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path) -> Sweep:
        """Read a sweep YAML file.

        Raises:
            ValueError: unknown keys, or the values :class:`Sweep` refuses.
        """
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ValueError(f"cannot read the sweep file {path}: {error}") from error
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a sweep file is a mapping of recipes, seeds, grid, ...")
        allowed = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"{path}: unknown sweep keys {unknown}; allowed: {sorted(allowed)}.")
        if isinstance(data.get("seeds"), str | int):
            data["seeds"] = parse_seeds(str(data["seeds"]))
        if isinstance(data.get("recipes"), str):
            data["recipes"] = [data["recipes"]]
        for key, kind in (("recipes", str), ("seeds", int)):
            if not isinstance(data.get(key), list) or not all(
                isinstance(item, kind) for item in data[key]
            ):
                raise ValueError(f"{path}: {key} must be a list of {kind.__name__}s.")
        data["grid"] = {k: [str(v) for v in vs] for k, vs in (data.get("grid") or {}).items()}
        data["overrides"] = {k: str(v) for k, v in (data.get("overrides") or {}).items()}
        return cls(**data)
