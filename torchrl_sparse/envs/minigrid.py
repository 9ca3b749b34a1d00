"""Multi-task MiniGrid suites (MT3, MT5, MT7) as one batched TorchRL environment.

The suites follow MOORE (Hendawy et al. 2024) and Todorov et al. (2025). All sub-environments
live in a single :class:`~torchrl.envs.EnvBase` with ``batch_size=[n_envs]`` that steps raw
MiniGrid environments in a Python loop and builds one TensorDict per step, so TorchRL's
per-env overhead is paid once per step instead of once per task.
"""

from __future__ import annotations

import pickle
from typing import Any, Literal

import gymnasium as gym
import minigrid  # noqa: F401  (registers the MiniGrid-* ids with gymnasium)
import numpy as np
import torch
from tensordict import TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import Compose, EnvBase, TransformedEnv

from torchrl_sparse._compat import env_output
from torchrl_sparse.envs.minigrid_view import (
    check_fast_observations,
    use_fast_observations,
    without_fast_observations,
)
from torchrl_sparse.transforms import MiniGridObservation, TaskOneHot

__all__ = [
    "MINIGRID_RETURN_NORMALIZERS",
    "MINIGRID_SUITES",
    "MiniGridMultiTaskEnv",
    "make_minigrid_env",
    "minigrid_task_ids",
]

MINIGRID_SUITES: dict[str, tuple[str, ...]] = {
    "MT3": ("LavaGapS7", "RedBlueDoors-6x6", "MemoryS11"),
    "MT5": ("DoorKey-6x6", "LavaGapS7", "RedBlueDoors-6x6", "DistShift1", "MemoryS11"),
    "MT7": (
        "DoorKey-6x6",
        "DistShift1",
        "RedBlueDoors-6x6",
        "LavaGapS7",
        "MemoryS11",
        "SimpleCrossingS9N2",
        "MultiRoom-N2-S4",
    ),
}
"""Task names per suite, in task-id order (the gymnasium id is ``MiniGrid-<name>-v0``)."""

MINIGRID_RETURN_NORMALIZERS: dict[str, float] = {
    "DoorKey-6x6": 0.9725,
    "DistShift1": 0.9607,
    "RedBlueDoors-6x6": 0.9900,
    "LavaGapS7": 0.9633,
    "MemoryS11": 0.9777,
    "SimpleCrossingS9N2": 0.9583,
    "MultiRoom-N2-S4": 0.8875,
}
"""Best achievable return per task; reported returns are divided by it."""

_NUM_ACTIONS = 7
_SAMPLING_MODES = ("lockstep", "random")
_STATE_KEYS = frozenset(
    {
        "suite",
        "envs_per_task",
        "task_sampling",
        "envs",
        "observation",
        "task",
        "episode_return",
        "episode_length",
        "seed",
        "rng",
        "pending_seed",
    }
)


def minigrid_task_ids(suite: str) -> list[str]:
    """Gymnasium ids of the tasks of a MiniGrid suite, in task-id order.

    Args:
        suite: one of ``"MT3"``, ``"MT5"``, ``"MT7"``.

    Returns:
        The ``MiniGrid-...-v0`` ids.

    Raises:
        ValueError: if the suite is unknown.

    Examples:
        >>> minigrid_task_ids("MT3")
        ['MiniGrid-LavaGapS7-v0', 'MiniGrid-RedBlueDoors-6x6-v0', 'MiniGrid-MemoryS11-v0']
    """
    if suite not in MINIGRID_SUITES:
        raise ValueError(f"Unknown MiniGrid suite {suite!r}; allowed: {sorted(MINIGRID_SUITES)}.")
    return [f"MiniGrid-{name}-v0" for name in MINIGRID_SUITES[suite]]


class MiniGridMultiTaskEnv(EnvBase):
    """A multi-task MiniGrid suite stepped as one batched TorchRL environment.

    The environment holds ``n_tasks * envs_per_task`` sub-environment slots and emits raw
    MiniGrid data; use :func:`make_minigrid_env` to get the float channels-first observation
    and the task one-hot through transforms.

    Keys (batch shape ``[n_envs]``; the same keys appear under ``"next"`` after a step):

    - ``"observation"``: ``uint8 [n_envs, 7, 7, 3]``, the egocentric symbolic grid
      (``ImgObsWrapper``'s ``image``).
    - ``"task_id"``: ``int64 [n_envs]``, the task each slot is running.
    - ``"episode_return"``: ``float32 [n_envs, 1]``, return of the running episode so far
      (at a ``done`` step it is the final episode return; reset to 0 on reset).
    - ``"episode_length"``: ``int64 [n_envs, 1]``, steps in the running episode so far.
    - ``"normalized_return"``: ``float32 [n_envs, 1]``, ``episode_return`` divided by the best
      achievable return of the slot's task (:data:`MINIGRID_RETURN_NORMALIZERS`).
    - ``"action"``: ``int64 [n_envs]`` in ``[0, 7)``; ``"reward"``: ``float32 [n_envs, 1]``;
      ``"done"``, ``"terminated"``, ``"truncated"``: ``bool [n_envs, 1]``.

    Sub-environments do not reset themselves: as for any batched TorchRL env, finished slots are
    reset through ``"_reset"`` (``env.step_and_maybe_reset``, collectors, ``rollout``).
    :meth:`simulator_state` and :meth:`load_simulator_state` checkpoint and resume the running
    episodes exactly.

    Args:
        suite: ``"MT3"``, ``"MT5"`` or ``"MT7"``.
        envs_per_task: sub-environments per task; ``n_envs = n_tasks * envs_per_task``.
        task_sampling: ``"lockstep"`` (MOORE: slot ``i`` always runs task
            ``i // envs_per_task``, so every task is stepped in every step) or ``"random"``
            (Todorov: each slot draws a task uniformly at random at every episode start).
        seed: seeds task sampling and every sub-environment; equal seeds give equal rollouts.
        device: device of the emitted tensors.
        fast_observations: compute the egocentric view with
            :func:`~torchrl_sparse.envs.minigrid_view.egocentric_obs` (identical values, several
            times faster than MiniGrid's own ``gen_obs``, which dominates the cost of a step).

    Raises:
        ValueError: for an unknown suite or sampling mode, or ``envs_per_task < 1``.

    Examples:
        >>> env = MiniGridMultiTaskEnv("MT3", envs_per_task=2, seed=0)
        >>> env.batch_size
        torch.Size([6])
        >>> td = env.rollout(3, break_when_any_done=False)
        >>> td["next", "observation"].shape, td["task_id"][:, 0].tolist()
        (torch.Size([6, 3, 7, 7, 3]), [0, 0, 1, 1, 2, 2])
    """

    def __init__(
        self,
        suite: str = "MT3",
        envs_per_task: int = 1,
        task_sampling: Literal["lockstep", "random"] = "lockstep",
        seed: int | None = None,
        device: torch.device | str = "cpu",
        fast_observations: bool = True,
    ) -> None:
        self.task_ids_gym = minigrid_task_ids(suite)
        if task_sampling not in _SAMPLING_MODES:
            raise ValueError(
                f"Unknown task_sampling {task_sampling!r}; allowed: {list(_SAMPLING_MODES)}."
            )
        if envs_per_task < 1:
            raise ValueError(f"envs_per_task must be >= 1, got {envs_per_task}.")
        self.suite = suite
        self.task_names = list(MINIGRID_SUITES[suite])
        self.num_tasks = len(self.task_names)
        self.envs_per_task = envs_per_task
        self.task_sampling = task_sampling
        self.fast_observations = fast_observations
        n = self.num_tasks * envs_per_task
        super().__init__(batch_size=torch.Size([n]), device=device)
        self.normalizers = torch.tensor(
            [MINIGRID_RETURN_NORMALIZERS[name] for name in self.task_names], dtype=torch.float32
        )
        self._normalizers_np = self.normalizers.numpy()
        # One raw env per (slot, task), created on first use: in lockstep mode each slot only
        # ever needs its own task.
        self._envs: list[dict[int, gym.Env]] = [{} for _ in range(n)]
        # The env each slot is running (set on reset), so a step needs no lookups.
        self._active: list[gym.Env | None] = [None] * n
        self._obs = np.zeros((n, 7, 7, 3), dtype=np.uint8)
        self._task = np.arange(n, dtype=np.int64) // envs_per_task
        self._ep_return = np.zeros(n, dtype=np.float32)
        self._ep_length = np.zeros(n, dtype=np.int64)
        self._make_specs(n)
        self._set_seed(seed)

    def _make_specs(self, n: int) -> None:
        shape = torch.Size([n])
        self.observation_spec = Composite(
            observation=Bounded(0, 255, shape=(n, 7, 7, 3), dtype=torch.uint8, device=self.device),
            task_id=Bounded(
                0, self.num_tasks - 1, shape=shape, dtype=torch.int64, device=self.device
            ),
            episode_return=Unbounded(shape=(n, 1), dtype=torch.float32, device=self.device),
            episode_length=Unbounded(shape=(n, 1), dtype=torch.int64, device=self.device),
            normalized_return=Unbounded(shape=(n, 1), dtype=torch.float32, device=self.device),
            shape=shape,
            device=self.device,
        )
        self.action_spec = Categorical(
            _NUM_ACTIONS, shape=shape, dtype=torch.int64, device=self.device
        )
        self.reward_spec = Unbounded(shape=(n, 1), dtype=torch.float32, device=self.device)
        done = Categorical(2, shape=(n, 1), dtype=torch.bool, device=self.device)
        self.done_spec = Composite(
            done=done, terminated=done.clone(), truncated=done.clone(), shape=shape
        )

    @classmethod
    def _complete_done(cls, done_spec: Composite, data: TensorDictBase) -> TensorDictBase:
        # A private EnvBase hook (listed in torchrl_sparse._compat). TorchRL calls it on every
        # step and reset output to add missing done entries and fix their shapes; _step and
        # _reset always write all three at their final shapes.
        return data

    def _set_seed(self, seed: int | None) -> None:
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        # Each (slot, task) env is re-seeded on its next reset from its own stream.
        self._pending_seed: set[tuple[int, int]] = set()
        if seed is not None:
            self._pending_seed = {
                (slot, task) for slot in range(self.batch_size[0]) for task in range(self.num_tasks)
            }

    def _get_env(self, slot: int, task: int) -> tuple[gym.Env, int | None, bool]:
        """The (slot, task) env, its pending seed, and whether it was just created."""
        envs = self._envs[slot]
        created = task not in envs
        if created:
            env = gym.make(self.task_ids_gym[task]).unwrapped
            envs[task] = use_fast_observations(env) if self.fast_observations else env
        seed = None
        if (slot, task) in self._pending_seed:
            self._pending_seed.discard((slot, task))
            seed = int(np.random.SeedSequence([self._seed, slot, task]).generate_state(1)[0])
        return envs[task], seed, created

    def _state_td(
        self,
        done: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        reward: np.ndarray | None = None,
    ) -> TensorDictBase:
        n = self.batch_size[0]
        # Copies: the state arrays are updated in place, the emitted tensors must not change.
        ep_return = self._ep_return.reshape(n, 1).copy()
        source = {
            "observation": torch.from_numpy(self._obs.copy()),
            "task_id": torch.from_numpy(self._task.copy()),
            "episode_return": torch.from_numpy(ep_return),
            "episode_length": torch.from_numpy(self._ep_length.reshape(n, 1).copy()),
            "normalized_return": torch.from_numpy(
                ep_return / self._normalizers_np[self._task].reshape(n, 1)
            ),
            "done": torch.from_numpy(done.reshape(n, 1)),
            "terminated": torch.from_numpy(terminated.reshape(n, 1)),
            "truncated": torch.from_numpy(truncated.reshape(n, 1)),
        }
        if reward is not None:
            source["reward"] = torch.from_numpy(reward.reshape(n, 1))
        return env_output(source, self.batch_size, self.device)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        n = self.batch_size[0]
        reset = None if tensordict is None else tensordict.get("_reset", None)
        slots = range(n) if reset is None else reset.view(n).nonzero().view(-1).tolist()
        for slot in slots:
            if self.task_sampling == "random":
                self._task[slot] = self._rng.integers(self.num_tasks)
            env, seed, created = self._get_env(slot, int(self._task[slot]))
            obs, _ = env.reset(seed=seed)
            if created and self.fast_observations:
                check_fast_observations(env)
            self._active[slot] = env
            self._obs[slot] = obs["image"]
            self._ep_return[slot] = 0.0
            self._ep_length[slot] = 0
        zeros = np.zeros(n, dtype=bool)
        return self._state_td(zeros, zeros, zeros)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        n = self.batch_size[0]
        actions = tensordict.get("action").view(n).tolist()
        # Convert each field once: per-slot numpy item writes dominate otherwise.
        obs, reward, terminated, truncated, _ = zip(
            *(env.step(action) for env, action in zip(self._active, actions, strict=True)),
            strict=True,
        )
        np.stack([o["image"] for o in obs], out=self._obs)
        reward = np.array(reward, dtype=np.float32)
        terminated = np.array(terminated, dtype=bool)
        truncated = np.array(truncated, dtype=bool)
        # In place through locals: `self.x += y` would go through nn.Module.__setattr__.
        ep_return, ep_length = self._ep_return, self._ep_length
        ep_return += reward
        ep_length += 1
        return self._state_td(terminated | truncated, terminated, truncated, reward)

    def simulator_state(self) -> dict[str, Any]:
        """Snapshot of everything needed to continue the same episodes and random streams.

        The snapshot holds the raw MiniGrid environments (pickled, with their own random
        generators), the per-slot observation, task and episode statistics, the task-sampling
        generator and the sub-environments still waiting for their first seeded reset. It is a
        copy: stepping on does not change it. Arrays are stored as tensors and everything else
        as plain Python values, so the snapshot survives ``torch.save`` and
        ``torch.load(..., weights_only=True)`` (the default of Lightning checkpoints).

        Returns:
            The state, to be passed to :meth:`load_simulator_state` of an environment built with
            the same ``suite``, ``envs_per_task`` and ``task_sampling``.

        Examples:
            >>> env = MiniGridMultiTaskEnv("MT3", seed=0)
            >>> td = env.reset().set("action", torch.tensor([2, 1, 0]))
            >>> state = env.simulator_state()
            >>> first = env.step(td.clone())["next"]
            >>> other = MiniGridMultiTaskEnv("MT3", seed=1)
            >>> other.load_simulator_state(state)
            >>> second = other.step(td.clone())["next"]
            >>> torch.equal(first["observation"], second["observation"])
            True
        """
        return {
            "suite": self.suite,
            "envs_per_task": self.envs_per_task,
            "task_sampling": self.task_sampling,
            "envs": self._pickled_envs(),
            "observation": torch.from_numpy(self._obs.copy()),
            "task": torch.from_numpy(self._task.copy()),
            "episode_return": torch.from_numpy(self._ep_return.copy()),
            "episode_length": torch.from_numpy(self._ep_length.copy()),
            "seed": self._seed,
            "rng": self._rng.bit_generator.state,
            "pending_seed": sorted(self._pending_seed),
        }

    def _pickled_envs(self) -> bytes:
        # Without the fast view attached: snapshots hold MiniGrid objects only, so they load
        # into either setting and do not depend on where egocentric_obs lives.
        envs = [env for slot_envs in self._envs for env in slot_envs.values()]
        for env in envs:
            without_fast_observations(env)
        try:
            return pickle.dumps(self._envs)
        finally:
            if self.fast_observations:
                for env in envs:
                    use_fast_observations(env)

    def load_simulator_state(self, state: dict[str, Any]) -> None:
        """Restore a snapshot taken by :meth:`simulator_state`.

        After loading, the same actions give the same observations, rewards, dones, task draws
        and episode statistics as the environment the snapshot was taken from. The environment's
        own seed is replaced by the snapshot's. The sub-environments are restored with
        :mod:`pickle`: load only snapshots you trust.

        Args:
            state: a snapshot from :meth:`simulator_state`.

        Raises:
            ValueError: if the snapshot is not a MiniGrid suite state, or comes from another
                suite, number of environments per task or task-sampling mode.

        Examples:
            >>> env = MiniGridMultiTaskEnv("MT3", envs_per_task=2, seed=0)
            >>> _ = env.reset()
            >>> MiniGridMultiTaskEnv("MT3", envs_per_task=2).load_simulator_state(
            ...     env.simulator_state()
            ... )
            >>> MiniGridMultiTaskEnv("MT5", envs_per_task=2).load_simulator_state(
            ...     env.simulator_state()
            ... )
            Traceback (most recent call last):
                ...
            ValueError: simulator state mismatch: suite is 'MT3' in the state but 'MT5' here.
        """
        missing = sorted(_STATE_KEYS - state.keys())
        if missing:
            raise ValueError(
                f"not a MiniGridMultiTaskEnv simulator state: missing key(s) {missing}."
            )
        for name in ("suite", "envs_per_task", "task_sampling"):
            if state[name] != getattr(self, name):
                raise ValueError(
                    f"simulator state mismatch: {name} is {state[name]!r} in the state but "
                    f"{getattr(self, name)!r} here."
                )
        envs = pickle.loads(state["envs"])
        for slot_envs in envs:
            for env in slot_envs.values():
                if self.fast_observations:
                    use_fast_observations(env)
                    if env.agent_dir is not None and env.agent_dir >= 0:  # placed by a reset
                        check_fast_observations(env)
        self._envs = envs
        self._obs[:] = state["observation"].numpy()
        self._task[:] = state["task"].numpy()
        self._ep_return[:] = state["episode_return"].numpy()
        self._ep_length[:] = state["episode_length"].numpy()
        self._seed = state["seed"]
        self._rng = np.random.default_rng()
        self._rng.bit_generator.state = state["rng"]
        self._pending_seed = {(slot, task) for slot, task in state["pending_seed"]}
        self._active = [
            slot_envs.get(int(task)) for slot_envs, task in zip(envs, self._task, strict=True)
        ]


def make_minigrid_env(
    suite: str = "MT3",
    envs_per_task: int = 1,
    task_sampling: Literal["lockstep", "random"] = "lockstep",
    seed: int | None = None,
    device: torch.device | str = "cpu",
    fast_observations: bool = True,
) -> TransformedEnv:
    """Build a MiniGrid suite with the paper's observation processing.

    Wraps :class:`MiniGridMultiTaskEnv` with :class:`~torchrl_sparse.transforms.MiniGridObservation`
    (``"observation"`` becomes ``float32 [n_envs, 3, 7, 7]``, unscaled) and
    :class:`~torchrl_sparse.transforms.TaskOneHot` (adds ``"task_onehot"``,
    ``float32 [n_envs, n_tasks]``).

    Args:
        suite: ``"MT3"``, ``"MT5"`` or ``"MT7"``.
        envs_per_task: sub-environments per task.
        task_sampling: ``"lockstep"`` or ``"random"`` (see :class:`MiniGridMultiTaskEnv`).
        seed: seed for reproducible rollouts.
        device: device of the emitted tensors.
        fast_observations: see :class:`MiniGridMultiTaskEnv`.

    Returns:
        The transformed environment.

    Examples:
        >>> from torchrl.envs.utils import check_env_specs
        >>> env = make_minigrid_env("MT5", seed=0)
        >>> check_env_specs(env)
        >>> env.reset()["observation"].shape
        torch.Size([5, 3, 7, 7])
    """
    base = MiniGridMultiTaskEnv(
        suite,
        envs_per_task=envs_per_task,
        task_sampling=task_sampling,
        seed=seed,
        device=device,
        fast_observations=fast_observations,
    )
    return TransformedEnv(base, Compose(MiniGridObservation(), TaskOneHot(base.num_tasks)))
