"""``torchrl-sparse evaluate``: evaluate a checkpoint as training does, without touching the run.

```bash
torchrl-sparse evaluate runs/minigrid/mt3/mtppo/dense/seed0          # its checkpoints/last.ckpt
torchrl-sparse evaluate --ckpt_path path/last.ckpt --episodes 100 --no-deterministic
torchrl-sparse evaluate runs/minigrid/mt3/mtppo/dense/seed0 --video videos/
```

The module (:class:`~torchrl_sparse.lightning.MultiTaskPPO` or
:class:`~torchrl_sparse.lightning.MultiTaskSAC`, read from the checkpoint's hyper-parameters,
else from the run's ``config.yaml``) is rebuilt with Lightning's ``load_from_checkpoint`` and
evaluated by its own ``evaluate()``: the numbers are those training logs as
``charts/eval/<metric>/<task>`` and ``charts/eval/<metric>_mean``, here for ``--episodes``
episodes per task with greedy (``--deterministic``) or sampled (``--no-deterministic``)
actions (default: the run's ``eval_episodes_per_task`` and ``eval_deterministic``).

``--seed`` seeds torch (the sampled actions) and, as in training, the evaluation environments
(``seed + 10,000 + frames``); the default is the run's seed, so a deterministic evaluation of a
checkpoint written where training evaluated (e.g. at the end, with evaluations due there)
repeats the numbers training logged. The replay buffer a SAC
checkpoint references is not loaded (evaluation does not need it). The masks of a sparse
checkpoint are applied to its weights (stored masked already) and its sparsity reported.

A table goes to stdout and a JSON file to ``--out`` (default:
``<run>/eval/<checkpoint>-frame<frames>-<deterministic|sampled>-seed<seed>-<N>ep.json``); the
run's TensorBoard events and checkpoints are left untouched. ``--video DIR`` then records
``--video_episodes`` more episodes of every MiniGrid task (the same policy and actions, one
environment per task) with the environment's own renderer, as ``DIR/<task>-episode<k>.gif``
(Pillow; MetaWorld needs an OpenGL context and is not recorded). Bad input prints one
``error:`` line and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from tensordict import TensorDictBase
from torchrl.envs import Transform

from torchrl_sparse.commands import OneLineErrorParser
from torchrl_sparse.lightning.base import MultiTaskRLModule
from torchrl_sparse.sparse.targets import find_layers

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["CheckpointError", "evaluate_checkpoint", "find_checkpoint", "load_module", "main"]

#: The modules a checkpoint may hold, by class name (resolved lazily: SAC imports MetaWorld).
MODULE_CLASSES = ("MultiTaskPPO", "MultiTaskSAC")
#: Pixels per grid cell of the recorded frames (MiniGrid renders 32 by default).
VIDEO_TILE_PIXELS = 16
VIDEO_FRAME_MS = 100


class CheckpointError(ValueError):
    """A path that is not an evaluable checkpoint of a multi-task RL run, or a bad request."""


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint to evaluate: ``path`` itself, or a run folder's ``checkpoints/last.ckpt``.

    Args:
        path: a checkpoint file, a run folder (``runs/<recipe>/seed<N>``) or its
            ``checkpoints`` folder.

    Raises:
        CheckpointError: ``path`` does not exist, or is a folder without ``last.ckpt``.

    Examples:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> (run / "checkpoints").mkdir()
        >>> _ = (run / "checkpoints" / "last.ckpt").write_bytes(b"")
        >>> find_checkpoint(run) == run / "checkpoints" / "last.ckpt"
        True
        >>> find_checkpoint(run / "nothing")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        torchrl_sparse.lightning.evaluate.CheckpointError: .../nothing does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist.")
    if path.is_file():
        return path
    for candidate in (path / "checkpoints" / "last.ckpt", path / "last.ckpt"):
        if candidate.is_file():
            return candidate
    raise CheckpointError(
        f"No checkpoint in {path}: expected {path / 'checkpoints' / 'last.ckpt'} (a run folder) "
        "or a .ckpt file."
    )


def _run_folder(checkpoint: Path) -> Path:
    """The run folder of a checkpoint: the parent of its ``checkpoints`` folder, else its own."""
    parent = checkpoint.parent
    return parent.parent if parent.name == "checkpoints" else parent


def _module_class(hparams: dict[str, Any], run: Path) -> type[MultiTaskRLModule]:
    """The class that wrote a checkpoint, from its hyper-parameters or the run's config.yaml.

    LightningCLI records ``_class_path``; a ``Trainer.fit`` checkpoint is recognised by its
    hyper-parameters, which are arguments of one module class only (PPO counts steps per task,
    SAC frames). Classes are imported only as needed: the PPO path works without MetaWorld.
    """
    class_path = hparams.get("_class_path")
    config = run / "config.yaml"
    if class_path is None and config.is_file():
        class_path = ((yaml.safe_load(config.read_text()) or {}).get("model") or {}).get(
            "class_path"
        )
    if class_path is not None:
        name = str(class_path).rsplit(".", 1)[-1]
        if not str(class_path).startswith("torchrl_sparse.") or name not in MODULE_CLASSES:
            raise CheckpointError(
                f"The checkpoint holds a {class_path}; evaluate reads the multi-task RL modules "
                f"of torchrl_sparse.lightning: {list(MODULE_CLASSES)}."
            )
        return _import(name)
    arguments = {key for key in hparams if not key.startswith("_")}
    for name in MODULE_CLASSES:
        cls = _import(name)
        if arguments <= set(inspect.signature(cls).parameters):
            return cls
    raise CheckpointError(
        f"Cannot tell which module wrote the checkpoint: it records no class, there is no "
        f"{config}, and its hyper-parameters {sorted(arguments)} are not those of "
        f"{list(MODULE_CLASSES)}."
    )


def _import(name: str) -> type[MultiTaskRLModule]:
    import torchrl_sparse.lightning as lightning

    try:
        return getattr(lightning, name)
    except ModuleNotFoundError as error:  # its extra is not installed; the message says which
        raise CheckpointError(f"{name} cannot be imported: {error}") from error


def _read(checkpoint: Path) -> dict[str, Any]:
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise CheckpointError(
            f"{checkpoint} is not a readable checkpoint ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''})."
        ) from error
    if not isinstance(state, dict) or not {"state_dict", "hyper_parameters"} <= state.keys():
        raise CheckpointError(
            f"{checkpoint} is not a Lightning checkpoint of a module with hyper-parameters "
            "(no 'state_dict' or 'hyper_parameters')."
        )
    return state


def _apply_masks(module: MultiTaskRLModule, checkpoint: dict[str, Any]) -> float | None:
    """Zero the pruned weights of a sparse checkpoint; its sparsity (``sparsity/total``).

    The masks are those the checkpoint's ``SparsityCallback`` saved, keyed like the loss's
    prunable tensors (``actor_network.<layer>.weight``); target copies follow their online
    tensor. Returns ``None`` for a dense checkpoint.
    """
    masks: dict[str, torch.Tensor] = {}
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if key.startswith("SparsityCallback") and "masks" in state:
            masks.update(state["masks"])
    if not masks:
        return None
    tensors: dict[str, list[torch.Tensor]] = {}
    for layer in find_layers(module.loss_module):
        for kind, param in layer.params.items():
            copy = layer.copies.get(kind)
            tensors[f"{layer.name}.{kind}"] = [param] if copy is None else [param, copy]
    unknown = sorted(set(masks) - set(tensors))
    if unknown:
        raise CheckpointError(f"The checkpoint's masks name tensors the module lacks: {unknown}.")
    pruned = total = 0
    with torch.no_grad():
        for name, mask in masks.items():
            for tensor in tensors[name]:
                tensor.mul_(mask.to(tensor.dtype))
            if name.endswith(".weight"):
                pruned += int(mask.numel() - mask.sum())
                total += mask.numel()
    return pruned / total if total else 0.0


def load_module(checkpoint: str | Path, **overrides: Any) -> tuple[MultiTaskRLModule, float | None]:
    """Rebuild a multi-task RL module from a checkpoint, for evaluation.

    ``load_from_checkpoint`` on the class that wrote it (see :func:`evaluate_checkpoint`),
    on the CPU, without the replay buffer a SAC checkpoint references; the masks of a sparse
    checkpoint are applied.

    Args:
        checkpoint: the checkpoint file.
        overrides: hyper-parameters to change, e.g. ``eval_episodes_per_task=100``.

    Returns:
        The module (its ``frames`` restored) and the checkpoint's sparsity (``None`` if dense).

    Raises:
        CheckpointError: not a readable checkpoint of a module of torchrl_sparse.lightning.

    Examples:
        >>> import tempfile
        >>> import lightning.pytorch as pl
        >>> from torchrl_sparse.lightning import MultiTaskPPO
        >>> trainer = pl.Trainer(logger=False, enable_checkpointing=False)
        >>> trainer.strategy.connect(MultiTaskPPO("MT3"))
        >>> path = Path(tempfile.mkdtemp()) / "untrained.ckpt"
        >>> trainer.save_checkpoint(path)
        >>> module, sparsity = load_module(path, eval_episodes_per_task=3)
        >>> type(module).__name__, module.hparams.eval_episodes_per_task, sparsity
        ('MultiTaskPPO', 3, None)
    """
    checkpoint = Path(checkpoint)
    state = _read(checkpoint)
    cls = _module_class(state["hyper_parameters"], _run_folder(checkpoint))
    if (state.get("torchrl_sparse") or {}).get("replay_buffer") is not None:
        state["torchrl_sparse"]["replay_buffer"] = None
    stripped = io.BytesIO()
    torch.save(state, stripped)
    stripped.seek(0)
    module = cls.load_from_checkpoint(stripped, map_location="cpu", weights_only=True, **overrides)
    return module, _apply_masks(module, state)


def evaluate_checkpoint(
    checkpoint: str | Path,
    episodes: int | None = None,
    deterministic: bool | None = None,
    seed: int | None = None,
    video_dir: str | Path | None = None,
    video_episodes: int = 1,
) -> dict[str, Any]:
    """Evaluate a checkpoint with its module's own ``evaluate()``.

    Args:
        checkpoint: a checkpoint file (see :func:`find_checkpoint` for run folders).
        episodes: episodes per task (default: the run's ``eval_episodes_per_task``).
        deterministic: greedy actions, else sampled (default: the run's ``eval_deterministic``).
        seed: seeds torch and the evaluation environments (default: the run's seed).
        video_dir: record ``video_episodes`` more episodes of every task as GIFs here
            (MiniGrid only).
        video_episodes: episodes per task to record.

    Returns:
        The report written as JSON: ``checkpoint``, ``algorithm``, ``frames``, ``tasks``,
        ``metric``, ``episodes_per_task``, ``deterministic``, ``seed``, ``sparsity``,
        ``scalars`` (``{"charts/eval/...": value}``, the tags training logs) and ``videos``.

    Raises:
        CheckpointError: see :func:`load_module`; also ``video_dir`` for a MetaWorld module.

    Examples:
        >>> import tempfile
        >>> import lightning.pytorch as pl
        >>> from torchrl_sparse.lightning import MultiTaskPPO
        >>> module = MultiTaskPPO("MT3", eval_episodes_per_task=1, eval_deterministic=True)
        >>> trainer = pl.Trainer(logger=False, enable_checkpointing=False)
        >>> trainer.strategy.connect(module)
        >>> path = Path(tempfile.mkdtemp()) / "untrained.ckpt"
        >>> trainer.save_checkpoint(path)
        >>> report = evaluate_checkpoint(path)
        >>> report["algorithm"], report["frames"], report["episodes_per_task"]
        ('MultiTaskPPO', 0, 1)
        >>> report["scalars"]["charts/eval/normalized_return_mean"]
        0.0
    """
    overrides: dict[str, Any] = {}
    if episodes is not None:
        overrides["eval_episodes_per_task"] = episodes
    if deterministic is not None:
        overrides["eval_deterministic"] = deterministic
    if seed is not None:
        overrides["seed"] = seed
    module, sparsity = load_module(checkpoint, **overrides)
    if video_dir is not None:
        _check_video(module)
    torch.manual_seed(module.hparams.seed)
    scalars = module.evaluate()
    videos = [] if video_dir is None else _record(module, Path(video_dir), video_episodes)
    return {
        "checkpoint": str(checkpoint),
        "algorithm": type(module).__name__,
        "frames": int(module.frames),
        "tasks": list(module.task_names),
        "metric": module.eval_metric,
        "episodes_per_task": int(module.hparams.eval_episodes_per_task),
        "deterministic": bool(module.hparams.eval_deterministic),
        "seed": int(module.hparams.seed),
        "sparsity": sparsity,
        "scalars": scalars,
        "videos": videos,
    }


# ---------------------------------------------------------------------- video
def _check_video(module: MultiTaskRLModule) -> None:
    if module.benchmark != "minigrid":
        raise CheckpointError(
            f"--video records MiniGrid episodes; this {type(module).__name__} checkpoint runs "
            f"on {module.benchmark}, whose rendering needs an OpenGL context: not supported."
        )
    if importlib.util.find_spec("PIL") is None:
        raise CheckpointError("--video writes GIFs with Pillow: pip install pillow.")


class _EpisodeRecorder(Transform):
    """Render the first ``episodes`` episodes of every task of a MiniGrid suite to GIFs.

    ``render(slot)`` draws the slot's sub-environment after every reset and step; an episode
    is written when it ends.
    """

    def __init__(
        self,
        directory: Path,
        task_names: list[str],
        episodes: int,
        render: Callable[[int], Image.Image],
    ) -> None:
        super().__init__()
        self.directory = directory
        self.task_names = task_names
        self.episodes = episodes
        self.render = render
        self.recorded = [0] * len(task_names)
        self.videos: list[dict[str, Any]] = []
        self._frames: dict[int, list[Image.Image]] = {}

    def _reset(
        self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase
    ) -> TensorDictBase:
        reset = None if tensordict is None else tensordict.get("_reset", None)
        tasks = tensordict_reset["task_id"].view(-1).tolist()
        for slot, task in enumerate(tasks):
            if (reset is None or reset.view(-1)[slot]) and self.recorded[task] < self.episodes:
                self._frames[slot] = [self.render(slot)]
        return tensordict_reset

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        done = next_tensordict["done"].view(-1).tolist()
        for slot in list(self._frames):
            self._frames[slot].append(self.render(slot))
            task = int(next_tensordict["task_id"][slot])
            if done[slot] and self.recorded[task] < self.episodes:
                self._write(slot, task, float(next_tensordict["episode_return"][slot]))
            elif done[slot]:
                del self._frames[slot]
        return next_tensordict

    def _write(self, slot: int, task: int, episode_return: float) -> None:
        frames = self._frames.pop(slot)
        name = self.task_names[task]
        path = self.directory / f"{name}-episode{self.recorded[task]}.gif"
        frames[0].save(
            path, save_all=True, append_images=frames[1:], duration=VIDEO_FRAME_MS, loop=0
        )
        self.videos.append(
            {
                "task": name,
                "episode": self.recorded[task],
                "return": episode_return,
                "steps": len(frames) - 1,
                "path": str(path),
            }
        )
        self.recorded[task] += 1


def _record(module: MultiTaskRLModule, directory: Path, episodes: int) -> list[dict[str, Any]]:
    """Record ``episodes`` episodes of every task, acting as the evaluation does."""
    from PIL import Image

    from torchrl_sparse.envs import make_minigrid_env

    env = make_minigrid_env(module.hparams.suite, seed=module.hparams.seed + 10_000 + module.frames)
    suite = env.base_env

    def render(slot: int) -> Image.Image:
        sub_env = suite._active[slot]  # the raw MiniGrid environment the slot runs
        sub_env.render_mode, sub_env.tile_size = "rgb_array", VIDEO_TILE_PIXELS
        # A palette image: a third of the memory of RGB, and what a GIF stores anyway.
        return Image.fromarray(sub_env.render()).quantize(method=Image.Quantize.FASTOCTREE)

    directory.mkdir(parents=True, exist_ok=True)
    recorder = _EpisodeRecorder(directory, module.task_names, episodes, render)
    env.append_transform(recorder)
    evaluated = module.hparams.eval_episodes_per_task
    module.hparams.eval_episodes_per_task = episodes  # what run_episodes runs
    try:
        module.run_episodes(env, ("episode_return",))
    finally:
        module.hparams.eval_episodes_per_task = evaluated
        env.close()
    return recorder.videos


# ---------------------------------------------------------------------- command line
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="torchrl-sparse evaluate",
        description="Evaluate a checkpoint: N episodes per task, the numbers training logs as "
        "charts/eval/..., a table on stdout and a JSON file.",
    )
    parser.add_argument(
        "run",
        nargs="?",
        type=Path,
        metavar="RUN",
        help="a run folder (its checkpoints/last.ckpt) or a .ckpt",
    )
    parser.add_argument("--ckpt_path", type=Path, help="the checkpoint (instead of RUN)")
    parser.add_argument(
        "--episodes", type=_positive_int, help="episodes per task (default: the run's)"
    )
    parser.add_argument(
        "--deterministic",
        action=argparse.BooleanOptionalAction,
        help="greedy actions, or sampled with --no-deterministic (default: the run's)",
    )
    parser.add_argument(
        "--seed", type=int, help="seeds torch and the evaluation environments (default: the run's)"
    )
    parser.add_argument(
        "--out", type=Path, help="the JSON file (default: <run>/eval/<checkpoint>-....json)"
    )
    parser.add_argument(
        "--video", type=Path, metavar="DIR", help="record MiniGrid episodes as GIFs in DIR"
    )
    parser.add_argument(
        "--video_episodes", type=_positive_int, default=1, help="episodes per task to record"
    )
    return parser


def _table(report: dict[str, Any]) -> str:
    """Tasks as rows, evaluation tags as columns (the module's metric first), then the mean."""
    tags = [report["metric"]]
    for key in report["scalars"]:
        tag = key.removeprefix("charts/eval/").rsplit("/", 1)[0]
        if "/" in key.removeprefix("charts/eval/") and tag not in tags:
            tags.append(tag)
    width = max(len(task) for task in [*report["tasks"], "mean over tasks"])
    lines = [f"{'task':<{width}}  " + "  ".join(f"{tag:>18}" for tag in tags)]
    for task in report["tasks"]:
        values = [report["scalars"][f"charts/eval/{tag}/{task}"] for tag in tags]
        lines.append(f"{task:<{width}}  " + "  ".join(f"{value:>18.3f}" for value in values))
    means = [report["scalars"][f"charts/eval/{tag}_mean"] for tag in tags]
    lines.append(f"{'mean over tasks':<{width}}  " + "  ".join(f"{m:>18.3f}" for m in means))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """``torchrl-sparse evaluate``: parse ``argv``, evaluate, print and write the report.

    Returns:
        The exit status: 0, or 2 (with one ``error:`` line on stderr) for bad input.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.run is None) == (args.ckpt_path is None):
        parser.error("give a run folder or checkpoint, or --ckpt_path, exactly once")
    try:
        checkpoint = find_checkpoint(args.ckpt_path or args.run)
        report = evaluate_checkpoint(
            checkpoint,
            episodes=args.episodes,
            deterministic=args.deterministic,
            seed=args.seed,
            video_dir=args.video,
            video_episodes=args.video_episodes,
        )
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    mode = "deterministic" if report["deterministic"] else "sampled"
    out = args.out or _run_folder(checkpoint) / "eval" / (
        f"{checkpoint.stem}-frame{report['frames']}-{mode}-seed{report['seed']}-"
        f"{report['episodes_per_task']}ep.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    sparsity = "" if report["sparsity"] is None else f", sparsity {report['sparsity']:.3f}"
    print(f"{report['algorithm']} checkpoint {checkpoint}, frame {report['frames']:,}{sparsity}")
    print(f"{report['episodes_per_task']} episodes per task, {mode} actions, seed {report['seed']}")
    print(_table(report))
    for video in report["videos"]:
        print(f"Video: {video['path']}  (return {video['return']:.3f}, {video['steps']} steps)")
    print(f"Written: {out}")
    return 0
