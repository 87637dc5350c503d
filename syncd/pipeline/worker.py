"""The worker pool: a few threads that claim due work from the journal and process it.

Kept as small as rq's worker loop: claim, process, repeat; sleep when there is
nothing due; stop claiming when asked. What "process" means lives in
`syncd.pipeline.ingest`; what "claim" means in `syncd.pipeline.claims`. One worker
(when there are at least two) only takes small files, so a few multi-gigabyte
uploads never starve a burst of scans.

Each job gets its own `JobProgress`, passed to `process`: whatever thread moves the
job forward (the upload's part threads, the hashing, the Box layer's heartbeats while
it waits) reports there, so `stuck` sees a job that is silent, never one that is long.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from syncd.logs import get_logger
from syncd.pipeline.progress import JobProgress

log = get_logger(__name__)

Job = TypeVar("Job")

#: How long an idle worker sleeps before looking for due retries on its own.
IDLE_POLL_SECONDS = 1.0


@dataclass
class WorkerState:
    """What one worker is doing, for health checks and status."""

    name: str
    small_files_only: bool
    busy_since: float | None = None
    current: str | None = None
    progress: JobProgress | None = None  # the current job's


class WorkerPool(Generic[Job]):
    """N threads running `process(job, stopping, progress)` on jobs returned by `claim(max_size)`.

    `claim(max_size)` returns the next due job (already marked as in progress)
    or None; `max_size` is None for "any size". `process` must return normally
    or raise; an exception is logged and the worker goes on (the processor is
    expected to have recorded the outcome in the journal itself).
    """

    def __init__(
        self,
        claim: Callable[[int | None], Job | None],
        process: Callable[[Job, threading.Event, JobProgress], None],
        *,
        workers: int,
        small_file_max: int,
        describe: Callable[[Job], str] = repr,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._claim = claim
        self._process = process
        self._describe = describe
        self._small_file_max = small_file_max
        self._wake = threading.Condition()
        self._pending_wakeups = 0
        self.stopping = threading.Event()
        self.states = [
            WorkerState(name=f"worker-{i}", small_files_only=(workers >= 2 and i == 0)) for i in range(workers)
        ]
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for state in self.states:
            thread = threading.Thread(target=self._run, args=(state,), name=state.name, daemon=True)
            self._threads.append(thread)
            thread.start()

    def wake(self) -> None:
        """New work may be due: idle workers look now instead of at their next poll."""
        with self._wake:
            self._pending_wakeups = len(self.states)
            self._wake.notify_all()

    def stop(self, timeout: float) -> bool:
        """Stop claiming, ask in-flight jobs to stop at their next safe point, wait up to `timeout`.

        Returns True when every worker finished in time.
        """
        self.stopping.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def stuck(self, threshold: float) -> list[WorkerState]:
        """Workers whose job made no progress for longer than `threshold` seconds."""
        return [s for s in self.states if s.progress is not None and s.progress.silent_for() > threshold]

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def _run(self, state: WorkerState) -> None:
        max_size = self._small_file_max if state.small_files_only else None
        while not self.stopping.is_set():
            try:
                job = self._claim(max_size)
            except Exception:
                log.exception("claim_failed", worker=state.name)
                job = None
            if job is None:
                self._idle()
                continue
            state.current = self._describe(job)
            state.progress = JobProgress(state.current)
            state.busy_since = state.progress.started
            try:
                self._process(job, self.stopping, state.progress)
            except Exception:
                log.exception("job_crashed", worker=state.name, job=state.current)
            finally:
                state.busy_since = None
                state.current = None
                state.progress = None

    def _idle(self) -> None:
        with self._wake:
            if self._pending_wakeups == 0 and not self.stopping.is_set():
                self._wake.wait(IDLE_POLL_SECONDS)
            if self._pending_wakeups:
                self._pending_wakeups -= 1
