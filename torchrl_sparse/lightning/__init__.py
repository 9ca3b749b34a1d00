"""Lightning recipes: multi-task PPO and SAC modules, DQN, callbacks and the ``torchrl-sparse`` CLI.

Each name is imported on first use: the PPO path (MiniGrid) never imports MetaWorld or MuJoCo,
and the SAC path never imports MiniGrid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torchrl_sparse._lazy import lazy_exports

if TYPE_CHECKING:
    from torchrl_sparse.lightning.bc import BehaviourCloning
    from torchrl_sparse.lightning.callbacks import (
        FrameCheckpoint,
        SparsityCallback,
        SummaryFigure,
    )
    from torchrl_sparse.lightning.control import PPO
    from torchrl_sparse.lightning.dqn import DQN
    from torchrl_sparse.lightning.loader import CollectorLoader
    from torchrl_sparse.lightning.plasticity import (
        PlasticityMonitorCallback,
        ReDoCallback,
        ResetCallback,
        ShrinkAndPerturbCallback,
    )
    from torchrl_sparse.lightning.ppo import MultiTaskPPO
    from torchrl_sparse.lightning.sac import MultiTaskSAC

_SUBMODULE = {
    "BehaviourCloning": "bc",
    "CollectorLoader": "loader",
    "DQN": "dqn",
    "FrameCheckpoint": "callbacks",
    "MultiTaskPPO": "ppo",
    "MultiTaskSAC": "sac",
    "PPO": "control",
    "PlasticityMonitorCallback": "plasticity",
    "ReDoCallback": "plasticity",
    "ResetCallback": "plasticity",
    "ShrinkAndPerturbCallback": "plasticity",
    "SparsityCallback": "callbacks",
    "SummaryFigure": "callbacks",
}

__all__ = [
    "DQN",
    "PPO",
    "BehaviourCloning",
    "CollectorLoader",
    "FrameCheckpoint",
    "MultiTaskPPO",
    "MultiTaskSAC",
    "PlasticityMonitorCallback",
    "ReDoCallback",
    "ResetCallback",
    "ShrinkAndPerturbCallback",
    "SparsityCallback",
    "SummaryFigure",
]


__getattr__, __dir__ = lazy_exports(__name__, _SUBMODULE)
