"""The report's figures, sized for a two-column paper and readable in black and white.

Each treatment keeps one line style, marker and colour (colour-blind safe, Okabe-Ito) in every
figure, so curves stay apart when printed in grey. Single-column figures are 3.3 in wide,
double-column ones 6.9 in; text is 7-8 pt. Every figure is written as PNG (200 dpi) and PDF
(TrueType fonts, no creation date, so the same data give the same file).

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas: no pyplot
state, no global backend switch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from torchrl_sparse.report.statistics import CurveEstimate, Estimate

__all__ = [
    "DOUBLE_COLUMN_IN",
    "SINGLE_COLUMN_IN",
    "LineStyle",
    "learning_curves_figure",
    "line_styles",
    "performance_profiles_figure",
    "plasticity_figure",
    "sparsity_figure",
]

SINGLE_COLUMN_IN = 3.3
DOUBLE_COLUMN_IN = 6.9
# PNGs are for screens (index.md); the PDFs, vector graphics, are for print.
_PNG_DPI = 200
FRAMES_LABEL = "environment frames"
_RC = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "pdf.fonttype": 42,  # TrueType: editable text, accepted by conference checkers
}
# Okabe & Ito's colour-blind safe palette, black first for the baseline.
_COLOURS = ["#000000", "#E69F00", "#0072B2", "#009E73", "#D55E00", "#56B4E9", "#CC79A7"]
_DASHES: list[Any] = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)), (0, (6, 2))]
_MARKERS = ["o", "s", "^", "D", "v", "x", "P", "*"]
_MARKERS_PER_CURVE = 8
# How plasticity metrics are named on the axes; other metrics show their tag name.
PLASTICITY_LABELS = {
    "dormant_ratio": ("dormant ratio", "fraction of neurons"),
    "srank": ("effective rank (srank)", "rank"),
    "fisher_trace": ("Fisher trace", "trace of the empirical Fisher"),
}


@dataclass(frozen=True)
class LineStyle:
    """How one treatment is drawn in every figure."""

    colour: str
    dashes: Any
    marker: str

    def kwargs(self, points: int) -> dict[str, Any]:
        """Keyword arguments of ``Axes.plot`` for a curve of ``points`` points."""
        return {
            "color": self.colour,
            "linestyle": self.dashes,
            "marker": self.marker,
            "markevery": max(1, points // _MARKERS_PER_CURVE),
        }


def line_styles(treatments: Sequence[str]) -> dict[str, LineStyle]:
    """One style per treatment, in order: line style, marker and colour all differ.

    Examples:
        >>> styles = line_styles(["dense", "gmp"])
        >>> styles["dense"].colour, styles["dense"].dashes, styles["gmp"].dashes
        ('#000000', '-', '--')
    """
    return {
        name: LineStyle(
            _COLOURS[i % len(_COLOURS)], _DASHES[i % len(_DASHES)], _MARKERS[i % len(_MARKERS)]
        )
        for i, name in enumerate(treatments)
    }


def _rc() -> Any:
    import matplotlib

    return matplotlib.rc_context(_RC)


def _new_figure(width: float, height: float) -> Any:
    """A figure of ``width`` x ``height`` inches; call inside :func:`_rc`."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _frames_axis(axis: Any) -> None:
    from matplotlib.ticker import EngFormatter

    axis.set_xlabel(FRAMES_LABEL)
    axis.xaxis.set_major_formatter(EngFormatter(sep=""))  # 150k, 1.2M
    axis.grid(alpha=0.3, linewidth=0.5)


def _save(figure: Any, stem: Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf``; call inside :func:`_rc`."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    figure.savefig(paths[0], dpi=_PNG_DPI)
    figure.savefig(paths[1], metadata={"CreationDate": None})
    return paths


def _draw_curve(axis: Any, label: str, curve: CurveEstimate, style: LineStyle) -> None:
    axis.plot(curve.frames, curve.point, label=label, **style.kwargs(len(curve.frames)))
    if curve.low is not None and curve.high is not None:
        axis.fill_between(
            curve.frames, curve.low, curve.high, color=style.colour, alpha=0.15, linewidth=0
        )


def _legend_below(figure: Any, axis: Any, entries: int) -> None:
    with_labels = axis.get_legend_handles_labels()
    # Two columns: three labels such as "layer_norm (n=10)" overflow a 3.3-inch figure.
    figure.legend(*with_labels, loc="outside lower center", ncols=min(entries, 2), frameon=False)


def learning_curves_figure(
    title: str,
    curves: Mapping[str, CurveEstimate],
    ylabel: str,
    stem: Path,
    styles: Mapping[str, LineStyle],
) -> list[Path]:
    """IQM learning curves of a column's treatments with 95% CI bands, one column wide.

    Args:
        title: the column's label.
        curves: ``{treatment: curve}``.
        ylabel: the evaluation metric.
        stem: the file path without suffix; ``.png`` and ``.pdf`` are written.
        styles: the treatments' styles (:func:`line_styles`).

    Returns:
        The PNG and PDF paths.

    Examples:
        >>> import tempfile
        >>> curve = CurveEstimate(np.array([0, 1000]), np.array([0.0, 0.5]),
        ...                       np.array([0.0, 0.4]), np.array([0.1, 0.6]), runs=2)
        >>> paths = learning_curves_figure("mtppo / minigrid MT3", {"dense": curve}, "success",
        ...                                Path(tempfile.mkdtemp()) / "curves",
        ...                                line_styles(["dense"]))
        >>> [path.suffix for path in paths], all(path.stat().st_size > 0 for path in paths)
        (['.png', '.pdf'], True)
    """
    with _rc():
        figure = _new_figure(SINGLE_COLUMN_IN, 2.6)
        axis = figure.subplots()
        for treatment, curve in curves.items():
            _draw_curve(axis, f"{treatment} (n={curve.runs})", curve, styles[treatment])
        _frames_axis(axis)
        axis.set(title=title, ylabel=f"{ylabel} (IQM)")
        _legend_below(figure, axis, len(curves))
        return _save(figure, stem)


def plasticity_figure(
    title: str,
    panels: Mapping[tuple[str, str], Mapping[str, CurveEstimate]],
    stem: Path,
    styles: Mapping[str, LineStyle],
) -> list[Path]:
    """Plasticity metrics over frames: one row per metric, one panel per network.

    Args:
        title: the column's label.
        panels: ``{(network, metric): {treatment: curve}}``.
        stem: the file path without suffix.
        styles: the treatments' styles.

    Returns:
        The PNG and PDF paths.
    """
    networks = sorted({network for network, _ in panels})
    known = list(PLASTICITY_LABELS)
    metrics = sorted(
        {metric for _, metric in panels},
        key=lambda m: (known.index(m) if m in known else len(known), m),
    )
    width = DOUBLE_COLUMN_IN if len(networks) > 1 else SINGLE_COLUMN_IN
    with _rc():
        figure = _new_figure(width, 1.7 * len(metrics) + 0.6)
        axes = figure.subplots(len(metrics), len(networks), squeeze=False, sharex=True)
        for row, metric in enumerate(metrics):
            name, unit = PLASTICITY_LABELS.get(metric, (metric.replace("_", " "), metric))
            for col, network in enumerate(networks):
                axis = axes[row][col]
                curves = panels.get((network, metric))
                if curves is None:
                    axis.set_axis_off()
                    continue
                for treatment, curve in curves.items():
                    _draw_curve(axis, treatment, curve, styles[treatment])
                _frames_axis(axis)
                if row < len(metrics) - 1:
                    axis.set_xlabel("")  # the frames axis is shared: label the bottom row
                axis.set(title=f"{network}: {name}", ylabel=unit)
        figure.suptitle(title)
        handles = {}
        for axis in axes.flat:
            for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
                handles.setdefault(label, handle)
        figure.legend(
            list(handles.values()),
            list(handles),
            loc="outside lower center",
            ncols=min(len(handles), 4),
            frameon=False,
        )
        return _save(figure, stem)


def sparsity_figure(
    title: str,
    points: Sequence[tuple[str, float, Estimate]],
    baseline: tuple[str, Estimate] | None,
    ylabel: str,
    stem: Path,
    styles: Mapping[str, LineStyle],
) -> list[Path]:
    """Final score against final sparsity, one marker per treatment, with 95% CIs.

    Treatments that differ only after an ``@`` (a grid over one method, ``gmp@sparsity=0.9``)
    are joined by a line. The dense baseline is a horizontal line with its CI band.

    Args:
        title: the column's label.
        points: ``(treatment, median final sparsity of its runs, final score IQM)``.
        baseline: the baseline's name and IQM, when it was run in this column.
        ylabel: the evaluation metric.
        stem: the file path without suffix.
        styles: the treatments' styles.

    Returns:
        The PNG and PDF paths.
    """
    with _rc():
        figure = _new_figure(SINGLE_COLUMN_IN, 2.6)
        axis = figure.subplots()
        if baseline is not None:
            name, estimate = baseline
            style = styles[name]
            axis.axhline(estimate.point, color=style.colour, linestyle="--", label=name)
            if estimate.has_interval:
                axis.axhspan(estimate.low, estimate.high, color=style.colour, alpha=0.1, lw=0)
        families: dict[str, list[tuple[str, float, Estimate]]] = {}
        for point in points:
            families.setdefault(point[0].split("@")[0], []).append(point)
        for members in families.values():
            members.sort(key=lambda point: point[1])
            style = styles[members[0][0]]
            x = np.array([sparsity for _, sparsity, _ in members])
            y = np.array([estimate.point for _, _, estimate in members])
            errors = np.array(
                [
                    [e.point - e.low, e.high - e.point] if e.has_interval else [0.0, 0.0]
                    for _, _, e in members
                ]
            ).T
            label = members[0][0].split("@")[0]
            axis.errorbar(
                x,
                y,
                yerr=errors,
                color=style.colour,
                linestyle=style.dashes,
                marker=style.marker,
                capsize=2,
                label=label,
            )
        axis.set(title=title, xlabel="final sparsity (fraction of zero weights)")
        axis.set_ylabel(f"final {ylabel} (IQM)")
        axis.grid(alpha=0.3, linewidth=0.5)
        _legend_below(figure, axis, len(families) + (baseline is not None))
        return _save(figure, stem)


def performance_profiles_figure(
    title: str,
    profiles: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]],
    metric: str,
    stem: Path,
    styles: Mapping[str, LineStyle],
) -> list[Path]:
    """Performance profiles: the fraction of (run, task) scores above each threshold.

    Args:
        title: the column's label.
        profiles: ``{treatment: (thresholds, profile, low, high)}``.
        metric: the evaluation metric (the x axis).
        stem: the file path without suffix.
        styles: the treatments' styles.

    Returns:
        The PNG and PDF paths.
    """
    with _rc():
        figure = _new_figure(SINGLE_COLUMN_IN, 2.6)
        axis = figure.subplots()
        for treatment, (taus, profile, low, high) in profiles.items():
            style = styles[treatment]
            axis.plot(taus, profile, label=treatment, **style.kwargs(len(taus)))
            if low is not None and high is not None:
                axis.fill_between(taus, low, high, color=style.colour, alpha=0.15, linewidth=0)
        axis.set(title=title, xlabel=f"{metric} threshold τ", ylabel="fraction of runs × tasks > τ")
        axis.grid(alpha=0.3, linewidth=0.5)
        _legend_below(figure, axis, len(profiles))
        return _save(figure, stem)
