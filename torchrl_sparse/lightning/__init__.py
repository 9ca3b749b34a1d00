"""Lightning recipes: multi-task PPO and SAC modules, callbacks and the ``torchrl-sparse`` CLI.

Each name is imported on first use: the PPO path (MiniGrid) never imports MetaWorld or MuJoCo,
and the SAC path never imports MiniGrid.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torchrl_sparse.lightning.callbacks import (
        FrameCheckpoint,
        SparsityCallback,
        SummaryFigure,
    )
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
    "CollectorLoader": "loader",
    "FrameCheckpoint": "callbacks",
    "MultiTaskPPO": "ppo",
    "MultiTaskSAC": "sac",
    "PlasticityMonitorCallback": "plasticity",
    "ReDoCallback": "plasticity",
    "ResetCallback": "plasticity",
    "ShrinkAndPerturbCallback": "plasticity",
    "SparsityCallback": "callbacks",
    "SummaryFigure": "callbacks",
}

__all__ = [
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


def __getattr__(name: str) -> Any:
    if name not in _SUBMODULE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_SUBMODULE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return [*globals(), *__all__]
