"""Plasticity toolkit: activation probes, metrics, interventions and monitors.

The Lightning callbacks live in :mod:`torchrl_sparse.lightning` (Lightning is an optional
dependency and is not imported here).
"""

from torchrl_sparse.plasticity.fisher import DistFn, fisher_trace
from torchrl_sparse.plasticity.interventions import (
    InitFn,
    ReDo,
    Reset,
    ShrinkAndPerturb,
    reset_optimizer_state,
)
from torchrl_sparse.plasticity.masks import (
    MaskProvider,
    MaskSource,
    incoming_alive,
    resolve_masks,
)
from torchrl_sparse.plasticity.metrics import (
    DormantStats,
    active_unit_fraction,
    check_delta,
    check_tau,
    dormant_ratio,
    entropy_effective_rank,
    feature_norm,
    grad_norm,
    per_unit_abs_mean,
    singular_values,
    srank,
    stable_rank,
    task_ids_from,
    unit_scores,
    weight_drift,
    weight_norm,
)
from torchrl_sparse.plasticity.monitor import ALL_METRICS, PlasticityMonitor, PlasticityTrainerHook
from torchrl_sparse.plasticity.probes import (
    ACTIVATION_TYPES,
    ActivationProbe,
    HiddenLayer,
    find_hidden_layers,
    run_module,
)
from torchrl_sparse.plasticity.reservoir import ObservationReservoir

__all__ = [
    "ACTIVATION_TYPES",
    "ALL_METRICS",
    "ActivationProbe",
    "DistFn",
    "DormantStats",
    "HiddenLayer",
    "InitFn",
    "MaskProvider",
    "MaskSource",
    "ObservationReservoir",
    "PlasticityMonitor",
    "PlasticityTrainerHook",
    "ReDo",
    "Reset",
    "ShrinkAndPerturb",
    "active_unit_fraction",
    "check_delta",
    "check_tau",
    "dormant_ratio",
    "entropy_effective_rank",
    "feature_norm",
    "find_hidden_layers",
    "fisher_trace",
    "grad_norm",
    "incoming_alive",
    "per_unit_abs_mean",
    "reset_optimizer_state",
    "resolve_masks",
    "run_module",
    "singular_values",
    "srank",
    "stable_rank",
    "task_ids_from",
    "unit_scores",
    "weight_drift",
    "weight_norm",
]
