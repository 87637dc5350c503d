"""The lease keeper against a real PostgreSQL journal shared by two "hosts" (two Journals with their
own host ids on one database; docs/MULTI_HOST.md section 5).

No waiting on wall-clock leases: a lease lapses by SQL (`lease_expires_at = 0`), and the keeper's
own deadline runs on a fake monotonic clock the test moves.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from syncd.config import PostgresJournalConfig, Secret
from syncd.journal import Journal, ObservedFile
from syncd.journal.hosts import HostRegistration
from syncd.pipeline.claim_holds import ClaimHolds
from syncd.pipeline.claims import ClaimQueue
from syncd.pipeline.progress import JobProgress
from syncd.service.host_presence import HostPresence
from syncd.service.lease_keeper import LeaseKeeper
from syncd.service.metrics import Metrics
from tests.support.postgres import PgDatabase

LEASE = 8.0


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Host:
    """One host's journal, registration, claims and keeper, as the daemon wires them."""

    def __init__(self, database: PgDatabase, host_id: str, *, port: int | None = None) -> None:
        config = PostgresJournalConfig(database.dsn(port=port), Secret(database.password, "test"), LEASE)
        self.journal = Journal.open(config, role="daemon", host_id=host_id)
        self.clock = FakeMonotonic()
        self.metrics = Metrics(host_id=host_id)
        self.presence = HostPresence(HostRegistration.start(self.journal, version="test", watches=[]))
        self.holds = ClaimHolds(LEASE, clock=self.clock)
        self.claims = ClaimQueue(self.journal, journal_available=self.presence.available, monotonic=self.clock)
        self.woken = 0
        self.keeper = LeaseKeeper(self.journal, self.presence, self.holds, self.claims, self.metrics,
                                  idle_workers=lambda: 4, on_taken_over=self._woken, monotonic=self.clock)

    def _woken(self) -> None:
        self.woken += 1

    def close(self) -> None:
        self.presence.stop()
        self.journal.close()


@pytest.fixture
def hosts(pg_database: PgDatabase) -> Iterator[tuple[Host, Host]]:
    a, b = Host(pg_database, "host-a"), Host(pg_database, "host-b")
    yield a, b
    a.close()
    b.close()


def lease_expires_at(database: PgDatabase, file_id: int) -> float:
    with database.connect() as conn:
        row = conn.execute("SELECT lease_expires_at FROM syncd.files WHERE id = %s", (file_id,)).fetchone()
    assert row is not None
    return float(row[0])


def lapse(database: PgDatabase, file_id: int) -> None:
    with database.connect() as conn:
        conn.execute("UPDATE syncd.files SET lease_expires_at = 0 WHERE id = %s", (file_id,))


def new_row(host: Host, name: str = "a.bin") -> None:
    host.journal.observe_many("w", [ObservedFile(name, 10, 1, 1, 1, 1)], 1.0)


def test_a_progressing_job_is_renewed_and_keeps_its_deadline(hosts: tuple[Host, Host],
                                                             pg_database: PgDatabase) -> None:
    a, _ = hosts
    new_row(a)
    record = a.claims.claim(None)
    assert record is not None
    progress = JobProgress("a", clock=a.clock)
    with a.holds.hold(record, progress, a.claims.claimed_at(record)) as held:
        lapse(pg_database, record.id)  # would be anyone's: the renewal makes it a's again
        a.clock.now += LEASE / 4
        progress.advance(100)
        a.keeper.tick()
        assert lease_expires_at(pg_database, record.id) > 0
        assert held.valid_until == a.clock.now + LEASE
        assert not held.lost.is_set()


def test_a_silent_job_is_not_renewed_and_stops_at_half_a_lease(hosts: tuple[Host, Host]) -> None:
    a, _ = hosts
    new_row(a)
    record = a.claims.claim(None)
    assert record is not None
    started = a.clock.now
    with a.holds.hold(record, JobProgress("a", clock=a.clock), a.claims.claimed_at(record)) as held:
        for _ in range(12):
            a.clock.now += LEASE / 4
            with capture_logs() as logs:
                a.keeper.tick()
            if held.lost.is_set():
                break
            assert held.in_hand(a.clock.now) >= LEASE / 2
        assert held.lost.is_set()
        # Renewed while it might still be waiting between two of the Box layer's heartbeats, then
        # left to run down to half a lease: never lost sooner.
        assert a.clock.now - started > a.keeper.alive_within + LEASE / 4
        events = [entry["event"] for entry in logs]
        assert events.index("claim_lease_expiring") < events.index("claim_lost")


def test_a_lapsed_row_of_a_dead_host_is_taken_over_first_and_its_old_claim_is_lost(
        hosts: tuple[Host, Host], pg_database: PgDatabase) -> None:
    a, b = hosts
    new_row(b)
    record = b.claims.claim(None)
    assert record is not None
    with b.holds.hold(record, JobProgress("b", clock=b.clock), b.claims.claimed_at(record)) as b_held:
        lapse(pg_database, record.id)
        with capture_logs() as logs:
            a.keeper.tick()
        taken = [entry for entry in logs if entry["event"] == "claim_taken_over"]
        assert [(t["file_row"], t["from_host"]) for t in taken] == [(record.id, "host-b")]
        waiting = a.claims.waiting()
        assert [(r.id, r.claim_seq) for r in waiting] == [(record.id, record.claim_seq + 1)]
        assert a.claims.was_interrupted(waiting[0]) and a.woken == 1
        # b's renewals find the row in other hands: after two rounds running its job stops.
        for _ in range(2):
            assert not b_held.lost.is_set()
            b.clock.now += 1
            b.holds.snapshot()[0].progress.advance(1)
            b.keeper.tick()
        assert b_held.lost.is_set() and b_held.misses == 2
        # a's queued row is renewed while it waits for a worker, and handed out before anything new.
        new_row(a, "b.bin")
        lapse(pg_database, record.id)
        a.clock.now += LEASE / 4
        a.keeper.tick()
        assert lease_expires_at(pg_database, record.id) > 0
        assert a.claims.claim(None) == waiting[0]


def test_a_host_cut_off_the_journal_claims_nothing_says_so_and_resumes(
        pg_database: PgDatabase, tcp_proxy_factory) -> None:
    proxy = tcp_proxy_factory(pg_database.cluster)
    a = Host(pg_database, "host-a", port=proxy.port)
    try:
        new_row(a)
        record = a.claims.claim(None)
        assert record is not None
        new_row(a, "b.bin")
        with a.holds.hold(record, JobProgress("a", clock=a.clock), a.claims.claimed_at(record)) as held:
            proxy.blackhole()
            with capture_logs() as logs:
                a.clock.now += LEASE / 4
                a.keeper.tick()
                assert not a.presence.available()
                assert a.claims.claim(None) is None  # not even tried: the journal is away
                a.clock.now += LEASE / 4 + 0.1
                a.keeper.tick()
            events = [entry["event"] for entry in logs]
            assert events.count("journal_unavailable") == 1
            assert held.lost.is_set() and "claim_lost" in events
            proxy.heal()
            with capture_logs() as logs:
                a.keeper.tick()
            assert a.presence.available()
            assert [entry["event"] for entry in logs if entry["event"].startswith("journal_")] == ["journal_available"]
            assert a.claims.claim(None) is not None  # claims again (b.bin, or a.bin if its lease lapsed meanwhile)
    finally:
        a.close()
