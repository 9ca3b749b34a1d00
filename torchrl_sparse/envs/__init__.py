"""Multi-task environment suites: MiniGrid MT3/MT5/MT7 and MetaWorld MT10/MT50."""

from torchrl_sparse.envs.minigrid import (
    MINIGRID_RETURN_NORMALIZERS,
    MINIGRID_SUITES,
    MiniGridMultiTaskEnv,
    make_minigrid_env,
    minigrid_task_ids,
)

__all__ = [
    "MINIGRID_RETURN_NORMALIZERS",
    "MINIGRID_SUITES",
    "MiniGridMultiTaskEnv",
    "make_minigrid_env",
    "minigrid_task_ids",
]
