"""MinAtar (Young & Tian 2019) as one batched TorchRL environment.

MinAtar re-implements five Atari games on a 10x10 grid: the CPU-scale suite of the DQN sparse
training studies. Observations are boolean ``(10, 10, C)`` grids (``C`` differs per game); this
environment emits them channels first as ``float32 [n_envs, C, 10, 10]`` and uses each game's
minimal action set (the ``MinAtar/<Game>-v1`` ids). TorchRL has no MinAtar wrapper: this class
steps ``num_envs`` raw :class:`minatar.Environment` instances of one game in a Python loop and
builds one TensorDict per step.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from torchrl_sparse._compat import env_output

__all__ = ["MINATAR_GAMES", "MinAtarEnv", "make_minatar_env"]

MINATAR_GAMES: dict[str, str] = {
    "Asterix": "asterix",
    "Breakout": "breakout",
    "Freeway": "freeway",
    "Seaquest": "seaquest",
    "SpaceInvaders": "space_invaders",
}
"""Game names (as in the ``MinAtar/<Game>-v1`` ids) and MinAtar's internal names."""

_STATE_KEYS = frozenset(
    {"game", "num_envs", "envs", "episode_return", "episode_length", "seed", "pending_seed"}
)


def _minatar_game(game: str) -> str:
    if game not in MINATAR_GAMES:
        raise ValueError(f"Unknown MinAtar game {game!r}; allowed: {sorted(MINATAR_GAMES)}.")
    return MINATAR_GAMES[game]


class MinAtarEnv(EnvBase):
    """``num_envs`` copies of one MinAtar game, stepped as one batched TorchRL environment.

    Keys (batch shape ``[num_envs]``; the same keys appear under ``"next"`` after a step):

    - ``"observation"``: ``float32 [num_envs, C, 10, 10]``, the game's boolean channels as 0/1.
    - ``"task_id"``: ``int64 [num_envs]``, always 0 (the one game is task 0, so the multi-task
      logging of the Lightning modules applies unchanged).
    - ``"episode_return"``: ``float32 [num_envs, 1]``, return of the running episode so far (at a
      ``done`` step the final return); ``"episode_length"``: ``int64 [num_envs, 1]``.
    - ``"action"``: ``int64 [num_envs]``, an index into the game's minimal action set;
      ``"reward"``: ``float32 [num_envs, 1]``; ``"done"``, ``"terminated"``, ``"truncated"``:
      ``bool [num_envs, 1]``.

    Finished slots are reset through ``"_reset"`` (``env.step_and_maybe_reset``, collectors,
    ``rollout``). :meth:`simulator_state` and :meth:`load_simulator_state` checkpoint and resume
    the running episodes exactly.

    Args:
        game: ``"Asterix"``, ``"Breakout"``, ``"Freeway"``, ``"Seaquest"`` or
            ``"SpaceInvaders"``.
        num_envs: copies of the game stepped together.
        seed: seeds every copy (copy ``i`` from ``SeedSequence([seed, i])``); equal seeds give
            equal rollouts.
        sticky_action_prob: probability that the previous action repeats (MinAtar's default 0.1).
        difficulty_ramping: MinAtar's difficulty ramping (its default, on).
        max_episode_steps: truncate episodes after this many steps (``None``: the games' own
            ends only).
        device: device of the emitted tensors.

    Raises:
        ValueError: for an unknown game, ``num_envs < 1`` or ``max_episode_steps < 1``.

    Examples:
        >>> from torchrl.envs.utils import check_env_specs
        >>> env = MinAtarEnv("Breakout", num_envs=2, seed=0)
        >>> check_env_specs(env)
        >>> env.observation_spec["observation"].shape, env.action_spec.space.n
        (torch.Size([2, 4, 10, 10]), 3)
        >>> td = env.rollout(5, break_when_any_done=False)
        >>> td["next", "episode_length"][:, -1].view(-1).tolist()
        [5, 5]
    """

    def __init__(
        self,
        game: str,
        num_envs: int = 1,
        seed: int | None = None,
        sticky_action_prob: float = 0.1,
        difficulty_ramping: bool = True,
        max_episode_steps: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        import minatar

        internal = _minatar_game(game)
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}.")
        if not 0 <= sticky_action_prob <= 1:
            raise ValueError(f"sticky_action_prob must be in [0, 1], got {sticky_action_prob}.")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1 or None, got {max_episode_steps}.")
        super().__init__(batch_size=torch.Size([num_envs]), device=device)
        self.game = game
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self._envs = [
            minatar.Environment(internal, sticky_action_prob, difficulty_ramping)
            for _ in range(num_envs)
        ]
        self.action_set = list(self._envs[0].minimal_action_set())
        self.num_channels = self._envs[0].state_shape()[-1]
        self._obs = np.zeros((num_envs, self.num_channels, 10, 10), dtype=np.float32)
        self._ep_return = np.zeros(num_envs, dtype=np.float32)
        self._ep_length = np.zeros(num_envs, dtype=np.int64)
        self._make_specs()
        self._set_seed(seed)

    @property
    def task_names(self) -> list[str]:
        """The one task: the game."""
        return [self.game]

    def _make_specs(self) -> None:
        n, shape, device = self.num_envs, self.batch_size, self.device
        self.observation_spec = Composite(
            observation=Bounded(
                0.0, 1.0, shape=(n, self.num_channels, 10, 10), dtype=torch.float32, device=device
            ),
            task_id=Bounded(0, 0, shape=shape, dtype=torch.int64, device=device),
            episode_return=Unbounded(shape=(n, 1), dtype=torch.float32, device=device),
            episode_length=Unbounded(shape=(n, 1), dtype=torch.int64, device=device),
            shape=shape,
            device=device,
        )
        self.action_spec = Categorical(
            len(self.action_set), shape=shape, dtype=torch.int64, device=device
        )
        self.reward_spec = Unbounded(shape=(n, 1), dtype=torch.float32, device=device)
        done = Categorical(2, shape=(n, 1), dtype=torch.bool, device=device)
        self.done_spec = Composite(
            done=done, terminated=done.clone(), truncated=done.clone(), shape=shape
        )

    @classmethod
    def _complete_done(cls, done_spec: Composite, data: TensorDictBase) -> TensorDictBase:
        # A private EnvBase hook (listed in torchrl_sparse._compat): _step and _reset always
        # write all three done entries at their final shapes.
        return data

    def _set_seed(self, seed: int | None) -> None:
        self._seed = seed
        # Each copy is re-seeded on its next reset from its own stream.
        self._pending_seed: set[int] = set(range(self.num_envs)) if seed is not None else set()

    def _observe(self, slot: int) -> None:
        # (10, 10, C) bool -> (C, 10, 10) float.
        self._obs[slot] = self._envs[slot].state().transpose(2, 0, 1)

    def _state_td(
        self,
        terminated: np.ndarray,
        truncated: np.ndarray,
        reward: np.ndarray | None = None,
    ) -> TensorDictBase:
        n = self.num_envs
        source = {
            "observation": torch.from_numpy(self._obs.copy()),
            "task_id": torch.zeros(n, dtype=torch.int64),
            "episode_return": torch.from_numpy(self._ep_return.reshape(n, 1).copy()),
            "episode_length": torch.from_numpy(self._ep_length.reshape(n, 1).copy()),
            "done": torch.from_numpy((terminated | truncated).reshape(n, 1)),
            "terminated": torch.from_numpy(terminated.reshape(n, 1)),
            "truncated": torch.from_numpy(truncated.reshape(n, 1)),
        }
        if reward is not None:
            source["reward"] = torch.from_numpy(reward.reshape(n, 1))
        return env_output(source, self.batch_size, self.device)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        n = self.num_envs
        reset = None if tensordict is None else tensordict.get("_reset", None)
        slots = range(n) if reset is None else reset.view(n).nonzero().view(-1).tolist()
        for slot in slots:
            env = self._envs[slot]
            if slot in self._pending_seed:
                self._pending_seed.discard(slot)
                env.seed(int(np.random.SeedSequence([self._seed, slot]).generate_state(1)[0]))
            env.reset()
            self._observe(slot)
            self._ep_return[slot] = 0.0
            self._ep_length[slot] = 0
        zeros = np.zeros(n, dtype=bool)
        return self._state_td(zeros, zeros)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        n = self.num_envs
        actions = tensordict.get("action").view(n).tolist()
        reward = np.zeros(n, dtype=np.float32)
        terminated = np.zeros(n, dtype=bool)
        action_set = self.action_set
        for slot, (env, action) in enumerate(zip(self._envs, actions, strict=True)):
            reward[slot], terminated[slot] = env.act(action_set[action])
            self._observe(slot)
        ep_return, ep_length = self._ep_return, self._ep_length
        ep_return += reward
        ep_length += 1
        if self.max_episode_steps is None:
            truncated = np.zeros(n, dtype=bool)
        else:
            truncated = ~terminated & (ep_length >= self.max_episode_steps)
        return self._state_td(terminated, truncated, reward)

    def simulator_state(self) -> dict[str, Any]:
        """Snapshot of everything needed to continue the same episodes and random streams.

        The raw games are pickled (with their random generators); statistics are stored as
        tensors, so the snapshot survives ``torch.load(..., weights_only=True)``.

        Examples:
            >>> env = MinAtarEnv("Asterix", seed=0)
            >>> td = env.reset().set("action", torch.tensor([1]))
            >>> state = env.simulator_state()
            >>> first = env.step(td.clone())["next"]
            >>> other = MinAtarEnv("Asterix", seed=1)
            >>> other.load_simulator_state(state)
            >>> torch.equal(first["observation"], other.step(td.clone())["next", "observation"])
            True
        """
        return {
            "game": self.game,
            "num_envs": self.num_envs,
            "envs": pickle.dumps(self._envs),
            "episode_return": torch.from_numpy(self._ep_return.copy()),
            "episode_length": torch.from_numpy(self._ep_length.copy()),
            "seed": self._seed,
            "pending_seed": sorted(self._pending_seed),
        }

    def load_simulator_state(self, state: dict[str, Any]) -> None:
        """Restore a snapshot of :meth:`simulator_state` (unpickled: load only trusted ones).

        Raises:
            ValueError: if the snapshot is not a MinAtar state or comes from another game or
                number of environments.
        """
        missing = sorted(_STATE_KEYS - state.keys())
        if missing:
            raise ValueError(f"not a MinAtarEnv simulator state: missing key(s) {missing}.")
        for name in ("game", "num_envs"):
            if state[name] != getattr(self, name):
                raise ValueError(
                    f"simulator state mismatch: {name} is {state[name]!r} in the state but "
                    f"{getattr(self, name)!r} here."
                )
        self._envs = pickle.loads(state["envs"])
        for slot in range(self.num_envs):
            self._observe(slot)
        self._ep_return[:] = state["episode_return"].numpy()
        self._ep_length[:] = state["episode_length"].numpy()
        self._seed = state["seed"]
        self._pending_seed = set(state["pending_seed"])


def make_minatar_env(
    game: str,
    num_envs: int = 1,
    seed: int | None = None,
    sticky_action_prob: float = 0.1,
    difficulty_ramping: bool = True,
    max_episode_steps: int | None = None,
    device: torch.device | str = "cpu",
) -> MinAtarEnv:
    """Build a batched MinAtar game (see :class:`MinAtarEnv` for the arguments and keys).

    Examples:
        >>> env = make_minatar_env("Freeway", num_envs=3, seed=0)
        >>> env.reset()["observation"].shape
        torch.Size([3, 7, 10, 10])
    """
    return MinAtarEnv(
        game,
        num_envs=num_envs,
        seed=seed,
        sticky_action_prob=sticky_action_prob,
        difficulty_ramping=difficulty_ramping,
        max_episode_steps=max_episode_steps,
        device=device,
    )
