"""MetaWorld MT10 / MT50 as one batched TorchRL environment (one sub-environment per task)."""

from __future__ import annotations

from collections.abc import Sequence

import metaworld
import numpy as np
import torch
from metaworld import env_dict
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase, TransformedEnv

from torchrl_sparse.transforms import TaskOneHot

__all__ = [
    "METAWORLD_SUITES",
    "MetaWorldMultiTaskEnv",
    "make_metaworld_env",
    "metaworld_task_names",
]

METAWORLD_SUITES: dict[str, tuple[str, ...]] = {
    "MT10": tuple(env_dict.MT10_V3),
    "MT50": tuple(env_dict.MT50_V3),
}
"""Task names per suite, in task-id order (MetaWorld v3 environments)."""

_GOAL_DIMS = slice(-3, None)


def metaworld_task_names(suite: str | Sequence[str]) -> tuple[str, ...]:
    """The tasks of a suite: ``"MT10"``, ``"MT50"``, or an explicit list of MetaWorld v3 tasks.

    A list (e.g. ``["reach-v3", "window-close-v3"]``) runs the same multi-task code on a few
    tasks, small enough for a CPU; task ids follow the list's order.

    Raises:
        ValueError: for an unknown suite or task name, an empty list or a repeated task.

    Examples:
        >>> metaworld_task_names(["reach-v3", "window-close-v3"])
        ('reach-v3', 'window-close-v3')
        >>> len(metaworld_task_names("MT10"))
        10
    """
    if isinstance(suite, str):
        if suite not in METAWORLD_SUITES:
            raise ValueError(
                f"Unknown MetaWorld suite {suite!r}; allowed: {list(METAWORLD_SUITES)} or a "
                "list of task names such as ['reach-v3', 'window-close-v3']."
            )
        return METAWORLD_SUITES[suite]
    names = tuple(suite)
    unknown = [name for name in names if name not in env_dict.ALL_V3_ENVIRONMENTS]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(
            f"Bad MetaWorld task list {list(names)!r}: give distinct task names of "
            f"{sorted(env_dict.ALL_V3_ENVIRONMENTS)}"
            + (f" (unknown: {unknown})." if unknown else ".")
        )
    return names


class MetaWorldMultiTaskEnv(EnvBase):
    """A MetaWorld multi-task benchmark stepped as one batched TorchRL environment.

    Slot ``i`` runs task ``i`` (``batch_size=[n_tasks]``). Every reset draws a new goal variation
    of the task (one of MetaWorld's 50 pre-sampled goals). Episodes are truncated after
    ``max_episode_steps`` (500 in the papers) and never terminate on success.

    Keys (the same keys appear under ``"next"`` after a step):

    - ``"observation"``: ``float32 [n_tasks, 39]``. MetaWorld declares zero bounds for the three
      goal coordinates although the multi-task benchmarks observe the goal; the spec here leaves
      them unbounded.
    - ``"task_id"``: ``int64 [n_tasks]``.
    - ``"success"``: ``bool [n_tasks, 1]``, ``info["success"]`` of the last step.
    - ``"episode_success"``: ``bool [n_tasks, 1]``, whether ``success`` was ever 1 in the
      running episode (the papers' success criterion; read it at ``done`` steps).
    - ``"episode_return"`` (``float32``), ``"episode_length"`` (``int64``): ``[n_tasks, 1]``,
      running episode statistics.
    - ``"action"``: ``float32 [n_tasks, 4]`` in ``[-1, 1]``; ``"reward"``: ``float32
      [n_tasks, 1]``; ``"done"``, ``"terminated"``, ``"truncated"``: ``bool [n_tasks, 1]``.

    Building MT10 takes about 10 s (MuJoCo models, goal sampling): build it once per process.

    Args:
        suite: ``"MT10"``, ``"MT50"`` or a list of task names (see
            :func:`metaworld_task_names`).
        seed: seeds the benchmark's goals, the goal draws and the simulators.
        max_episode_steps: episode length.
        device: device of the emitted tensors.

    Raises:
        ValueError: for an unknown suite or ``max_episode_steps < 1``.

    Examples:
        >>> env = MetaWorldMultiTaskEnv("MT10", seed=0)  # doctest: +SKIP
        >>> env.rollout(2)["next", "success"].shape  # doctest: +SKIP
        torch.Size([10, 2, 1])
    """

    def __init__(
        self,
        suite: str | Sequence[str] = "MT10",
        seed: int | None = None,
        max_episode_steps: int = 500,
        device: torch.device | str = "cpu",
    ) -> None:
        self.task_names = list(metaworld_task_names(suite))
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}.")
        self.suite = suite
        self.num_tasks = len(self.task_names)
        self.max_episode_steps = max_episode_steps
        super().__init__(batch_size=torch.Size([self.num_tasks]), device=device)
        # MetaWorld's own wrappers: time limit, goal variation drawn at each reset.
        options = {"max_episode_steps": max_episode_steps, "terminate_on_success": False}
        if isinstance(suite, str):
            self._envs = list(metaworld.make_mt_envs(suite, seed=seed, **options).envs)
        else:
            # One task's environment with its 50 goal variations (MetaWorld's MT1 of the task).
            self._envs = [metaworld.make_mt_envs(name, seed=seed, **options) for name in suite]
        n = self.num_tasks
        self._obs = np.zeros((n, 39), dtype=np.float32)
        self._task = np.arange(n, dtype=np.int64)
        self._ep_return = np.zeros(n, dtype=np.float32)
        self._ep_length = np.zeros(n, dtype=np.int64)
        self._ep_success = np.zeros(n, dtype=bool)
        self._success = np.zeros(n, dtype=bool)
        self._make_specs()
        self._set_seed(seed)

    def _make_specs(self) -> None:
        n = self.num_tasks
        space = self._envs[0].observation_space
        low = torch.as_tensor(space.low, dtype=torch.float32).clone()
        high = torch.as_tensor(space.high, dtype=torch.float32).clone()
        low[_GOAL_DIMS], high[_GOAL_DIMS] = -torch.inf, torch.inf
        flag = Categorical(2, shape=(n, 1), dtype=torch.bool, device=self.device)
        self.observation_spec = Composite(
            observation=Bounded(
                low.expand(n, -1),
                high.expand(n, -1),
                shape=(n, 39),
                dtype=torch.float32,
                device=self.device,
            ),
            task_id=Bounded(0, n - 1, shape=(n,), dtype=torch.int64, device=self.device),
            success=flag.clone(),
            episode_success=flag.clone(),
            episode_return=Unbounded(shape=(n, 1), dtype=torch.float32, device=self.device),
            episode_length=Unbounded(shape=(n, 1), dtype=torch.int64, device=self.device),
            shape=(n,),
            device=self.device,
        )
        action_space = self._envs[0].action_space
        self.action_spec = Bounded(
            torch.as_tensor(action_space.low).expand(n, -1),
            torch.as_tensor(action_space.high).expand(n, -1),
            shape=(n, action_space.shape[0]),
            dtype=torch.float32,
            device=self.device,
        )
        self.reward_spec = Unbounded(shape=(n, 1), dtype=torch.float32, device=self.device)
        self.done_spec = Composite(
            done=flag.clone(), terminated=flag.clone(), truncated=flag.clone(), shape=(n,)
        )

    def _set_seed(self, seed: int | None) -> None:
        if seed is None:
            return
        for i, env in enumerate(self._envs):
            # Seeds the simulator, the goal draws of the task-select wrapper and the spaces.
            env.unwrapped.seed(int(np.random.SeedSequence([seed, i]).generate_state(1)[0]))

    def _state_td(self, terminated: np.ndarray, truncated: np.ndarray) -> TensorDictBase:
        n = self.num_tasks
        return TensorDict(
            {
                "observation": torch.from_numpy(self._obs.copy()),
                "task_id": torch.from_numpy(self._task.copy()),
                "success": torch.from_numpy(self._success.copy()).view(n, 1),
                "episode_success": torch.from_numpy(self._ep_success.copy()).view(n, 1),
                "episode_return": torch.from_numpy(self._ep_return.copy()).view(n, 1),
                "episode_length": torch.from_numpy(self._ep_length.copy()).view(n, 1),
                "done": torch.from_numpy(terminated | truncated).view(n, 1),
                "terminated": torch.from_numpy(terminated).view(n, 1),
                "truncated": torch.from_numpy(truncated).view(n, 1),
            },
            batch_size=self.batch_size,
            device=self.device,
        )

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        n = self.num_tasks
        reset = None if tensordict is None else tensordict.get("_reset", None)
        slots = range(n) if reset is None else reset.view(n).nonzero().view(-1).tolist()
        for slot in slots:
            obs, _ = self._envs[slot].reset()
            self._obs[slot] = obs
            self._ep_return[slot] = 0.0
            self._ep_length[slot] = 0
            self._ep_success[slot] = False
            self._success[slot] = False
        zeros = np.zeros(n, dtype=bool)
        return self._state_td(zeros, zeros)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        n = self.num_tasks
        actions = tensordict.get("action").detach().cpu().numpy()
        reward = np.zeros(n, dtype=np.float32)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        for slot, env in enumerate(self._envs):
            obs, r, term, trunc, info = env.step(actions[slot])
            self._obs[slot] = obs
            reward[slot] = r
            terminated[slot] = term
            truncated[slot] = trunc
            self._success[slot] = bool(info["success"])
        self._ep_success |= self._success
        self._ep_return += reward
        self._ep_length += 1
        td = self._state_td(terminated, truncated)
        td.set("reward", torch.from_numpy(reward).unsqueeze(-1))
        return td


def make_metaworld_env(
    suite: str | Sequence[str] = "MT10",
    seed: int | None = None,
    max_episode_steps: int = 500,
    device: torch.device | str = "cpu",
) -> TransformedEnv:
    """Build a MetaWorld benchmark with the task one-hot (``"task_onehot"``) added.

    Multi-task SAC appends the one-hot to the observation; the networks of
    :func:`~torchrl_sparse.modules.make_sac_actor` do it themselves from ``"task_id"``.

    Args:
        suite: ``"MT10"``, ``"MT50"`` or a list of task names.
        seed: seed for reproducible rollouts.
        max_episode_steps: episode length (500 in the papers).
        device: device of the emitted tensors.

    Returns:
        The transformed environment.

    Examples:
        >>> env = make_metaworld_env("MT10", seed=0)  # doctest: +SKIP
        >>> env.reset()["task_onehot"].shape  # doctest: +SKIP
        torch.Size([10, 10])
    """
    base = MetaWorldMultiTaskEnv(
        suite, seed=seed, max_episode_steps=max_episode_steps, device=device
    )
    return TransformedEnv(base, TaskOneHot(base.num_tasks))
