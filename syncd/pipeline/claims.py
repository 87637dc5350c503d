"""Claim order: which file a worker takes next.

Uploads a crash interrupted come first. `Journal.recover_interrupted` leaves
them `uploading` (putting them back to pending could upload again a file Box
may already hold), so the journal never hands them out: this queue does, each
once and only to a worker whose size lane takes it, and the worker reconciles
it with Box before sending anything. Then the journal's due pending files
(`Journal.claim_next`: the oldest due first in the general lane, the smallest
first in the small-files lane).

While Box refuses us (`ClaimGate`, the service's circuit breaker), claims pause for
the scope it refuses: nothing is claimed while it refuses the credentials, and a file
of a watch whose Box folder it refuses is given back at once without spending an
attempt, due when Box is asked again (the breaker also pushes that watch's pending
files to that time in one statement, so they are not claimed one by one meanwhile).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from syncd.journal import FileRecord, Journal

#: Most files of paused watches given back by one claim before it answers "nothing now".
MAX_GIVEN_BACK = 20
#: `last_error_code` of a file given back while Box refuses its scope.
PAUSED_CODE = "box_refusing"


@dataclass(frozen=True, slots=True)
class Paused:
    """Claims for a scope wait: why, and when Box is asked again (files given back are due then)."""

    reason: str
    until: float


class ClaimGate(Protocol):
    """Whether Box takes requests for a watch now (the service's circuit breaker)."""

    def paused(self, watch: str | None) -> Paused | None:
        """Why claims for `watch` wait, or None; `watch=None` asks about every watch (the credentials)."""


class ClaimQueue:
    """Hands work to the worker pool: `claim(max_size)` is `WorkerPool`'s claim callback."""

    def __init__(self, journal: Journal, *, gate: ClaimGate | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._journal = journal
        self._gate = gate
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
        if self._paused(None) is not None:
            return None
        with self._lock:
            for record in self._interrupted:
                if (max_size is None or record.size <= max_size) and self._paused(record.watch) is None:
                    self._interrupted.remove(record)
                    return record
        for _ in range(MAX_GIVEN_BACK):
            record = self._journal.claim_next(self._clock(), max_size=max_size)
            if record is None:
                return None
            paused = self._paused(record.watch)
            if paused is None:
                return record
            self._journal.claimed(record).release(paused.reason, PAUSED_CODE, paused.until)
        return None

    def _paused(self, watch: str | None) -> Paused | None:
        return None if self._gate is None else self._gate.paused(watch)

    def was_interrupted(self, record: FileRecord) -> bool:
        """Whether `record` was left `uploading` by a crash (its upload must be reconciled with Box)."""
        return record.id in self._interrupted_ids

    def has_interrupted(self) -> bool:
        """Whether interrupted uploads are still waiting for a worker."""
        with self._lock:
            return bool(self._interrupted)
