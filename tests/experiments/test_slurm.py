"""The SLURM path: submitit's debug executor, a fake `sbatch`, and requeue after pre-emption."""

import os
import signal
import stat
import threading
import time
from pathlib import Path

import pytest

from tests.experiments.conftest import run_sweep
from torchrl_sparse.experiments import read_summary
from torchrl_sparse.experiments.sweep import Sweep

pytest.importorskip("submitit")

from torchrl_sparse.experiments.slurm import FitJob, child_environment


def test_debug_executor_runs_the_array_to_the_end(tiny_recipes, tmp_path: Path) -> None:
    tiny_recipes("a")
    out = tmp_path / "sweep"
    result = run_sweep(
        "recipes/a.yaml",
        "--seeds",
        "0-1",
        "--out",
        str(out),
        "--executor",
        "slurm",
        "--submitit-cluster",
        "debug",
        "--wait",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Sweep summary: finished 2" in result.stdout
    for seed in (0, 1):
        assert read_summary(out / "a" / f"seed{seed}")["finished"]


def test_fake_sbatch_gets_one_throttled_array_with_usr2_before_the_limit(
    tiny_recipes, tmp_path: Path
) -> None:
    tiny_recipes("a", "b")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(
        "#!/bin/sh\n"
        f'for last; do :; done; cp "$last" {tmp_path}/array.sh; echo "$@" > {tmp_path}/args\n'
        'echo "Submitted batch job 4242"\n'
    )
    srun = bin_dir / "srun"  # submitit only checks that it exists
    srun.write_text("#!/bin/sh\nexit 1\n")
    for tool in (sbatch, srun):
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    env_path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    result = run_sweep(
        "recipes/a.yaml",
        "recipes/b.yaml",
        "--seeds",
        "0-2",
        "--out",
        str(tmp_path / "sweep"),
        "--executor",
        "slurm",
        "--partition",
        "gpu",
        "--timeout-min",
        "90",
        "--array-parallelism",
        "4",
        "--threads-per-job",
        "2",
        cwd=tmp_path,
        path=env_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Submitted 6 array tasks: 4242_0, 4242_1" in result.stdout
    # Queued tasks hold their runs: running the sweep again submits nothing.
    again = run_sweep(
        "recipes/a.yaml",
        "recipes/b.yaml",
        "--seeds",
        "0-2",
        "--out",
        str(tmp_path / "sweep"),
        "--dry-run",
        cwd=tmp_path,
    )
    assert "running 6" in again.stdout and "'job_id': '4242_5'" in again.stdout
    script = (tmp_path / "array.sh").read_text()
    for line in (
        "#SBATCH --array=0-5%4",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=90",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --signal=USR2@90",
        "#SBATCH --open-mode=append",
    ):
        assert line in script, script


def test_preemption_stops_the_fit_and_the_requeued_task_resumes(
    tiny_recipes, tmp_path: Path
) -> None:
    # As on SLURM: USR2 reaches this process while it waits for the fit, and the handler
    # (submitit's) calls checkpoint() in this very thread.
    tiny_recipes("long", total_steps_per_task=1200)
    (run,) = Sweep([str(tmp_path / "recipes" / "long.yaml")], [0], out=str(tmp_path / "o")).runs()
    job = FitJob(threads=1)
    requeued = []

    def preempt() -> None:
        deadline = time.time() + 240
        while time.time() < deadline and "Epoch 0:" not in (
            run.log.read_text() if run.log.exists() else ""
        ):
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGUSR2)

    previous = signal.signal(signal.SIGUSR2, lambda *_: requeued.append(job.checkpoint(run)))
    try:
        threading.Thread(target=preempt, daemon=True).start()
        assert job(run) == 143  # returns once checkpoint() has stopped the fit
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert run.state() == "interrupted"
    assert run.last_status()["returncode"] == 143

    assert requeued[0].result() == 0  # the requeued task, on any node
    summary = read_summary(run.run_dir)
    assert summary["finished"] and summary["frames"] == 3600


def test_the_fit_runs_without_slurm_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    env = child_environment(threads=3)
    assert "SLURM_JOB_ID" not in env and "SLURM_NTASKS" not in env
    assert env["OMP_NUM_THREADS"] == "3"
