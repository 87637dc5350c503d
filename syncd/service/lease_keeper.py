"""The lease keeper: one thread per host on a shared journal (docs/MULTI_HOST.md section 5).

Every `lease / 4` it runs its named steps in order:

1. `beat`: the host's heartbeat (`HostPresence`); while the journal is unreachable
   the other steps that need it are skipped, so the claims' local deadlines run down;
2. `renew`: one statement renews the claims whose jobs showed life lately (progress within
   half a lease, or within two of the Box layer's heartbeat intervals when that is longer: a
   job waiting on Box or the rate limit beats only that often), and the adopted rows still
   waiting for a worker; a claim the database no
   longer gives back in two rounds running (taken over, changed, forgotten) is lost. One
   miss is not enough: a job whose outcome was committed while the round ran is missed
   once too (its row is no longer `uploading`), and is gone by the next round;
3. `enforce`: every claim with less than half a lease in hand by its local deadline
   is lost (`claim_lease_expiring`, `claim_lost`): its job stops before its next Box
   write and records nothing, the Box session staying open for the next holder;
4. `take_over`: rows whose lease lapsed (a dead or cut-off host's, or ours) are taken
   over, as many as there are idle workers, and queued first for reconciliation with Box.

The local deadline is measured from before each renewal was sent, so it always falls
before the database's expiry whatever the two clocks say; only their rates matter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from syncd.box import HEARTBEAT_EVERY
from syncd.journal import Journal, JournalError
from syncd.logs import get_logger
from syncd.pipeline.claim_holds import ClaimHold, ClaimHolds
from syncd.pipeline.claims import ClaimQueue
from syncd.pipeline.names import display_path
from syncd.service.host_presence import HostPresence
from syncd.service.metrics import Metrics

log = get_logger(__name__)


class LeaseKeeper:
    """Heartbeat, renewals, the half-lease rule and takeovers for one host (see the module doc)."""

    def __init__(self, journal: Journal, presence: HostPresence, holds: ClaimHolds, claims: ClaimQueue,
                 metrics: Metrics, *, idle_workers: Callable[[], int], on_taken_over: Callable[[], None],
                 host_state: Callable[[], tuple[str, str | None]] = lambda: ("running", None),
                 monotonic: Callable[[], float] = time.monotonic, clock: Callable[[], float] = time.time) -> None:
        self._journal = journal
        self._presence = presence
        self._holds = holds
        self._claims = claims
        self._metrics = metrics
        self._idle_workers = idle_workers
        self._on_taken_over = on_taken_over
        self._host_state = host_state
        self._monotonic = monotonic
        self._clock = clock
        self.lease = journal.lease
        self.period = self.lease / 4
        #: A job silent for longer is not renewed (stuck): its claim runs down and is lost.
        self.alive_within = max(self.lease / 2, 2 * HEARTBEAT_EVERY)
        self._renewal_failing = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.period * 4)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.tick()
            except Exception:  # never let the keeper die: the leases would lapse under running jobs
                log.exception("lease_keeper_failed")

    def tick(self) -> None:
        """One round of the named steps."""
        state, detail = self._host_state()
        if self._presence.beat(state, detail):
            self.renew()
        self.enforce()
        if self._presence.available() and self._presence.fatal is None:
            self.take_over()
        self._metrics.set_leases_held(len(self._holds) + len(self._claims.waiting()))

    # ------------------------------------------------------------------ steps

    def renew(self) -> None:
        """Renew the claims of jobs that showed life lately, and the waiting adopted rows."""
        now = self._monotonic()
        due = [held for held in self._holds.snapshot()
               if not held.lost.is_set() and held.progressed_since(now - self.alive_within, now)]
        waiting = [(record.id, record.claim_seq) for record in self._claims.waiting()]
        keys = [held.key for held in due] + waiting
        if not keys:
            return
        sent = self._monotonic()
        try:
            renewed = self._journal.renew_leases(keys)
        except JournalError as exc:
            self._metrics.record_lease_renewals("failed", len(keys))
            if not self._renewal_failing:
                self._renewal_failing = True
                log.warning("lease_renewal_failed", claims=len(keys), reason=str(exc))
            return
        self._renewal_failing = False
        lost = 0
        for held in due:
            if held.record.id in renewed:
                held.valid_until, held.misses = sent + self.lease, 0
                continue
            held.misses += 1
            if held.misses >= 2:
                lost += 1
                self._lose(held, "the row changed hands (taken over, changed or forgotten)")
        self._claims.renewed([key[0] for key in waiting if key[0] in renewed], sent)
        self._claims.forget_waiting([key[0] for key in waiting if key[0] not in renewed])
        self._metrics.record_lease_renewals("renewed", len(renewed))
        if lost:
            self._metrics.record_lease_renewals("lost", lost)

    def enforce(self) -> None:
        """The half-lease rule: a claim with less than half a lease in hand is lost."""
        now = self._monotonic()
        for held in self._holds.snapshot():
            if not held.lost.is_set() and held.in_hand(now) < self.lease / 2:
                log.warning("claim_lease_expiring", watch=held.record.watch, path=display_path(held.record.relpath),
                            file_row=held.record.id, in_hand_s=round(held.in_hand(now), 3),
                            reason="no renewal" if self._presence.available() else "journal unreachable")
                self._lose(held, "less than half a lease in hand: stopped before its next Box write")

    def take_over(self) -> None:
        """Take over lapsed rows, no more than there are idle workers, and queue them first."""
        room = self._idle_workers() - len(self._claims.waiting())
        if room <= 0:
            return
        sent = self._monotonic()
        try:
            taken = self._journal.take_over_expired(self._clock(), limit=room)
        except JournalError as exc:
            log.warning("takeover_failed", reason=str(exc))
            return
        if not taken:
            return
        for item in taken:
            record = item.record
            log.info("claim_taken_over", watch=record.watch, path=display_path(record.relpath), file_row=record.id,
                     from_host=item.from_host, expired_s=round(item.expired_s, 3))
        self._claims.adopt([item.record for item in taken], sent)
        self._metrics.record_takeovers(len(taken))
        self._on_taken_over()

    def _lose(self, held: ClaimHold, reason: str) -> None:
        if ClaimHolds.lose(held, reason):
            log.warning("claim_lost", watch=held.record.watch, path=display_path(held.record.relpath),
                        file_row=held.record.id, reason=reason)
