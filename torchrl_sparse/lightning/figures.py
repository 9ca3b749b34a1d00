"""The end-of-run summary figure, read back from the run's TensorBoard event files.

Each panel says what it plots: its title names the quantity and where it comes from
(evaluation or training episodes), its y-axis the unit, its legend the task or network of each
curve. The score panel plots whatever the module evaluates: the normalised return on MiniGrid
(PPO), the success rate on MetaWorld (SAC).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Panel", "draw_panels", "read_scalars", "select_panels", "summary_figure"]

Points = list[tuple[int, float]]


@dataclass(frozen=True)
class _PanelSpec:
    """A candidate panel: tags matching ``pattern`` (group 1 labels each curve)."""

    pattern: str
    title: str
    ylabel: str
    legend_title: str | None = None
    mean_tag: str | None = None


# Panels, each a list of candidates in order of preference: the first with data is drawn.
_SCORE = [
    _PanelSpec(
        r"charts/eval/normalized_return/(.+)",
        "evaluation: normalised return per task",
        "normalised return (return / best achievable)",
        "task",
        "charts/eval/normalized_return_mean",
    ),
    _PanelSpec(
        r"charts/eval/success/(.+)",
        "evaluation: success rate per task",
        "success rate (fraction of episodes)",
        "task",
        "charts/eval/success_mean",
    ),
    _PanelSpec(
        r"charts/normalized_return/(.+)",
        "training episodes: normalised return per task",
        "normalised return (return / best achievable)",
        "task",
        "charts/normalized_return_mean",
    ),
    _PanelSpec(
        r"charts/success/(.+)",
        "training episodes: success rate per task",
        "success rate (fraction of episodes)",
        "task",
        "charts/success_mean",
    ),
    _PanelSpec(
        r"charts/episode_return/(.+)",
        "training episodes: return per task",
        "episode return",
        "task",
        "charts/episode_return_mean",
    ),
    _PanelSpec(r"charts/episode_return", "training episodes: return", "episode return"),
]
_SPARSITY = [
    _PanelSpec(
        r"sparsity/total", "sparsity of the pruned layers", "fraction of their weights at zero"
    )
]
_DORMANT = r"plasticity/([^/]+)/dormant_ratio"
_SRANK = r"plasticity/([^/]+)/srank"


@dataclass(frozen=True)
class Panel:
    """One panel of the summary figure, with everything that labels it.

    Attributes:
        title: what is plotted (e.g. ``"evaluation: success rate per task"``).
        ylabel: the y-axis label (the quantity and its unit).
        curves: ``{legend label: [(frame, value), ...]}`` (a task or network per curve).
        legend_title: what the legend labels are (``"task"``, ``"network"``), or ``None``
            for a single unlabelled curve.
        mean: the mean over tasks, drawn dashed when it is logged.
    """

    title: str
    ylabel: str
    curves: dict[str, Points]
    legend_title: str | None = None
    mean: Points | None = None


def read_scalars(log_dir: str | Path) -> dict[str, Points]:
    """All scalar series of a TensorBoard run directory as ``{tag: [(step, value), ...]}``.

    Examples:
        >>> import tempfile
        >>> from torch.utils.tensorboard import SummaryWriter
        >>> log_dir = tempfile.mkdtemp()
        >>> with SummaryWriter(log_dir) as writer:
        ...     writer.add_scalar("sparsity/total", 0.5, 2000)
        >>> read_scalars(log_dir)["sparsity/total"]
        [(2000, 0.5)]
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(event.step, event.value) for event in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
    }


def select_panels(
    scalars: dict[str, Points], srank_delta: float | None = None, dormant_tau: float | None = None
) -> list[Panel]:
    """The panels of the summary figure for a run's scalars, in drawing order.

    The evaluation score per task (else the training score), sparsity, the dormant ratio and
    srank of every monitored network; panels without data are left out.

    Args:
        scalars: ``{tag: [(frame, value), ...]}``, e.g. from :func:`read_scalars`.
        srank_delta: the monitor's srank threshold, named in the srank panel's title.
        dormant_tau: the monitor's dormancy threshold, named in the dormant-ratio title.

    Examples:
        >>> scalars = {
        ...     "charts/eval/success/reach-v3": [(1000, 0.5)],
        ...     "charts/eval/success_mean": [(1000, 0.5)],
        ...     "plasticity/critic/srank": [(1000, 12.0)],
        ... }
        >>> for panel in select_panels(scalars, srank_delta=0.01):
        ...     print(f"{panel.title} | {panel.ylabel} | {list(panel.curves)}")
        evaluation: success rate per task | success rate (fraction of episodes) | ['reach-v3']
        srank (effective rank, δ=0.01) | srank of the features | ['critic']
    """
    srank = "srank (effective rank" + (f", δ={srank_delta:g})" if srank_delta is not None else ")")
    dormant = "dormant ratio" + (f" (τ={dormant_tau:g})" if dormant_tau is not None else "")
    choices = [
        _SCORE,
        _SPARSITY,
        [_PanelSpec(_DORMANT, dormant, "fraction of dormant hidden units", "network")],
        [_PanelSpec(_SRANK, srank, "srank of the features", "network")],
    ]
    panels = []
    for candidates in choices:
        for spec in candidates:
            curves = {
                match.group(1) if match.groups() else tag: points
                for tag, points in sorted(scalars.items())
                if (match := re.fullmatch(spec.pattern, tag))
            }
            if curves:
                mean = scalars.get(spec.mean_tag) if spec.mean_tag else None
                panels.append(Panel(spec.title, spec.ylabel, curves, spec.legend_title, mean))
                break
    return panels


def summary_figure(
    log_dir: str | Path,
    path: str | Path,
    srank_delta: float | None = None,
    dormant_tau: float | None = None,
) -> Path:
    """Draw the :func:`select_panels` of a run's TensorBoard logs into a PNG.

    Args:
        log_dir: the run's TensorBoard directory.
        path: where to write the PNG.
        srank_delta: see :func:`select_panels`.
        dormant_tau: see :func:`select_panels`.

    Returns:
        The path of the written PNG.

    Raises:
        ValueError: no panel has data.

    Examples:
        >>> import tempfile
        >>> from torch.utils.tensorboard import SummaryWriter
        >>> log_dir = Path(tempfile.mkdtemp())
        >>> with SummaryWriter(log_dir) as writer:
        ...     for frames in (1000, 2000):
        ...         writer.add_scalar("charts/eval/success/reach-v3", frames / 4000, frames)
        >>> summary_figure(log_dir, log_dir / "summary.png").stat().st_size > 0
        True
    """
    scalars = read_scalars(log_dir)
    panels = select_panels(scalars, srank_delta, dormant_tau)
    if not panels:
        raise ValueError(f"No scalar to plot in {log_dir}: found tags {sorted(scalars)}.")
    return draw_panels(panels, path)


def draw_panels(panels: list[Panel], path: str | Path) -> Path:
    """Draw ``panels`` side by side against environment frames and save them as a PNG.

    Returns:
        The path of the written PNG.

    Examples:
        >>> import tempfile
        >>> panel = Panel("sparsity", "fraction of zero weights", {"total": [(0, 0.0), (10, 0.9)]})
        >>> draw_panels([panel], Path(tempfile.mkdtemp()) / "one.png").stat().st_size > 0
        True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    figure, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6), squeeze=False)
    for axis, panel in zip(axes[0], panels, strict=True):
        for label, points in panel.curves.items():
            steps, values = zip(*points, strict=True)
            axis.plot(steps, values, label=label)
        if panel.mean:
            steps, values = zip(*panel.mean, strict=True)
            axis.plot(steps, values, "k--", label="mean over tasks")
        axis.set(title=panel.title, xlabel="environment frames", ylabel=panel.ylabel)
        axis.title.set_fontsize(9)
        axis.yaxis.label.set_fontsize(8)
        axis.xaxis.set_major_formatter(EngFormatter(sep=""))  # 150k, 1.2M
        axis.grid(alpha=0.3)
        if panel.legend_title is not None:
            axis.legend(title=panel.legend_title, fontsize=7, title_fontsize=7)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
