"""One scan of a watched folder compared with the journal's rows, in bounded memory.

A backstop scan of a 100,000-file watch must not hold every row of the watch
(nor every path it saw) in Python: the scanned entries go into a temporary
table on the comparison's own connection (spilled to a temporary file, not
kept in memory), and the two questions a scan asks are SQL joins streamed
back in batches:

* which scanned files must readiness look at (`to_look_at`): no row yet, a
  row whose identity differs (size, mtime, inode; device and ctime where the
  row has them), or a row waiting for readiness;
* which rows name files the scan did not find (`missing`): candidates for
  removal, except states the caller keeps and paths below folders the scan
  could not read.

The connection reads the journal only (its writes go to its own temporary
table); removals go through the journal's own connection, so a worker's claim
made meanwhile is decided inside that write (`Journal.remove_many(keep=...)`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from syncd.journal.records import FileIdentityLike, FileState
from syncd.journal.relpaths import loaded_relpath, stored_relpath
from syncd.journal.sqlite_file import connect, database_error
from syncd.journal.validation import to_i64

#: Scanned entries written to the temporary table at a time, and rows fetched at a time.
BATCH = 2000

# A row waiting for readiness has next_attempt_at = WAITING_FOR_READINESS (infinity): above any real time.
_TO_LOOK_AT = """
    SELECT s.relpath FROM temp.scanned s
    LEFT JOIN main.files f ON f.watch = ? AND f.relpath = s.relpath
    WHERE s.regular AND (
        f.id IS NULL
        OR f.size != s.size OR f.mtime_ns != s.mtime_ns OR f.inode != s.inode
        OR (f.device IS NOT NULL AND f.device != s.device)
        OR (f.ctime_ns IS NOT NULL AND f.ctime_ns != s.ctime_ns)
        OR (f.state = 'pending' AND f.next_attempt_at > 1e308)
    )
"""

_MISSING = """
    SELECT f.relpath, f.state FROM main.files f
    WHERE f.watch = ? AND f.state NOT IN ({keep})
    AND NOT EXISTS (SELECT 1 FROM temp.scanned s WHERE s.relpath = f.relpath)
"""


class DiskComparison:
    """What one scan found, against the journal's rows of its watch (`Journal.compare_with_disk`).

    Call :meth:`found` for every regular file and :meth:`seen` for every other entry
    the scan accounts for (a parked link or FIFO), then ask :meth:`to_look_at` and
    :meth:`missing`. Close it (or use it as a context manager) when done.
    """

    def __init__(self, path: Path, busy_timeout: float, watch: str) -> None:
        self.watch = watch
        self.path = path
        self._pending: list[tuple[Any, ...]] = []
        self.count = 0
        self._conn = connect(path, busy_timeout)
        try:
            self._conn.execute("PRAGMA temp_store = FILE")  # the scanned table spills to disk, not memory
            # Appended in scan order; indexed on relpath only when `missing` needs it (one sort,
            # cheaper than keeping a B-tree ordered through 100,000 inserts).
            self._conn.execute(
                "CREATE TEMP TABLE scanned (relpath, size INTEGER, mtime_ns INTEGER, inode INTEGER,"
                " device INTEGER, ctime_ns INTEGER, regular INTEGER NOT NULL)")
        except sqlite3.Error as exc:
            self._conn.close()
            raise database_error(path, exc) from exc

    def found(self, relpath: str, identity: FileIdentityLike) -> None:
        """A regular file the scan listed, with its identity."""
        self._add((stored_relpath(relpath), identity.size, identity.mtime_ns, to_i64(identity.inode),
                   to_i64(identity.device), identity.ctime_ns, 1))

    def seen(self, relpath: str) -> None:
        """An entry the scan accounts for that is not a regular file (its row must not be removed)."""
        self._add((stored_relpath(relpath), None, None, None, None, None, 0))

    def _add(self, values: tuple[Any, ...]) -> None:
        self._pending.append(values)
        self.count += 1
        if len(self._pending) >= BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        try:
            self._conn.executemany("INSERT INTO temp.scanned VALUES (?, ?, ?, ?, ?, ?, ?)", self._pending)
        except sqlite3.Error as exc:
            raise database_error(self.path, exc) from exc
        self._pending = []

    def to_look_at(self) -> Iterator[str]:
        """Scanned files that are new to the journal, differ from their row, or wait for readiness."""
        self._flush()
        for (relpath,) in self._stream(_TO_LOOK_AT, (self.watch,)):
            yield loaded_relpath(relpath)

    def missing(self, *, keep: Collection[FileState] = (), skip_below: Collection[str] = ()
                ) -> Iterator[tuple[str, FileState]]:
        """Rows of the watch whose file the scan did not find, but those in `keep` states and
        those below a folder of `skip_below` (folders the scan could not list; "" is the root)."""
        self._flush()
        if "" in skip_below:
            return
        try:
            self._conn.execute("CREATE INDEX IF NOT EXISTS temp.scanned_relpath ON scanned (relpath)")
        except sqlite3.Error as exc:
            raise database_error(self.path, exc) from exc
        unlisted = tuple(f"{folder}/" for folder in skip_below)
        states = [state.value for state in keep] or ["-"]  # "-" is no state: NOT IN needs one value
        sql = _MISSING.format(keep=", ".join("?" * len(states)))
        for relpath, state in self._stream(sql, (self.watch, *states)):
            path = loaded_relpath(relpath)
            if not (unlisted and path.startswith(unlisted)):
                yield path, FileState(state)

    def _stream(self, sql: str, params: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        try:
            self._conn.execute("BEGIN")  # one snapshot of the journal for the whole answer
            try:
                cursor = self._conn.execute(sql, params)
                while batch := cursor.fetchmany(BATCH):
                    yield from batch
            finally:
                if self._conn.in_transaction:
                    self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise database_error(self.path, exc) from exc

    def close(self) -> None:
        """Drop the temporary table with the connection."""
        self._conn.close()

    def __enter__(self) -> DiskComparison:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
