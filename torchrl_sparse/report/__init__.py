"""Reports of many runs: the papers' tables and figures, with IQM and bootstrap CIs.

``torchrl-sparse report RUN_DIRS --out DIR`` (:func:`~torchrl_sparse.report.cli.main`, or
:func:`build_report` from Python) reads the run folders a sweep writes
(``<save_dir>/<condition>/seed<N>/`` with ``summary.json`` and TensorBoard events), groups them
into conditions (architecture x benchmark suite x treatment) and writes a table of final
scores (IQM with 95% stratified-bootstrap CIs, from rliable), the probability of improvement
over a baseline, learning, plasticity and sparsity-vs-performance figures, and an
``index.md``. Statistics need the ``report`` extra: ``pip install 'torchrl-sparse[report]'``.

Modules: :mod:`~torchrl_sparse.report.runs` (finding and reading runs),
:mod:`~torchrl_sparse.report.events` (TensorBoard scalars),
:mod:`~torchrl_sparse.report.conditions` (grouping and checks),
:mod:`~torchrl_sparse.report.curves` (series on common frames),
:mod:`~torchrl_sparse.report.statistics` (rliable, reproducibly),
:mod:`~torchrl_sparse.report.tables`, :mod:`~torchrl_sparse.report.figures`,
:mod:`~torchrl_sparse.report.index`, :mod:`~torchrl_sparse.report.build` and
:mod:`~torchrl_sparse.report.cli`.
"""

from torchrl_sparse.report.build import Report, build_report
from torchrl_sparse.report.conditions import Column, Condition, Grouping, group_runs
from torchrl_sparse.report.events import Series, read_scalars
from torchrl_sparse.report.runs import Finding, ReportInputError, Run, find_run_dirs, load_runs
from torchrl_sparse.report.statistics import (
    BootstrapSettings,
    CurveEstimate,
    Curves,
    Estimate,
    Scores,
    iqm,
    iqm_curve,
    iqm_curves,
    performance_profile,
    probability_of_improvement,
)
from torchrl_sparse.report.tables import EstimateTable

__all__ = [
    "BootstrapSettings",
    "Column",
    "Condition",
    "CurveEstimate",
    "Curves",
    "Estimate",
    "EstimateTable",
    "Finding",
    "Grouping",
    "Report",
    "ReportInputError",
    "Run",
    "Scores",
    "Series",
    "build_report",
    "find_run_dirs",
    "group_runs",
    "iqm",
    "iqm_curve",
    "iqm_curves",
    "load_runs",
    "performance_profile",
    "probability_of_improvement",
    "read_scalars",
]
