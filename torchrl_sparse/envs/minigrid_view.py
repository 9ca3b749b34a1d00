"""A fast, exact replacement for MiniGrid's egocentric observation (``MiniGridEnv.gen_obs``).

MiniGrid builds the agent's view by slicing the grid into a new ``Grid``, rotating it one to
four times (a new ``Grid`` each time), computing visibility and encoding the result, all in
pure Python object code. That is most of the cost of a MiniGrid step. :func:`egocentric_obs`
computes the same observation from precomputed view coordinates and flat lists; it is checked
cell for cell against MiniGrid's own ``gen_obs`` on every task of the suites
(``tests/envs/test_minigrid_view.py``).
"""

from __future__ import annotations

import functools
import operator
from itertools import chain
from typing import Any

import minigrid
import numpy as np
from minigrid.core.grid import Grid
from minigrid.core.world_object import Wall
from minigrid.minigrid_env import MiniGridEnv

__all__ = [
    "check_fast_observations",
    "egocentric_obs",
    "use_fast_observations",
    "without_fast_observations",
]

# Cells outside the grid are walls (MiniGrid's ``Grid.slice``); one shared instance suffices
# because it is only read (see_behind, encode).
_OUTSIDE = Wall()
_EMPTY_CODE = (1, 0, 0)  # OBJECT_TO_IDX["empty"], no colour, no state
_UNSEEN_CODE = (0, 0, 0)


@functools.cache
def _view_to_slice(size: int, agent_dir: int) -> tuple[tuple[int, int], ...]:
    """Slice coordinates ``(i, j)`` of every view cell, flat in row-major view order.

    MiniGrid's own ``Grid.rotate_left``, applied ``agent_dir + 1`` times as in ``gen_obs_grid``
    to a grid holding each cell's coordinates, gives the mapping.
    """
    grid = Grid(size, size)
    for j in range(size):
        for i in range(size):
            grid.set(i, j, (i, j))  # type: ignore[arg-type]  # any value rotates alike
    for _ in range(agent_dir + 1):
        grid = grid.rotate_left()
    return tuple(grid.grid)


@functools.lru_cache(maxsize=1 << 16)
def _view_getter(
    width: int, height: int, size: int, agent_dir: int, top_x: int, top_y: int
) -> operator.itemgetter:
    """Picks the view cells, in row-major view order, from ``grid.grid + [outside]``.

    Cells outside the grid map to index ``-1``: the appended outside wall. A few thousand
    (grid shape, pose) combinations cover a suite, so the getters are cached.
    """
    return operator.itemgetter(
        *(
            (top_y + j) * width + top_x + i
            if 0 <= top_x + i < width and 0 <= top_y + j < height
            else -1
            for i, j in _view_to_slice(size, agent_dir)
        )
    )


def _visible(objects: list[Any], size: int) -> list[bool]:
    """MiniGrid's ``Grid.process_vis`` on a flat row-major list of view cells."""
    mask = [False] * (size * size)
    mask[(size - 1) * size + size // 2] = True  # the agent's cell
    for j in reversed(range(size)):
        row, above = j * size, (j - 1) * size
        for i in range(size - 1):
            cell = objects[row + i]
            if not mask[row + i] or (cell is not None and not cell.see_behind()):
                continue
            mask[row + i + 1] = True
            if j > 0:
                mask[above + i + 1] = True
                mask[above + i] = True
        for i in reversed(range(1, size)):
            cell = objects[row + i]
            if not mask[row + i] or (cell is not None and not cell.see_behind()):
                continue
            mask[row + i - 1] = True
            if j > 0:
                mask[above + i - 1] = True
                mask[above + i] = True
    return mask


def egocentric_obs(env: MiniGridEnv) -> dict[str, Any]:
    """The observation ``env.gen_obs()`` returns, computed without building ``Grid`` objects.

    Args:
        env: an unwrapped MiniGrid environment.

    Returns:
        ``{"image": uint8 [view, view, 3], "direction": int, "mission": str}``, equal to
        MiniGrid's ``gen_obs``.

    Examples:
        >>> import gymnasium as gym
        >>> env = gym.make("MiniGrid-DoorKey-6x6-v0").unwrapped
        >>> _ = env.reset(seed=0)
        >>> bool((egocentric_obs(env)["image"] == env.gen_obs()["image"]).all())
        True
    """
    size = env.agent_view_size
    top_x, top_y, _, _ = env.get_view_exts(size)
    grid = env.grid
    pick = _view_getter(grid.width, grid.height, size, env.agent_dir, top_x, top_y)
    objects = list(pick([*grid.grid, _OUTSIDE]))
    visible = [True] * (size * size) if env.see_through_walls else _visible(objects, size)
    # The agent sees what it carries in its own cell.
    objects[(size - 1) * size + size // 2] = env.carrying
    codes = chain.from_iterable(
        (_EMPTY_CODE if obj is None else obj.encode()) if seen else _UNSEEN_CODE
        for obj, seen in zip(objects, visible, strict=True)
    )
    # codes are row-major (j, i); MiniGrid's image is indexed [i, j].
    image = np.fromiter(codes, dtype=np.uint8, count=size * size * 3)
    image = image.reshape(size, size, 3).transpose(1, 0, 2)
    return {
        "image": np.ascontiguousarray(image),
        "direction": env.agent_dir,
        "mission": env.mission,
    }


def check_fast_observations(env: MiniGridEnv) -> None:
    """Raise if :func:`egocentric_obs` disagrees with the environment's own ``gen_obs`` now.

    A guard against MiniGrid versions whose internals differ from the ones this was written
    for; the suite calls it after the first reset of every sub-environment and after restoring
    a snapshot.

    Args:
        env: an unwrapped MiniGrid environment, reset.

    Raises:
        RuntimeError: naming the environment, if the two observations differ.

    Examples:
        >>> import gymnasium as gym
        >>> env = gym.make("MiniGrid-MemoryS11-v0").unwrapped
        >>> _ = env.reset(seed=0)
        >>> check_fast_observations(env)  # silent: they agree
    """
    expected = type(env).gen_obs(env)["image"]
    if not np.array_equal(egocentric_obs(env)["image"], expected):
        raise RuntimeError(
            f"egocentric_obs differs from MiniGrid's gen_obs on {type(env).__name__} (minigrid "
            f"{minigrid.__version__}); build the suite with fast_observations=False."
        )


def use_fast_observations(env: MiniGridEnv) -> MiniGridEnv:
    """Make ``env.step``/``env.reset`` compute observations with :func:`egocentric_obs`.

    Sets ``env.gen_obs`` on the instance (MiniGrid's ``step`` and ``reset`` call
    ``self.gen_obs()``); :func:`without_fast_observations` takes it off again.

    Args:
        env: an unwrapped MiniGrid environment whose class keeps MiniGrid's view
            (``gen_obs``, ``gen_obs_grid``, ``get_view_exts``).

    Returns:
        The same environment.

    Raises:
        ValueError: if the environment's class overrides how the view is built.

    Examples:
        >>> import gymnasium as gym
        >>> env = use_fast_observations(gym.make("MiniGrid-LavaGapS7-v0").unwrapped)
        >>> obs, _ = env.reset(seed=0)
        >>> obs["image"].shape
        (7, 7, 3)
    """
    overridden = [
        name
        for name in ("gen_obs", "gen_obs_grid", "get_view_exts")
        if getattr(type(env), name) is not getattr(MiniGridEnv, name)
    ]
    if overridden:
        raise ValueError(
            f"{type(env).__name__} overrides {overridden}: its view is not MiniGrid's, so "
            "egocentric_obs cannot stand in for it; use fast_observations=False."
        )
    env.gen_obs = functools.partial(egocentric_obs, env)
    return env


def without_fast_observations(env: MiniGridEnv) -> MiniGridEnv:
    """Undo :func:`use_fast_observations` (a no-op on an environment without it).

    Args:
        env: an unwrapped MiniGrid environment.

    Returns:
        The same environment, computing observations with its class's ``gen_obs``.

    Examples:
        >>> import gymnasium as gym
        >>> env = use_fast_observations(gym.make("MiniGrid-LavaGapS7-v0").unwrapped)
        >>> "gen_obs" in vars(without_fast_observations(env))
        False
    """
    vars(env).pop("gen_obs", None)
    return env
