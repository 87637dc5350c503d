"""The worker pool: a few threads that claim due work from the journal and process it.

Kept as small as rq's worker loop: claim, process, repeat; sleep when there is
nothing due; stop claiming when asked. What "process" means lives in
`syncd.pipeline.ingest`; what "claim" means in `syncd.pipeline.claims`.

Two lanes, each with its own threads. The general lane (``workers``) takes files of
any size, the oldest due first; the small-file lane (``small_file_workers``) only
files up to ``small_file_max`` (direct uploads), the smallest first. A small file is
one request whose time is mostly the round trip, so that lane is sized for latency
(several in flight per connection's worth of bandwidth); a large file is a chunked
upload with its own parallel parts, so a few of them fill the link. A few
multi-gigabyte uploads never hold up a burst of small files, and a burst of small
files never holds up a large one for longer than the general lane takes to reach it
(oldest first).

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
    small_files_only: bool  # the small-file lane
    busy_since: float | None = None
    current: str | None = None
    progress: JobProgress | None = None  # the current job's


class WorkerPool(Generic[Job]):
    """Threads running `process(job, stopping, progress)` on jobs returned by `claim(max_size)`.

    `workers` general threads claim with `max_size=None` ("any size");
    `small_file_workers` more claim with `max_size=small_file_max`.
    `claim(max_size)` returns the next due job (already marked as in progress)
    or None. `process` must return normally or raise; an exception is logged and
    the worker goes on (the processor is expected to have recorded the outcome in
    the journal itself). `on_activity` is called before every claim and after every
    claim that found nothing and every job (see `syncd.pipeline.activity`); `busy()`
    is True from before a claim until its job is done.
    """

    def __init__(
        self,
        claim: Callable[[int | None], Job | None],
        process: Callable[[Job, threading.Event, JobProgress], None],
        *,
        workers: int,
        small_file_max: int,
        small_file_workers: int = 1,
        describe: Callable[[Job], str] = repr,
        on_activity: Callable[[], None] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if small_file_workers < 0:
            raise ValueError("small_file_workers must be at least 0")
        self._claim = claim
        self._process = process
        self._describe = describe
        self._small_file_max = small_file_max
        self._on_activity = on_activity
        self._wake = threading.Condition()
        self._pending_wakeups = 0
        self._active_lock = threading.Lock()
        self._active = 0  # workers between the start of a claim and the end of its job
        self.stopping = threading.Event()
        self.states = [WorkerState(name=f"worker-{i}", small_files_only=False) for i in range(workers)]
        self.states += [WorkerState(name=f"small-{i}", small_files_only=True) for i in range(small_file_workers)]
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

    def busy(self) -> bool:
        """True while a worker is claiming or processing (a claimed job is counted from before its claim)."""
        with self._active_lock:
            return self._active > 0

    def _activity(self, change: int) -> None:
        with self._active_lock:
            self._active += change
        if self._on_activity is not None:
            self._on_activity()

    def _run(self, state: WorkerState) -> None:
        max_size = self._small_file_max if state.small_files_only else None
        while not self.stopping.is_set():
            self._activity(+1)
            try:
                job = self._claim(max_size)
            except Exception:
                log.exception("claim_failed", worker=state.name)
                job = None
            if job is None:
                self._activity(-1)
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
                self._activity(-1)

    def _idle(self) -> None:
        with self._wake:
            if self._pending_wakeups == 0 and not self.stopping.is_set():
                self._wake.wait(IDLE_POLL_SECONDS)
            if self._pending_wakeups:
                self._pending_wakeups -= 1
