"""Rate windows in PostgreSQL: several syncd hosts share one Box budget per user (docs/MULTI_HOST.md section 7).

``PostgresWindows`` is a :class:`~syncd.box.ratelimit.WindowStore` whose slots are rows of
``syncd.rate_slots``, one per request in flight or settled less than a window ago. It
owns that one table (created when missing, under an advisory lock, so hosts starting
together do not race) and nothing else: the Box layer stays independent of the journal,
whose connection pool it is handed.

- **One taker per window at a time**: ``try_take`` runs in one transaction that first
  takes a transaction-level advisory lock on the window's key, then drops the slots
  that left the window, counts the rest and inserts a row when fewer than the limit
  are held. Takers of one key on every host go in turn; other keys do not wait.
- **PostgreSQL's clock** stamps every slot: each host's monotonic clock (the limiter's
  ``now``/``at``) means nothing to another host, so only durations (the wait) cross the
  interface, and ``settle`` stamps ``settled_at`` when it is called, which the limiter
  does the moment the send ended.
- **A dead host's in-flight slot** frees at its ``stale_at`` (``taken_at`` + 10 minutes,
  ``stale_after``): its ``settle`` never comes.
- **Asynchronous commit** (``synchronous_commit = off``, per transaction): a slot lost to
  a server crash undercounts one request for one window, which the configured 230/950 per
  minute leave room for below Box's 240/1000.
- **Unreachable database**: ``try_take`` answers a wait (``IN_FLIGHT_POLL``) and never
  raises, so no request goes out without a slot; ``settle`` drops what it cannot write
  (the slot frees at ``stale_at``). The outage is logged once when it starts
  (``box_rate_windows_unavailable``) and once when it ends (``box_rate_windows_reachable``).
- **Bounded calls**: every call gives up after ``timeout`` seconds, waiting for a pooled
  connection or for the server's answer alike (a connection whose answer is late is
  shut down, so the pool drops it): a Box request waits on the shared windows as long
  as a take lasts, not as long as the TCP stack takes to notice a partition.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import psycopg_pool
from psycopg import sql

from ..logs import get_logger
from ..socket_deadlines import DEADLINES
from .ratelimit import IN_FLIGHT_POLL, Slot

log = get_logger(__name__)

#: The schema syncd's tables live in (the journal's on PostgreSQL).
SCHEMA = "syncd"
TABLE = "rate_slots"
#: Seconds an in-flight slot is held at most: a dead host's slots free after this (docs/MULTI_HOST.md 5.7).
STALE_AFTER_S = 600.0
#: Advisory lock key under which the table is created: b'syncd-rs' as a big-endian int64.
CREATE_LOCK_KEY = int.from_bytes(b"syncd-rs", "big")
#: Seconds a take, settle or count may last (a pooled connection, then the server's answer).
CALL_TIMEOUT_S = 5.0

_QUALIFIED = sql.Identifier(SCHEMA, TABLE)
_DB_NOW = "extract(epoch FROM clock_timestamp())::double precision"
# A slot has left its window: settled a window ago, or in flight past its stale_at.
_GONE = "(settled_at + {window} <= {now} OR (settled_at IS NULL AND stale_at <= {now}))"

# Only when missing: CREATE SCHEMA checks the CREATE privilege on the database even when the schema
# exists, which a role granted only the journal's schema lacks.
_CREATE_SCHEMA = sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA))
_CREATE_TABLE = [
    sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        window_key text NOT NULL,
        host_id text NOT NULL,
        taken_at double precision NOT NULL,
        settled_at double precision,
        stale_at double precision NOT NULL
    )""").format(_QUALIFIED),
    sql.SQL("CREATE INDEX IF NOT EXISTS rate_slots_window ON {} (window_key, settled_at)").format(_QUALIFIED),
]
# A take is one transaction in two round trips: its statements in one message (the simple query
# protocol runs several at once; the values are literals, quoted by psycopg.sql), then COMMIT. The
# takers of one window in turn, what left the window deleted, a slot inserted when fewer than the
# limit remain, and the time until the oldest settled slot leaves (NULL: all are in flight); each
# statement reads PostgreSQL's clock after any wait for the lock. COMMIT goes apart so that a
# message the network delivers after this host gave up (a partition that held it) takes nothing:
# its transaction waits for a COMMIT that never comes and the server rolls it back.
_TAKE = sql.SQL("""BEGIN;
SET LOCAL synchronous_commit = off;
SET LOCAL idle_in_transaction_session_timeout = {idle_ms};
SELECT pg_advisory_xact_lock(hashtextextended('syncd-rate:' || {key}, 0));
DELETE FROM {table} WHERE window_key = {key} AND """ + _GONE + """;
INSERT INTO {table} (window_key, host_id, taken_at, stale_at)
    SELECT {key}, {host}, clock.now, clock.now + {stale} FROM (SELECT {now} AS now) AS clock
    WHERE (SELECT count(*) FROM {table} WHERE window_key = {key}) < {limit}
    RETURNING id;
SELECT min(settled_at) + {window} - {now} FROM {table} WHERE window_key = {key}""")
# Settling: stamped now, or freed (a 429: Box did not count it); one round trip as well.
_SETTLE = sql.SQL("BEGIN; SET LOCAL synchronous_commit = off; UPDATE {table} SET settled_at = {now} "
                  "WHERE id = {id} AND settled_at IS NULL; COMMIT")
_FREE = sql.SQL("BEGIN; SET LOCAL synchronous_commit = off; DELETE FROM {table} WHERE id = {id}; COMMIT")
# What try_take would leave after its DELETE, read without writing (NULL settled_at: the
# comparison is NULL, hence the coalesce).
_COUNT_HELD = sql.SQL("SELECT count(*) FROM {table} WHERE window_key = {key} AND NOT coalesce(" + _GONE + ", false)")


class SharedWindowsError(RuntimeError):
    """The rate_slots table could not be created for a reason a retry will not cure (permissions)."""


class PostgresSlot(Slot):
    """A request's row in ``syncd.rate_slots``."""

    __slots__ = ("id",)

    def __init__(self, slot_id: int) -> None:
        self.id = slot_id

    def __repr__(self) -> str:
        return f"PostgresSlot({self.id})"


class PostgresWindows:
    """A WindowStore in PostgreSQL, shared by every host on the database.

    ``pool``: connections to the database (the journal's pool on PostgreSQL); the table
    is named with its schema, so the sessions' ``search_path`` does not matter.
    ``host_id``: recorded with every slot (who holds what). ``stale_after``: seconds an
    in-flight slot is held at most (its ``settle`` may never come). ``timeout``: seconds
    one call may last before the database is taken as out of reach.

    Creates ``syncd.rate_slots`` when missing; raises SharedWindowsError when it cannot
    (a permission problem). A database out of reach at construction is not an error:
    the table is made on the first take that reaches it.
    """

    def __init__(self, pool: psycopg_pool.ConnectionPool, host_id: str, *,
                 stale_after: float = STALE_AFTER_S, timeout: float = CALL_TIMEOUT_S) -> None:
        for name, value in (("stale_after", stale_after), ("timeout", timeout)):
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self._pool = pool
        self.host_id = host_id
        self.stale_after = stale_after
        self.timeout = timeout
        self._table_ready = False
        self._unavailable = False  # an outage was logged and has not ended yet
        self._state_lock = threading.Lock()
        try:
            self._ensure_table()
        except psycopg.OperationalError as exc:
            self._went_unavailable(exc)
        except psycopg.Error as exc:
            raise SharedWindowsError(
                f"the shared rate windows ({SCHEMA}.{TABLE}) could not be created: {type(exc).__name__}: {exc}. "
                f"The journal's role needs CREATE on the database (or on schema {SCHEMA})") from exc

    # ---------------------------------------------------------------- WindowStore

    def try_take(self, key: str, limit: int, window: float, now: float) -> Slot | float:
        """A slot when the window of ``key`` holds fewer than ``limit`` (by PostgreSQL's clock), else the
        seconds until one may free; ``IN_FLIGHT_POLL`` when all are in flight or the database is out of
        reach. ``now`` (this host's monotonic clock) is not used: other hosts cannot compare it."""
        take = _TAKE.format(table=_QUALIFIED, key=sql.Literal(key), window=sql.Literal(float(window)),
                            now=sql.SQL(_DB_NOW), host=sql.Literal(self.host_id),
                            stale=sql.Literal(float(self.stale_after)), limit=sql.Literal(int(limit)),
                            idle_ms=sql.Literal(max(1, round(self.timeout * 1000))))
        try:
            self._ensure_table()
            # A host cut off before its COMMIT leaves the window's lock to the server's idle timeout
            # (this call's own), not to its session's half lease: the other hosts' takers wait on it.
            with self._connection() as conn, conn.cursor() as cursor:
                cursor.execute(take)
                answers = _result_sets(cursor)
                conn.execute("COMMIT")
            inserted, (until_oldest_leaves,) = answers[-2], answers[-1][0]
            if inserted:
                taken: Slot | float = PostgresSlot(int(inserted[0][0]))
            elif until_oldest_leaves is not None:
                taken = max(0.0, float(until_oldest_leaves))
            else:
                taken = IN_FLIGHT_POLL
        except psycopg.Error as exc:
            # No request goes out without a slot; the limiter asks again after the wait.
            self._went_unavailable(exc)
            return IN_FLIGHT_POLL
        self._reachable()
        return taken

    def settle(self, key: str, slot: Slot, at: float | None) -> None:
        """Stamp the slot settled now (PostgreSQL's clock), or free it at once when ``at`` is None (429).
        A slot the database cannot be reached for is dropped (it frees at its ``stale_at``)."""
        if not isinstance(slot, PostgresSlot):
            raise TypeError(f"not a slot of PostgresWindows: {slot!r}")
        statement = (_FREE if at is None else _SETTLE).format(table=_QUALIFIED, id=sql.Literal(slot.id),
                                                              now=sql.SQL(_DB_NOW))
        try:
            with self._connection() as conn:
                conn.execute(statement)
        except psycopg.Error as exc:
            log.warning("box_rate_slot_dropped", window_key=key, reason=f"{type(exc).__name__}: {exc}",
                        detail=f"the slot frees {self.stale_after:g} s after it was taken")
            self._went_unavailable(exc)
            return
        self._reachable()

    def held(self, key: str, window: float, now: float) -> int:
        """Slots of ``key`` held now by PostgreSQL's clock, on every host; 0 when the database is out of
        reach (the limiter then shrinks a learned limit to its floor, the cautious side)."""
        try:
            self._ensure_table()
            count = _COUNT_HELD.format(table=_QUALIFIED, key=sql.Literal(key), window=sql.Literal(float(window)),
                                       now=sql.SQL(_DB_NOW))
            with self._connection() as conn:
                return int(_fetch_one(conn, count)[0])
        except psycopg.Error as exc:
            self._went_unavailable(exc)
            return 0

    # ------------------------------------------------------------------- helpers

    def _ensure_table(self) -> None:
        if self._table_ready:
            return
        with self._connection() as conn:
            schema_found, table_found = _fetch_one(
                conn, "SELECT to_regnamespace(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL",
                (SCHEMA, f"{SCHEMA}.{TABLE}"))
            if not table_found:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (CREATE_LOCK_KEY,))
                    if not schema_found:
                        conn.execute(_CREATE_SCHEMA)
                    for statement in _CREATE_TABLE:
                        conn.execute(statement)
        self._table_ready = True

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection for one call of at most ``timeout`` seconds, each of the wait and the use."""
        with self._pool.connection(timeout=self.timeout) as conn, DEADLINES.bound(conn, self.timeout):
            yield conn

    def _went_unavailable(self, exc: psycopg.Error) -> None:
        with self._state_lock:
            if self._unavailable:
                return
            self._unavailable = True
        log.warning("box_rate_windows_unavailable", reason=f"{type(exc).__name__}: {exc}",
                    detail="no request to Box goes out until the shared rate windows answer again")

    def _reachable(self) -> None:
        with self._state_lock:
            if not self._unavailable:
                return
            self._unavailable = False
        log.info("box_rate_windows_reachable")

    def __repr__(self) -> str:
        return f"PostgresWindows(host_id={self.host_id!r}, stale_after={self.stale_after:g})"


def _result_sets(cursor: psycopg.Cursor) -> list[list[tuple]]:
    """The rows of every statement of a multi-statement message that returned rows, in order."""
    answers = []
    while True:
        if cursor.description is not None:
            answers.append(cursor.fetchall())
        if not cursor.nextset():
            return answers


def _fetch_one(conn: psycopg.Connection, query: str | sql.Composed, params: object = None) -> tuple:
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None, "an aggregate or RETURNING query answered no row"
    return row
