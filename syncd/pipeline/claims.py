"""Claim order: which file a worker takes next.

Uploads a crash interrupted come first. `Journal.recover_interrupted` leaves
them `uploading` (putting them back to pending could upload again a file Box
may already hold), so the journal never hands them out: this queue does, each
once and only to a worker whose size lane takes it, and the worker reconciles
it with Box before sending anything. Then the journal's due pending files
(`Journal.claim_next`: the oldest due first in the general lane, the smallest
first in the small-files lane).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

from syncd.journal import FileRecord, Journal


class ClaimQueue:
    """Hands work to the worker pool: `claim(max_size)` is `WorkerPool`'s claim callback."""

    def __init__(self, journal: Journal, *, clock: Callable[[], float] = time.time) -> None:
        self._journal = journal
        self._clock = clock
        self._lock = threading.Lock()
        self._interrupted: collections.deque[FileRecord] = collections.deque()
        self._interrupted_ids: set[int] = set()

    def recover_interrupted(self) -> list[FileRecord]:
        """At start, before any claim: take over the uploads a crash left `uploading`; returns them."""
        interrupted = self._journal.recover_interrupted()
        with self._lock:
            self._interrupted.extend(interrupted)
            self._interrupted_ids = {record.id for record in interrupted}
        return interrupted

    def claim(self, max_size: int | None) -> FileRecord | None:
        """The next file for a worker whose lane takes files up to `max_size` bytes (None: any size).

        An interrupted upload too large for the lane waits for a general worker: the
        small-files worker exists so that multi-gigabyte uploads never hold up small files.
        """
        with self._lock:
            for record in self._interrupted:
                if max_size is None or record.size <= max_size:
                    self._interrupted.remove(record)
                    return record
        return self._journal.claim_next(self._clock(), max_size=max_size)

    def was_interrupted(self, record: FileRecord) -> bool:
        """Whether `record` was left `uploading` by a crash (its upload must be reconciled with Box)."""
        return record.id in self._interrupted_ids

    def has_interrupted(self) -> bool:
        """Whether interrupted uploads are still waiting for a worker."""
        with self._lock:
            return bool(self._interrupted)
