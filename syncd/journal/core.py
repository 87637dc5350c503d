"""The journal's core: an open journal file, its daemon lock and its transactions
(the `Journal` class in `syncd.journal.journal` adds what it records).

Durability. The journal runs in WAL mode. With `synchronous=NORMAL` a committed
WAL transaction survives a crash of the process but can be lost if the machine
loses power before the next checkpoint. That is acceptable for what the scanner
can rediscover from the disk (observe/remove: at restart the start-up scan sees
the same files again), but not for an *intent* that precedes a remote step: if
"uploading" or a saved session were rolled back by a power loss after Box had
already committed the upload, the restarted daemon would see a pending row and
upload the file a second time (a duplicate version, breaking exactly-once), and
if "uploaded" were lost after the source file was deleted or moved, the record of
the verified upload would be gone. So every transaction written on behalf of a
worker (claims, hashes, sessions, parts, outcomes) and by an operator commits
with `synchronous=FULL` (the WAL is fsynced before COMMIT returns), and only
scanner bookkeeping commits with NORMAL. A FULL commit also makes every earlier
NORMAL commit durable, because the WAL is sequential.

Threads. One SQLite connection serves the whole process, guarded by a lock: every
method is one short transaction, so a worker pool shares it safely, and claims
are atomic (`BEGIN IMMEDIATE` also excludes other processes, e.g. `syncd retry`
run beside the daemon; `busy_timeout` makes them wait for each other instead of
failing). `known_files` reads through its own short-lived connection, so a long
start-up scan never blocks the workers.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from syncd.journal.errors import JournalError
from syncd.journal.lock import DaemonLock, live_holder
from syncd.journal.sqlite_file import ROLES, Role, connect, create_journal_file, database_error, prepare_connection


class JournalCore:
    """An open journal: its connection, lock, clock and transactions (`_write`, `_read`).

    The parts of `Journal` (file states, Box folder ids, reports) build on it.
    """

    def __init__(
        self,
        path: Path,
        role: Role,
        conn: sqlite3.Connection,
        lock: DaemonLock | None,
        clock: Callable[[], float],
        busy_timeout: float,
    ) -> None:
        """Use `Journal.open`; this only assembles an already opened, checked journal."""
        self.path = path
        self.role = role
        self._conn = conn
        self._daemon_lock = lock
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._mutex = threading.RLock()
        self._sync_full: bool | None = None
        self._closed = False

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        role: Role = "daemon",
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 10.0,
    ) -> Self:
        """Open (as daemon: create or migrate) the journal at `path`.

        Raises JournalLocked if role is "daemon" and another live process holds the
        journal, and JournalError if the file is corrupt, unreadable, not a syncd
        journal, from a newer syncd, or (for reader/operator) missing or not yet
        migrated. Never replaces an existing file by an empty journal.
        """
        if role not in ROLES:
            raise ValueError(f"journal role must be one of {sorted(ROLES)}, not {role!r}")
        journal_path = Path(path).absolute()
        lock: DaemonLock | None = None
        if role == "daemon":
            try:
                journal_path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise JournalError(
                    f"cannot create the journal directory {journal_path.parent}: {exc.strerror}",
                    path=journal_path,
                ) from exc
            lock = DaemonLock.acquire(journal_path)
        try:
            if journal_path.is_dir():
                raise JournalError(
                    f"journal path {journal_path} is a directory; point `journal:` at a file", path=journal_path
                )
            if not journal_path.exists():
                if role != "daemon":
                    raise JournalError(
                        f"no journal at {journal_path}: has the syncd daemon run with this config yet?",
                        path=journal_path,
                    )
                create_journal_file(journal_path)
            conn = connect(journal_path, busy_timeout)
            try:
                prepare_connection(conn, journal_path, role)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        return cls(journal_path, role, conn, lock, clock, busy_timeout)

    def close(self) -> None:
        """Close the connection and release the daemon lock. Safe to call twice."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.close()
            finally:
                if self._daemon_lock is not None:
                    self._daemon_lock.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal(path={str(self.path)!r}, role={self.role!r})"

    def daemon_pid(self) -> int | None:
        """PID of the live process holding this journal's daemon lock, or None."""
        if self._daemon_lock is not None and self._daemon_lock.held:
            return os.getpid()
        holder = live_holder(self.path)
        return holder.pid if holder else None

    # ------------------------------------------------------------ transactions

    @contextmanager
    def _write(self, *, durable: bool) -> Iterator[sqlite3.Connection]:
        if self.role == "reader":
            raise JournalError(f"journal {self.path} was opened read-only (role 'reader')", path=self.path)
        with self._mutex:
            self._check_open()
            conn = self._conn
            try:
                self._set_synchronous(full=durable)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise database_error(self.path, exc) from exc

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            self._check_open()
            conn = self._conn
            try:
                conn.execute("BEGIN")  # one snapshot for all the statements of a method
                try:
                    yield conn
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise database_error(self.path, exc) from exc

    def _set_synchronous(self, *, full: bool) -> None:
        # SQLite refuses to change the safety level inside a transaction, so this is
        # switched between transactions (under the mutex), and only when it changes.
        if self._sync_full is not full:
            self._conn.execute(f"PRAGMA synchronous = {'FULL' if full else 'NORMAL'}")
            self._sync_full = full

    def _check_open(self) -> None:
        if self._closed:
            raise JournalError(f"journal {self.path} is closed", path=self.path)

    def _now(self, now: float | None) -> float:
        return float(self._clock() if now is None else now)
