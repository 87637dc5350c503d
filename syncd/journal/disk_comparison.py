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

The session (`Backend.scan_session`: SQLite's own connection, PostgreSQL's pooled one held for
the scan, its entries loaded with COPY) reads the journal only (its writes go to its own temporary
table); removals go through the journal's own connection, so a worker's claim
made meanwhile is decided inside that write (`Journal.remove_many(keep=...)`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

from syncd.journal.backend import ScanSession
from syncd.journal.records import FileIdentityLike, FileState
from syncd.journal.relpaths import loaded_relpath
from syncd.journal.validation import to_i64

#: Scanned entries written to the temporary table at a time.
BATCH = 2000

# A row waiting for readiness has next_attempt_at = WAITING_FOR_READINESS (infinity): above any real time.
# Unqualified names: `scanned` is the session's temporary table, `files` the journal's (both engines
# look in the temporary schema first).
_TO_LOOK_AT = """
    SELECT s.relpath FROM scanned s
    LEFT JOIN files f ON f.watch = ? AND f.relpath = s.relpath
    WHERE s.regular <> 0 AND (
        f.id IS NULL
        OR f.size != s.size OR f.mtime_ns != s.mtime_ns OR f.inode != s.inode
        OR (f.device IS NOT NULL AND f.device != s.device)
        OR (f.ctime_ns IS NOT NULL AND f.ctime_ns != s.ctime_ns)
        OR (f.state = 'pending' AND f.next_attempt_at > 1e308)
    )
"""

_MISSING = """
    SELECT f.relpath, f.state FROM files f
    WHERE f.watch = ? AND f.state NOT IN ({keep})
    AND NOT EXISTS (SELECT 1 FROM scanned s WHERE s.relpath = f.relpath)
"""


class DiskComparison:
    """What one scan found, against the journal's rows of its watch (`Journal.compare_with_disk`).

    Call :meth:`found` for every regular file and :meth:`seen` for every other entry
    the scan accounts for (a parked link or FIFO), then ask :meth:`to_look_at` and
    :meth:`missing`. Close it (or use it as a context manager) when done.
    """

    def __init__(self, session: ScanSession, watch: str) -> None:
        self.watch = watch
        self._session = session
        self._pending: list[tuple[Any, ...]] = []
        self.count = 0

    def found(self, relpath: str, identity: FileIdentityLike) -> None:
        """A regular file the scan listed, with its identity."""
        self._add((self._session.dialect.relpath_in(relpath), identity.size, identity.mtime_ns,
                   to_i64(identity.inode), to_i64(identity.device), identity.ctime_ns, 1))

    def seen(self, relpath: str) -> None:
        """An entry the scan accounts for that is not a regular file (its row must not be removed)."""
        self._add((self._session.dialect.relpath_in(relpath), None, None, None, None, None, 0))

    def _add(self, values: tuple[Any, ...]) -> None:
        self._pending.append(values)
        self.count += 1
        if len(self._pending) >= BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._session.add_scanned(self._pending)
            self._pending = []

    def to_look_at(self) -> Iterator[str]:
        """Scanned files that are new to the journal, differ from their row, or wait for readiness."""
        self._flush()
        for (relpath,) in self._session.stream(_TO_LOOK_AT, (self.watch,)):
            yield loaded_relpath(relpath)

    def missing(self, *, keep: Collection[FileState] = (), skip_below: Collection[str] = ()
                ) -> Iterator[tuple[str, FileState]]:
        """Rows of the watch whose file the scan did not find, but those in `keep` states and
        those below a folder of `skip_below` (folders the scan could not list; "" is the root)."""
        self._flush()
        if "" in skip_below:
            return
        self._session.index_scanned()
        unlisted = tuple(f"{folder}/" for folder in skip_below)
        states = [state.value for state in keep] or ["-"]  # "-" is no state: NOT IN needs one value
        sql = _MISSING.format(keep=", ".join("?" * len(states)))
        for relpath, state in self._session.stream(sql, (self.watch, *states)):
            path = loaded_relpath(relpath)
            if not (unlisted and path.startswith(unlisted)):
                yield path, FileState(state)

    def close(self) -> None:
        """Drop the temporary table with the session."""
        self._session.close()

    def __enter__(self) -> DiskComparison:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
