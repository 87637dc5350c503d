"""PostgresWindows: one Box rate budget shared by several hosts through PostgreSQL (docs/MULTI_HOST.md section 7).

Every test runs on a real PostgreSQL database of its own (`tests.support.postgres`); a
"host" is a PostgresWindows with its own connection pool and host id, as each syncd
host has. Times are PostgreSQL's: the `now`/`at` the limiter passes are ignored by the
store, so the tests pass 0.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg_pool
import pytest
from structlog.testing import capture_logs

from syncd.box import PostgresWindows, RateLimiter, RateLimits
from syncd.box.ratelimit import IN_FLIGHT_POLL, Slot
from syncd.testing.postgres import PostgresCluster
from syncd.testing.tcp_proxy import TcpProxy
from tests.support.postgres import PgDatabase
from tests.support.waiting import wait_until

KEY = "upload:user-1"
PoolFactory = Callable[..., psycopg_pool.ConnectionPool]


@pytest.fixture
def pools(pg_database: PgDatabase) -> Iterator[PoolFactory]:
    """Connection pools to the test's database, one per "host" (closed after the test)."""
    opened: list[psycopg_pool.ConnectionPool] = []

    def open_pool(host: str, *, port: int | None = None, timeout: float = 10.0) -> psycopg_pool.ConnectionPool:
        # As the journal's pool: autocommit sessions, transactions begun by the code.
        pool = psycopg_pool.ConnectionPool(
            pg_database.dsn(port=port, application_name=f"syncd:{host}"),
            kwargs={"password": pg_database.password, "autocommit": True, "connect_timeout": 2},
            min_size=1, max_size=8, timeout=timeout, name=host, open=False)
        opened.append(pool)
        pool.open(wait=True, timeout=30)
        return pool

    yield open_pool
    for pool in opened:
        pool.close()


def slot_rows(db: PgDatabase, key: str = KEY) -> list[tuple[int, str, bool]]:
    """(id, host_id, in flight) of every row of `key`, oldest first."""
    with db.connect(autocommit=True) as conn:
        return [(int(r[0]), str(r[1]), r[2] is None) for r in conn.execute(
            "SELECT id, host_id, settled_at FROM syncd.rate_slots WHERE window_key = %s ORDER BY id", (key,))]


def take_when_free(store: PostgresWindows, limit: int, window: float) -> Slot:
    """Poll `store` until it hands out a slot of KEY (generous timeout, no elapsed-time assertion)."""
    taken: list[Slot] = []

    def take() -> bool:
        answer = store.try_take(KEY, limit, window, 0.0)
        if isinstance(answer, Slot):
            taken.append(answer)
            return True
        return False

    wait_until(take, interval=0.05, message="a slot of the shared window")
    return taken[0]


def test_two_hosts_racing_for_one_window_never_hold_more_than_its_limit(pools: PoolFactory,
                                                                          pg_database: PgDatabase) -> None:
    hosts = [PostgresWindows(pools(name), name) for name in ("host-a", "host-b")]
    limit, threads_per_host, takes_per_thread = 3, 6, 12
    lock = threading.Lock()
    holding = most = refusals = 0

    def send_requests(store: PostgresWindows) -> None:
        nonlocal holding, most, refusals
        done = 0
        while done < takes_per_thread:
            taken = store.try_take(KEY, limit, 60.0, 0.0)
            if not isinstance(taken, Slot):
                with lock:
                    refusals += 1
                time.sleep(0.001)
                continue
            # Counted after the slot's row committed and until before it is deleted: what this
            # counter holds, the table held at least, at every moment.
            with lock:
                holding += 1
                most = max(most, holding)
            time.sleep(0.002)  # the request in flight
            with lock:
                holding -= 1
            store.settle(KEY, taken, None)
            done += 1

    with ThreadPoolExecutor(len(hosts) * threads_per_host) as pool:
        for future in [pool.submit(send_requests, store) for store in hosts for _ in range(threads_per_host)]:
            future.result()
    assert most <= limit
    assert refusals > 0  # the window was full while others asked: the race happened
    assert slot_rows(pg_database) == []  # every slot given back


def test_a_429_frees_its_slot_at_once_and_an_answer_holds_it_for_the_window(pools: PoolFactory,
                                                                             pg_database: PgDatabase) -> None:
    a, b = PostgresWindows(pools("host-a"), "host-a"), PostgresWindows(pools("host-b"), "host-b")
    first = a.try_take(KEY, 1, 600.0, 0.0)
    assert isinstance(first, Slot)
    assert slot_rows(pg_database) == [(first.id, "host-a", True)]  # type: ignore[attr-defined]
    assert b.try_take(KEY, 1, 600.0, 0.0) == IN_FLIGHT_POLL  # host A's request is in flight
    a.settle(KEY, first, None)  # Box answered 429: it did not count the request
    second = b.try_take(KEY, 1, 600.0, 0.0)
    assert isinstance(second, Slot)
    b.settle(KEY, second, 0.0)  # answered: held for one window from now
    wait = a.try_take(KEY, 1, 600.0, 0.0)
    assert isinstance(wait, float) and 0.0 < wait <= 600.0 and wait != IN_FLIGHT_POLL
    assert a.held(KEY, 600.0, 0.0) == b.held(KEY, 600.0, 0.0) == 1
    assert slot_rows(pg_database) == [(second.id, "host-b", False)]  # type: ignore[attr-defined]


def test_settled_slots_leave_after_the_window(pools: PoolFactory, pg_database: PgDatabase) -> None:
    window = 0.5
    a, b = PostgresWindows(pools("host-a"), "host-a"), PostgresWindows(pools("host-b"), "host-b")
    answered = a.try_take(KEY, 1, window, 0.0)
    assert isinstance(answered, Slot)
    a.settle(KEY, answered, 0.0)
    wait = b.try_take(KEY, 1, window, 0.0)
    assert isinstance(wait, float) and 0.0 < wait <= window
    later = take_when_free(b, 1, window)
    # The settled slot's row went when the next take found it past its window.
    assert slot_rows(pg_database) == [(later.id, "host-b", True)]  # type: ignore[attr-defined]
    assert a.held(KEY, window, 0.0) == 1


def test_a_dead_hosts_in_flight_slot_frees_at_its_stale_time(pools: PoolFactory, pg_database: PgDatabase) -> None:
    dead = PostgresWindows(pools("host-dead"), "host-dead", stale_after=1.0)
    alive = PostgresWindows(pools("host-alive"), "host-alive")
    lost = dead.try_take(KEY, 1, 60.0, 0.0)  # and then the host dies: no settle comes
    assert isinstance(lost, Slot)
    with pg_database.connect() as conn:
        assert conn.execute("SELECT stale_at - taken_at FROM syncd.rate_slots").fetchall() == [(1.0,)]
    assert alive.try_take(KEY, 1, 60.0, 0.0) == IN_FLIGHT_POLL
    mine = take_when_free(alive, 1, 60.0)
    assert slot_rows(pg_database) == [(mine.id, "host-alive", True)]  # type: ignore[attr-defined]
    # The dead host's settle arriving late (it was only cut off) touches no one else's slot.
    dead.settle(KEY, lost, 0.0)
    dead.settle(KEY, lost, None)
    assert slot_rows(pg_database) == [(mine.id, "host-alive", True)]  # type: ignore[attr-defined]
    assert dead.try_take(KEY, 1, 60.0, 0.0) == IN_FLIGHT_POLL


def test_two_limiters_on_shared_windows_admit_at_most_the_limit_per_sliding_window(
        pools: PoolFactory, pg_database: PgDatabase) -> None:
    limits = RateLimits(api_calls_per_minute=None, uploads_per_minute=480, window_seconds=0.5)
    limit, window = limits.per_window("upload"), limits.window_seconds
    assert limit == 4
    limiters = [RateLimiter(limits, store=PostgresWindows(pools(name), name)) for name in ("host-a", "host-b")]
    with pg_database.connect(autocommit=True) as conn:
        # Every answered request's (taken_at, settled_at), as PostgreSQL stamped them, kept past the
        # window (the store deletes its rows then).
        conn.execute("CREATE TABLE syncd.admissions (host_id text, taken_at float8, settled_at float8)")
        conn.execute("CREATE FUNCTION syncd.record_admission() RETURNS trigger LANGUAGE plpgsql AS "
                     "$$BEGIN INSERT INTO syncd.admissions VALUES (NEW.host_id, NEW.taken_at, NEW.settled_at); "
                     "RETURN NULL; END$$")
        conn.execute("CREATE TRIGGER record_admission AFTER UPDATE OF settled_at ON syncd.rate_slots "
                     "FOR EACH ROW EXECUTE FUNCTION syncd.record_admission()")
    threads_per_host, requests_per_thread = 3, 3

    def send_uploads(limiter: RateLimiter) -> None:
        for n in range(requests_per_thread):
            permit = limiter.acquire("user-1", upload=True)
            time.sleep(0.003 * n)  # the upload in flight, of varying length
            limiter.release(permit)

    with ThreadPoolExecutor(len(limiters) * threads_per_host) as pool:
        for future in [pool.submit(send_uploads, limiter) for limiter in limiters for _ in range(threads_per_host)]:
            future.result()
    with pg_database.connect() as conn:
        admissions = conn.execute("SELECT host_id, taken_at, settled_at FROM syncd.admissions").fetchall()
    assert len(admissions) == len(limiters) * threads_per_host * requests_per_thread
    assert {host for host, _, _ in admissions} == {"host-a", "host-b"}
    # Box counts a request at some moment between its sending and its answer: a window of Box's
    # can hold every request whose [taken_at, settled_at] it touches. Sweep the moments each
    # request may still fall in a window starting then: [taken_at, settled_at + window).
    events = sorted([(taken, 1) for _, taken, _ in admissions] +
                    [(settled + window, -1) for _, _, settled in admissions])  # -1 first at a tie: left
    in_one_window = most = 0
    for _, step in events:
        in_one_window += step
        most = max(most, in_one_window)
    assert most == limit  # filled, never exceeded


def test_an_unreachable_database_answers_a_wait_and_the_store_works_again_when_healed(
        pools: PoolFactory, pg_cluster: PostgresCluster, pg_database: PgDatabase,
        tcp_proxy_factory: Callable[[PostgresCluster], TcpProxy]) -> None:
    link = tcp_proxy_factory(pg_cluster)
    store = PostgresWindows(pools("host-cut", port=link.port, timeout=1.0), "host-cut", timeout=1.0)
    in_flight = store.try_take(KEY, 5, 60.0, 0.0)
    assert isinstance(in_flight, Slot)
    link.blackhole()  # packets dropped: the pooled connection gets no answer, new ones none either
    with capture_logs() as logs:
        assert store.try_take(KEY, 5, 60.0, 0.0) == IN_FLIGHT_POLL  # a wait, not an exception
        assert store.try_take(KEY, 5, 60.0, 0.0) == IN_FLIGHT_POLL
        store.settle(KEY, in_flight, 0.0)  # dropped: the slot frees at its stale time
        assert store.held(KEY, 60.0, 0.0) == 0
        link.heal()
        back = take_when_free(store, 5, 60.0)
    events = [entry["event"] for entry in logs]
    assert events.count("box_rate_windows_unavailable") == 1  # once per outage, not per call
    assert events.count("box_rate_slot_dropped") == 1
    assert [e for e in logs if e["event"] == "box_rate_slot_dropped"][0]["window_key"] == KEY
    assert events[-1] == "box_rate_windows_reachable"
    # No slot was taken while cut off; the dropped settle left its slot in flight.
    assert slot_rows(pg_database) == [(in_flight.id, "host-cut", True),  # type: ignore[attr-defined]
                                      (back.id, "host-cut", True)]  # type: ignore[attr-defined]


def test_a_store_made_while_the_database_is_out_of_reach_creates_its_table_when_it_answers(
        pools: PoolFactory, pg_cluster: PostgresCluster, pg_database: PgDatabase,
        tcp_proxy_factory: Callable[[PostgresCluster], TcpProxy]) -> None:
    link = tcp_proxy_factory(pg_cluster)
    pool = pools("host-late", port=link.port, timeout=1.0)
    link.blackhole()
    with capture_logs() as logs:
        store = PostgresWindows(pool, "host-late", timeout=1.0)  # no exception: the daemon goes on
        assert store.try_take(KEY, 1, 60.0, 0.0) == IN_FLIGHT_POLL
        link.heal()
        taken = take_when_free(store, 1, 60.0)
    assert [entry["event"] for entry in logs] == ["box_rate_windows_unavailable", "box_rate_windows_reachable"]
    assert slot_rows(pg_database) == [(taken.id, "host-late", True)]  # type: ignore[attr-defined]
