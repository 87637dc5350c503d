"""Claim order: which file a worker takes next.

Uploads a crash interrupted come first. `Journal.recover_interrupted` leaves
them `uploading` (putting them back to pending could upload again a file Box
may already hold), so the journal never hands them out: this queue does, each
once and only to a worker whose size lane takes it, and the worker reconciles
it with Box before sending anything. Then the journal's due pending files
(`Journal.claim_next`: the oldest due first in the general lane, the smallest
first in the small-files lane).

On a journal several hosts share (PostgreSQL), rows another host's lapsed lease left
`uploading` are taken over by the service's lease keeper and join the interrupted ones
(`adopt`): they too are reconciled with Box first. While this host cannot reach the
journal it claims nothing (`journal_available`); a claim that fails because the
journal went away meanwhile answers "nothing now".

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

from syncd.journal import FileRecord, Journal, JournalUnavailable

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
                 journal_available: Callable[[], bool] = lambda: True,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._journal = journal
        self._gate = gate
        self._journal_available = journal_available
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._interrupted: collections.deque[FileRecord] = collections.deque()
        self._interrupted_ids: set[int] = set()
        self._claimed_at: dict[int, float] = {}  # monotonic, before each claim was sent (the lease's start)

    def recover_interrupted(self) -> list[FileRecord]:
        """At start, before any claim: take over the uploads a crash left `uploading`; returns them."""
        started = self._monotonic()
        interrupted = self._journal.recover_interrupted()
        self.adopt(interrupted, started)
        return interrupted

    def adopt(self, records: list[FileRecord], claimed_at: float) -> None:
        """Rows this host now holds without a worker (recovered, or taken over from a lapsed lease):
        handed out before any new claim, each reconciled with Box first. `claimed_at`: monotonic,
        before the journal was asked."""
        with self._lock:
            for record in records:
                self._interrupted.append(record)
                self._interrupted_ids.add(record.id)
                self._claimed_at[record.id] = claimed_at

    def waiting(self) -> list[FileRecord]:
        """Adopted rows still waiting for a worker (their leases are renewed meanwhile)."""
        with self._lock:
            return list(self._interrupted)

    def renewed(self, ids: list[int], sent: float) -> None:
        """The leases of these waiting rows were renewed by a statement sent at monotonic `sent`."""
        with self._lock:
            for file_id in ids:
                if file_id in self._claimed_at:
                    self._claimed_at[file_id] = sent

    def forget_waiting(self, ids: list[int]) -> None:
        """These waiting rows are no longer this host's (their renewal was refused): never hand them out."""
        if not ids:
            return
        gone = set(ids)
        with self._lock:
            self._interrupted = collections.deque(r for r in self._interrupted if r.id not in gone)
            for file_id in gone:
                self._claimed_at.pop(file_id, None)

    def claimed_at(self, record: FileRecord) -> float:
        """Monotonic time taken before `record`'s claim was sent (its lease runs from no earlier)."""
        with self._lock:
            return self._claimed_at.pop(record.id, self._monotonic())

    def claim(self, max_size: int | None) -> FileRecord | None:
        """The next file for a worker whose lane takes files up to `max_size` bytes (None: any size).

        An interrupted upload too large for the lane waits for a general worker: the
        small-files worker exists so that multi-gigabyte uploads never hold up small files.
        """
        if self._paused(None) is not None or not self._journal_available():
            return None
        with self._lock:
            for record in self._interrupted:
                if (max_size is None or record.size <= max_size) and self._paused(record.watch) is None:
                    self._interrupted.remove(record)
                    return record
        for _ in range(MAX_GIVEN_BACK):
            started = self._monotonic()
            try:
                record = self._journal.claim_next(self._clock(), max_size=max_size)
            except JournalUnavailable:
                return None  # the journal went away: the service notices and says so; nothing claimed
            if record is None:
                return None
            paused = self._paused(record.watch)
            if paused is None:
                with self._lock:
                    self._claimed_at[record.id] = started
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
