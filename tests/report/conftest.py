"""Synthetic run folders: real TensorBoard event files and summary.json with known values."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from torchrl_sparse.report.runs import Run

MT3 = ("LavaGapS7", "RedBlueDoors-6x6", "MemoryS11")
EVAL_FRAMES = (30_000, 60_000, 90_000, 120_000)
PLASTICITY_FRAMES = (12_000, 60_000, 120_000)


def write_run(
    root: Path,
    condition: str,
    seed: int,
    final_eval: dict[str, float] | None,
    *,
    tasks: Sequence[str] = MT3,
    metric: str = "normalized_return",
    events: bool = True,
    eval_frames: Sequence[int] = EVAL_FRAMES,
    networks: Sequence[str] = ("actor", "critic"),
    fisher: bool = False,
    drop: Sequence[str] = (),
    fields: dict[str, Any] | None = None,
    **summary: Any,
) -> Path:
    """Write ``root/<condition>/seed<seed>/`` as a finished fit would.

    Evaluation curves rise linearly to ``final_eval`` at the last frame; plasticity series are
    known functions of the seed. ``summary`` and ``fields`` (for names taken by the arguments)
    override summary.json fields and ``drop`` removes some; ``final_eval=None`` writes no
    summary at all.
    """
    run_dir = root / condition / f"seed{seed}"
    run_dir.mkdir(parents=True)
    (run_dir / "hparams.yaml").write_text(f"seed: {seed}\n")
    scores = final_eval or dict.fromkeys(tasks, 0.5)
    if events:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(str(run_dir)) as writer:
            for i, frames in enumerate(eval_frames):
                fraction = (i + 1) / len(eval_frames)
                for task in tasks:
                    writer.add_scalar(
                        f"charts/eval/{metric}/{task}", fraction * scores[task], frames
                    )
                    writer.add_scalar(f"charts/eval/episode_return/{task}", 10 * fraction, frames)
                writer.add_scalar(f"charts/eval/{metric}_mean", fraction, frames)
            for i, frames in enumerate(PLASTICITY_FRAMES):
                for network in networks:
                    prefix = f"plasticity/{network}"
                    writer.add_scalar(f"{prefix}/dormant_ratio", 0.01 * (i + seed), frames)
                    writer.add_scalar(f"{prefix}/dormant_ratio/encoder.0", 0.5, frames)
                    writer.add_scalar(f"{prefix}/srank", 100.0 - i - seed, frames)
                    if fisher:
                        writer.add_scalar(f"{prefix}/fisher_trace", 1.0 + i, frames)
                writer.add_scalar("losses/loss_critic", 0.1, frames)
    if final_eval is None:
        return run_dir
    content = {
        "schema_version": 1,
        "condition": condition,
        "treatment": condition.rstrip("/").split("/")[-1],
        "seed": seed,
        "algorithm": "MultiTaskPPO",
        "benchmark": "minigrid",
        "suite": "MT3",
        "arch": "mtppo",
        "tasks": list(tasks),
        "metric": metric,
        "final_eval": final_eval,
        "final_eval_mean": float(np.mean(list(final_eval.values()))),
        "frames": eval_frames[-1],
        "total_frames": eval_frames[-1],
        "finished": True,
        "sparsity": None,
        "config_hash": f"hash-of-{condition}",
        "package_version": "0.1.0",
        "git_commit": None,
        "wall_time_s": 60.0,
        "written_at": "2026-11-30T13:00:00+00:00",
    }
    content.update(summary)
    content.update(fields or {})
    for key in drop:
        del content[key]
    (run_dir / "summary.json").write_text(json.dumps(content, indent=1))
    return run_dir


def scores_of(seed: int, offset: float) -> dict[str, float]:
    """Known, distinct final scores per task for a seed."""
    return {task: round(offset + 0.07 * seed + 0.1 * j, 4) for j, task in enumerate(MT3)}


def make_run(treatment: str = "dense", seed: int = 0, **fields: Any) -> Run:
    """A :class:`Run` without a folder, for grouping tests."""
    values = {
        "path": Path(f"/runs/{treatment}/seed{seed}"),
        "condition": f"minigrid/mt3/mtppo/{treatment}",
        "treatment": treatment,
        "seed": seed,
        "algorithm": "MultiTaskPPO",
        "benchmark": "minigrid",
        "suite": "MT3",
        "arch": "mtppo",
        "tasks": MT3,
        "metric": "normalized_return",
        "final_eval": scores_of(seed, 0.2),
        "frames": 100,
        "total_frames": 100,
        "finished": True,
        "sparsity": None,
        "config_hash": f"hash-{treatment}",
        "has_events": False,
    }
    values.update(fields)
    return Run(**values)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MT3 x MTPPO x {dense, gmp@0.9, gmp@0.95} x 3 seeds, with events; gmp logs Fisher traces."""
    root = tmp_path_factory.mktemp("sweep")
    for seed in range(3):
        write_run(root, "minigrid/mt3/mtppo/dense", seed, scores_of(seed, 0.3))
        write_run(
            root,
            "minigrid/mt3/mtppo/gmp@sparsity=0.9",
            seed,
            scores_of(seed, 0.35),
            sparsity=0.9,
            fisher=True,
        )
        write_run(
            root,
            "minigrid/mt3/mtppo/gmp@sparsity=0.95",
            seed,
            scores_of(seed, 0.1),
            sparsity=0.95,
            fisher=True,
        )
    return root
