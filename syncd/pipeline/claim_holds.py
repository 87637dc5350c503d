"""The claims this host's jobs hold, as the lease keeper sees them (several hosts, docs/MULTI_HOST.md §5).

On a PostgreSQL journal a claim carries a lease that other hosts respect until it
lapses. Each job registers its claim here for as long as it runs (`ClaimHolds.hold`);
the service's lease keeper renews the claims whose jobs made progress and keeps, per
claim, the local deadline before which no other host can have taken it
(`valid_until`, on this host's monotonic clock, measured from *before* the renewal
was sent, so it always falls before the database's own expiry).

A job must not send Box anything without half a lease in hand. The keeper enforces
it from outside: a claim whose deadline comes closer than half a lease, because its
renewals failed (the journal is unreachable) or because the job made no progress for
that long, is `lost`, and the job's stop event (`AnyEvent` of the pool's and the
claim's) makes the upload stop at its next Box write, leaving the Box session for the
next holder. Renewals the database refuses (the row changed hands) lose it too, after two
rounds running (`misses`: a job whose outcome committed during a round is missed once).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from syncd.journal import FileRecord
from syncd.pipeline.progress import JobProgress


class AnyEvent(threading.Event):
    """Set when it is set itself or when any of `others` is (its users only ask `is_set`)."""

    def __init__(self, *others: threading.Event | None) -> None:
        super().__init__()
        self._others = tuple(other for other in others if other is not None)

    def is_set(self) -> bool:
        return super().is_set() or any(other.is_set() for other in self._others)


@dataclass(eq=False)
class ClaimHold:
    """One job's claim: the row it holds, its local lease deadline, and whether it was lost."""

    record: FileRecord
    progress: JobProgress
    valid_until: float  # monotonic: no other host can hold the row before this
    lost: threading.Event = field(default_factory=threading.Event)
    lost_reason: str | None = None
    misses: int = 0  # renewal rounds in a row that did not give the claim back

    @property
    def key(self) -> tuple[int, int]:
        """(file row, claim_seq): what the journal renews."""
        return self.record.id, self.record.claim_seq

    def in_hand(self, now: float) -> float:
        """Seconds of lease left by the local deadline."""
        return self.valid_until - now

    def progressed_since(self, moment: float, now: float) -> bool:
        """Whether the job advanced after the monotonic `moment`."""
        return now - self.progress.silent_for() > moment


class ClaimHolds:
    """The claims of the jobs running on this host; thread-safe."""

    def __init__(self, lease: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.lease = lease
        self._clock = clock
        self._lock = threading.Lock()
        self._holds: dict[int, ClaimHold] = {}

    @contextmanager
    def hold(self, record: FileRecord, progress: JobProgress, claimed_at: float) -> Iterator[ClaimHold]:
        """Register `record`'s claim while its job runs. `claimed_at`: monotonic, taken before the claim was sent."""
        held = ClaimHold(record, progress, valid_until=claimed_at + self.lease)
        with self._lock:
            self._holds[record.id] = held
        try:
            yield held
        finally:
            with self._lock:
                if self._holds.get(record.id) is held:
                    del self._holds[record.id]

    def snapshot(self) -> list[ClaimHold]:
        """The claims held now (lost ones included until their jobs end)."""
        with self._lock:
            return list(self._holds.values())

    def __len__(self) -> int:
        with self._lock:
            return sum(not held.lost.is_set() for held in self._holds.values())

    @staticmethod
    def lose(held: ClaimHold, reason: str) -> bool:
        """Mark `held` lost (its job stops before its next Box write). True the first time."""
        if held.lost.is_set():
            return False
        held.lost_reason = reason
        held.lost.set()
        return True
