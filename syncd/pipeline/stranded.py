"""Claims whose outcome the journal refused (disk full, locked longer than its timeout).

Such a row would otherwise stay `uploading` until the next restart. The worker hands
the claim here and goes on; `requeue` (the daemon calls it every second) puts each
back to `pending` with a retry time as soon as the journal accepts writes again. A
claim that went stale meanwhile (the file changed, or was forgotten) is dropped: its
row is no longer this claim's to record (on a journal several hosts share, another host
took it over: `claim_outcome_refused`). Nothing here survives a crash, and nothing
needs to: a restart recovers every `uploading` row (`Journal.recover_interrupted`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from syncd.journal import ClaimedFile, InvalidTransition, JournalError, StaleClaim, UnknownFile
from syncd.logs import get_logger
from syncd.pipeline.names import display_path

log = get_logger(__name__)

#: `last_error_code` of a file put back after the journal refused to record its outcome.
JOURNAL_ERROR_CODE = "journal_error"


class StrandedClaims:
    """Claims to put back to pending once the journal accepts writes; thread-safe.

    `retry_in(attempts)` says how long after the requeue the file is due again.
    """

    def __init__(self, retry_in: Callable[[int], float], *, clock: Callable[[], float] = time.time,
                 on_refused: Callable[[], None] | None = None) -> None:
        self._retry_in = retry_in
        self._clock = clock
        self._on_refused = on_refused
        self._lock = threading.Lock()
        self._claims: dict[int, tuple[ClaimedFile, str]] = {}

    def add(self, claim: ClaimedFile, reason: str) -> None:
        """The journal refused to record `claim`'s outcome; `reason` says what the journal said."""
        with self._lock:
            self._claims[claim.record.id] = (claim, reason)

    def __len__(self) -> int:
        with self._lock:
            return len(self._claims)

    def requeue(self) -> int:
        """Put every held claim back to pending if the journal now accepts it; returns how many went back."""
        with self._lock:
            held = list(self._claims.values())
        requeued = 0
        for claim, reason in held:
            record = claim.record
            try:
                claim.schedule_retry(f"the journal could not record the outcome: {reason}", JOURNAL_ERROR_CODE,
                                     self._clock() + self._retry_in(record.attempts))
            except StaleClaim:
                # The row moved on without this claim (changed, forgotten, or taken over by another host).
                log.info("claim_outcome_refused", watch=record.watch, path=display_path(record.relpath),
                         file_row=record.id, detail="the row is no longer this claim's; its holder goes on")
                if self._on_refused is not None:
                    self._on_refused()
            except (UnknownFile, InvalidTransition):
                pass  # the row moved on without this claim: nothing left to put back
            except JournalError:
                return requeued  # still refused: the next call tries again
            else:
                requeued += 1
                log.info("upload_requeued_after_journal_error", watch=record.watch, path=display_path(record.relpath),
                         file_row=record.id, attempt=record.attempts)
            with self._lock:
                self._claims.pop(record.id, None)
        return requeued
