"""Our estimates against rliable's own functions, reproducibility and shape checks."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import scipy.stats
from rliable import library, metrics

from torchrl_sparse.report import statistics
from torchrl_sparse.report.statistics import (
    BootstrapSettings,
    Curves,
    Scores,
    bootstrap_seed,
    global_numpy_seed,
    iqm,
    iqm_curve,
    probability_of_improvement,
    require_rliable,
)

# A fixed data set: 10 runs x 5 tasks, and a second treatment of 8 runs.
DATA = np.random.default_rng(0).random((10, 5))
OTHER = np.random.default_rng(1).random((8, 5)) * 0.9
TASKS = ("a", "b", "c", "d", "e")
# Monte Carlo tolerance of a 95% CI bound with 2,000 resamples on these data (the bounds of
# five seeds spread by about 0.005).
MC_TOLERANCE = 0.02


def scores(values: np.ndarray) -> Scores:
    return Scores(values, tuple(f"seed{i}" for i in range(len(values))), TASKS[: values.shape[1]])


def rliable_iqm_interval(values: np.ndarray, seed: int, reps: int) -> np.ndarray:
    with global_numpy_seed(seed):
        _, intervals = library.get_interval_estimates(
            {"x": values}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps
        )
    return intervals["x"].ravel()


def test_iqm_is_the_trimmed_mean_of_all_scores_exactly() -> None:
    estimate = iqm(scores(DATA), BootstrapSettings(reps=10), key="x")
    assert estimate.point == scipy.stats.trim_mean(DATA.ravel(), 0.25)
    assert estimate.point == metrics.aggregate_iqm(DATA)


def test_iqm_interval_is_rliables_own() -> None:
    settings = BootstrapSettings(seed=7, reps=2000)
    ours = iqm(scores(DATA), settings, key="x")
    # the same global seed draws the same resamples: the same bounds, up to rounding
    same_draws = rliable_iqm_interval(DATA, bootstrap_seed(7, "x"), 2000)
    np.testing.assert_allclose([ours.low, ours.high], same_draws, rtol=0, atol=1e-12)
    # another seed: within Monte Carlo error
    other_draws = rliable_iqm_interval(DATA, seed=12345, reps=2000)
    np.testing.assert_allclose([ours.low, ours.high], other_draws, rtol=0, atol=MC_TOLERANCE)


def test_probability_of_improvement_is_rliables_own() -> None:
    settings = BootstrapSettings(seed=3, reps=200)
    ours = probability_of_improvement(scores(DATA), scores(OTHER), settings, key="x>y")
    assert ours.point == metrics.probability_of_improvement(DATA, OTHER)
    with global_numpy_seed(bootstrap_seed(3, "x>y")):
        _, intervals = library.get_interval_estimates(
            {"x>y": [DATA, OTHER]},
            lambda x, y: np.array([metrics.probability_of_improvement(x, y)]),
            reps=200,
        )
    np.testing.assert_allclose([ours.low, ours.high], intervals["x>y"].ravel(), atol=1e-12)


def test_vectorised_statistics_equal_rliables_with_ties() -> None:
    rng = np.random.default_rng(2)
    for _ in range(20):
        x = rng.integers(0, 3, size=(rng.integers(2, 6), 4)).astype(float)
        y = rng.integers(0, 3, size=(rng.integers(2, 6), 4)).astype(float)
        assert statistics._improvement_probability(x, y)[0] == pytest.approx(
            metrics.probability_of_improvement(x, y), abs=1e-12
        )
        assert statistics._iqm_per_frame(x)[0] == pytest.approx(metrics.aggregate_iqm(x), abs=1e-12)
    curves = rng.random((4, 3, 6))
    np.testing.assert_allclose(
        statistics._iqm_per_frame(curves),
        [metrics.aggregate_iqm(curves[..., k]) for k in range(6)],
        atol=1e-12,
    )


def test_same_seed_same_numbers_other_seed_other_interval() -> None:
    first = iqm(scores(DATA), BootstrapSettings(seed=0, reps=300), key="x")
    np.random.seed(99)  # the caller's global state does not matter
    np.random.rand(5)
    again = iqm(scores(DATA), BootstrapSettings(seed=0, reps=300), key="x")
    other = iqm(scores(DATA), BootstrapSettings(seed=1, reps=300), key="x")
    assert again == first
    assert (other.low, other.high) != (first.low, first.high)
    assert other.point == first.point


def test_the_global_numpy_state_is_restored() -> None:
    np.random.seed(5)
    expected = np.random.rand()
    np.random.seed(5)
    iqm(scores(DATA), BootstrapSettings(reps=50), key="x")
    assert np.random.rand() == expected


def test_transposed_scores_are_refused() -> None:
    with pytest.raises(ValueError, match=r"expected \(runs, tasks\) = \(10, 5\)"):
        Scores(DATA.T, tuple(f"seed{i}" for i in range(10)), TASKS)
    with pytest.raises(ValueError, match="NaN"):
        scores(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match=r"expected \(runs, tasks, frames\)"):
        Curves(np.zeros((3, 2, 4)), ("s0", "s1"), ("a", "b"), np.arange(4))


def test_tasks_must_line_up_for_probability_of_improvement() -> None:
    reordered = Scores(OTHER[:, ::-1], tuple(f"seed{i}" for i in range(8)), TASKS[::-1])
    with pytest.raises(ValueError, match="tasks differ"):
        probability_of_improvement(scores(DATA), reordered, BootstrapSettings(), key="x")


def test_one_run_gives_a_point_without_interval() -> None:
    single = scores(DATA[:1])
    estimate = iqm(single, BootstrapSettings(), key="x")
    assert not estimate.has_interval and estimate.runs == 1
    assert estimate.point == scipy.stats.trim_mean(DATA[0], 0.25)
    assert not probability_of_improvement(
        single, scores(OTHER), BootstrapSettings(), "x"
    ).has_interval


def test_curve_bands_hold_the_iqm_at_each_frame() -> None:
    values = np.random.default_rng(4).random((5, 3, 7))
    curves = Curves(values, tuple(f"seed{i}" for i in range(5)), TASKS[:3], np.arange(7) * 1000)
    curve = iqm_curve(curves, BootstrapSettings(reps=300), key="x")
    expected = [scipy.stats.trim_mean(values[..., k].ravel(), 0.25) for k in range(7)]
    np.testing.assert_allclose(curve.point, expected, rtol=0, atol=1e-12)
    assert (curve.low <= curve.point + 1e-12).all() and (curve.point <= curve.high + 1e-12).all()


def test_bootstrap_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="reps is 0"):
        BootstrapSettings(reps=0)
    with pytest.raises(ValueError, match="confidence is 95"):
        BootstrapSettings(confidence=95)


def test_missing_rliable_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rliable", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'torchrl-sparse\[report\]'"):
        require_rliable()


def test_rliable_broken_by_pandas_3_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = types.ModuleType("rliable")

    def fail(name: str) -> None:
        raise TypeError("'NoneType' object is not callable")  # as arch under pandas 3

    broken.__getattr__ = fail  # type: ignore[method-assign]
    monkeypatch.setitem(sys.modules, "rliable", broken)
    with pytest.raises(ImportError, match=r"pandas<3 and arch 7"):
        require_rliable()
