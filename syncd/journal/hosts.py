"""The hosts sharing a PostgreSQL journal (docs/MULTI_HOST.md section 4): one registration per
`syncd run`, on a connection of its own.

    registration = HostRegistration.start(journal, version=__version__, watches=[WatchClaim(...)])
    registration.heartbeat()                  # every lease / 4: proves this host alive
    registration.heartbeat("degraded", "Box refuses the folder of watch scans")
    registration.stop()                       # a clean stop: state 'stopped', lock released

* **One process per host id.** The registration holds the session advisory lock
  ``hashtextextended('syncd-host:' || host_id, 0)`` on a dedicated connection (not
  pooled) for the process's life: it dies with the session, as SQLite's flock dies with
  its process. A second process of the same host id is refused (`HostLockRefused`,
  naming the holder from `hosts`); after a lost connection the next heartbeat reconnects
  and takes the lock again (refused then: another process took over the host id).
* **The heartbeat** updates the row of this process's start (`instance`) with
  PostgreSQL's clock, and reads back the schema's `compatible_from`: no row means
  another process of this host id registered since (`HostReplaced`); a schema this
  syncd may no longer write beside stops it (`JournalSchemaTooNew`).
* **Watches must agree**: a watch name another registered, not stopped host sends to
  another Box folder refuses the start (`WatchMismatch`). Registrations serialise on an
  advisory lock, so two hosts starting together cannot both miss each other's watches.

Uploads in flight per host are derived from the claims' leases (`Journal.hosts`), never stored.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Self

import psycopg

from syncd.journal import schema_postgres
from syncd.journal.core import JournalCore
from syncd.journal.errors import (
    HostLockRefused,
    HostReplaced,
    JournalError,
    JournalSchemaTooNew,
    JournalUnavailable,
    WatchMismatch,
)
from syncd.journal.postgres_backend import PostgresBackend, driver_error
from syncd.journal.records import WatchClaim
from syncd.socket_deadlines import DEADLINES

#: The states a host reports (the `hosts.state` CHECK).
HOST_STATES = frozenset({"running", "degraded", "stopping", "stopped"})

_DB_NOW = "CAST(extract(epoch FROM clock_timestamp()) AS double precision)"
_HOST_LOCK = "SELECT pg_try_advisory_lock(hashtextextended('syncd-host:' || %s, 0))"
_HOST_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended('syncd-host:' || %s, 0))"
_WATCHES_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('syncd-host-watches', 0))"


class HostRegistration:
    """This process's registration as one host of a PostgreSQL journal (see the module's notes)."""

    def __init__(self, backend: PostgresBackend, host_id: str, version: str, watches: Sequence[WatchClaim]) -> None:
        """Use `start`."""
        self._backend = backend
        self.host_id = host_id
        self.version = version
        self.watches = tuple(watches)
        #: This process start's id in `hosts.instance`.
        self.instance = uuid.uuid4()
        self._conn: psycopg.Connection | None = None
        self._mutex = threading.Lock()
        self._stopped = False

    @classmethod
    def start(cls, journal: JournalCore, *, version: str, watches: Sequence[WatchClaim]) -> Self:
        """Register this process as host `journal.host_id`: take the host lock, record the host
        (state 'running') and its watches. Raises HostLockRefused (another live process has this
        host id), WatchMismatch (a watch name goes to another Box folder on another host),
        JournalUnavailable, or JournalError for a SQLite journal (one host: nothing to register)."""
        backend = journal._backend
        if not isinstance(backend, PostgresBackend):
            raise JournalError(f"journal {journal.location} is a SQLite file: only a PostgreSQL journal has hosts")
        names = [w.name for w in watches]
        if len(set(names)) != len(names):
            raise ValueError(f"watch names must be unique, not {names}")
        registration = cls(backend, journal.host_id, version, watches)
        with registration._mutex:
            try:
                registration._connect()
                registration._register()
            except BaseException:
                registration._drop_connection()
                raise
        return registration

    # ------------------------------------------------------------------ calls

    def heartbeat(self, state: str = "running", detail: str | None = None) -> None:
        """Prove this host alive (PostgreSQL's clock) and say how it is. Raises JournalUnavailable
        (connection lost or timed out: the next call reconnects and re-takes the host lock, or
        raises HostLockRefused), HostReplaced (another process of this host id registered since),
        JournalSchemaTooNew (the journal was migrated past what this syncd may write beside)."""
        if state not in HOST_STATES:
            raise ValueError(f"host state must be one of {sorted(HOST_STATES)}, not {state!r}")
        with self._mutex:
            if self._stopped:
                raise JournalError(f"the registration of host {self.host_id!r} was stopped")
            conn = self._conn if self._conn is not None else self._connect()
            found = self._run(conn, (
                f"UPDATE hosts SET heartbeat_at = {_DB_NOW}, state = %s, detail = %s"
                " WHERE host_id = %s AND instance = %s"
                " RETURNING (SELECT schema_version FROM syncd_meta), (SELECT compatible_from FROM syncd_meta)"),
                (state, detail, self.host_id, self.instance)).fetchone()
        if found is None:
            raise HostReplaced(
                f"host {self.host_id!r} was registered again by another process in journal {self._backend.location}"
                " (the same host_id on two machines, or a second syncd): this one stops")
        schema_version, compatible_from = int(found[0]), int(found[1])
        if compatible_from > schema_postgres.SCHEMA_VERSION:
            raise JournalSchemaTooNew(
                f"journal {self._backend.location} was migrated to schema version {schema_version} by a newer "
                f"syncd, which needs {compatible_from} or newer to write beside it; this syncd has "
                f"{schema_postgres.SCHEMA_VERSION}: upgrade syncd on this host")

    def stop(self) -> None:
        """A clean stop: state 'stopped', the host lock released, the connection closed. Idempotent;
        never raises (a host that cannot say goodbye is found lost after the lease)."""
        with self._mutex:
            if self._stopped:
                return
            self._stopped = True
            conn = self._conn
            if conn is not None and not conn.broken:
                with contextlib.suppress(psycopg.Error), DEADLINES.bound(conn, self._backend.round_trip):
                    conn.execute(f"UPDATE hosts SET state = 'stopped', detail = NULL, heartbeat_at = {_DB_NOW}"
                                 " WHERE host_id = %s AND instance = %s", (self.host_id, self.instance))
                    conn.execute(_HOST_UNLOCK, (self.host_id,))
            self._drop_connection()

    def __repr__(self) -> str:
        return f"HostRegistration(host_id={self.host_id!r}, instance={self.instance})"

    # ------------------------------------------------------------ internals

    def _connect(self) -> psycopg.Connection:
        """The dedicated connection, with this host's lock taken (HostLockRefused if another holds it)."""
        conn = self._backend.dedicated_connection()
        self._conn = conn
        locked = self._run(conn, _HOST_LOCK, (self.host_id,)).fetchone()
        if not (locked and locked[0]):
            holder = self._holder(conn)
            self._drop_connection()
            raise HostLockRefused(
                f"host id {self.host_id!r} is in use in journal {self._backend.location} by {holder}: only one "
                "syncd may run per host id (a copied config, or a second process?); stop it, or give this "
                "host another host_id")
        return conn

    def _holder(self, conn: psycopg.Connection) -> str:
        found = self._run(conn, "SELECT hostname, pid, started_at FROM hosts WHERE host_id = %s",
                          (self.host_id,)).fetchone()
        if found is None:
            return "another process (not yet registered)"
        since = datetime.fromtimestamp(float(found[2]), UTC).isoformat(timespec="seconds")
        return f"syncd on {found[0]} (pid {found[1]}, since {since})"

    def _register(self) -> None:
        assert self._conn is not None
        conn = self._conn
        self._run(conn, "BEGIN")
        try:
            self._run(conn, _WATCHES_LOCK)
            self._run(conn, (
                "INSERT INTO hosts (host_id, instance, hostname, pid, version, schema_version, started_at,"
                f" heartbeat_at, state, detail) VALUES (%s, %s, %s, %s, %s, %s, {_DB_NOW}, {_DB_NOW}, 'running', NULL)"
                " ON CONFLICT (host_id) DO UPDATE SET instance = excluded.instance, hostname = excluded.hostname,"
                " pid = excluded.pid, version = excluded.version, schema_version = excluded.schema_version,"
                " started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, state = 'running',"
                " detail = NULL"),
                (self.host_id, self.instance, socket.gethostname(), os.getpid(), self.version,
                 schema_postgres.SCHEMA_VERSION))
            self._refuse_mismatched_watches(conn)
            self._run(conn, "DELETE FROM host_watches WHERE host_id = %s", (self.host_id,))
            for watch in self.watches:
                self._run(conn, "INSERT INTO host_watches (watch, host_id, folder_id, path_hint) VALUES (%s, %s, %s, %s)",
                          (watch.name, self.host_id, watch.folder_id, watch.path_hint))
            self._run(conn, "COMMIT")
        except BaseException:
            if not conn.broken:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
            raise

    def _refuse_mismatched_watches(self, conn: psycopg.Connection) -> None:
        if not self.watches:
            return
        others = self._run(conn, (
            "SELECT w.watch, w.folder_id, w.host_id FROM host_watches w JOIN hosts h ON h.host_id = w.host_id"
            " WHERE h.state <> 'stopped' AND w.host_id <> %s AND w.watch = ANY(%s) ORDER BY w.watch, w.host_id"),
            (self.host_id, [w.name for w in self.watches])).fetchall()
        ours = {w.name: w.folder_id for w in self.watches}
        for name, folder_id, other_host in others:
            if folder_id != ours[name]:
                raise WatchMismatch(
                    f"watch {name!r} goes to Box folder {folder_id} on {other_host} but {ours[name]} here: "
                    "a watch name must mean the same Box folder on every host; rename the watch here, or fix "
                    "its folder_id on one of the hosts")

    def _run(self, conn: psycopg.Connection, sql: str, params: Sequence[Any] | None = None) -> psycopg.Cursor:
        """One statement on the dedicated connection; a lost connection is dropped (the next call
        reconnects) and every error becomes the journal's kind."""
        try:
            with DEADLINES.bound(conn, self._backend.round_trip):
                return conn.execute(sql, params)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            error = driver_error(self._backend.location, exc)
            if isinstance(error, JournalUnavailable) or conn.broken:
                self._drop_connection()
            raise error from exc

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()
