"""Atari 2600 games (ALE) with the standard DQN preprocessing, as one batched TorchRL environment.

Several games run side by side in one :class:`~torchrl.envs.EnvBase` with batch
``[n_games * envs_per_game]`` (slot ``i`` plays game ``i // envs_per_game``, its ``task_id``),
like the MiniGrid suites. Each game is one :class:`ale_py.vector_env.AtariVectorEnv`: ALE's own
C++ vector environment, which does the whole DQN preprocessing natively (Machado et al. 2018,
Mnih et al. 2015): no-op starts (up to 30), frame skip 4 with max-pooling over the last two
frames, 84x84 grayscale (``cv2.INTER_AREA``), 4 stacked frames and sticky actions. Life losses,
reward clipping and the episode statistics are handled here, so that ``episode_return`` is always
the raw game score. Its observations are pixel-identical to gymnasium's
``FrameStackObservation(AtariPreprocessing(gym.make(id, frameskip=1), noop_max=0), 4,
padding_type="zero")`` for the same actions (checked on Breakout and MsPacman without sticky
actions; with no-ops and sticky actions the two draw different random numbers).

Why ALE's vector environment: measured on this project's CPU machine (one thread, 8 copies of
a game, random actions; agent steps/s, and x4 emulator frames/s), the plain loops without
TorchRL:

| game     | ``AtariVectorEnv``      | gymnasium (``AtariPreprocessing``, frame stack) |
| -------- | ----------------------- | ----------------------------------------------- |
| Pong     | 3,190 (12,770 frames/s) | 2,390 (9,580 frames/s)                          |
| Breakout | 2,350 (9,380 frames/s)  | 1,890 (7,560 frames/s)                          |
| MsPacman | 2,980 (11,920 frames/s) | 2,300 (9,220 frames/s)                          |

The vector environment is 1.24-1.35x faster (emulation dominates both), needs no OpenCV in
Python and steps the games of a multi-game environment in parallel threads. Through TorchRL
(``step_and_maybe_reset`` or a collector) this environment adds about 0.5 ms of CPU per batched
step, so with the DQN recipe's 4 to 8 copies it runs at about 0.7-0.75x the plain
``AtariVectorEnv`` loop and 0.85-1.1x the plain gymnasium loop
(``benchmarks/bench_dqn_envs.py`` measures all three). Its price: ALE's vector interface cannot
save or restore the emulators, so a checkpointed run cannot continue the running games (see
:meth:`AtariMultiGameEnv.load_simulator_state`).
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ale_py import roms
from ale_py.vector_env import AtariVectorEnv
from tensordict import TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from torchrl_sparse._compat import env_output

__all__ = ["ATARI_GAMES", "AtariMultiGameEnv", "make_atari_env"]

ATARI_GAMES: tuple[str, ...] = ("Pong", "Breakout", "SpaceInvaders", "MsPacman", "Qbert")
"""The study's games (gymnasium's spelling, as in ``ALE/<Game>-v5``); any ALE game works."""

_FULL_ACTIONS = 18
_STATE_KEYS = frozenset(
    {
        "games",
        "envs_per_game",
        "full_action_space",
        "observation",
        "episode_return",
        "episode_length",
        "lives",
        "seed",
        "resumes",
    }
)


@functools.lru_cache(maxsize=1)
def _rom_ids() -> dict[str, str]:
    """Game name (``"MsPacman"``) -> ALE ROM id (``"ms_pacman"``) for every ROM of ale-py."""
    return {
        "".join(part.capitalize() for part in rom.split("_")): rom
        for rom in sorted(roms.get_all_rom_ids())
    }


def _rom_id(game: str) -> str:
    table = _rom_ids()
    if game in table:
        return table[game]
    close = difflib.get_close_matches(game, list(table), n=3)
    hint = f" Did you mean {close}?" if close else ""
    names = sorted(table)
    raise ValueError(
        f"Unknown Atari game {game!r}.{hint} Allowed: the ALE game names (gymnasium's "
        f"ALE/<Game>-v5 spelling), {len(names)} in all, e.g. {names[:8]} or the study's "
        f"{list(ATARI_GAMES)}."
    )


class AtariMultiGameEnv(EnvBase):
    """Atari games with the DQN preprocessing, stepped as one batched TorchRL environment.

    Keys (batch shape ``[n]``, ``n = len(games) * envs_per_game``; the same keys appear under
    ``"next"`` after a step):

    - ``"observation"``: ``uint8 [n, 4, 84, 84]``, the 4 last preprocessed frames, oldest first
      (after a reset the 3 older frames are zeros). Networks scale by 1/255 themselves.
    - ``"task_id"``: ``int64 [n]``, the index in ``games`` of the game the slot plays.
    - ``"episode_return"``: ``float32 [n, 1]``, the unclipped score of the running game;
      ``"episode_length"``: ``int64 [n, 1]``, its agent steps. Both cover the whole game, over
      all its lives, also when life losses end the agent's episodes.
    - ``"game_over"``: ``bool [n, 1]``, true when the game ended: the emulator's game over, or
      ``max_episode_steps`` reached (then ``"truncated"`` is true too). Without
      ``terminal_on_life_loss`` it equals ``"done"``; log game scores where it is true.
    - ``"action"``: ``int64 [n]``, an index into the action set: the game's minimal set for one
      game (unless ``full_action_space``), ALE's full 18 actions for several games.
    - ``"reward"``: ``float32 [n, 1]``, the score change, its sign with ``clip_rewards``.
    - ``"done"``, ``"terminated"``, ``"truncated"``: ``bool [n, 1]``. With
      ``terminal_on_life_loss`` a life loss terminates the agent's episode but the game goes
      on: the reset that follows (a ``"_reset"`` of that slot, as collectors and
      ``step_and_maybe_reset`` send) continues the game instead of starting a new one. A
      reset without ``"_reset"`` (``env.reset()``) starts new games everywhere.

    Finished slots are reset through ``"_reset"``. Sub-environments never reset themselves.
    No FIRE is pressed at resets or after life losses: as in Machado et al. (2018), pressing it
    to start a game (Breakout) is left to the agent.

    Args:
        games: game names (``"Pong"``, ``"MsPacman"``, ...; see :data:`ATARI_GAMES`), or one
            name. Task ``k`` is ``games[k]``.
        envs_per_game: copies of each game.
        seed: seeds every copy (slot ``i`` from ``SeedSequence([seed, i, 0])`` at its next
            reset); equal seeds give equal rollouts. ``None``: random seeds.
        repeat_action_probability: sticky actions, the probability that the emulator repeats the
            previous action at each frame (0.25 as recommended by Machado et al. 2018; 0.0 is
            the deterministic emulator of Nature DQN).
        terminal_on_life_loss: end the agent's episode (``"terminated"``) at each life loss.
        clip_rewards: emit the sign of the reward (``episode_return`` stays unclipped).
        max_episode_steps: truncate games after this many agent steps (27,000 agent steps =
            108,000 frames, the usual 30 minutes of play).
        noop_max: a reset plays ``U{0, ..., noop_max}`` no-op frames (Mnih et al. 2015).
        frame_skip: emulator frames per agent step (max-pooled over the last two).
        full_action_space: use ALE's 18 actions also for one game.
        num_threads: worker threads per game (each game's copies are stepped in order by its
            threads; the games step in parallel).
        device: device of the emitted tensors.

    Attributes:
        games: the game names, in task-id order (also :attr:`task_names`).
        rom_ids: their ALE ROM ids (``"ms_pacman"``), as ale-py's own APIs name them.
        num_actions: size of the action set.

    Raises:
        ValueError: for an unknown or repeated game, or an out-of-range number (named with the
            allowed range).

    Examples:
        >>> env = AtariMultiGameEnv(["Pong", "Breakout"], seed=0)
        >>> env.batch_size, env.action_spec.space.n
        (torch.Size([2]), 18)
        >>> td = env.rollout(3)
        >>> td["next", "observation"].shape, td["task_id"][:, 0].tolist()
        (torch.Size([2, 3, 4, 84, 84]), [0, 1])
        >>> AtariMultiGameEnv("Pong").action_spec.space.n  # Pong's minimal action set
        6
    """

    def __init__(
        self,
        games: Sequence[str] | str = ATARI_GAMES,
        envs_per_game: int = 1,
        seed: int | None = None,
        repeat_action_probability: float = 0.25,
        terminal_on_life_loss: bool = True,
        clip_rewards: bool = True,
        max_episode_steps: int = 27_000,
        noop_max: int = 30,
        frame_skip: int = 4,
        full_action_space: bool = False,
        num_threads: int = 1,
        device: torch.device | str = "cpu",
    ) -> None:
        games = [games] if isinstance(games, str) else list(games)
        if not games:
            raise ValueError("games must name at least one Atari game.")
        rom_ids = [_rom_id(game) for game in games]
        repeated = sorted({game for game in games if games.count(game) > 1})
        if repeated:
            raise ValueError(
                f"games must be distinct (task ids index them), got {repeated} more than once; "
                "use envs_per_game for copies."
            )
        for name, value, low in (
            ("envs_per_game", envs_per_game, 1),
            ("max_episode_steps", max_episode_steps, 1),
            ("noop_max", noop_max, 0),
            ("frame_skip", frame_skip, 1),
            ("num_threads", num_threads, 1),
        ):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
        if not 0 <= repeat_action_probability <= 1:
            raise ValueError(
                f"repeat_action_probability must be in [0, 1], got {repeat_action_probability!r}."
            )
        n = len(games) * envs_per_game
        super().__init__(batch_size=torch.Size([n]), device=device)
        self.games = games
        self.rom_ids = rom_ids
        self.envs_per_game = envs_per_game
        self.repeat_action_probability = float(repeat_action_probability)
        self.terminal_on_life_loss = terminal_on_life_loss
        self.clip_rewards = clip_rewards
        self.max_episode_steps = max_episode_steps
        self.full_action_space = full_action_space or len(games) > 1
        self._vec = [
            AtariVectorEnv(
                rom,
                envs_per_game,
                num_threads=num_threads,
                max_num_frames_per_episode=max_episode_steps * frame_skip,
                repeat_action_probability=self.repeat_action_probability,
                full_action_space=self.full_action_space,
                frameskip=frame_skip,
                noop_max=noop_max + 1,  # ALE draws U{0, ..., noop_max - 1}
                use_fire_reset=False,
                episodic_life=False,
                life_loss_info=False,
                reward_clipping=False,
            )
            for rom in rom_ids
        ]
        self.num_actions = int(self._vec[0].single_action_space.n)
        self._started = [False] * len(games)  # ALE wants a full first reset per game.
        self._obs = np.zeros((n, 4, 84, 84), dtype=np.uint8)
        self._task = np.arange(n, dtype=np.int64) // envs_per_game
        self._ep_return = np.zeros(n, dtype=np.float32)
        self._ep_length = np.zeros(n, dtype=np.int64)
        self._lives = np.zeros(n, dtype=np.int32)
        # Slots whose agent episode ended at a life loss: their next "_reset" continues the game.
        self._life_lost = np.zeros(n, dtype=bool)
        # Set by load_simulator_state: the next step ends every slot's episode (see there).
        self._interrupted = False
        self._resumes = 0
        self._make_specs(n)
        self._set_seed(seed)

    @property
    def task_names(self) -> list[str]:
        """The games, in task-id order."""
        return list(self.games)

    @property
    def num_tasks(self) -> int:
        """Number of games."""
        return len(self.games)

    def _make_specs(self, n: int) -> None:
        shape, device = self.batch_size, self.device
        flag = Categorical(2, shape=(n, 1), dtype=torch.bool, device=device)
        self.observation_spec = Composite(
            observation=Bounded(0, 255, shape=(n, 4, 84, 84), dtype=torch.uint8, device=device),
            task_id=Bounded(0, self.num_tasks - 1, shape=shape, dtype=torch.int64, device=device),
            episode_return=Unbounded(shape=(n, 1), dtype=torch.float32, device=device),
            episode_length=Unbounded(shape=(n, 1), dtype=torch.int64, device=device),
            game_over=flag.clone(),
            shape=shape,
            device=device,
        )
        self.action_spec = Categorical(
            self.num_actions, shape=shape, dtype=torch.int64, device=device
        )
        self.reward_spec = Unbounded(shape=(n, 1), dtype=torch.float32, device=device)
        self.done_spec = Composite(
            done=flag.clone(), terminated=flag.clone(), truncated=flag.clone(), shape=shape
        )

    @classmethod
    def _complete_done(cls, done_spec: Composite, data: TensorDictBase) -> TensorDictBase:
        # A private EnvBase hook (listed in torchrl_sparse._compat): _step and _reset always
        # write all three done entries at their final shapes.
        return data

    def _set_seed(self, seed: int | None) -> None:
        self._seed = seed
        self._resumes = 0
        # Each slot is re-seeded (its emulator reloaded) on its next reset.
        n = self.batch_size[0]
        self._pending_seed = np.full(n, seed is not None)

    def _slot_seed(self, slot: int) -> int:
        seed = np.random.SeedSequence([self._seed, slot, self._resumes]).generate_state(1)[0]
        return int(seed) % 2**31  # ALE's seeds are non-negative C ints

    def _slots(self, game: int) -> slice:
        per = self.envs_per_game
        return slice(game * per, (game + 1) * per)

    def _state_td(
        self,
        terminated: np.ndarray,
        truncated: np.ndarray,
        game_over: np.ndarray,
        reward: np.ndarray | None = None,
    ) -> TensorDictBase:
        n = self.batch_size[0]
        # Copies: the state arrays are updated in place, the emitted tensors must not change.
        source = {
            "observation": torch.from_numpy(self._obs.copy()),
            "task_id": torch.from_numpy(self._task.copy()),
            "episode_return": torch.from_numpy(self._ep_return.reshape(n, 1).copy()),
            "episode_length": torch.from_numpy(self._ep_length.reshape(n, 1).copy()),
            "game_over": torch.from_numpy(game_over.reshape(n, 1)),
            "done": torch.from_numpy((terminated | truncated).reshape(n, 1)),
            "terminated": torch.from_numpy(terminated.reshape(n, 1)),
            "truncated": torch.from_numpy(truncated.reshape(n, 1)),
        }
        if reward is not None:
            source["reward"] = torch.from_numpy(reward.reshape(n, 1))
        return env_output(source, self.batch_size, self.device)

    def _check_open(self) -> None:
        if not self._vec:
            raise RuntimeError("AtariMultiGameEnv is closed.")

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        self._check_open()
        n = self.batch_size[0]
        reset = None if tensordict is None else tensordict.get("_reset", None)
        if reset is None:
            new_game = np.ones(n, dtype=bool)
            self._life_lost[:] = False
        else:
            requested = reset.view(n).cpu().numpy()
            # After a life loss the game goes on: only the agent's episode restarts.
            new_game = requested & ~self._life_lost
            self._life_lost &= ~requested
        self._interrupted = False
        for game, vec in enumerate(self._vec):
            slots = self._slots(game)
            mask = new_game[slots]
            if not mask.any():
                continue
            if not self._started[game]:
                mask[:] = True  # ALE's first reset must reset every copy
                self._started[game] = True
            ids = np.flatnonzero(mask) + slots.start
            seeds = np.array(
                [self._slot_seed(slot) if self._pending_seed[slot] else -1 for slot in ids],
                dtype=np.int64,
            )
            self._pending_seed[ids] = False
            options = None if mask.all() else {"reset_mask": mask}
            obs, info = vec.reset(seed=seeds, options=options)
            self._obs[ids] = obs[mask]
            self._lives[ids] = info["lives"][mask]
            self._ep_return[ids] = 0.0
            self._ep_length[ids] = 0
        zeros = np.zeros(n, dtype=bool)
        return self._state_td(zeros, zeros, zeros)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        self._check_open()
        n = self.batch_size[0]
        if self._interrupted:
            return self._interrupted_step()
        actions = tensordict.get("action").view(n).cpu().numpy().astype(np.int64, copy=False)
        # ALE's worker threads would hang on an invalid action: refuse it here.
        if actions.min() < 0 or actions.max() >= self.num_actions:
            raise ValueError(
                f"actions must be in [0, {self.num_actions}), got {sorted(set(actions.tolist()))}."
            )
        for game, vec in enumerate(self._vec):
            vec.send(actions[self._slots(game)])  # all games step at once
        score = np.empty(n, dtype=np.float32)
        game_end = np.empty(n, dtype=bool)
        truncated = np.empty(n, dtype=bool)
        lives = np.empty(n, dtype=np.int32)
        for game, vec in enumerate(self._vec):
            slots = self._slots(game)
            obs, reward, term, trunc, info = vec.recv()
            self._obs[slots] = obs
            score[slots] = reward
            game_end[slots] = term
            truncated[slots] = trunc
            lives[slots] = info["lives"]
        # As ALE's own life_loss_info: fewer lives, and some left (the last one is game over).
        life_lost = (lives < self._lives) & (lives > 0)
        self._lives[:] = lives
        ep_return, ep_length = self._ep_return, self._ep_length
        ep_return += score
        ep_length += 1
        game_over = game_end | truncated
        terminated = game_end
        if self.terminal_on_life_loss:
            terminated = game_end | life_lost
            self._life_lost[:] = life_lost & ~game_over
        reward = np.sign(score) if self.clip_rewards else score
        return self._state_td(terminated, truncated, game_over, reward)

    def _interrupted_step(self) -> TensorDictBase:
        self._interrupted = False
        n = self.batch_size[0]
        zeros, ones = np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
        return self._state_td(zeros, ones, zeros, np.zeros(n, dtype=np.float32))

    def close(self, *, raise_if_closed: bool = True) -> None:
        """Stop ALE's worker threads; the environment cannot step afterwards."""
        self._vec = []
        super().close(raise_if_closed=raise_if_closed)

    def simulator_state(self) -> dict[str, Any]:
        """Snapshot of the episode bookkeeping (the emulators cannot be saved).

        ALE's vector interface has no way to save or restore its emulators, so a snapshot holds
        what this class keeps itself: the last observation, the episode statistics and lives of
        every slot, the seed and the number of resumes so far. Arrays are stored as tensors and
        everything else as plain Python values, so the snapshot survives ``torch.save`` and
        ``torch.load(..., weights_only=True)``.

        Returns:
            The state, for :meth:`load_simulator_state` of an environment built with the same
            ``games``, ``envs_per_game`` and action set.

        Examples:
            >>> env = AtariMultiGameEnv("Pong", envs_per_game=2, seed=0)
            >>> _ = env.rollout(5)
            >>> state = env.simulator_state()
            >>> state["episode_length"], state["seed"]
            (tensor([5, 5]), 0)
        """
        return {
            "games": list(self.games),
            "envs_per_game": self.envs_per_game,
            "full_action_space": self.full_action_space,
            "observation": torch.from_numpy(self._obs.copy()),
            "episode_return": torch.from_numpy(self._ep_return.copy()),
            "episode_length": torch.from_numpy(self._ep_length.copy()),
            "lives": torch.from_numpy(self._lives.copy()),
            "seed": self._seed,
            "resumes": self._resumes,
        }

    def load_simulator_state(self, state: dict[str, Any]) -> None:
        """Resume from a :meth:`simulator_state` snapshot: new games, the same bookkeeping.

        What is restored exactly: each slot's observation, ``episode_return``,
        ``episode_length`` and lives, and the seed. What is not: the emulators (the running
        games, ALE's random state for sticky actions and no-ops), which ALE's vector interface
        cannot save. So the running games are abandoned, in a way that keeps the data
        consistent: the first step after loading ignores its actions and ends every slot's
        episode as truncated (``reward`` 0, ``game_over`` false, observation and statistics as
        in the snapshot, so the transition leads back to the observation it started from and
        no game's score is logged); the reset that follows starts new games. With a seed these
        are reproducible: slot ``i`` is seeded from ``SeedSequence([seed, i, resumes])``, where
        ``resumes`` counts the loads since the seed was set.

        Args:
            state: a snapshot from :meth:`simulator_state`.

        Raises:
            ValueError: if the snapshot is not an Atari state, or comes from other games,
                another number of copies per game or another action set.

        Examples:
            >>> env = AtariMultiGameEnv("Pong", seed=0)
            >>> state = env.simulator_state()
            >>> AtariMultiGameEnv("Qbert").load_simulator_state(state)
            Traceback (most recent call last):
                ...
            ValueError: simulator state mismatch: games is ['Pong'] in the state but ['Qbert'] here.
        """
        missing = sorted(_STATE_KEYS - state.keys())
        if missing:
            raise ValueError(f"not an AtariMultiGameEnv simulator state: missing key(s) {missing}.")
        for name in ("games", "envs_per_game", "full_action_space"):
            if state[name] != getattr(self, name):
                raise ValueError(
                    f"simulator state mismatch: {name} is {state[name]!r} in the state but "
                    f"{getattr(self, name)!r} here."
                )
        self._obs[:] = state["observation"].numpy()
        self._ep_return[:] = state["episode_return"].numpy()
        self._ep_length[:] = state["episode_length"].numpy()
        self._lives[:] = state["lives"].numpy()
        self._seed = state["seed"]
        self._resumes = state["resumes"] + 1
        self._pending_seed[:] = self._seed is not None
        self._life_lost[:] = False
        self._interrupted = True


def make_atari_env(
    games: Sequence[str] | str,
    envs_per_game: int = 1,
    seed: int | None = None,
    repeat_action_probability: float = 0.25,
    terminal_on_life_loss: bool = True,
    clip_rewards: bool = True,
    max_episode_steps: int = 27_000,
    noop_max: int = 30,
    frame_skip: int = 4,
    full_action_space: bool = False,
    num_threads: int = 1,
    device: torch.device | str = "cpu",
) -> AtariMultiGameEnv:
    """Build Atari games with the DQN preprocessing (see :class:`AtariMultiGameEnv`).

    No transforms are needed: the observation is already ``uint8 [n, 4, 84, 84]``.

    Examples:
        >>> from torchrl.envs.utils import check_env_specs
        >>> env = make_atari_env(["Breakout"], envs_per_game=2, seed=0)
        >>> check_env_specs(env)
        >>> env.reset()["observation"].dtype, env.action_spec.space.n
        (torch.uint8, 4)
    """
    return AtariMultiGameEnv(
        games,
        envs_per_game=envs_per_game,
        seed=seed,
        repeat_action_probability=repeat_action_probability,
        terminal_on_life_loss=terminal_on_life_loss,
        clip_rewards=clip_rewards,
        max_episode_steps=max_episode_steps,
        noop_max=noop_max,
        frame_skip=frame_skip,
        full_action_space=full_action_space,
        num_threads=num_threads,
        device=device,
    )
