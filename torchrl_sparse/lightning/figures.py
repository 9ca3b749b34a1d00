"""The end-of-run summary figure, read back from the run's TensorBoard event files."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["read_scalars", "summary_figure"]

# (title, tag patterns in order of preference: the first pattern with data is drawn)
PANELS: list[tuple[str, list[str]]] = [
    (
        "return per task",
        [
            r"charts/eval/normalized_return/.+",
            r"charts/eval/success/.+",
            r"charts/normalized_return/.+",
            r"charts/episode_return/.+",
            r"charts/episode_return",
        ],
    ),
    ("sparsity", [r"sparsity/total"]),
    ("dormant ratio", [r"plasticity/[^/]+/dormant_ratio"]),
    ("effective rank", [r"plasticity/[^/]+/srank"]),
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

    scalars = read_scalars(log_dir)
    panels: list[tuple[str, dict[str, list[tuple[int, float]]]]] = []
    for title, patterns in PANELS:
        for pattern in patterns:
            series = {t: v for t, v in sorted(scalars.items()) if re.fullmatch(pattern, t)}
            if series:
                panels.append((title, series))
                break
    if not panels:
        raise ValueError(f"No scalar to plot in {log_dir}: found tags {sorted(scalars)}.")
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for axis, (title, series) in zip(axes[0], panels, strict=True):
        labels = _distinct_parts(list(series))
        for (_tag, points), label in zip(series.items(), labels, strict=True):
            steps, values = zip(*points, strict=True)
            axis.plot(steps, values, label=label if len(series) > 1 else None)
        axis.set(title=title, xlabel="environment frames")
        axis.grid(alpha=0.3)
        if len(series) > 1:
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
