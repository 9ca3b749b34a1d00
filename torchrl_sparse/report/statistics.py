"""Interquartile mean, stratified-bootstrap confidence intervals and probability of improvement.

The statistics of Agarwal et al. (2021), "Deep RL at the edge of the statistical precipice",
from their library `rliable <https://github.com/google-research/rliable>`_:

- **IQM**: the mean of the middle 50% of all (run, task) scores,
  ``rliable.metrics.aggregate_iqm`` (``scipy.stats.trim_mean(scores, 0.25, axis=None)``).
- **95% CI**: percentile intervals of ``rliable.library.get_interval_estimates``, a stratified
  bootstrap that resamples runs with replacement within each task.
- **Probability of improvement** of X over Y: the probability that a run of X scores higher than
  a run of Y on a task (ties count half), averaged over tasks,
  ``rliable.metrics.probability_of_improvement``; CIs resample the runs of X and of Y
  independently.
- **Performance profiles**: the fraction of (run, task) scores above each threshold,
  ``rliable.library.create_performance_profile``.

Scores are arrays of shape ``(runs, tasks)``, as rliable wants them: one row per run (seed),
one column per task. :class:`Scores` and :class:`Curves` carry the run and task names with the
array and check its shape, since a transposed array gives plausible but wrong numbers.

Reproducibility: rliable's ``random_state`` does not reach its resampling, which draws from
NumPy's global generator. Each estimate here seeds that generator from the report's seed and
the estimate's key (see :func:`bootstrap_seed`) and restores its state afterwards, so the same
runs and seed give the same numbers, whatever else the report holds.

The point estimates of the tables are rliable's functions. Inside the bootstrap, and for the
curves (one IQM per frame), the statistic is computed by a vectorised equivalent (same
definition, checked against rliable's function by the tests): rliable's own, called 2,000
times, takes seconds per estimate through SciPy's argument handling and one Mann-Whitney test
per task, and a report holds hundreds of estimates.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "BootstrapSettings",
    "CurveEstimate",
    "Curves",
    "Estimate",
    "Scores",
    "bootstrap_seed",
    "global_numpy_seed",
    "iqm",
    "iqm_curve",
    "iqm_curves",
    "performance_profile",
    "probability_of_improvement",
    "require_rliable",
]

IQM_TRIM = 0.25  # IQM: drop the lowest and the highest quarter


def require_rliable() -> tuple[ModuleType, ModuleType]:
    """``rliable.library`` and ``rliable.metrics``, or an error that says what to install.

    Raises:
        ModuleNotFoundError: rliable is not installed.
        ImportError: rliable fails to import (its dependency ``arch`` under pandas 3).

    Examples:
        >>> library, metrics = require_rliable()
        >>> library.__name__, metrics.__name__
        ('rliable.library', 'rliable.metrics')
    """
    try:
        from rliable import library, metrics
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"reports need {error.name!r}: pip install 'torchrl-sparse[report]'", name=error.name
        ) from error
    except TypeError as error:
        raise ImportError(
            f"rliable fails to import ({error}); its dependency arch needs pandas<3 and "
            "arch 7: pip install 'torchrl-sparse[report]' -c constraints.txt"
        ) from error
    return library, metrics


@dataclass(frozen=True)
class BootstrapSettings:
    """How confidence intervals are drawn: the seed, the resamples and the coverage.

    Examples:
        >>> BootstrapSettings(seed=1, reps=500).confidence
        0.95
    """

    seed: int = 0
    reps: int = 2000
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.reps < 1:
            raise ValueError(f"reps is {self.reps}; the bootstrap needs at least 1 resample")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence is {self.confidence}; it must lie in (0, 1)")


@dataclass(frozen=True, eq=False)
class Scores:
    """Final scores of one condition: ``values[i, j]`` is run ``runs[i]`` on task ``tasks[j]``.

    Raises:
        ValueError: ``values`` is not ``(len(runs), len(tasks))``, or holds NaN or infinity.

    Examples:
        >>> Scores(np.array([[0.5, 1.0]]), runs=("seed0",), tasks=("a", "b")).values.shape
        (1, 2)
        >>> Scores(np.array([[0.5], [1.0]]), runs=("seed0",), tasks=("a", "b"))
        Traceback (most recent call last):
        ...
        ValueError: scores of shape (2, 1); expected (runs, tasks) = (1, 2)
    """

    values: np.ndarray
    runs: tuple[str, ...]
    tasks: tuple[str, ...]

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        expected = (len(self.runs), len(self.tasks))
        if values.shape != expected:
            raise ValueError(f"scores of shape {values.shape}; expected (runs, tasks) = {expected}")
        if not np.isfinite(values).all():
            raise ValueError("scores hold NaN or infinity")
        object.__setattr__(self, "values", values)


@dataclass(frozen=True, eq=False)
class Curves:
    """Evaluation curves of one condition: ``values[i, j, k]`` is run i, task j at ``frames[k]``.

    Raises:
        ValueError: ``values`` is not ``(len(runs), len(tasks), len(frames))``, or holds NaN.

    Examples:
        >>> curves = Curves(np.zeros((2, 1, 3)), ("seed0", "seed1"), ("a",), np.array([1, 2, 3]))
        >>> curves.values.shape
        (2, 1, 3)
    """

    values: np.ndarray
    runs: tuple[str, ...]
    tasks: tuple[str, ...]
    frames: np.ndarray

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        expected = (len(self.runs), len(self.tasks), len(self.frames))
        if values.shape != expected:
            raise ValueError(
                f"curves of shape {values.shape}; expected (runs, tasks, frames) = {expected}"
            )
        if not np.isfinite(values).all():
            raise ValueError("curves hold NaN or infinity")
        object.__setattr__(self, "values", values)


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval (``None`` with fewer than 2 runs).

    Examples:
        >>> Estimate(0.75, 0.7, 0.8, runs=3).has_interval, Estimate(0.75, runs=1).has_interval
        (True, False)
    """

    point: float
    low: float | None = None
    high: float | None = None
    runs: int = 0

    @property
    def has_interval(self) -> bool:
        """Whether a confidence interval was drawn."""
        return self.low is not None and self.high is not None


@dataclass(frozen=True, eq=False)
class CurveEstimate:
    """An IQM curve over frames with its pointwise confidence band (``None`` with one run).

    Examples:
        >>> from torchrl_sparse.report import BootstrapSettings, Curves, iqm_curve
        >>> values = np.array([[[0.0, 0.5]], [[0.2, 0.7]]])  # 2 runs, 1 task, 2 frames
        >>> curves = Curves(values, ("seed0", "seed1"), ("a",), np.array([1000, 2000]))
        >>> curve = iqm_curve(curves, BootstrapSettings(reps=100), key="dense")
        >>> curve.frames.tolist(), curve.point.round(2).tolist(), curve.runs
        ([1000, 2000], [0.1, 0.6], 2)
        >>> bool((curve.low <= curve.point).all() and (curve.point <= curve.high).all())
        True
        >>> one_run = Curves(values[:1], ("seed0",), ("a",), curves.frames)
        >>> iqm_curve(one_run, BootstrapSettings(), key="dense").low is None
        True
    """

    frames: np.ndarray
    point: np.ndarray
    low: np.ndarray | None
    high: np.ndarray | None
    runs: int


def bootstrap_seed(seed: int, key: str) -> int:
    """The seed of one estimate's bootstrap: the report's seed mixed with the estimate's key.

    Each estimate gets its own stream, so adding a condition to a report leaves the other
    conditions' intervals unchanged.

    Examples:
        >>> bootstrap_seed(0, "a") == bootstrap_seed(0, "a") != bootstrap_seed(1, "a")
        True
    """
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


@contextlib.contextmanager
def global_numpy_seed(seed: int) -> Iterator[None]:
    """Seed NumPy's global generator (which rliable's bootstrap draws from), then restore it.

    Not thread-safe: the global generator is shared by every thread.

    Examples:
        >>> with global_numpy_seed(0):
        ...     first = np.random.rand()
        >>> with global_numpy_seed(0):
        ...     bool(np.random.rand() == first)
        True
    """
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _iqm_per_frame(values: np.ndarray) -> np.ndarray:
    """IQM over runs and tasks, for each trailing index: ``(runs, tasks[, frames]) -> (frames,)``.

    The same trimmed mean as ``scipy.stats.trim_mean(x, 0.25, axis=None)`` for each frame.
    """
    flat = values.reshape(values.shape[0] * values.shape[1], -1)
    cut = int(IQM_TRIM * flat.shape[0])
    return np.sort(flat, axis=0)[cut : flat.shape[0] - cut].mean(axis=0)


def _improvement_probability(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y) / 2 per task over all run pairs, averaged over tasks: ``(1,)``.

    rliable's ``probability_of_improvement`` (Mann-Whitney U / (n_x n_y)) without the loop.
    """
    pairs_x, pairs_y = x[:, None, :], y[None, :, :]
    per_task = ((pairs_x > pairs_y) + 0.5 * (pairs_x == pairs_y)).mean(axis=(0, 1))
    return np.array([per_task.mean()])


def _interval(
    data: np.ndarray | list[np.ndarray],
    statistic: Callable[..., np.ndarray],
    settings: BootstrapSettings,
    key: str,
) -> tuple[np.ndarray, np.ndarray]:
    """rliable's stratified-bootstrap percentile interval of ``statistic``: ``(low, high)``."""
    library, _ = require_rliable()
    with global_numpy_seed(bootstrap_seed(settings.seed, key)):
        _, intervals = library.get_interval_estimates(
            {key: data},
            statistic,
            reps=settings.reps,
            confidence_interval_size=settings.confidence,
        )
    return intervals[key][0], intervals[key][1]


def iqm(scores: Scores, settings: BootstrapSettings, key: str) -> Estimate:
    """IQM of a condition's final scores over all (run, task) pairs, with its CI.

    Args:
        scores: one row per run, one column per task.
        settings: seed, resamples and coverage of the interval.
        key: names the estimate; it seeds the bootstrap (:func:`bootstrap_seed`).

    Returns:
        The IQM; no interval with fewer than 2 runs.

    Examples:
        >>> scores = Scores(np.array([[0.1, 0.9], [0.3, 0.8], [0.5, 0.7]]),
        ...                 runs=("seed0", "seed1", "seed2"), tasks=("a", "b"))
        >>> estimate = iqm(scores, BootstrapSettings(seed=0, reps=200), key="dense")
        >>> round(estimate.point, 4), estimate.low <= estimate.point <= estimate.high
        (0.575, True)
    """
    _, metrics = require_rliable()
    point = float(metrics.aggregate_iqm(scores.values))
    runs = len(scores.runs)
    if runs < 2:
        return Estimate(point, runs=runs)
    low, high = _interval(scores.values, _iqm_per_frame, settings, key)
    return Estimate(point, float(low[0]), float(high[0]), runs)


def probability_of_improvement(
    x: Scores, y: Scores, settings: BootstrapSettings, key: str
) -> Estimate:
    """Probability that a run of X beats a run of Y on a task, averaged over tasks, with its CI.

    Raises:
        ValueError: X and Y hold different tasks (or the same tasks in another order).

    Examples:
        >>> x = Scores(np.array([[0.9], [0.8]]), runs=("seed0", "seed1"), tasks=("a",))
        >>> y = Scores(np.array([[0.1], [0.85]]), runs=("seed0", "seed1"), tasks=("a",))
        >>> probability_of_improvement(x, y, BootstrapSettings(reps=100), key="gmp").point
        0.75
    """
    if x.tasks != y.tasks:
        raise ValueError(f"tasks differ: {list(x.tasks)} vs {list(y.tasks)}")
    _, metrics = require_rliable()
    point = float(metrics.probability_of_improvement(x.values, y.values))
    runs = min(len(x.runs), len(y.runs))
    if runs < 2:
        return Estimate(point, runs=runs)
    low, high = _interval([x.values, y.values], _improvement_probability, settings, key)
    return Estimate(point, float(low[0]), float(high[0]), runs)


def iqm_curve(curves: Curves, settings: BootstrapSettings, key: str) -> CurveEstimate:
    """IQM over (run, task) pairs at each frame, with pointwise stratified-bootstrap bands.

    Examples:
        >>> values = np.array([[[0.0, 0.5]], [[0.2, 0.7]]])  # 2 runs, 1 task, 2 frames
        >>> curves = Curves(values, ("seed0", "seed1"), ("a",), np.array([1000, 2000]))
        >>> curve = iqm_curve(curves, BootstrapSettings(reps=100), key="dense")
        >>> curve.point.round(2).tolist(), curve.runs
        ([0.1, 0.6], 2)
    """
    return iqm_curves([curves], settings, key)[0]


def iqm_curves(
    curves: Sequence[Curves], settings: BootstrapSettings, key: str
) -> list[CurveEstimate]:
    """:func:`iqm_curve` of several curves of the same runs, in one bootstrap.

    rliable's stratified bootstrap resamples the runs of every (task, frame) cell
    independently, so curves joined along the frame axis get the same pointwise bands as
    one by one, at a fraction of the cost (one resampling loop instead of one per curve).

    Raises:
        ValueError: the curves are of different runs or numbers of tasks.

    Examples:
        >>> a = Curves(np.array([[[0.0, 1.0]], [[0.2, 1.2]]]), ("seed0", "seed1"), ("x",),
        ...            np.array([10, 20]))
        >>> b = Curves(np.array([[[5.0]], [[7.0]]]), ("seed0", "seed1"), ("y",), np.array([10]))
        >>> [c.point.round(2).tolist() for c in iqm_curves([a, b], BootstrapSettings(reps=50), "k")]
        [[0.1, 1.1], [6.0]]
    """
    first = curves[0]
    if any(c.runs != first.runs or len(c.tasks) != len(first.tasks) for c in curves):
        raise ValueError("curves bootstrapped together must be of the same runs and task count")
    joined = np.concatenate([c.values for c in curves], axis=2)
    points = _iqm_per_frame(joined)
    bounds: tuple[np.ndarray, np.ndarray] | tuple[None, None] = (None, None)
    if len(first.runs) >= 2:
        bounds = _interval(joined, _iqm_per_frame, settings, key)
    # split the joined frame axis back into the curves
    ends = np.cumsum([len(c.frames) for c in curves])
    starts = np.concatenate([[0], ends[:-1]])
    return [
        CurveEstimate(
            c.frames,
            points[start:end],
            None if bounds[0] is None else bounds[0][start:end],
            None if bounds[1] is None else bounds[1][start:end],
            len(c.runs),
        )
        for c, start, end in zip(curves, starts, ends, strict=True)
    ]


def performance_profile(
    scores: Scores, thresholds: Sequence[float], settings: BootstrapSettings, key: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Fraction of (run, task) scores above each threshold, with pointwise CIs (rliable).

    Returns:
        ``(profile, low, high)``, each of the length of ``thresholds``; no band with one run.

    Examples:
        >>> scores = Scores(np.array([[0.2, 0.6], [0.4, 0.8]]), ("seed0", "seed1"), ("a", "b"))
        >>> profile, _, _ = performance_profile(scores, [0.0, 0.5], BootstrapSettings(reps=50),
        ...                                     key="dense")
        >>> profile.tolist()
        [1.0, 0.5]
    """
    library, _ = require_rliable()
    taus = np.asarray(thresholds, dtype=np.float64)

    def fraction_above(values: np.ndarray, tau_list: Any) -> np.ndarray:
        # rliable's score distribution, vectorised over thresholds
        return (values.reshape(-1, 1) > np.asarray(tau_list)).mean(axis=0)

    profile = library.score_distributions(scores.values, taus)
    if len(scores.runs) < 2:
        return profile, None, None
    with global_numpy_seed(bootstrap_seed(settings.seed, key)):
        _, intervals = library.create_performance_profile(
            {key: scores.values},
            taus,
            custom_profile_func=fraction_above,
            reps=settings.reps,
            confidence_interval_size=settings.confidence,
        )
    return profile, intervals[key][0], intervals[key][1]
