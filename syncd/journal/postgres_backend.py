"""The PostgreSQL backend: one journal shared by several syncd hosts (docs/MULTI_HOST.md section 2).

* **Connections**: a `psycopg_pool.ConnectionPool`; each transaction takes one for its
  length only. Every session runs with `search_path` = the `syncd` schema, is named
  `syncd:<host_id>`, and has statement, lock and idle-in-transaction timeouts drawn from
  the lease (a quarter, a quarter, a half): a host cut off learns it long before its
  claims lapse. The password goes to libpq as `password=`, never into a DSN, so no
  connection error can echo it; the DSN (which the loader keeps free of secrets) names
  the journal in messages.
* **Transactions**: `READ COMMITTED` for writes, whose read-modify-writes lock what they
  read (`{for_update}` in the shared SQL), with `SET LOCAL synchronous_commit` on for the
  durable ones and off for the scanner's (`syncd.journal.core`); `REPEATABLE READ READ
  ONLY` for reads (one snapshot per method, as SQLite's `BEGIN` gives).
* **Errors**: deadlocks and serialization failures -> `TransactionConflict` (the method is
  run again); a connection refused or lost, a server shutting down, a timeout, no pooled
  connection in time -> `JournalUnavailable`; a connection lost during `COMMIT` ->
  `JournalOutcomeUnknown`; anything else -> `JournalError`.
* **Schema**: created and migrated by the daemon role in one transaction under an
  advisory lock (`schema_postgres.MIGRATION_LOCK_KEY`), so hosts upgrading together do
  not race: the second waits, then finds the schema current. A `syncd` schema with tables
  but no `syncd_meta` is another program's and is refused, never migrated.
* **Streams**: `stream` and the disk comparison hold one pooled connection, read through
  a named (server-side) cursor from one snapshot, and load the scanned entries with COPY.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import psycopg
import psycopg_pool
from psycopg import pq

from syncd import __version__
from syncd.config.model import PostgresJournalConfig
from syncd.journal import schema_postgres, sql_form
from syncd.journal.backend import Cursor, Dialect, Params, Role, SavepointsFromExecute
from syncd.journal.errors import JournalError, JournalOutcomeUnknown, JournalUnavailable, TransactionConflict
from syncd.journal.migrations import check_migration_order
from syncd.socket_deadlines import DEADLINES

POSTGRES = Dialect(
    name="postgres",
    row_locks=True,
    translate=sql_form.for_postgres,
    relpath_in=lambda relpath: relpath.encode("utf-8", "surrogateescape"),
    below_ranges=lambda prefix: [_below_bytes(prefix)],
)

#: Connections of one journal's pool at least: the worker threads, their part threads, the scanner
#: (`Journal.open(pool_size=)` asks for more: workers * part_concurrency + small-file workers + 8).
POOL_MAX_SIZE = 16
#: How long a transaction waits for a pooled connection before the journal is called unavailable.
POOL_TIMEOUT_S = 10.0
#: How long a stream (a start-up scan's rows) may sit idle in its transaction between batches.
STREAM_IDLE_TIMEOUT_S = 600.0
#: Statement timeout of the migration transaction (it may wait on another host's migration).
MIGRATION_TIMEOUT_S = 600.0

# serialization_failure, deadlock_detected; lock_not_available (lock_timeout) and query_canceled
# (statement_timeout): an answering server whose rows another transaction held too long (two hosts
# observing one burst) is busy, not unreachable; the method is run again (rerun_on_conflict).
_CONFLICTS = frozenset({"40001", "40P01", "55P03", "57014"})
# admin_shutdown, crash_shutdown, cannot_connect_now, idle_in_transaction_session_timeout.
_UNAVAILABLE = frozenset({"57P01", "57P02", "57P03", "25P03"})


def _below_bytes(prefix: str) -> tuple[bytes, bytes]:
    """The one bytea range below folder `prefix` ("/" + 1 is "0": above every path under it)."""
    if not prefix.endswith("/"):
        raise ValueError(f"a folder prefix ends with '/', not {prefix!r}")
    raw = prefix.encode("utf-8", "surrogateescape")
    return raw, raw[:-1] + b"0"


def driver_error(location: str, exc: Exception) -> JournalError:
    """The journal's error kind for a psycopg (or pool) error, saying what happened."""
    sqlstate = getattr(exc, "sqlstate", None)
    text = str(exc).strip() or type(exc).__name__
    if sqlstate in _CONFLICTS:
        return TransactionConflict(f"journal {location}: transaction rolled back ({sqlstate}: {text})")
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return JournalUnavailable(f"journal {location}: no database connection within {POOL_TIMEOUT_S:g}s ({text})")
    if sqlstate in _UNAVAILABLE or (sqlstate or "").startswith("08") or (
            isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)) and sqlstate is None):
        return JournalUnavailable(f"journal {location} is unreachable: {text}")
    return JournalError(f"journal {location}: {text}")


class PostgresTx(SavepointsFromExecute):
    """A transaction on one pooled connection."""

    dialect = POSTGRES

    def __init__(self, conn: psycopg.Connection, location: str, round_trip: float) -> None:
        self._conn = conn
        self._location = location
        self._round_trip = round_trip

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        try:
            # Always with parameters (even none): psycopg then reads %% as the literal %.
            with DEADLINES.bound(self._conn, self._round_trip):
                return self._conn.execute(sql_form.for_postgres(sql), params)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            raise driver_error(self._location, exc) from exc

    def begin(self, statements: str) -> None:
        """Start the transaction: `statements` (BEGIN and its SET LOCALs, no parameters) in one
        round trip, the simple query protocol taking several at once."""
        try:
            with DEADLINES.bound(self._conn, self._round_trip):
                self._conn.execute(statements)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            raise driver_error(self._location, exc) from exc

    def advisory_lock(self, key: str, *, shared: bool = False) -> None:
        function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        self.execute(f"SELECT {function}(hashtextextended(?, 0))", (key,))


class PostgresScanSession:
    """A disk comparison's pooled connection, holding its temporary `scanned` table."""

    dialect = POSTGRES

    def __init__(self, backend: PostgresBackend) -> None:
        self._backend = backend
        self._conn = backend._getconn()
        self._analyzed = True
        try:
            self._conn.execute(
                "CREATE TEMP TABLE scanned (relpath bytea NOT NULL, size bigint, mtime_ns bigint, inode bigint,"
                " device bigint, ctime_ns bigint, regular integer NOT NULL)")
        except psycopg.Error as exc:
            self._backend._putconn(self._conn)
            raise driver_error(backend.location, exc) from exc

    def add_scanned(self, rows: Sequence[tuple[Any, ...]]) -> None:
        try:
            with self._conn.cursor() as cursor, cursor.copy(
                    "COPY scanned (relpath, size, mtime_ns, inode, device, ctime_ns, regular) FROM STDIN") as copy:
                copy.set_types(["bytea", "int8", "int8", "int8", "int8", "int8", "int4"])
                for row in rows:
                    copy.write_row(row)
        except psycopg.Error as exc:
            raise driver_error(self._backend.location, exc) from exc
        self._analyzed = False

    def index_scanned(self) -> None:
        try:
            self._conn.execute("CREATE INDEX IF NOT EXISTS scanned_relpath ON scanned (relpath)")
        except psycopg.Error as exc:
            raise driver_error(self._backend.location, exc) from exc
        self._analyzed = False

    def stream(self, sql: str, params: Params) -> Iterator[tuple[Any, ...]]:
        try:
            if not self._analyzed:  # a temporary table has no statistics until asked
                self._conn.execute("ANALYZE scanned")
                self._analyzed = True
            yield from _server_cursor_rows(self._conn, sql, params, 2000)
        except psycopg.Error as exc:
            raise driver_error(self._backend.location, exc) from exc

    def close(self) -> None:
        try:
            self._conn.execute("DISCARD TEMP")
        except psycopg.Error:
            pass  # a broken connection: the pool discards it, its temporary table with it
        self._backend._putconn(self._conn)


def _server_cursor_rows(conn: psycopg.Connection, sql: str, params: Params, batch: int
                        ) -> Iterator[tuple[Any, ...]]:
    """The rows of one query through a named cursor, from one snapshot, `batch` at a time."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        # The reader works on each batch between fetches: the session sits idle in its
        # transaction meanwhile, longer than the half lease allowed to a worker's.
        conn.execute(f"SET LOCAL idle_in_transaction_session_timeout = {int(STREAM_IDLE_TIMEOUT_S * 1000)}")
        with conn.cursor(name="syncd_stream") as cursor:
            cursor.execute(sql_form.for_postgres(sql), params)  # type: ignore[arg-type]
            while rows := cursor.fetchmany(batch):
                yield from rows
    finally:
        if conn.info.transaction_status != pq.TransactionStatus.IDLE:
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")


class PostgresBackend:
    """An open PostgreSQL journal: its pool, and its transactions."""

    dialect = POSTGRES
    path: Path | None = None

    def __init__(self, location: str, pool: psycopg_pool.ConnectionPool, config: PostgresJournalConfig,
                 settings: dict[str, Any]) -> None:
        """Use `open`."""
        self.location = location
        self._pool = pool
        self.config = config
        self._settings = settings
        self._closed = False
        #: Longest wait for the answer to one statement: the server's own timeouts (a quarter lease)
        #: answer well before; past it the network is not delivering (socket_deadlines).
        self.round_trip = round_trip_limit(config)

    @classmethod
    def open(cls, config: PostgresJournalConfig, role: Role, *, host_id: str | None = None,
             pool_size: int | None = None) -> Self:
        """Connect to `config`'s database; as daemon create or migrate the schema, else check it.

        Raises JournalUnavailable when the server cannot be reached, JournalError when the
        schema is another program's, newer than this syncd may write, or (reader, operator)
        missing or not yet migrated.
        """
        location = config.dsn
        kwargs = session_settings(config, role, host_id)
        try:
            with psycopg.connect(config.dsn, **kwargs) as conn:
                if role == "daemon":
                    migrate(conn, location, host_id)
                else:
                    check_schema(conn, location, role)
        except psycopg.Error as exc:
            raise _connect_error(location, exc) from exc
        pool = psycopg_pool.ConnectionPool(
            config.dsn, kwargs=kwargs, min_size=1, max_size=max(POOL_MAX_SIZE, pool_size or 0), timeout=POOL_TIMEOUT_S,
            name=f"syncd-journal-{host_id or 'local'}", open=False)
        try:
            pool.open(wait=True, timeout=POOL_TIMEOUT_S)
        except psycopg_pool.PoolTimeout as exc:
            pool.close()
            raise JournalUnavailable(f"journal {location}: the connection pool could not connect ({exc})") from exc
        return cls(location, pool, config, kwargs)

    # ------------------------------------------------------------ connections

    def connection_pool(self) -> psycopg_pool.ConnectionPool:
        return self._pool

    def dedicated_connection(self) -> psycopg.Connection:
        """A connection of its own, outside the pool (autocommit, the sessions' options): the host
        registration's, held for the process's life. JournalUnavailable when it cannot connect."""
        self._check_open()
        try:
            return psycopg.connect(self.config.dsn, **self._settings)
        except psycopg.Error as exc:
            raise _connect_error(self.location, exc) from exc

    def _getconn(self) -> psycopg.Connection:
        self._check_open()
        try:
            return self._pool.getconn()
        except psycopg_pool.PoolTimeout as exc:
            raise driver_error(self.location, exc) from exc

    def _putconn(self, conn: psycopg.Connection) -> None:
        _rollback(conn, self.round_trip)
        self._pool.putconn(conn)

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        conn = self._getconn()
        try:
            yield conn
        finally:
            self._putconn(conn)

    # ----------------------------------------------------------- transactions

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[tuple[psycopg.Connection, PostgresTx]]:
        """A pooled connection in a transaction begun with `begin`, returned to the pool after.

        A pooled connection the server ended meanwhile (a restart, an idle timeout, an
        operator's pg_terminate_backend) fails at BEGIN, before anything was done: it is
        dropped and the transaction begun once more on another one.
        """
        for attempt in (1, 2):
            conn = self._getconn()
            try:
                tx = PostgresTx(conn, self.location, self.round_trip)
                try:
                    tx.begin(begin)
                except JournalUnavailable:
                    if attempt == 2 or not conn.broken:
                        raise
                    continue
                yield conn, tx
                return
            finally:
                self._putconn(conn)

    @contextmanager
    def write(self, *, durable: bool) -> Iterator[PostgresTx]:
        with self._transaction(f"BEGIN; SET LOCAL synchronous_commit = {'on' if durable else 'off'}") as (conn, tx):
            try:
                yield tx
            except BaseException:
                _rollback(conn, self.round_trip)
                raise
            if conn.info.transaction_status == pq.TransactionStatus.INERROR:
                # A statement failed and the code went on without a savepoint: COMMIT would
                # silently roll back. That is a bug; say so instead of losing the writes.
                _rollback(conn, self.round_trip)
                raise JournalError(f"journal {self.location}: a failed statement aborted the transaction")
            try:
                with DEADLINES.bound(conn, self.round_trip):
                    conn.execute("COMMIT")
            except psycopg.Error as exc:
                error = driver_error(self.location, exc)
                if isinstance(error, JournalUnavailable):
                    raise JournalOutcomeUnknown(
                        f"journal {self.location}: the connection broke during COMMIT; the transaction may or "
                        f"may not have been committed ({exc})") from exc
                raise error from exc

    @contextmanager
    def read(self) -> Iterator[PostgresTx]:
        with self._transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") as (conn, tx):
            try:
                yield tx
            finally:
                _rollback(conn, self.round_trip)  # nothing to keep: ending a read-only transaction either way

    def serialised(self) -> contextlib.nullcontext[None]:
        # Row locks (FOR UPDATE SKIP LOCKED) keep claims apart, across threads and hosts alike.
        return contextlib.nullcontext()

    def stream(self, sql: str, params: Params, *, batch: int) -> Iterator[tuple[Any, ...]]:
        with self._connection() as conn:
            try:
                yield from _server_cursor_rows(conn, sql, params, batch)
            except psycopg.Error as exc:
                raise driver_error(self.location, exc) from exc

    def scan_session(self) -> PostgresScanSession:
        return PostgresScanSession(self)

    def daemon_pid(self) -> int | None:
        """None: on PostgreSQL several daemons (hosts) share the journal; there is no single writer."""
        return None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.close()

    def _check_open(self) -> None:
        if self._closed:
            raise JournalError(f"journal {self.location} is closed")


def _rollback(conn: psycopg.Connection, round_trip: float) -> None:
    if not conn.broken and conn.info.transaction_status != pq.TransactionStatus.IDLE:
        with contextlib.suppress(psycopg.Error), DEADLINES.bound(conn, round_trip):
            conn.execute("ROLLBACK")


def round_trip_limit(config: PostgresJournalConfig) -> float:
    """Seconds one statement's answer may take before the connection counts as cut off: twice the
    quarter lease the server's statement and lock timeouts stop at (docs/MULTI_HOST.md section 5.7)."""
    return config.lease / 2


def session_settings(config: PostgresJournalConfig, role: Role, host_id: str | None) -> dict[str, Any]:
    """libpq parameters of every session (docs/MULTI_HOST.md section 2.5); the password only here."""
    quarter_ms = max(int(config.lease * 250), 500)
    options = [f"search_path={schema_postgres.SCHEMA}", f"statement_timeout={quarter_ms}",
               f"lock_timeout={quarter_ms}", f"idle_in_transaction_session_timeout={2 * quarter_ms}"]
    if role == "reader":
        options.append("default_transaction_read_only=on")
    settings: dict[str, Any] = {
        "autocommit": True,  # transactions are begun and ended explicitly, per journal method
        "application_name": f"syncd:{host_id}" if host_id else "syncd",
        "options": " ".join(f"-c {option}" for option in options),
        "connect_timeout": max(2, round(config.lease / 4)),
        "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
        "tcp_user_timeout": quarter_ms,
    }
    if config.password is not None:
        settings["password"] = config.password.reveal()
    return settings


def _connect_error(location: str, exc: psycopg.Error) -> JournalError:
    if isinstance(exc, psycopg.OperationalError) and "authentication failed" in str(exc):
        return JournalError(f"journal {location}: the server refused the credentials ({exc}); "
                            "check journal.password and the role's pg_hba.conf entry")
    return driver_error(location, exc)


# ---------------------------------------------------------------- schema


def _read_meta(conn: psycopg.Connection) -> tuple[int, int] | None:
    """(schema_version, compatible_from) of the `syncd` schema, or None when it has no syncd_meta."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema_postgres.SCHEMA}.syncd_meta",)).fetchone()
    if not exists or not exists[0]:
        return None
    found = conn.execute("SELECT application, schema_version, compatible_from FROM syncd_meta").fetchone()
    if found is None or found[0] != schema_postgres.APPLICATION:
        return None
    return int(found[1]), int(found[2])


def _schema_tables(conn: psycopg.Connection) -> int:
    found = conn.execute("SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = %s",
                         (schema_postgres.SCHEMA,)).fetchone()
    return int(found[0]) if found else 0


def _refuse_foreign_or_newer(location: str, meta: tuple[int, int] | None, tables: int) -> None:
    if meta is None and tables:
        raise JournalError(
            f"journal {location}: schema {schema_postgres.SCHEMA!r} holds tables but no syncd_meta: another "
            "program's, which syncd will not touch. Point `journal:` at another database, or drop that schema "
            "if it is a damaged journal.")
    if meta is not None and meta[1] > schema_postgres.SCHEMA_VERSION:
        raise JournalError(
            f"journal {location} has schema version {meta[0]}, which syncd of schema version "
            f"{schema_postgres.SCHEMA_VERSION} may no longer write (it needs {meta[1]} or newer): upgrade syncd "
            "on this host, or restore the pg_dump made before the upgrade")


def migrate(conn: psycopg.Connection, location: str, host_id: str | None) -> list[int]:
    """Create or migrate the schema in one transaction under the migration advisory lock.

    Hosts starting together serialise here; each finds the version the previous one left.
    Returns the versions applied (empty when current). DDL is transactional: all or nothing.
    """
    migrations = schema_postgres.MIGRATIONS
    check_migration_order(migrations)
    conn.execute("BEGIN")
    try:
        conn.execute(f"SET LOCAL statement_timeout = {int(MIGRATION_TIMEOUT_S * 1000)}")
        conn.execute(f"SET LOCAL lock_timeout = {int(MIGRATION_TIMEOUT_S * 1000)}")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (schema_postgres.MIGRATION_LOCK_KEY,))
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema_postgres.SCHEMA}")
        meta = _read_meta(conn)
        _refuse_foreign_or_newer(location, meta, _schema_tables(conn))
        current = 0 if meta is None else meta[0]
        applied = []
        if meta is None:
            conn.execute(schema_postgres.META_TABLE)
        for migration in migrations[current:]:
            for statement in migration.statements:
                conn.execute(statement)
            applied.append(migration.version)
        if applied:
            conn.execute(
                "INSERT INTO syncd_meta (singleton, application, schema_version, compatible_from, migrated_at,"
                " migrated_by) VALUES (true, %s, %s, %s, %s, %s) ON CONFLICT (singleton) DO UPDATE SET"
                " schema_version = excluded.schema_version, compatible_from = excluded.compatible_from,"
                " migrated_at = excluded.migrated_at, migrated_by = excluded.migrated_by",
                (schema_postgres.APPLICATION, applied[-1], schema_postgres.COMPATIBLE_FROM, time.time(),
                 f"{host_id or socket.gethostname()} syncd {__version__}"))
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn, MIGRATION_TIMEOUT_S)
        raise
    return applied


def check_schema(conn: psycopg.Connection, location: str, role: Role) -> None:
    """For reader and operator: the schema must be syncd's, migrated, and writable by this syncd."""
    meta = _read_meta(conn)
    _refuse_foreign_or_newer(location, meta, _schema_tables(conn))
    if meta is None or meta[0] < schema_postgres.SCHEMA_VERSION:
        found = "no syncd journal" if meta is None else f"schema version {meta[0]}"
        raise JournalError(
            f"journal {location} has {found}, older than this syncd's {schema_postgres.SCHEMA_VERSION} "
            f"(role {role}): start the syncd daemon once to create or migrate it")
