"""Tables and figures of a lottery study: sparsity vs return (RL vs BC), and the input masks.

:func:`write_report` reads what :func:`~torchrl_sparse.lottery.study.run_seed` wrote under
``<out>/<task>/seed*/`` and writes into ``<out>/<task>/report/``:

- ``results.csv``: one row per (paradigm, seed, round, condition) training;
- ``curves.md`` / ``curves.png`` / ``curves.pdf``: IQM return over seeds per sparsity level, with
  95% stratified-bootstrap confidence intervals (rliable, as the report tooling), one panel per
  paradigm, one line per condition;
- ``input_masks.md`` / ``input_masks.csv`` / ``input_masks.png``: per paradigm and round, the
  outgoing connections each input dimension keeps in the ticket's first layer (mean over seeds)
  and in how many seeds it has none left;
- ``summary.md``: the expert's return, and the sparsity at which each paradigm's ticket
  breaks (the first round whose IQM falls below ``break_fraction`` of its dense IQM).
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from torchrl_sparse.lottery.tickets import CONDITIONS, input_connections

__all__ = ["INPUT_NAMES", "collect_results", "write_report"]

INPUT_NAMES: dict[str, list[str]] = {
    "CartPole-v1": ["cart position", "cart velocity", "pole angle", "pole angular velocity"],
    "Acrobot-v1": ["cos θ1", "sin θ1", "cos θ2", "sin θ2", "θ1 velocity", "θ2 velocity"],
    "Pendulum-v1": ["cos θ", "sin θ", "angular velocity"],
    "MountainCarContinuous-v0": ["position", "velocity"],
}
"""Names of the observation dimensions of known tasks (others are numbered)."""


def collect_results(task_dir: Path) -> list[dict]:
    """Every finished training of the study in ``task_dir`` (``<out>/<task>``)."""
    rows = [
        json.loads(path.read_text())
        for path in sorted(task_dir.glob("seed*/*/round*/*.json"))
        if path.stem in CONDITIONS
    ]
    if not rows:
        raise FileNotFoundError(
            f"No finished trainings under {task_dir}/seed*/: nothing to report."
        )
    return rows


def _estimate(values: list[float], key: str) -> tuple[float, float | None, float | None]:
    from torchrl_sparse.report.statistics import BootstrapSettings, Scores, iqm

    runs = tuple(f"seed{i}" for i in range(len(values)))
    estimate = iqm(Scores(np.array(values)[:, None], runs, ("task",)), BootstrapSettings(), key)
    return estimate.point, estimate.low, estimate.high


def _curves(
    rows: list[dict],
) -> dict[tuple[str, str], list[tuple[int, float, float, float | None, float | None]]]:
    by_point: dict[tuple[str, str, int], list[dict]] = defaultdict(list)
    for row in rows:
        by_point[row["paradigm"], row["condition"], row["round"]].append(row)
    # Round 0 (dense) is every condition's starting point.
    conditions = {row["condition"] for row in rows}
    for (paradigm, condition, round_index), group in list(by_point.items()):
        if round_index == 0 and condition == "ticket":
            for other in conditions - {"ticket"}:
                by_point.setdefault((paradigm, other, 0), group)
    curves: dict[tuple[str, str], list] = defaultdict(list)
    for (paradigm, condition, round_index), group in sorted(by_point.items()):
        values = [r["return"] for r in sorted(group, key=lambda r: r["seed"])]
        point, low, high = _estimate(values, f"{paradigm}/{condition}/{round_index}")
        mean_sparsity = float(np.mean([r["sparsity"] for r in group]))
        curves[paradigm, condition].append(
            (round_index, mean_sparsity, point, low, high, len(values))
        )
    return curves


def _check_same_settings(task_dir: Path) -> None:
    from torchrl_sparse.lottery.study import differing_settings

    studies = {p.parent.name: json.loads(p.read_text()) for p in task_dir.glob("seed*/study.json")}
    names = sorted(studies)
    for name in names[1:]:
        differing = differing_settings(studies[names[0]], studies[name])
        if differing:
            raise ValueError(
                f"{task_dir}/{names[0]} and {name} were run with other settings ({differing}): "
                "their results cannot be pooled; report them from separate --out folders."
            )


def _break_sparsity(points: list, fraction: float) -> float | None:
    # Relative to |dense|, so that negative returns (Acrobot, Pendulum) are handled too.
    dense = next(p for p in points if p[0] == 0)[2]
    for round_index, sparsity, point, *_ in points:
        if round_index > 0 and point < dense - (1.0 - fraction) * abs(dense):
            return sparsity
    return None


def write_report(task_dir: str | Path, break_fraction: float = 0.9) -> Path:
    """Write the study's tables and figures into ``<task_dir>/report``; returns that folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task_dir = Path(task_dir)
    task = task_dir.name
    out = task_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    rows = collect_results(task_dir)
    _check_same_settings(task_dir)
    with (out / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    curves = _curves(rows)
    seeds = len({row["seed"] for row in rows})
    paradigms = sorted({p for p, _ in curves}, key=["rl", "bc"].index)
    lines = [
        f"# {task}: IQM return over {seeds} seeds [95% CI] per sparsity",
        "",
        "(n=k): only k seeds have finished this training so far; the figure leaves it out.",
        "",
    ]
    for paradigm in paradigms:
        lines += [f"## {paradigm.upper()}", "", "| round | sparsity | " + " | ".join(
            c for c in CONDITIONS if (paradigm, c) in curves) + " |"]  # fmt: skip
        conditions = [c for c in CONDITIONS if (paradigm, c) in curves]
        lines.append("|---|---|" + "---|" * len(conditions))
        by_round: dict[int, dict[str, tuple]] = defaultdict(dict)
        for condition in conditions:
            for point in curves[paradigm, condition]:
                by_round[point[0]][condition] = point
        for round_index in sorted(by_round):
            cells = []
            for condition in conditions:
                point = by_round[round_index].get(condition)
                if point is None:
                    cells.append("")
                    continue
                cell = f"{point[2]:.1f}"
                if point[3] is not None:
                    cell += f" [{point[3]:.1f}, {point[4]:.1f}]"
                if point[5] < seeds:
                    cell += f" (n={point[5]})"  # seeds still running
                cells.append(cell)
            sparsity = next(iter(by_round[round_index].values()))[1]
            lines.append(f"| {round_index} | {sparsity:.3f} | " + " | ".join(cells) + " |")
        lines.append("")
    (out / "curves.md").write_text("\n".join(lines))

    styles = {"ticket": "-o", "permuted_init": "--s", "permuted_mask": "-.^", "random_reinit": ":v"}
    fig, axes = plt.subplots(1, len(paradigms), figsize=(6.9, 2.8), sharey=True, squeeze=False)
    for ax, paradigm in zip(axes[0], paradigms, strict=True):
        for condition in CONDITIONS:
            points = [p for p in curves.get((paradigm, condition), []) if p[5] == seeds]
            if not points:
                continue
            x = [p[1] for p in points]
            y = [p[2] for p in points]
            ax.plot(x, y, styles[condition], color="black", markersize=3, label=condition)
            if all(p[3] is not None for p in points):
                ax.fill_between(x, [p[3] for p in points], [p[4] for p in points], alpha=0.12,
                                color="black")  # fmt: skip
        ax.set_xlabel("sparsity of the policy network")
        ax.set_title({"rl": "RL (PPO)", "bc": "behaviour cloning"}[paradigm])
    axes[0][0].set_ylabel(f"{task} return (IQM over seeds)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    for suffix in ("png", "pdf"):
        fig.savefig(out / f"curves.{suffix}", dpi=150)
    plt.close(fig)

    _input_masks(task_dir, task, paradigms, out, plt)

    summary = [f"# Lottery study: {task}", ""]
    from torchrl_sparse.imitation import METADATA_FILE

    experts = [
        json.loads(p.read_text()) for p in sorted(task_dir.glob(f"seed*/expert/{METADATA_FILE}"))
    ]
    if experts:
        returns = ", ".join(
            "n/a" if e.get("expert_return") is None else f"{e['expert_return']:.1f}"
            for e in experts
        )
        summary.append(f"Expert (dense RL agent, greedy) mean return per seed: {returns}.")
        summary.append("")
    for paradigm in paradigms:
        broken = _break_sparsity(curves[paradigm, "ticket"], break_fraction)
        text = "never (within the rounds run)" if broken is None else f"at sparsity {broken:.3f}"
        summary.append(
            f"- {paradigm.upper()} ticket falls below {break_fraction:.0%} of its dense IQM {text}."
        )
    (out / "summary.md").write_text("\n".join(summary) + "\n")
    return out


def _input_masks(task_dir: Path, task: str, paradigms: list[str], out: Path, plt) -> None:
    table: dict[tuple[str, int], list[torch.Tensor]] = defaultdict(list)
    for path in sorted(task_dir.glob("seed*/*/round*/masks.pt")):
        paradigm, round_index = path.parts[-3], int(path.parent.name.removeprefix("round"))
        masks = torch.load(path, weights_only=True)
        first = masks[min(masks, key=_layer_order)]
        table[paradigm, round_index].append(input_connections(first))
    if not table:
        return
    dims = next(iter(table.values()))[0].numel()
    names = INPUT_NAMES.get(task, [f"input {i}" for i in range(dims)])
    if dims > _MAX_INPUT_COLUMNS:  # e.g. a flattened MinAtar grid: count the inputs cut off
        _input_counts(table, paradigms, out, dims)
    else:
        _input_table(table, paradigms, out, task, names, dims)
    fig, axes = plt.subplots(1, len(paradigms), figsize=(6.9, 2.6), squeeze=False)
    for ax, paradigm in zip(axes[0], paradigms, strict=True):
        rounds = sorted(r for p, r in table if p == paradigm)
        grid = np.array([torch.stack(table[paradigm, r]).float().mean(0).numpy() for r in rounds])
        image = ax.imshow(grid, cmap="Greys", aspect="auto", vmin=0, interpolation="nearest")
        ax.set_yticks(range(len(rounds)), [str(r) for r in rounds])
        if dims <= _MAX_INPUT_COLUMNS:
            ax.set_xticks(range(dims), names, rotation=30, ha="right", fontsize=7)
        else:
            ax.set_xlabel("input dimension")
        ax.set_ylabel("round")
        ax.set_title({"rl": "RL (PPO)", "bc": "behaviour cloning"}[paradigm])
        fig.colorbar(image, ax=ax, label="connections kept")
    fig.tight_layout()
    for suffix in ("png", "pdf"):
        fig.savefig(out / f"input_masks.{suffix}", dpi=150)
    plt.close(fig)


_MAX_INPUT_COLUMNS = 12


def _input_counts(table: dict, paradigms: list[str], out: Path, dims: int) -> None:
    lines = [
        f"# Inputs left without an outgoing connection in the ticket's first layer (of {dims})",
        "",
        "| paradigm | round | inputs cut, per seed | mean connections kept per input |",
        "|---|---|---|---|",
    ]
    rows = []
    for paradigm, round_index in sorted(table, key=lambda k: (paradigms.index(k[0]), k[1])):
        stacked = torch.stack(table[paradigm, round_index]).float()
        cut = (stacked == 0).sum(1).tolist()
        mean = stacked.mean().item()
        lines.append(f"| {paradigm} | {round_index} | {cut} | {mean:.2f} |")
        rows.append([paradigm, round_index, *cut])
    (out / "input_masks.md").write_text("\n".join(lines) + "\n")
    with (out / "input_masks.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["paradigm", "round", "inputs_cut_per_seed..."])
        writer.writerows(rows)


def _input_table(
    table: dict, paradigms: list[str], out: Path, task: str, names: list[str], dims: int
) -> None:
    lines = [
        f"# {task}: outgoing connections kept per input (first layer of the ticket)",
        "",
        "Mean over seeds of the connections kept (of the first layer's width); in brackets, "
        "the seeds where the input has none left.",
        "",
        "| paradigm | round | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * dims,
    ]
    rows = []
    for paradigm, round_index in sorted(table, key=lambda k: (paradigms.index(k[0]), k[1])):
        stacked = torch.stack(table[paradigm, round_index]).float()
        mean, dead = stacked.mean(0), (stacked == 0).sum(0)
        cells = [
            f"{m:.1f} ({int(d)})" if d else f"{m:.1f}" for m, d in zip(mean, dead, strict=True)
        ]
        lines.append(f"| {paradigm} | {round_index} | " + " | ".join(cells) + " |")
        rows.append([paradigm, round_index, *mean.tolist(), *dead.tolist()])
    (out / "input_masks.md").write_text("\n".join(lines) + "\n")
    with (out / "input_masks.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "paradigm",
                "round",
                *[f"kept/{n}" for n in names],
                *[f"seeds_none/{n}" for n in names],
            ]
        )
        writer.writerows(rows)


def _layer_order(name: str) -> tuple[int, str]:
    # encoder.0.weight reads the observation: encoder layers first, in index order, head last.
    parts = name.split(".")
    return (0, f"{int(parts[1]):04d}") if parts[0] == "encoder" else (1, name)
