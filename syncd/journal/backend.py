"""The seam under the journal: one database engine behind `Backend`, one transaction behind `Tx`.

`JournalCore` (and every part of `Journal` above it) runs its SQL on the `Tx` that
`_write`/`_read` yield, in one shared form (SQLite's, see `syncd.journal.sql_form`);
the backend translates it for its engine. What differs between engines stays in its
backend module and nowhere else: opening and checking the database, the single-writer
lock (SQLite's flock), the durability switch, streaming reads, bulk loading, how paths
are stored (`Dialect`) and how driver errors become the journal's error kinds:

* `JournalError` for what a retry will not cure (corruption, permissions, a constraint
  the code broke), with a message saying what to do;
* `JournalUnavailable` (and `JournalOutcomeUnknown`) when the database cannot be reached;
* `TransactionConflict` for a deadlock or serialization failure, on which the whole
  journal method is run again (`rerun_on_conflict`).

    sqlite_backend.SqliteBackend     one file, one connection under a mutex (today's journal)
    postgres_backend.PostgresBackend a connection pool, row locks, advisory-locked migrations
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, ParamSpec, Protocol, TypeVar

from syncd.journal.errors import JournalError, JournalUnavailable, TransactionConflict
from syncd.journal.relpaths import StoredRelpath

Params = Sequence[Any] | Mapping[str, Any]

Role = Literal["daemon", "reader", "operator"]
"""daemon: `syncd run` (creates and migrates the journal; on SQLite the single writer, holding the
flock; on PostgreSQL one of several hosts).
reader: `syncd status/history`, read-only, no lock. operator: short-lived commands
such as `syncd retry/forget` that write beside a running daemon, no lock."""

ROLES: frozenset[str] = frozenset({"daemon", "reader", "operator"})

#: Attempts of a journal method that PostgreSQL rolled back for a deadlock or serialization
#: failure, and the jittered pause between them (seconds).
CONFLICT_ATTEMPTS = 5
CONFLICT_PAUSE_S = (0.01, 0.1)


class Cursor(Protocol):
    """What `Tx.execute` returns: the driver's cursor (sqlite3 and psycopg agree on these)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def fetchmany(self, size: int = ...) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


@dataclass(frozen=True)
class Dialect:
    """What the shared SQL needs to know of its engine.

    ``translate``: the shared form as the engine reads it (cached per text).
    ``relpath_in``: how a relative path is stored (SQLite: TEXT when UTF-8, else a BLOB;
    PostgreSQL: always the raw bytes); reading back is `relpaths.loaded_relpath` for both.
    ``below_ranges``: the ``[low, high)`` ranges of stored values below a folder.
    ``row_locks``: whether transactions of other connections interleave, so that batches must
    lock their rows in one order (PostgreSQL); SQLite serialises writers and keeps the
    caller's order (row ids follow it).
    """

    name: Literal["sqlite", "postgres"]
    row_locks: bool
    translate: Callable[[str], str]
    relpath_in: Callable[[str], StoredRelpath]
    below_ranges: Callable[[str], list[tuple[StoredRelpath, StoredRelpath]]]

    def relpath_key(self, relpath: str) -> bytes:
        """The order in which batches lock their rows: the path's bytes (the same on every host)."""
        return relpath.encode("utf-8", "surrogateescape")


class Tx(Protocol):
    """One transaction of the journal, as `JournalCore._write`/`_read` yield it."""

    dialect: Dialect

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        """Run one statement in the shared SQL form; driver errors become JournalError kinds."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """A part of the transaction undone alone if it raises (one entry of a batch)."""
        ...

    def advisory_lock(self, key: str, *, shared: bool = False) -> None:
        """Serialise the transactions of every host that take `key`, until this one ends; `shared`
        ones only against an exclusive taker (PostgreSQL's `pg_advisory_xact_lock[_shared]`;
        nothing on SQLite, whose writers are serialised)."""
        ...


class SavepointsFromExecute:
    """`Tx.savepoint` in the SQL both engines accept, for Tx classes that have `execute`."""

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        raise NotImplementedError

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        self.execute("SAVEPOINT entry")
        try:
            yield
        except BaseException:
            self.execute("ROLLBACK TO SAVEPOINT entry")
            self.execute("RELEASE SAVEPOINT entry")
            raise
        self.execute("RELEASE SAVEPOINT entry")


class ScanSession(Protocol):
    """A connection of its own for one `DiskComparison`, holding its temporary `scanned` table."""

    dialect: Dialect

    def add_scanned(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Append rows (relpath, size, mtime_ns, inode, device, ctime_ns, regular) to `scanned`."""
        ...

    def index_scanned(self) -> None:
        """Index `scanned` on relpath (once the scan is complete)."""
        ...

    def stream(self, sql: str, params: Params) -> Iterator[tuple[Any, ...]]:
        """The rows of one query (shared form), in batches, from one snapshot of the journal."""
        ...

    def close(self) -> None:
        """Drop the temporary table with the session."""
        ...


class Backend(Protocol):
    """An open journal database: its transactions, streams and identity."""

    dialect: Dialect
    #: The SQLite file (None for PostgreSQL), for what lives beside it (lock, published state, probes).
    path: Path | None
    #: Where the journal is, for messages (a file path, or the DSN, which holds no password).
    location: str

    def write(self, *, durable: bool) -> AbstractContextManager[Tx]:
        """A write transaction, committed when the block ends (durably, or not: `core`'s notes)."""
        ...

    def read(self) -> AbstractContextManager[Tx]:
        """A read transaction: one snapshot for every statement of the block."""
        ...

    def serialised(self) -> AbstractContextManager[object]:
        """Held around a read then a write that must not interleave with this process's others
        (SQLite's look-before-lock in `claim_next`; PostgreSQL's row locks need nothing)."""
        ...

    def stream(self, sql: str, params: Params, *, batch: int) -> Iterator[tuple[Any, ...]]:
        """The rows of one long query on a connection of its own, never blocking the writers."""
        ...

    def scan_session(self) -> ScanSession:
        """A connection of its own for a disk comparison (see `ScanSession`)."""
        ...

    def daemon_pid(self) -> int | None:
        """The live process holding the single-writer lock (SQLite), or None."""
        ...

    def connection_pool(self) -> Any:
        """PostgreSQL's connection pool (shared with the Box layer's rate windows), or None."""
        ...

    def close(self) -> None:
        """Release connections and locks. Safe to call twice."""
        ...


P = ParamSpec("P")
R = TypeVar("R")


def rerun_on_conflict(method: Callable[P, R]) -> Callable[P, R]:
    """Run a journal method again when PostgreSQL rolled its transaction back for a deadlock, a
    serialization failure, or a lock or statement that waited past its timeout behind another
    transaction (each method is one transaction and takes its inputs as values, so a re-run is
    the same request), up to `CONFLICT_ATTEMPTS` times with a short jittered pause."""

    @functools.wraps(method)
    def rerun(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                return method(*args, **kwargs)
            except TransactionConflict:
                if attempt == CONFLICT_ATTEMPTS:
                    raise
                time.sleep(random.uniform(*CONFLICT_PAUSE_S))
        raise AssertionError("unreachable")

    return rerun


def entry_error(exc: BaseException) -> bool:
    """Whether a batch may refuse one entry for `exc` and go on: a bad value or a statement the
    database refused, not a lost connection or a conflict (those end the whole transaction)."""
    if isinstance(exc, (JournalUnavailable, TransactionConflict)):
        return False
    return isinstance(exc, (JournalError, ValueError))
