"""Run a sweep on this machine: a bounded pool of ``torchrl-sparse fit`` processes.

Each run is a separate process with ``threads_per_job`` torch/OpenMP threads, so ``jobs``
runs share the cores without oversubscribing them (two trainings with a thread per core each
on two cores run many times slower than one after the other). Interrupting the sweep (Ctrl-C,
SIGTERM) stops every running fit the way a single fit stops: each writes its ``last.ckpt`` and
the next ``torchrl-sparse sweep`` with the same arguments resumes them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from torchrl_sparse.experiments.sweep import STOPPED_BY_SIGNAL, SweepRun

__all__ = ["LocalPool", "default_jobs", "thread_environment"]


def default_jobs(cores: int | None = None, threads_per_job: int = 1) -> int:
    """As many jobs as the cores allow at ``threads_per_job`` threads each (at least one).

    Examples:
        >>> default_jobs(cores=16, threads_per_job=4)
        4
    """
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // threads_per_job)


def thread_environment(threads: int) -> dict[str, str]:
    """The environment of a job limited to ``threads`` threads (torch reads ``OMP_NUM_THREADS``).

    Examples:
        >>> thread_environment(2)["OMP_NUM_THREADS"]
        '2'
    """
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


_PROGRESS = re.compile(r"(\d+)/(\d+) \[[\d:]+<([\d:]+|\?)")
_FPS = re.compile(r"fps=([\d.e+]+)")


def _seconds(clock: str) -> float | None:
    if clock == "?":
        return None
    seconds = 0.0
    for part in clock.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


@dataclass
class _Job:
    run: SweepRun
    process: subprocess.Popen
    log: IO[bytes]
    started: float = field(default_factory=time.time)
    signalled: bool = False

    def progress(self) -> tuple[float | None, float | None]:
        """(frames/s, seconds left) from the tail of the fit's progress bar, if any yet."""
        try:
            with open(self.run.log, "rb") as handle:
                handle.seek(max(0, handle.seek(0, os.SEEK_END) - 4096))
                tail = handle.read().decode(errors="replace")
        except OSError:
            return None, None
        bars, fps = _PROGRESS.findall(tail), _FPS.findall(tail)
        return (
            float(fps[-1]) if fps else None,
            _seconds(bars[-1][2]) if bars else None,
        )


class LocalPool:
    """A bounded pool of fit processes.

    Args:
        jobs: runs at once.
        threads_per_job: torch/OpenMP threads of each run.
        report: called with a one-line status every ``report_every_s`` seconds and at the end.
        report_every_s: seconds between status lines.

    Examples:
        >>> pool = LocalPool(jobs=2, threads_per_job=1)
        >>> pool.jobs, pool.threads_per_job
        (2, 1)
    """

    def __init__(
        self,
        jobs: int,
        threads_per_job: int = 1,
        report: Callable[[str], None] = print,
        report_every_s: float = 30.0,
    ) -> None:
        if jobs < 1 or threads_per_job < 1:
            raise ValueError(f"jobs={jobs}, threads_per_job={threads_per_job}: both must be >= 1.")
        self.jobs = jobs
        self.threads_per_job = threads_per_job
        self.report = report
        self.report_every_s = report_every_s
        self._signals: list[int] = []
        self._announced = False
        self._running: list[_Job] = []

    def run(self, runs: list[SweepRun]) -> dict[str, int]:
        """Run ``runs`` (in order, ``jobs`` at a time) and return their exit statuses by name.

        A failed run does not stop the others. On SIGINT or SIGTERM no new run starts, the
        running ones get SIGTERM (they checkpoint and exit) and the pool returns; the caller
        exits with ``128 + signal``.
        """
        queue = list(runs)
        running = self._running
        results: dict[str, int] = {}
        durations: list[float] = []
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        last_report = 0.0
        try:
            while queue or running:
                while queue and len(running) < self.jobs and not self._signals:
                    job = self._start(queue.pop(0))
                    if job is not None:
                        running.append(job)
                if self._signals:
                    queue.clear()
                    self._stop(running)
                for job in [job for job in running if job.process.poll() is not None]:
                    running.remove(job)
                    job.log.close()
                    returncode = job.process.returncode
                    job.run.record_exit(returncode, job.started)
                    results[job.run.name] = returncode
                    durations.append(time.time() - job.started)
                if time.time() - last_report >= self.report_every_s or not (queue or running):
                    self.report(self._status_line(results, running, queue, durations))
                    last_report = time.time()
                time.sleep(0.5)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return results

    @property
    def stop_signal(self) -> int | None:
        """The signal that stopped the pool, if one did."""
        return self._signals[0] if self._signals else None

    def _on_signal(self, signum: int, frame: object) -> None:
        # Only record it: the loop acts (printing or starting processes here could re-enter).
        self._signals.append(signum)

    def _stop(self, running: list[_Job]) -> None:
        """SIGTERM every fit once (each writes its ``last.ckpt``); a second signal kills them."""
        if not self._announced:
            self._announced = True
            self.report(
                f"{signal.Signals(self._signals[0]).name}: stopping the running fits (each "
                "writes its last.ckpt; signal again to kill them); run the same sweep command "
                "again to resume."
            )
        force = len(self._signals) > 1
        for job in running:
            if job.process.poll() is None and (force or not job.signalled):
                job.process.send_signal(signal.SIGKILL if force else signal.SIGTERM)
                job.signalled = True

    def _start(self, run: SweepRun) -> _Job | None:
        """Start ``run``'s fit, or ``None`` when another process has taken or finished it."""
        if not run.claim():
            self.report(f"{run.name}: taken by another process ({run.lock_holder()}); skipped")
            return None
        if run.state() == "finished":  # finished since this sweep read the folders
            run.release()
            return None
        run.prepare_attempt()
        log = open(run.log, "ab")  # noqa: SIM115 (closed when the job ends)
        log.write(f"\n$ {' '.join(run.command())}\n".encode())
        log.flush()
        process = subprocess.Popen(
            run.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=thread_environment(self.threads_per_job),
            # Own session: a Ctrl-C in the terminal reaches the pool, which stops the fits.
            start_new_session=True,
        )
        # The lock names the fit: a run whose pool died is still seen running while it runs.
        run.hold_lock(process.pid)
        return _Job(run, process, log)

    def _status_line(
        self,
        results: dict[str, int],
        running: list[_Job],
        queue: list[SweepRun],
        durations: list[float],
    ) -> str:
        failed = sum(code not in {0, *STOPPED_BY_SIGNAL} for code in results.values())
        stopped = sum(code in STOPPED_BY_SIGNAL for code in results.values())
        progress = [job.progress() for job in running]
        fps = sum(f for f, _ in progress if f is not None)
        left = [s for _, s in progress if s is not None]
        mean = sum(durations) / len(durations) if durations else None
        # The longest running fit, then the queue spread over the slots at the mean run time.
        eta = None
        if (running or queue) and (left or mean is not None):
            typical = mean if mean is not None else max(left)
            eta = max(left, default=0.0) + typical * len(queue) / self.jobs
        done = len(results) - failed - stopped
        total = len(results) + len(running) + len(queue)
        return (
            f"[sweep {time.strftime('%H:%M:%S')}] {done}/{total} finished, {len(running)} running, "
            f"{len(queue)} queued, {failed} failed"
            + (f", {stopped} stopped" if stopped else "")
            + (f" | {fps:,.0f} frames/s" if fps else "")
            + (f" | ETA {_clock(eta)}" if eta is not None else "")
        )


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
