"""The SQLite backend: the journal in one local file (WAL mode), for one host.

One connection serves the whole process, guarded by a mutex: every journal method is
one short transaction, so a worker pool shares it safely, and `BEGIN IMMEDIATE` also
excludes other processes (`syncd retry` beside the daemon; `busy_timeout` makes them
wait for each other instead of failing). Durability is switched between transactions
(`PRAGMA synchronous`, see `syncd.journal.core`). Long reads (`stream`, the disk
comparison) run on connections of their own, so a start-up scan never blocks the
workers. Opening, identifying, checking and migrating the file is `sqlite_file`'s, the
single-writer lock `lock`'s.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from syncd.journal import sql_form
from syncd.journal.backend import Cursor, Dialect, Params, Role, SavepointsFromExecute
from syncd.journal.errors import JournalError
from syncd.journal.lock import DaemonLock, live_holder
from syncd.journal.relpaths import below_ranges, stored_relpath
from syncd.journal.sqlite_file import connect, create_journal_file, database_error, prepare_connection

SQLITE = Dialect(name="sqlite", row_locks=False, translate=sql_form.for_sqlite, relpath_in=stored_relpath, below_ranges=below_ranges)


class SqliteTx(SavepointsFromExecute):
    """A transaction on the journal's one connection (the caller holds the mutex)."""

    dialect = SQLITE

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._path = path

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        try:
            return self._conn.execute(sql_form.for_sqlite(sql), params)
        except sqlite3.Error as exc:
            raise database_error(self._path, exc) from exc

    def advisory_lock(self, key: str, *, shared: bool = False) -> None:
        """Nothing: `BEGIN IMMEDIATE` already serialises every writer of the file."""


class SqliteScanSession:
    """A disk comparison's own connection; `scanned` is a temporary table spilled to a file."""

    dialect = SQLITE

    def __init__(self, path: Path, busy_timeout: float) -> None:
        self._path = path
        self._conn = connect(path, busy_timeout)
        try:
            self._conn.execute("PRAGMA temp_store = FILE")  # the scanned table spills to disk, not memory
            # Appended in scan order; indexed on relpath only when asked (one sort, cheaper than
            # keeping a B-tree ordered through 100,000 inserts).
            self._conn.execute(
                "CREATE TEMP TABLE scanned (relpath, size INTEGER, mtime_ns INTEGER, inode INTEGER,"
                " device INTEGER, ctime_ns INTEGER, regular INTEGER NOT NULL)")
        except sqlite3.Error as exc:
            self._conn.close()
            raise database_error(path, exc) from exc

    def add_scanned(self, rows: Sequence[tuple[Any, ...]]) -> None:
        try:
            self._conn.executemany("INSERT INTO temp.scanned VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        except sqlite3.Error as exc:
            raise database_error(self._path, exc) from exc

    def index_scanned(self) -> None:
        try:
            self._conn.execute("CREATE INDEX IF NOT EXISTS temp.scanned_relpath ON scanned (relpath)")
        except sqlite3.Error as exc:
            raise database_error(self._path, exc) from exc

    def stream(self, sql: str, params: Params) -> Iterator[tuple[Any, ...]]:
        try:
            self._conn.execute("BEGIN")  # one snapshot of the journal for the whole answer
            try:
                cursor = self._conn.execute(sql_form.for_sqlite(sql), params)
                while batch := cursor.fetchmany(2000):
                    yield from batch
            finally:
                if self._conn.in_transaction:
                    self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise database_error(self._path, exc) from exc

    def close(self) -> None:
        self._conn.close()


class SqliteBackend:
    """An open SQLite journal file: its connection, mutex, daemon lock and durability switch."""

    dialect = SQLITE

    def __init__(self, path: Path, conn: sqlite3.Connection, lock: DaemonLock | None, busy_timeout: float) -> None:
        """Use `open`; this only assembles an opened, checked journal."""
        self.path: Path | None = path
        self._file = path
        self.location = str(path)
        self._conn = conn
        self._daemon_lock = lock
        self._busy_timeout = busy_timeout
        self._mutex = threading.RLock()
        self._sync_full: bool | None = None
        self._closed = False

    @classmethod
    def open(cls, path: str | os.PathLike[str], role: Role, *, busy_timeout: float) -> Self:
        """Open (as daemon: create or migrate) the journal at `path` (see `Journal.open`)."""
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
        return cls(journal_path, conn, lock, busy_timeout)

    @contextmanager
    def write(self, *, durable: bool) -> Iterator[SqliteTx]:
        with self._mutex:
            self._check_open()
            conn = self._conn
            try:
                self._set_synchronous(full=durable)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield SqliteTx(conn, self._file)
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise database_error(self._file, exc) from exc

    @contextmanager
    def read(self) -> Iterator[SqliteTx]:
        with self._mutex:
            self._check_open()
            conn = self._conn
            try:
                conn.execute("BEGIN")  # one snapshot for all the statements of a method
                try:
                    yield SqliteTx(conn, self._file)
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise database_error(self._file, exc) from exc

    def serialised(self) -> threading.RLock:
        return self._mutex

    def _set_synchronous(self, *, full: bool) -> None:
        # SQLite refuses to change the safety level inside a transaction, so this is
        # switched between transactions (under the mutex), and only when it changes.
        if self._sync_full is not full:
            self._conn.execute(f"PRAGMA synchronous = {'FULL' if full else 'NORMAL'}")
            self._sync_full = full

    def stream(self, sql: str, params: Params, *, batch: int) -> Iterator[tuple[Any, ...]]:
        self._check_open()
        conn = connect(self._file, self._busy_timeout)
        try:
            conn.execute("PRAGMA query_only = ON")
            cursor = conn.execute(sql_form.for_sqlite(sql), params)
            while rows := cursor.fetchmany(batch):
                yield from rows
        except sqlite3.Error as exc:
            raise database_error(self._file, exc) from exc
        finally:
            conn.close()

    def scan_session(self) -> SqliteScanSession:
        self._check_open()
        return SqliteScanSession(self._file, self._busy_timeout)

    def daemon_pid(self) -> int | None:
        if self._daemon_lock is not None and self._daemon_lock.held:
            return os.getpid()
        holder = live_holder(self._file)
        return holder.pid if holder else None

    def connection_pool(self) -> None:
        """None: one connection under a mutex, no pool."""
        return None

    def close(self) -> None:
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.close()
            finally:
                if self._daemon_lock is not None:
                    self._daemon_lock.release()

    def _check_open(self) -> None:
        if self._closed:
            raise JournalError(f"journal {self._file} is closed", path=self._file)
