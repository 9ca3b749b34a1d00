"""Environment suites: MiniGrid MT3/MT5/MT7, MetaWorld MT10/MT50, MinAtar and Atari.

Each suite is imported on first use, so ``pip install torchrl-sparse[minigrid]`` runs the
MiniGrid suites without MuJoCo, MetaWorld, MinAtar or ale-py installed (and so on for the
others: extras ``metaworld``, ``minatar``, ``atari``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torchrl_sparse._lazy import lazy_exports

if TYPE_CHECKING:
    from torchrl_sparse.envs.atari import ATARI_GAMES, AtariMultiGameEnv, make_atari_env
    from torchrl_sparse.envs.metaworld import (
        METAWORLD_SUITES,
        MetaWorldMultiTaskEnv,
        make_metaworld_env,
        metaworld_task_names,
    )
    from torchrl_sparse.envs.minatar import MINATAR_GAMES, MinAtarEnv, make_minatar_env
    from torchrl_sparse.envs.minigrid import (
        MINIGRID_RETURN_NORMALIZERS,
        MINIGRID_SUITES,
        MiniGridMultiTaskEnv,
        make_minigrid_env,
        minigrid_task_ids,
    )
    from torchrl_sparse.envs.minigrid_view import (
        check_fast_observations,
        egocentric_obs,
        use_fast_observations,
        without_fast_observations,
    )
    from torchrl_sparse.envs.stats import per_task_mean

_SUBMODULE = {
    "ATARI_GAMES": "atari",
    "AtariMultiGameEnv": "atari",
    "make_atari_env": "atari",
    "METAWORLD_SUITES": "metaworld",
    "MetaWorldMultiTaskEnv": "metaworld",
    "make_metaworld_env": "metaworld",
    "metaworld_task_names": "metaworld",
    "MINATAR_GAMES": "minatar",
    "MinAtarEnv": "minatar",
    "make_minatar_env": "minatar",
    "MINIGRID_RETURN_NORMALIZERS": "minigrid",
    "MINIGRID_SUITES": "minigrid",
    "MiniGridMultiTaskEnv": "minigrid",
    "make_minigrid_env": "minigrid",
    "minigrid_task_ids": "minigrid",
    "check_fast_observations": "minigrid_view",
    "egocentric_obs": "minigrid_view",
    "use_fast_observations": "minigrid_view",
    "without_fast_observations": "minigrid_view",
    "per_task_mean": "stats",
}

__all__ = [
    "ATARI_GAMES",
    "METAWORLD_SUITES",
    "MINATAR_GAMES",
    "MINIGRID_RETURN_NORMALIZERS",
    "MINIGRID_SUITES",
    "AtariMultiGameEnv",
    "MetaWorldMultiTaskEnv",
    "MinAtarEnv",
    "MiniGridMultiTaskEnv",
    "check_fast_observations",
    "egocentric_obs",
    "make_atari_env",
    "make_metaworld_env",
    "make_minatar_env",
    "make_minigrid_env",
    "metaworld_task_names",
    "minigrid_task_ids",
    "per_task_mean",
    "use_fast_observations",
    "without_fast_observations",
]


__getattr__, __dir__ = lazy_exports(__name__, _SUBMODULE)
