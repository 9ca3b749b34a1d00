"""Run a sweep on a SLURM cluster with submitit: one job array, requeued on time-out/pre-emption.

Every run is one array task running ``torchrl-sparse fit`` as a child process. When SLURM
announces a time-out or a pre-emption, submitit signals the task with ``USR2`` and calls
:meth:`FitJob.checkpoint`: the fit gets ``SIGTERM``, writes its ``last.ckpt`` and exits, and
submitit requeues the task, whose next attempt resumes from that checkpoint. The child ignores
``USR2`` (only submitit acts on it) and runs without the ``SLURM_*`` environment, so
Lightning's own SLURM auto-requeue never fights submitit's; a run is one process (use
``--threads-per-job`` and ``--gpus-per-task`` for its resources).

Requires the ``slurm`` extra (``pip install torchrl-sparse[slurm]``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from torchrl_sparse.experiments.local import thread_environment
from torchrl_sparse.experiments.sweep import STOPPED_BY_SIGNAL, SweepRun

__all__ = ["FitJob", "submit"]

try:
    import submitit
except ModuleNotFoundError as error:  # pragma: no cover - depends on the installed extras
    raise ModuleNotFoundError(
        "The SLURM executor needs submitit: pip install 'torchrl-sparse[slurm]'."
    ) from error


#: Seconds between refreshes of a running task's lock (see ``REMOTE_LOCK_TIMEOUT_S``).
_LOCK_REFRESH_S = 60.0


def _ignore_usr2() -> None:
    # Runs in the child before exec: an ignored signal stays ignored across exec.
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def child_environment(threads: int) -> dict[str, str]:
    """The fit's environment: ``threads`` threads and no ``SLURM_*`` variables.

    Without them Lightning does not take the job for a SLURM-managed run (its auto-requeue
    would otherwise compete with submitit's).

    Examples:
        >>> env = child_environment(2)
        >>> env["OMP_NUM_THREADS"], any(k.startswith("SLURM_") for k in env)
        ('2', False)
    """
    return {k: v for k, v in thread_environment(threads).items() if not k.startswith("SLURM_")}


def _reap(pid: int, timeout_s: float | None) -> int | None:
    """Wait for child ``pid`` without ``Popen``'s lock; its exit status, or ``None`` on time-out."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        try:
            reaped, status = os.waitpid(pid, 0 if deadline is None else os.WNOHANG)
        except ChildProcessError:
            return 0  # already reaped elsewhere
        if reaped:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


class FitJob(submitit.helpers.Checkpointable):
    """The function of one array task: run (or resume) the fit of a :class:`SweepRun`.

    Args:
        threads: torch/OpenMP threads of the fit.
        stop_timeout_s: seconds the fit gets to write its checkpoint after ``SIGTERM``.

    Examples:
        >>> job = FitJob(threads=2)
        >>> job.threads
        2
    """

    def __init__(self, threads: int = 1, stop_timeout_s: float = 60.0) -> None:
        self.threads = threads
        self.stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen | None = None
        self._started = 0.0
        self._stopped_status: int | None = None

    def __call__(self, run: SweepRun) -> int:
        """Run the fit; return its exit status.

        Raises:
            RuntimeError: the fit failed (not stopped by a signal), with its log's path.
        """
        # SLURM runs one task per run: the lock is this task's, whoever held it before.
        run.hold_lock(os.getpid())
        run.prepare_attempt()
        self._started = time.time()
        self._stopped_status = None
        with open(run.log, "ab") as log:
            log.write(f"\n$ {' '.join(run.command())}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                run.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_environment(self.threads),
                preexec_fn=_ignore_usr2,
            )
            run.hold_lock(self._process.pid)
            while True:
                try:
                    returncode = self._process.wait(timeout=_LOCK_REFRESH_S)
                    break
                except subprocess.TimeoutExpired:
                    # A heartbeat: the lock of a task whose node died goes stale.
                    run.hold_lock(self._process.pid)
        if self._stopped_status is not None:
            return self._stopped_status  # stopped by checkpoint(), which recorded the exit
        run.record_exit(returncode, self._started)
        if returncode not in {0, *STOPPED_BY_SIGNAL}:
            raise RuntimeError(f"{run.name} failed with exit status {returncode}; log: {run.log}")
        return returncode

    def checkpoint(self, run: SweepRun) -> submitit.helpers.DelayedSubmission:
        """Stop the fit (it writes ``last.ckpt``) and requeue this run, to resume from it.

        submitit calls this from its ``USR2`` handler, in the thread blocked in
        ``Popen.wait()`` (which holds the ``Popen``'s lock): the fit is reaped here with
        ``os.waitpid`` directly.
        """
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            status = _reap(process.pid, self.stop_timeout_s)
            if status is None:
                process.kill()
                status = _reap(process.pid, None)
            self._stopped_status = status if status is not None else -signal.SIGKILL
            run.record_exit(self._stopped_status, self._started)
        return submitit.helpers.DelayedSubmission(
            type(self)(self.threads, self.stop_timeout_s), run
        )

    def __getstate__(self) -> dict[str, Any]:
        # The child process handle stays on the node that started it.
        return {**self.__dict__, "_process": None}


def submit(
    runs: list[SweepRun],
    folder: str | Path,
    threads_per_job: int = 1,
    timeout_min: int = 240,
    partition: str | None = None,
    array_parallelism: int = 32,
    gpus_per_task: int = 0,
    mem_gb: int | None = None,
    max_requeues: int = 10,
    cluster: str = "slurm",
) -> list[submitit.Job]:
    """Submit ``runs`` as one job array and return submitit's jobs.

    Args:
        runs: the runs to start or resume.
        folder: submitit's folder (its job scripts, pickles and logs).
        threads_per_job: CPUs per task, and the fit's threads.
        timeout_min: SLURM time limit per attempt, in minutes.
        partition: SLURM partition (``None``: the cluster's default).
        array_parallelism: array tasks running at once.
        gpus_per_task: GPUs per task (then pass ``--trainer.accelerator gpu`` through the
            sweep's overrides).
        mem_gb: memory per task, in GB (``None``: the cluster's default).
        max_requeues: how many time-outs a run may be requeued after.
        cluster: ``"slurm"``, or submitit's ``"local"``/``"debug"`` executors to try a sweep on
            this machine.

    Raises:
        ValueError: a bad resource setting, naming it.
    """
    for name, value, low in (
        ("threads_per_job", threads_per_job, 1),
        ("timeout_min", timeout_min, 1),
        ("array_parallelism", array_parallelism, 1),
        ("gpus_per_task", gpus_per_task, 0),
        ("max_requeues", max_requeues, 0),
    ):
        if value < low:
            raise ValueError(f"{name}={value}: must be >= {low}.")
    executor = submitit.AutoExecutor(
        folder=str(folder), cluster=cluster, slurm_max_num_timeout=max_requeues
    )
    parameters: dict[str, Any] = {
        "name": "torchrl-sparse-sweep",
        "timeout_min": timeout_min,
        "cpus_per_task": threads_per_job,
        "tasks_per_node": 1,
        "nodes": 1,
        "slurm_array_parallelism": array_parallelism,
    }
    if gpus_per_task:
        parameters["gpus_per_node"] = gpus_per_task
    if partition is not None:
        parameters["slurm_partition"] = partition
    if mem_gb is not None:
        parameters["mem_gb"] = mem_gb
    executor.update_parameters(**parameters)
    os.makedirs(folder, exist_ok=True)
    jobs = executor.map_array(FitJob(threads_per_job), runs)
    if cluster == "slurm":
        # Queued tasks hold their runs, so a re-run of the sweep does not submit them again;
        # the task takes the lock over when it starts (or ``scancel`` leaves it: remove it).
        for run, job in zip(runs, jobs, strict=True):
            run.hold_lock(0, host="slurm", job_id=job.job_id)
    return jobs
