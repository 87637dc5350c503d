"""Errors raised by the journal. Each carries the context needed to act on it."""

from __future__ import annotations

from pathlib import Path


class JournalError(Exception):
    """The journal cannot be used as asked: corrupt, too new, wrong role, bad input.

    The message says what happened and what the operator can do about it.
    """

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class JournalLocked(JournalError):
    """Another live process holds the journal's single-writer (daemon) lock."""

    def __init__(self, path: Path, lock_path: Path, pid: int | None) -> None:
        holder = f"process {pid}" if pid is not None else "another process (PID not yet written)"
        super().__init__(
            f"journal {path} is in use by {holder} (lock {lock_path}); "
            "only one syncd daemon may use a journal: stop that process or configure another journal path",
            path=path,
        )
        self.lock_path = lock_path
        self.pid = pid


class UnknownFile(JournalError):
    """No journal row has this id (it was removed or forgotten meanwhile)."""

    def __init__(self, file_id: int) -> None:
        super().__init__(f"no journal row with id {file_id} (removed or forgotten meanwhile?)")
        self.file_id = file_id


class InvalidTransition(JournalError):
    """A state change that the state machine does not allow (e.g. pending -> uploaded)."""

    def __init__(self, file_id: int, from_state: str | None, to_state: str | None) -> None:
        super().__init__(
            f"journal row {file_id}: transition {from_state or 'new'} -> {to_state or 'removed'} is not allowed"
        )
        self.file_id = file_id
        self.from_state = from_state
        self.to_state = to_state


class StaleClaim(JournalError):
    """The row was claimed again (or changed) since this worker claimed it.

    The worker's upload is obsolete: it must not record an outcome for it.
    """

    def __init__(self, file_id: int, expected: int, actual: int, *, holder: str | None = None,
                 host_id: str | None = None) -> None:
        if expected == actual:
            why = (f"its lease is held by host {holder!r}, not this host {host_id!r}" if holder
                   else f"no host holds its lease, so neither does this host {host_id!r}")
            message = f"journal row {file_id}: claim {expected} is no longer this host's ({why}); this write is refused"
        else:
            message = (f"journal row {file_id}: claim {expected} is stale (current claim {actual}); "
                       "the file changed or was claimed again, so this outcome is discarded")
        super().__init__(message)
        self.file_id = file_id
        self.expected = expected
        self.actual = actual
        self.holder = holder


class JournalUnavailable(JournalError):
    """The journal's database cannot be reached now (connection refused or lost, server
    shutting down, no pooled connection in time). A retry later may succeed; nothing of the
    transaction that raised it was committed (but see `JournalOutcomeUnknown`)."""


class JournalOutcomeUnknown(JournalUnavailable):
    """The connection broke while the transaction was committing: it may or may not have
    been committed. The journal's outcome writes can be made again once it is back."""


class HostLockRefused(JournalError):
    """Another live syncd process holds this host id's advisory lock in the PostgreSQL journal
    (a copied config, a second process): the message names it (hostname, pid, since)."""


class HostReplaced(JournalError):
    """The journal's `hosts` row of this host id belongs to another process start now (another
    process of the same host id registered): this one must stop."""


class WatchMismatch(JournalError):
    """Another registered host sends the same watch name to another Box folder."""


class JournalSchemaTooNew(JournalError):
    """The PostgreSQL journal was migrated by a syncd this one may no longer write beside
    (our schema version is below its `compatible_from`): stop until upgraded."""


class TransactionConflict(JournalError):
    """PostgreSQL rolled the transaction back to resolve a deadlock (40P01) or a
    serialization failure (40001). Each journal method is one transaction taking its inputs
    as values, so the method is run again (`syncd.journal.backend.rerun_on_conflict`); this
    reaches a caller only after the last attempt."""
