"""Progress belongs to the job: every byte hashed, sent or copied, and every wait of a job
(a commit poll, a backoff), counts for that job, whatever thread reports it.

A worker makes one `JobProgress` per job and hands it down (`Attempt.progress`); the
upload's part threads, the hashing loop and the Box layer's heartbeats (`on_bytes(0)`
while it waits) all call `advance`. The health check reads `silent_for`: a job is stuck
when it has been silent longer than ``health.stuck_after``, never because it is long.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class JobProgress:
    """When one job last moved, and how many bytes it moved; thread-safe."""

    def __init__(self, label: str = "", *, clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self._clock = clock
        self._lock = threading.Lock()
        self.started = self._last = clock()
        self._bytes = 0

    def advance(self, n: int = 0) -> None:
        """`n` bytes hashed, sent or copied (0: a heartbeat, the job is waiting or working)."""
        now = self._clock()
        with self._lock:
            self._last = now
            self._bytes += max(0, n)

    @property
    def bytes(self) -> int:
        with self._lock:
            return self._bytes

    def silent_for(self) -> float:
        """Seconds since the job last advanced (or started)."""
        with self._lock:
            last = self._last
        return max(0.0, self._clock() - last)

    def __repr__(self) -> str:
        return f"JobProgress({self.label!r}, bytes={self.bytes}, silent_for={self.silent_for():.1f})"
