"""Multi-task environment suites: MiniGrid MT3/MT5/MT7 and MetaWorld MT10/MT50."""

from torchrl_sparse.envs.metaworld import (
    METAWORLD_SUITES,
    MetaWorldMultiTaskEnv,
    make_metaworld_env,
)
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

__all__ = [
    "METAWORLD_SUITES",
    "MINIGRID_RETURN_NORMALIZERS",
    "MINIGRID_SUITES",
    "MetaWorldMultiTaskEnv",
    "MiniGridMultiTaskEnv",
    "check_fast_observations",
    "egocentric_obs",
    "make_metaworld_env",
    "make_minigrid_env",
    "minigrid_task_ids",
    "per_task_mean",
    "use_fast_observations",
    "without_fast_observations",
]
