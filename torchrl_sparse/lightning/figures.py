"""The end-of-run summary figure, read back from the run's TensorBoard event files."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["read_scalars", "summary_figure"]

# Panels, each a list of (tag pattern, title) in order of preference: the first pattern with
# data is drawn, under its own title.
PANELS: list[list[tuple[str, str]]] = [
    [
        (r"charts/eval/normalized_return/.+", "evaluation return per task (normalised)"),
        (r"charts/eval/success/.+", "evaluation success rate per task"),
        (r"charts/normalized_return/.+", "training return per task (normalised)"),
        (r"charts/episode_return/.+", "training return per task"),
        (r"charts/episode_return", "training return"),
    ],
    [(r"sparsity/total", "sparsity (fraction of zero weights)")],
    [(r"plasticity/[^/]+/dormant_ratio", "dormant ratio")],
    [(r"plasticity/[^/]+/srank", "effective rank (srank)")],
]


def read_scalars(log_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
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


def summary_figure(log_dir: str | Path, path: str | Path) -> Path:
    """Draw returns per task, sparsity, dormant ratio and effective rank over frames.

    Panels without data are left out; at least the first panel with data is drawn.

    Returns:
        The path of the written PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    scalars = read_scalars(log_dir)
    panels: list[tuple[str, dict[str, list[tuple[int, float]]], list[tuple[int, float]]]] = []
    for choices in PANELS:
        for pattern, title in choices:
            series = {t: v for t, v in sorted(scalars.items()) if re.fullmatch(pattern, t)}
            if series:
                # per-task panels also draw the mean over tasks, when it is logged
                mean = scalars.get(pattern.removesuffix("/.+") + "_mean", [])
                panels.append((title, series, mean))
                break
    if not panels:
        raise ValueError(f"No scalar to plot in {log_dir}: found tags {sorted(scalars)}.")
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for axis, (title, series, mean) in zip(axes[0], panels, strict=True):
        labels = _distinct_parts(list(series))
        for (_tag, points), label in zip(series.items(), labels, strict=True):
            steps, values = zip(*points, strict=True)
            axis.plot(steps, values, label=label if len(series) > 1 else None)
        if mean:
            steps, values = zip(*mean, strict=True)
            axis.plot(steps, values, "k--", label="mean over tasks")
        axis.set(title=title, xlabel="environment frames")
        axis.xaxis.set_major_formatter(EngFormatter(sep=""))  # 150k, 1.2M
        axis.grid(alpha=0.3)
        if len(series) > 1 or mean:
            axis.legend(fontsize=7)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _distinct_parts(tags: list[str]) -> list[str]:
    """Label each tag by the path components that differ between the tags (task, network)."""
    parts = [tag.split("/") for tag in tags]
    varying = [i for i in range(min(map(len, parts))) if len({p[i] for p in parts}) > 1]
    return ["/".join(p[i] for i in varying) or tag for p, tag in zip(parts, tags, strict=True)]
