"""Expert datasets for behaviour cloning: an expert's transitions on disk, with its env's specs.

:func:`collect_expert_dataset` rolls a policy (a trained actor, or any TensorDict module writing
``"action"``) out in a TorchRL environment and stores ``observation``, ``action``,
``("next", "reward")`` and ``("next", "done")`` of every transition in a TorchRL replay-buffer
storage dumped to a directory (``ReplayBuffer.dumps``), next to a metadata file
(``expert_dataset.json``) that records the environment id, the number of transitions, the
expert's episode returns and mean return, and the environment's observation and action specs in
a comparable form (:func:`spec_summary`). :meth:`ExpertDataset.load` reads it back and, given
the environment a policy is about to be cloned in, refuses a dataset recorded in an environment
whose specs differ: a CartPole dataset cannot silently train an Acrobot policy.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.data import LazyMemmapStorage, LazyTensorStorage, ReplayBuffer, TensorSpec
from torchrl.envs import EnvBase, ExplorationType, set_exploration_type
from torchrl.envs.batched_envs import BatchedEnvBase
from torchrl.envs.utils import step_mdp

__all__ = [
    "METADATA_FILE",
    "ExpertDataset",
    "collect_expert_dataset",
    "env_id",
    "env_specs",
    "spec_summary",
]

METADATA_FILE = "expert_dataset.json"
"""Name of the metadata file in a dataset directory."""

FORMAT = "torchrl_sparse.expert_dataset"
VERSION = 1

# What behaviour cloning (and reporting the expert) reads; the rest of a rollout is not stored.
DATASET_KEYS = ("observation", "action", ("next", "reward"), ("next", "done"))

# Fields of spec_summary, in the order mismatches are reported.
_SUMMARY_FIELDS = ("class", "shape", "dtype", "n", "low", "high")

# Environment steps per env.rollout call (times the env's batch size per chunk in memory).
_CHUNK_STEPS = 1024


def spec_summary(spec: TensorSpec, batch_dims: int = 0) -> dict[str, Any]:
    """A JSON-ready description of ``spec`` that two environments can be compared by.

    Holds the spec's class name, its shape without the ``batch_dims`` leading (batch)
    dimensions, its dtype, ``n`` for discrete specs and ``low``/``high`` (nested lists) for
    bounded ones.

    Examples:
        >>> from torchrl.data import Bounded, Categorical
        >>> spec_summary(Categorical(3))
        {'class': 'Categorical', 'shape': [], 'dtype': 'torch.int64', 'n': 3}
        >>> spec_summary(Bounded(-2.0, 2.0, shape=(5, 1)), batch_dims=1)
        {'class': 'BoundedContinuous', 'shape': [1], 'dtype': 'torch.float32', 'low': [-2.0], 'high': [2.0]}
    """  # noqa: E501
    shape = list(spec.shape[batch_dims:])
    summary: dict[str, Any] = {
        "class": type(spec).__name__,
        "shape": shape,
        "dtype": str(spec.dtype),
    }
    space = getattr(spec, "space", None)
    n = getattr(space, "n", None)
    if isinstance(n, int):
        summary["n"] = n
    low, high = getattr(space, "low", None), getattr(space, "high", None)
    if isinstance(low, torch.Tensor) and isinstance(high, torch.Tensor):
        first = (0,) * batch_dims  # bounds are the same for every copy of a batched env
        summary["low"] = low.expand(spec.shape)[first].tolist()
        summary["high"] = high.expand(spec.shape)[first].tolist()
    # What a JSON round trip gives back, so a summary compares equal to a loaded one.
    return json.loads(json.dumps(summary))


def env_specs(env: EnvBase) -> dict[str, dict[str, Any]]:
    """:func:`spec_summary` of ``env``'s ``observation_spec["observation"]`` and ``action_spec``.

    Examples:
        >>> from torchrl.envs import GymEnv
        >>> env = GymEnv("CartPole-v1", categorical_action_encoding=True)
        >>> env_specs(env)["action_spec"]
        {'class': 'Categorical', 'shape': [], 'dtype': 'torch.int64', 'n': 2}
    """
    batch_dims = len(env.batch_size)
    if "observation" not in env.observation_spec.keys(True):
        raise ValueError(
            "Expert datasets store the environment's 'observation' entry; its observation spec "
            f"has only {sorted(map(str, env.observation_spec.keys()))}."
        )
    return {
        "observation_spec": spec_summary(env.observation_spec["observation"], batch_dims),
        "action_spec": spec_summary(env.action_spec, batch_dims),
    }


def env_id(env: EnvBase) -> str | None:
    """The id of ``env`` when it is known (a gym id, or ``MinAtar/<Game>-v1``), else ``None``."""
    if isinstance(env, BatchedEnvBase):  # SerialEnv, ParallelEnv: ask the copies
        if env.is_closed:
            return None  # not started: it cannot forward attributes yet
        try:
            names = getattr(env, "env_name", None)
        except Exception:  # a copy without env_name
            return None
        names = set(names) if isinstance(names, list) else {names}
        name = names.pop() if len(names) == 1 else None
        return name if isinstance(name, str) else None
    name = getattr(env, "env_name", None)  # GymEnv
    if isinstance(name, str):
        return name
    base = getattr(env, "base_env", env)
    game = getattr(base, "game", None)
    if type(base).__name__ == "MinAtarEnv" and isinstance(game, str):
        return f"MinAtar/{game}-v1"
    # GymWrapper around a gymnasium env, or around a vector env of copies of one.
    wrapped = getattr(base, "_env", None)
    for candidate in (wrapped, *(getattr(wrapped, "envs", None) or ())[:1]):
        name = getattr(getattr(candidate, "spec", None), "id", None)
        if isinstance(name, str):
            return name
    return None


def _episode_returns(
    data: TensorDictBase, running: torch.Tensor
) -> tuple[list[float], torch.Tensor]:
    """Returns of the episodes that end in ``data`` (``[*batch, time]``), and the running sums."""
    rewards = data["next", "reward"].reshape(*data.shape, -1).sum(-1).reshape(-1, data.shape[-1])
    dones = data["next", "done"].reshape(*data.shape, -1).any(-1).reshape(-1, data.shape[-1])
    finished: list[float] = []
    running = running.clone()
    for t in range(rewards.shape[-1]):
        running += rewards[:, t].double()
        done = dones[:, t]
        if done.any():
            finished += running[done].tolist()
            running[done] = 0.0
    return finished, running


def collect_expert_dataset(
    policy: TensorDictModuleBase,
    env: EnvBase,
    num_transitions: int,
    path: str | Path,
    deterministic: bool = True,
    seed: int | None = None,
) -> ExpertDataset:
    """Roll ``policy`` out in ``env`` for ``num_transitions`` transitions and save them at ``path``.

    The environment is stepped with ``env.rollout`` (auto-resetting finished episodes; a batched
    environment contributes one transition per copy and step, stored copy by copy so that each
    trajectory stays contiguous) until ``num_transitions`` transitions are collected. The
    expert's returns are those of the episodes that end within the collected transitions (the
    episode running at the end is left out of them).

    Args:
        policy: a TensorDict module reading the environment's data and writing ``"action"``.
        env: a TorchRL environment, batched or not; it stays open.
        num_transitions: transitions to store.
        path: directory to write (created; an existing dataset there is replaced).
        deterministic: act with ``ExplorationType.DETERMINISTIC`` (the mode of a probabilistic
            actor) rather than sampling (``ExplorationType.RANDOM``).
        seed: seeds the environment and, for the time of the collection, torch's generator
            (restored afterwards); ``None`` leaves both as they are.

    Returns:
        The dataset, as :meth:`ExpertDataset.load` would read it back.

    Raises:
        ValueError: for ``num_transitions < 1`` or an environment without ``"observation"``.

    Examples:
        >>> import tempfile
        >>> from tensordict.nn import TensorDictModule
        >>> from torchrl.envs import GymEnv
        >>> env = GymEnv("CartPole-v1", categorical_action_encoding=True)
        >>> # Push the cart toward the side the pole falls to: a near-perfect CartPole expert.
        >>> expert = TensorDictModule(
        ...     lambda obs: (obs[..., 2] + obs[..., 3] > 0).long(), ["observation"], ["action"]
        ... )
        >>> path = tempfile.mkdtemp()
        >>> data = collect_expert_dataset(expert, env, 600, path, seed=0)
        >>> len(data), data.observations.shape, data.actions.shape, data.expert_return
        (600, torch.Size([600, 4]), torch.Size([600]), 500.0)
        >>> ExpertDataset.load(path, env=env).metadata["env_id"]
        'CartPole-v1'
    """
    if num_transitions < 1:
        raise ValueError(f"num_transitions must be a positive int, got {num_transitions!r}.")
    specs = env_specs(env)
    path = Path(path)
    batch = max(1, env.batch_size.numel())
    steps = math.ceil(num_transitions / batch)
    chunks: list[TensorDictBase] = []
    returns: list[float] = []
    running = torch.zeros(batch, dtype=torch.float64)
    exploration = ExplorationType.DETERMINISTIC if deterministic else ExplorationType.RANDOM
    with torch.random.fork_rng(), set_exploration_type(exploration), torch.no_grad():
        if seed is not None:
            torch.manual_seed(seed)
            env.set_seed(seed)
        carry = env.reset()
        done_steps = 0
        while done_steps < steps:
            length = min(_CHUNK_STEPS, steps - done_steps)
            rollout = env.rollout(
                length,
                policy,
                auto_reset=False,
                tensordict=carry,
                break_when_any_done=False,
            )
            # Where the next chunk starts: the last step's next state, reset where it ended.
            carry = env.maybe_reset(step_mdp(rollout[..., -1], exclude_action=True))
            if rollout.ndim == 1:
                rollout = rollout.unsqueeze(0)  # [time] -> [1, time]
            finished, running = _episode_returns(rollout, running)
            returns += finished
            chunks.append(rollout.select(*DATASET_KEYS).reshape(-1, rollout.shape[-1]))
            done_steps += length
    # [copies, time] -> copy by copy, each trajectory contiguous.
    data = torch.cat(chunks, dim=1).reshape(-1)[:num_transitions]

    scratch = tempfile.mkdtemp(prefix="torchrl_sparse_expert_")
    try:
        buffer = ReplayBuffer(
            storage=LazyMemmapStorage(
                num_transitions, scratch_dir=scratch, existsok=True, auto_cleanup=False
            )
        )
        buffer.extend(data)
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        buffer.dumps(path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "env_id": env_id(env),
        "num_transitions": num_transitions,
        "expert_return": sum(returns) / len(returns) if returns else None,
        "expert_episodes": len(returns),
        "episode_returns": returns,
        "deterministic": deterministic,
        "seed": seed,
        **specs,
    }
    (path / METADATA_FILE).write_text(json.dumps(metadata, indent=1))
    return ExpertDataset(data, metadata, path)


class ExpertDataset:
    """Transitions of an expert (see :func:`collect_expert_dataset`), held in memory.

    Attributes:
        data: the transitions, a ``TensorDict`` of batch size ``[len(self)]`` with
            ``"observation"``, ``"action"``, ``("next", "reward")`` and ``("next", "done")``.
        metadata: the dataset's metadata (``env_id``, ``num_transitions``, ``expert_return``,
            ``expert_episodes``, ``episode_returns``, ``observation_spec``, ``action_spec``, ...).
        path: the directory it was read from or written to.

    Examples:
        >>> from tensordict import TensorDict
        >>> data = TensorDict({"observation": torch.zeros(5, 4), "action": torch.ones(5)}, [5])
        >>> dataset = ExpertDataset(data, {"expert_return": 12.5})
        >>> len(dataset), dataset.actions.tolist(), dataset.expert_return
        (5, [1.0, 1.0, 1.0, 1.0, 1.0], 12.5)
    """

    def __init__(
        self, data: TensorDictBase, metadata: dict[str, Any], path: Path | None = None
    ) -> None:
        self.data = data
        self.metadata = metadata
        self.path = path

    @classmethod
    def load(cls, path: str | Path, env: EnvBase | None = None) -> ExpertDataset:
        """Read the dataset saved at ``path``.

        Args:
            path: a directory written by :func:`collect_expert_dataset`.
            env: if given, the dataset must have been recorded in an environment with the same
                observation and action specs (see :meth:`check_env`).

        Raises:
            FileNotFoundError: if ``path`` holds no expert dataset.
            ValueError: if the dataset's specs differ from ``env``'s.
        """
        path = Path(path)
        meta_path = path / METADATA_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"No expert dataset at {path}: {METADATA_FILE} is missing (write one with "
                "torchrl_sparse.imitation.collect_expert_dataset)."
            )
        metadata = json.loads(meta_path.read_text())
        if metadata.get("format") != FORMAT:
            raise ValueError(f"{meta_path} is not an expert dataset's metadata.")
        dataset = cls(TensorDict({}, [0]), metadata, path)
        if env is not None:
            dataset.check_env(env)  # before reading the transitions
        length = int(metadata["num_transitions"])
        if length == 0:
            return dataset  # nothing stored (a storage cannot be empty)
        buffer = ReplayBuffer(storage=LazyTensorStorage(length))
        buffer.loads(path)
        if len(buffer) != length:
            raise ValueError(
                f"The expert dataset at {path} holds {len(buffer)} transitions; its metadata "
                f"says {length}."
            )
        dataset.data = buffer.storage.get(slice(0, length))
        return dataset

    def check_env(self, env: EnvBase) -> None:
        """Raise if ``env``'s observation or action spec differs from the dataset's.

        Raises:
            ValueError: naming every differing field with the dataset's and the environment's
                values.
        """
        actual = env_specs(env)
        differences = []
        for spec_name, expected in (
            ("observation_spec", self.metadata["observation_spec"]),
            ("action_spec", self.metadata["action_spec"]),
        ):
            found = actual[spec_name]
            extra = (set(expected) | set(found)) - set(_SUMMARY_FIELDS)
            fields = [*_SUMMARY_FIELDS, *sorted(extra)]
            for field in fields:
                if expected.get(field) != found.get(field):
                    differences.append(
                        f"{spec_name}.{field}: dataset {expected.get(field)!r}, "
                        f"environment {found.get(field)!r}"
                    )
        if differences:
            where = f" at {self.path}" if self.path is not None else ""
            raise ValueError(
                f"The expert dataset{where} (recorded in {self.metadata.get('env_id')!r}) does "
                f"not fit the environment {env_id(env)!r}: " + "; ".join(differences) + "."
            )

    def __len__(self) -> int:
        return self.data.shape[0]

    @property
    def observations(self) -> torch.Tensor:
        """Observations, ``[len(self), *observation_shape]``."""
        return self.data["observation"]

    @property
    def actions(self) -> torch.Tensor:
        """The expert's actions, ``[len(self), *action_shape]``."""
        return self.data["action"]

    @property
    def rewards(self) -> torch.Tensor:
        """Rewards of the transitions, ``[len(self), 1]``."""
        return self.data["next", "reward"]

    @property
    def dones(self) -> torch.Tensor:
        """Whether each transition ends an episode, ``[len(self), 1]``."""
        return self.data["next", "done"]

    @property
    def expert_return(self) -> float | None:
        """Mean return of the expert's episodes that ended in the dataset (``None``: none did)."""
        return self.metadata.get("expert_return")

    @property
    def env_id(self) -> str | None:
        """The id of the environment the dataset was recorded in, when known."""
        return self.metadata.get("env_id")

    def __repr__(self) -> str:
        return (
            f"ExpertDataset(env_id={self.env_id!r}, transitions={len(self)}, "
            f"expert_return={self.expert_return!r})"
        )
