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
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Self

from syncd.config.model import PostgresJournalConfig
from syncd.journal.backend import ROLES, Backend, Role, Tx
from syncd.journal.errors import JournalError
from syncd.journal.sqlite_backend import SqliteBackend

#: A claim's lease on a SQLite journal (one host: nobody else takes its rows over; the value
#: only matters to `take_over_expired`, which the daemon does not call there).
SQLITE_LEASE_S = 60.0


class JournalCore:
    """An open journal: its backend, role, clock and transactions (`_write`, `_read`).

    The parts of `Journal` (file states, Box folder ids, reports) build on it; they run
    their SQL, in the shared form, on the `Tx` these yield (`syncd.journal.backend`).
    """

    def __init__(self, backend: Backend, role: Role, clock: Callable[[], float], *, host_id: str,
                 lease: float) -> None:
        """Use `Journal.open`; this only assembles an already opened, checked journal."""
        if not host_id:
            raise ValueError("host_id must be a non-empty string")
        if not lease > 0:
            raise ValueError(f"lease must be a positive number of seconds, not {lease!r}")
        self._backend = backend
        #: This host: the owner of the leases its claims carry (docs/MULTI_HOST.md section 5).
        self.host_id = host_id
        #: Seconds a claim's lease holds without renewal.
        self.lease = float(lease)
        #: True when several hosts may share the journal (PostgreSQL).
        self.multi_host = backend.dialect.name == "postgres"
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
        lease: float | None = None,
        pool_size: int | None = None,
    ) -> Self:
        """Open (as daemon: create or migrate) the journal `where` is: a SQLite file's path, or the
        PostgreSQL database of a `PostgresJournalConfig` (`config.journal` either way).

        SQLite: raises JournalLocked if role is "daemon" and another live process holds the
        journal. Either: JournalError if the database is corrupt, unreadable, not a syncd
        journal, from a newer syncd, or (for reader/operator) missing or not yet migrated;
        JournalUnavailable if PostgreSQL cannot be reached. Never replaces an existing
        journal by an empty one.

        `host_id` (default: the hostname) owns the leases of this journal's claims and names its
        PostgreSQL sessions; `lease` is how long a claim holds unrenewed (default: the
        PostgreSQL config's `lease`, SQLite 60 s); `pool_size` asks PostgreSQL's connection pool
        for that many connections (at least 16).
        """
        if role not in ROLES:
            raise ValueError(f"journal role must be one of {sorted(ROLES)}, not {role!r}")
        host = host_id or socket.gethostname()
        backend: Backend
        if isinstance(where, PostgresJournalConfig):
            from syncd.journal.postgres_backend import PostgresBackend  # psycopg only when asked for

            backend = PostgresBackend.open(where, role, host_id=host, pool_size=pool_size)
            default_lease = where.lease
        else:
            backend = SqliteBackend.open(where, role, busy_timeout=busy_timeout)
            default_lease = SQLITE_LEASE_S
        try:
            return cls(backend, role, clock, host_id=host, lease=default_lease if lease is None else lease)
        except BaseException:
            backend.close()
            raise

    def close(self) -> None:
        """Close the connections and release the daemon lock. Safe to call twice."""
        self._closed = True
        self._backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal({self.location!r}, role={self.role!r}, host_id={self.host_id!r})"

    def connection_pool(self) -> object | None:
        """PostgreSQL's `psycopg_pool.ConnectionPool` of this journal (the Box layer keeps its shared
        rate windows there), None on SQLite."""
        return self._backend.connection_pool()

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

    def _lease_params(self, **params: object) -> dict[str, object]:
        """Named parameters of a statement measuring leases (`{db_now}`): this host, the lease, and
        the SQLite journal's clock (PostgreSQL reads its own)."""
        return {"me": self.host_id, "lease": self.lease, "db_now": self._now(None), **params}

    def _now(self, now: float | None) -> float:
        return float(self._clock() if now is None else now)
