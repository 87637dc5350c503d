"""This host among the hosts of a shared journal (PostgreSQL): its registration, its heartbeat,
and whether it can reach the journal now (docs/MULTI_HOST.md sections 4 and 8).

`HostPresence.start` registers the host (one process per host id, by PostgreSQL's
advisory lock; the watches must mean the same Box folders on every host) or raises the
journal's refusal. `beat` sends the heartbeat (every lease / 4, from the lease keeper's
thread) and turns its outcome into the host's view of the journal: reachable or not
since when, each change logged once (`journal_unavailable` with the reason,
`journal_available` with the outage's length) and exported as `syncd_journal_available`.
While the journal is unreachable the host claims nothing and says so in `STATUS=`,
`/healthz` and `syncd status`; it resumes by itself when a heartbeat goes through again.
A refusal no retry cures (our host id taken over by another process, a schema newer
than this syncd) is `fatal`: the daemon stops.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from syncd import __version__
from syncd.config import WatchConfig
from syncd.journal import (
    HostLockRefused, HostReplaced, Journal, JournalError, JournalSchemaTooNew, JournalUnavailable, WatchClaim,
    WatchMismatch,
)
from syncd.journal.hosts import HostRegistration
from syncd.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Outage:
    """The journal unreachable from this host: since when (epoch seconds) and why."""

    since: float
    reason: str


class HostPresence:
    """This host's registration and its view of the journal's reachability; thread-safe."""

    def __init__(self, registration: HostRegistration, *, on_available: Callable[[bool], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._registration = registration
        self._on_available = on_available
        self._clock = clock
        self._lock = threading.Lock()
        self._outage: Outage | None = None
        #: Why the daemon must stop (set once; the daemon's tick acts on it).
        self.fatal: str | None = None

    @classmethod
    def start(cls, journal: Journal, watches: Sequence[WatchConfig], *,
              on_available: Callable[[bool], None] | None = None) -> HostPresence:
        """Register this host on `journal` (PostgreSQL). Raises HostLockRefused (another live process
        has this host id) or WatchMismatch (a watch of the same name goes elsewhere on another host)."""
        claims = [WatchClaim(w.name, w.folder_id, str(w.path)) for w in watches]
        try:
            registration = HostRegistration.start(journal, version=__version__, watches=claims)
        except HostLockRefused as exc:
            log.error("host_lock_refused", host_id=journal.host_id, reason=str(exc))
            raise
        except WatchMismatch as exc:
            log.error("watch_mismatch", host_id=journal.host_id, reason=str(exc))
            raise
        log.info("host_registered", host_id=journal.host_id, version=__version__, lease_s=journal.lease,
                 watches=[w.name for w in watches])
        return cls(registration, on_available=on_available)

    def available(self) -> bool:
        """Whether the last heartbeat reached the journal."""
        with self._lock:
            return self._outage is None

    def outage(self) -> Outage | None:
        """The current outage, or None."""
        with self._lock:
            return self._outage

    def beat(self, state: str = "running", detail: str | None = None) -> bool:
        """Send the heartbeat; True when the journal took it. Never raises."""
        try:
            self._registration.heartbeat(state, detail)
        except JournalUnavailable as exc:
            self._unavailable(str(exc))
            return False
        except (HostReplaced, HostLockRefused) as exc:
            if self._fatal(f"another syncd process now holds this host id: {exc}"):
                log.error("host_lock_refused", host_id=self._registration.host_id, reason=self.fatal,
                          detail="stopping: two processes of one host id must not overlap")
            return False
        except JournalSchemaTooNew as exc:
            if self._fatal(str(exc)):
                log.error("journal_schema_too_new", reason=self.fatal, detail="stopping: upgrade syncd on this host")
            return False
        except JournalError as exc:
            self._unavailable(str(exc))
            return False
        self._available()
        return True

    def stop(self) -> None:
        """Say this host stopped (its registration's `stopped` state) and release the host lock."""
        self._registration.stop()

    def _unavailable(self, reason: str) -> None:
        with self._lock:
            first = self._outage is None
            if first:
                self._outage = Outage(self._clock(), reason)
        if first:
            log.warning("journal_unavailable", reason=reason,
                        detail="claiming nothing; uploads stop before their leases run short")
            if self._on_available is not None:
                self._on_available(False)

    def _available(self) -> None:
        with self._lock:
            outage, self._outage = self._outage, None
        if outage is not None:
            log.info("journal_available", outage_s=round(self._clock() - outage.since, 3))
            if self._on_available is not None:
                self._on_available(True)

    def _fatal(self, reason: str) -> bool:
        """Remember why the daemon must stop; True the first time."""
        if self.fatal is not None:
            return False
        self.fatal = reason
        return True
