"""Health probes of the journal that never wait behind a worker.

The journal's own connection is shared by every worker under one lock, and a worker's
durable commit (an fsync) can hold it for seconds on a slow disk: a health check
reading through it would fail whenever the disk is busy. `JournalProbe` has its own
connections instead:

- `readable()` reads through a read-only connection (WAL readers never wait for a
  writer): the database file can be read, its pages are sound enough to answer;
- `writable(now)` rewrites the heartbeat row in a durable transaction on a second
  connection, with a short busy timeout: a full disk, a read-only remount or a
  lock held too long shows here as the journal really refusing a write, not as a
  guess (`os.access` ignores read-only mounts and quotas).

Each call is short and serialised; the connections are opened on first use and
reopened after an error, so a probe that failed once can succeed later.

On PostgreSQL (`PostgresJournalProbe`, from `JournalProbe.for_journal`) no worker holds a
lock the probe could wait behind: each check is one transaction on a pooled connection
with a short statement timeout, the read a look at the heartbeat row, the write its
durable rewrite (`synchronous_commit = on`).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from syncd.journal.core import JournalCore
from syncd.journal.sqlite_file import connect, database_error

#: Seconds the heartbeat write waits for another connection's write to finish.
WRITE_BUSY_TIMEOUT_S = 1.0
#: Seconds a PostgreSQL probe's statement may take before the check fails.
POSTGRES_PROBE_TIMEOUT_S = 2.0

_READ_HEARTBEAT = "SELECT written_at FROM journal_heartbeat WHERE id = 1"
# Both engines take this upsert (the shared SQL form).
_WRITE_HEARTBEAT = ("INSERT INTO journal_heartbeat (id, written_at, pid) VALUES (1, ?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at, pid = excluded.pid")


class JournalProbe:
    """Read and write checks of the journal at `path`, on connections of their own."""

    def __init__(self, path: Path, *, busy_timeout: float = WRITE_BUSY_TIMEOUT_S) -> None:
        self.path = path
        self.location = str(path)
        self._busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None

    @staticmethod
    def for_journal(journal: JournalCore) -> JournalProbe | PostgresJournalProbe:
        """The probe of an open journal: on connections of its own for a SQLite file, on the
        journal's pool for PostgreSQL. The same `readable`/`writable`/`close` either way."""
        if journal.path is None:
            return PostgresJournalProbe(journal)
        return JournalProbe(journal.path)

    def readable(self) -> float | None:
        """Read the journal (the heartbeat row); returns when it was last written, None if never.

        Raises JournalError when the journal cannot be read.
        """
        with self._lock:
            try:
                if self._reader is None:
                    self._reader = connect(self.path, self._busy_timeout)
                    self._reader.execute("PRAGMA query_only = ON")
                found = self._reader.execute(_READ_HEARTBEAT).fetchone()
            except sqlite3.Error as exc:
                self._reader = _closed(self._reader)
                raise database_error(self.path, exc) from exc
        return None if found is None else float(found[0])

    def writable(self, now: float) -> None:
        """Rewrite the heartbeat row durably (fsynced); JournalError when the journal refuses it."""
        with self._lock:
            try:
                if self._writer is None:
                    self._writer = connect(self.path, self._busy_timeout)
                    self._writer.execute("PRAGMA synchronous = FULL")
                conn = self._writer
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.execute(_WRITE_HEARTBEAT, (float(now), os.getpid()))
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                self._writer = _closed(self._writer)
                raise database_error(self.path, exc) from exc

    def close(self) -> None:
        with self._lock:
            self._reader = _closed(self._reader)
            self._writer = _closed(self._writer)


class PostgresJournalProbe:
    """Read and write checks of a PostgreSQL journal, each one short transaction on its pool."""

    def __init__(self, journal: JournalCore, *, timeout: float = POSTGRES_PROBE_TIMEOUT_S) -> None:
        self._journal = journal
        self.path: Path | None = None
        self.location = journal.location
        self._timeout_ms = max(1, int(timeout * 1000))

    def readable(self) -> float | None:
        """Read the heartbeat row; when it was last written, None if never. JournalError (or
        JournalUnavailable) when the database does not answer within the probe's timeout."""
        with self._journal._read() as conn:
            conn.execute(f"SET LOCAL statement_timeout = {self._timeout_ms}")
            found = conn.execute(_READ_HEARTBEAT).fetchone()
        return None if found is None else float(found[0])

    def writable(self, now: float) -> None:
        """Rewrite the heartbeat row durably; JournalError when the database refuses or does not answer."""
        with self._journal._write(durable=True) as conn:
            conn.execute(f"SET LOCAL statement_timeout = {self._timeout_ms}")
            conn.execute(_WRITE_HEARTBEAT, (float(now), os.getpid()))

    def close(self) -> None:
        """Nothing of its own to close: the connections are the journal's pool's."""


def _closed(conn: sqlite3.Connection | None) -> None:
    if conn is not None:
        try:
            conn.close()
        except sqlite3.Error:
            pass
    return None

