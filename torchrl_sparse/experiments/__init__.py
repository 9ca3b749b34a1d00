"""Experiments over many runs: run summaries and sweeps of conditions x seeds.

``torchrl-sparse sweep`` runs every (condition, seed) of a grid as its own ``torchrl-sparse
fit`` process, on a local pool or a SLURM cluster (through submitit), and can be re-run to
resume it. Every fit writes ``summary.json`` (:mod:`torchrl_sparse.experiments.summary`) next
to its TensorBoard events; ``torchrl-sparse report`` builds tables and figures from them.
"""

from torchrl_sparse.experiments.summary import (
    SCHEMA_VERSION,
    SUMMARY_FILE,
    config_hash,
    read_summary,
    summarize_module,
)

__all__ = ["SCHEMA_VERSION", "SUMMARY_FILE", "config_hash", "read_summary", "summarize_module"]
