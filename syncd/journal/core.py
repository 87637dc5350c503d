"""The journal's core: an open journal (SQLite file or PostgreSQL database) and its transactions
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

On PostgreSQL the same split holds per transaction: `SET LOCAL synchronous_commit`
on for the durable ones, off for the scanner's (`syncd.journal.postgres_backend`).

Threads. SQLite: one connection serves the whole process, guarded by a lock: every
method is one short transaction, so a worker pool shares it safely, and claims
are atomic (`BEGIN IMMEDIATE` also excludes other processes, e.g. `syncd retry`
run beside the daemon; `busy_timeout` makes them wait for each other instead of
failing). PostgreSQL: each transaction takes a pooled connection, and what it reads
to modify it locks (`{for_update}` in the shared SQL; docs/MULTI_HOST.md section 2.2).
`known_files` reads through a connection of its own, so a long start-up scan never
blocks the workers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Self

from syncd.config.model import PostgresJournalConfig
from syncd.journal.backend import ROLES, Backend, Role, Tx
from syncd.journal.errors import JournalError
from syncd.journal.sqlite_backend import SqliteBackend


class JournalCore:
    """An open journal: its backend, role, clock and transactions (`_write`, `_read`).

    The parts of `Journal` (file states, Box folder ids, reports) build on it; they run
    their SQL, in the shared form, on the `Tx` these yield (`syncd.journal.backend`).
    """

    def __init__(self, backend: Backend, role: Role, clock: Callable[[], float]) -> None:
        """Use `Journal.open`; this only assembles an already opened, checked journal."""
        self._backend = backend
        self.path = backend.path
        self.location = backend.location
        self.dialect = backend.dialect
        self.role = role
        self._clock = clock
        self._closed = False

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        where: str | os.PathLike[str] | PostgresJournalConfig,
        role: Role = "daemon",
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 10.0,
        host_id: str | None = None,
    ) -> Self:
        """Open (as daemon: create or migrate) the journal `where` is: a SQLite file's path, or the
        PostgreSQL database of a `PostgresJournalConfig` (`config.journal` either way).

        SQLite: raises JournalLocked if role is "daemon" and another live process holds the
        journal. Either: JournalError if the database is corrupt, unreadable, not a syncd
        journal, from a newer syncd, or (for reader/operator) missing or not yet migrated;
        JournalUnavailable if PostgreSQL cannot be reached. Never replaces an existing
        journal by an empty one. `host_id` names this process's PostgreSQL sessions.
        """
        if role not in ROLES:
            raise ValueError(f"journal role must be one of {sorted(ROLES)}, not {role!r}")
        backend: Backend
        if isinstance(where, PostgresJournalConfig):
            from syncd.journal.postgres_backend import PostgresBackend  # psycopg only when asked for

            backend = PostgresBackend.open(where, role, host_id=host_id)
        else:
            backend = SqliteBackend.open(where, role, busy_timeout=busy_timeout)
        return cls(backend, role, clock)

    def close(self) -> None:
        """Close the connections and release the daemon lock. Safe to call twice."""
        self._closed = True
        self._backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal({self.location!r}, role={self.role!r})"

    def daemon_pid(self) -> int | None:
        """PID of the live process holding this journal's daemon lock (SQLite), or None."""
        return self._backend.daemon_pid()

    # ------------------------------------------------------------ transactions

    @contextmanager
    def _write(self, *, durable: bool) -> Iterator[Tx]:
        if self.role == "reader":
            raise JournalError(f"journal {self.location} was opened read-only (role 'reader')", path=self.path)
        self._check_open()
        with self._backend.write(durable=durable) as tx:
            yield tx

    @contextmanager
    def _read(self) -> Iterator[Tx]:
        self._check_open()
        with self._backend.read() as tx:
            yield tx

    def _serialised(self) -> AbstractContextManager[object]:
        return self._backend.serialised()

    def _check_open(self) -> None:
        if self._closed:
            raise JournalError(f"journal {self.location} is closed", path=self.path)

    def _now(self, now: float | None) -> float:
        return float(self._clock() if now is None else now)
