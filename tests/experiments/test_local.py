"""Real tiny sweeps through the local pool: every run a `torchrl-sparse fit` process."""

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.experiments.conftest import run_sweep, sweep_command, sweep_environment
from torchrl_sparse.experiments import read_summary
from torchrl_sparse.experiments.local import LocalPool, default_jobs


def _summaries(out: Path) -> dict[str, dict]:
    return {
        str(path.parent.relative_to(out)): json.loads(path.read_text())
        for path in sorted(out.rglob("summary.json"))
    }


def test_two_by_two_sweep_interrupted_resumed_then_skipped(tiny_recipes, tmp_path: Path) -> None:
    # 20 batches per run: long enough to interrupt the sweep while its first fits train.
    tiny_recipes("dense_a", total_steps_per_task=600)
    tiny_recipes("dense_b", total_steps_per_task=600, gamma=0.9)
    out = tmp_path / "sweep"
    args = ("recipes/dense_a.yaml", "recipes/dense_b.yaml", "--seeds", "0-1", "--out", str(out))
    sweep = subprocess.Popen(
        sweep_command(*args, "--jobs", "2", "--save", str(tmp_path / "sweep.yaml")),
        cwd=tmp_path,
        env=sweep_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = out / "dense_a" / "seed0" / "sweep.log"
    deadline = time.time() + 240
    while time.time() < deadline and "Epoch 0:" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.5)
    sweep.send_signal(signal.SIGINT)
    stdout, _ = sweep.communicate(timeout=240)
    assert sweep.returncode == 130, stdout
    assert "run the same sweep command again to resume" in stdout
    status = json.loads((out / "dense_a" / "seed0" / "sweep_status.json").read_text())
    assert status["returncode"] == 143  # the fit stopped as on SIGTERM, with its checkpoint
    assert (out / "dense_a" / "seed0" / "checkpoints" / "last.ckpt").is_file()
    assert read_summary(out / "dense_a" / "seed0") is None
    assert not (out / "dense_b").exists()  # nothing new started after the signal

    resumed = run_sweep("--from-file", str(tmp_path / "sweep.yaml"), "--jobs", "2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # dense_a/seed0 was training; seed1 may have been stopped before its first batch.
    assert re.search(r"interrupted [12], queued [23]\n", resumed.stdout), resumed.stdout
    assert "2 running" in resumed.stdout  # the pool ran two at once
    assert "Sweep summary: finished 4" in resumed.stdout
    assert "--ckpt_path" in log.read_text()
    summaries = _summaries(out)
    assert sorted(summaries) == [f"dense_{c}/seed{s}" for c in "ab" for s in (0, 1)]
    for name, summary in summaries.items():
        assert summary["finished"] and summary["frames"] == summary["total_frames"] == 1800
        assert f"{summary['condition']}/seed{summary['seed']}" == name
    # The configuration hash ignores the seed: one hash per condition.
    assert summaries["dense_a/seed0"]["config_hash"] == summaries["dense_a/seed1"]["config_hash"]
    assert summaries["dense_a/seed0"]["config_hash"] != summaries["dense_b/seed0"]["config_hash"]

    again = run_sweep(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "finished 4" in again.stdout and "Running" not in again.stdout
    assert _summaries(out) == summaries


def test_a_failed_run_is_reported_and_does_not_stop_the_others(
    tiny_recipes, tmp_path: Path
) -> None:
    tiny_recipes("ok")
    tiny_recipes("broken", policy_minibatch_per_task=0)  # refused by MultiTaskPPO at start
    out = tmp_path / "sweep"
    args = ("recipes/broken.yaml", "recipes/ok.yaml", "--out", str(out), "--jobs", "1")
    result = run_sweep(*args, cwd=tmp_path)
    assert result.returncode == 1
    assert "FAILED broken/seed0 (exit " in result.stdout
    assert f"see {out}/broken/seed0/sweep.log" in result.stdout
    assert (
        "policy_minibatch_per_task must be a positive int"
        in (out / "broken" / "seed0" / "sweep.log").read_text()
    )
    assert read_summary(out / "ok" / "seed0")["finished"]

    skipped = run_sweep(*args, cwd=tmp_path)
    assert skipped.returncode == 1
    assert "failed before: broken/seed0 (skipped; --retry-failed" in skipped.stdout
    retried = run_sweep(*args, "--retry-failed", cwd=tmp_path)
    assert "Running 1 runs" in retried.stdout
    assert json.loads((out / "broken/seed0/sweep_status.json").read_text())["attempts"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("recipes/a.yaml", "--grid", "model.init_args.no_such_option=1"), "no_such_option"),
        (("recipes/a.yaml", "--seeds", "2-1"), "seeds '2-1'"),
        (("recipes/nope.yaml",), "No recipe"),
        (("recipes/a.yaml", "--executor", "cloud"), "invalid choice: 'cloud'"),
        (("recipes/a.yaml", "--jobs", "0"), "--jobs 0"),
        (("--from-file", "s.yaml", "recipes/a.yaml"), "not both"),
    ],
)
def test_bad_input_fails_before_any_run(
    tiny_recipes, tmp_path: Path, args: tuple, message: str
) -> None:
    tiny_recipes("a")
    result = run_sweep(*args, "--out", str(tmp_path / "out"), cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3, result.stderr
    assert not (tmp_path / "out").exists()


def test_dry_run_lists_states_and_commands(tiny_recipes, tmp_path: Path) -> None:
    tiny_recipes("a")
    result = run_sweep("recipes/a.yaml", "--seeds", "0-1", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0
    assert "queued      a/seed1: torchrl_sparse fit --config recipes/a.yaml" in result.stdout
    assert not (tmp_path / "runs").exists()


def test_default_jobs_share_the_cores() -> None:
    assert default_jobs(cores=2, threads_per_job=1) == 2
    assert default_jobs(cores=2, threads_per_job=4) == 1
    with pytest.raises(ValueError, match="jobs=0"):
        LocalPool(jobs=0)
