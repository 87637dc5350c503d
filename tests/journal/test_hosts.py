"""The hosts registry of a PostgreSQL journal (docs/MULTI_HOST.md section 4): one process per host
id (the advisory lock), heartbeats by PostgreSQL's clock, watches that must agree, and what
`Journal.hosts()` reports. A real cluster; a lost connection is a real terminated backend."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator

import pytest

from syncd.journal import (
    HostLockRefused,
    HostReplaced,
    Journal,
    JournalError,
    JournalSchemaTooNew,
    JournalUnavailable,
    WatchClaim,
    WatchMismatch,
)
from syncd.journal.hosts import HostRegistration
from tests.journal.conftest import JournalStore

SCANS = WatchClaim("scans", "123", "/srv/scans")


@pytest.fixture
def registrations() -> Iterator[list[HostRegistration]]:
    started: list[HostRegistration] = []
    yield started
    for registration in started:
        registration.stop()


@pytest.fixture
def register(pg_store: JournalStore, registrations: list[HostRegistration],
             open_journals: Callable[..., Journal]) -> Callable[..., HostRegistration]:
    """Start the registration of host `host_id` (on a journal of its own), stopped after the test."""

    def start(host_id: str, *watches: WatchClaim) -> HostRegistration:
        journal = open_journals(pg_store, host_id=host_id)  # open while the registration lives
        registration = HostRegistration.start(journal, version="9.9.9", watches=watches)
        registrations.append(registration)
        return registration

    return start


def terminate(store: JournalStore, registration: HostRegistration) -> None:
    """End the registration's own session on the server (a lost connection)."""
    assert registration._conn is not None
    store.admin_sql("SELECT pg_terminate_backend(%s, 5000)", (registration._conn.info.backend_pid,))


def test_a_registered_host_is_reported_with_its_uploads_in_flight(pg_store: JournalStore,
                                                                  register: Callable[..., HostRegistration]) -> None:
    register("host-a", SCANS)
    with pg_store.open("reader", host_id="host-r") as reader, pg_store.open(host_id="host-a") as a:
        a.observe("scans", "x.pdf", 1, 1, 1, now=1.0)
        assert a.claim_next(2.0) is not None
        [host] = reader.hosts()
        assert (host.host_id, host.hostname, host.pid, host.version, host.state, host.in_flight, host.lost) == (
            "host-a", socket.gethostname(), os.getpid(), "9.9.9", "running", 1, False)
        assert 0 <= host.heartbeat_age_s < reader.lease and host.detail is None
    assert pg_store.admin_sql("SELECT watch, host_id, folder_id, path_hint FROM syncd.host_watches") == [
        ("scans", "host-a", "123", "/srv/scans")]


def test_one_process_per_host_id(pg_store: JournalStore, register: Callable[..., HostRegistration]) -> None:
    first = register("host-a", SCANS)
    with pytest.raises(HostLockRefused, match=rf"host id 'host-a' is in use .* by syncd on "
                                              rf"{socket.gethostname()} \(pid {os.getpid()}, since "):
        register("host-a", SCANS)
    register("host-b", SCANS)  # another host id is another host
    first.stop()
    first.stop()  # idempotent
    with pg_store.open("reader") as reader:
        assert [(h.host_id, h.state, h.lost) for h in reader.hosts()] == [
            ("host-a", "stopped", False), ("host-b", "running", False)]
    again = register("host-a", SCANS)  # the lock died with the stop
    again.heartbeat()
    with pytest.raises(JournalError, match="was stopped"):
        first.heartbeat()  # its registration is over
    assert again.instance != first.instance


def test_watches_must_go_to_the_same_box_folder_on_every_host(pg_store: JournalStore,
                                                              register: Callable[..., HostRegistration]) -> None:
    a = register("ingest-1", SCANS, WatchClaim("mail", "7", "/srv/mail"))
    register("ingest-2", WatchClaim("scans", "123", "/mnt/nas/scans"))  # same folder, another mount: fine
    with pytest.raises(WatchMismatch, match=r"^watch 'scans' goes to Box folder 123 on ingest-1 but 456 here"):
        register("ingest-3", WatchClaim("scans", "456", "/srv/scans"))
    with pg_store.open("reader") as reader:  # refused: not registered at all
        assert [h.host_id for h in reader.hosts()] == ["ingest-1", "ingest-2"]
    register("ingest-4", WatchClaim("other", "456", "/srv/other"))  # different sets of watches are fine
    a.stop()
    pg_store.admin_sql("DELETE FROM syncd.host_watches WHERE host_id = 'ingest-2'")
    register("ingest-3", WatchClaim("scans", "456", "/srv/scans"))  # the stopped host's watch binds no one


def test_a_heartbeat_reports_the_state_and_a_silent_host_is_lost(pg_store: JournalStore,
                                                                 register: Callable[..., HostRegistration]) -> None:
    a = register("host-a")
    a.heartbeat("degraded", "Box refuses watch scans")
    with pg_store.open("reader") as reader:
        [host] = reader.hosts()
        assert (host.state, host.detail, host.lost) == ("degraded", "Box refuses watch scans", False)
        pg_store.admin_sql("UPDATE syncd.hosts SET heartbeat_at = heartbeat_at - %s", (reader.lease + 1,))
        [silent] = reader.hosts()
        assert silent.lost and silent.heartbeat_age_s > reader.lease
        a.heartbeat()
        [back] = reader.hosts()
        assert (back.state, back.detail, back.lost) == ("running", None, False)


def test_a_lost_connection_is_unavailable_then_the_next_heartbeat_reconnects(
        pg_store: JournalStore, register: Callable[..., HostRegistration]) -> None:
    a = register("host-a")
    terminate(pg_store, a)
    with pytest.raises(JournalUnavailable):
        a.heartbeat()
    a.heartbeat()  # reconnected, the host lock taken again
    with pytest.raises(HostLockRefused):
        register("host-a")  # ... so the lock is held again
    terminate(pg_store, a)
    with pytest.raises(JournalUnavailable):
        a.heartbeat()
    # While it was cut off, another process took the host id over: this one may not come back.
    register("host-a")
    with pytest.raises(HostLockRefused):
        a.heartbeat()


def test_a_replaced_registration_and_a_schema_too_new_stop_the_heartbeat(
        pg_store: JournalStore, register: Callable[..., HostRegistration]) -> None:
    a = register("host-a")
    pg_store.admin_sql("UPDATE syncd.syncd_meta SET compatible_from = schema_version + 1")
    with pytest.raises(JournalSchemaTooNew, match="upgrade syncd on this host"):
        a.heartbeat()
    pg_store.admin_sql("UPDATE syncd.syncd_meta SET compatible_from = 1")
    pg_store.admin_sql("UPDATE syncd.hosts SET instance = gen_random_uuid()")
    with pytest.raises(HostReplaced, match="registered again by another process"):
        a.heartbeat()


def test_stopped_hosts_are_pruned_with_the_history(pg_store: JournalStore,
                                                   register: Callable[..., HostRegistration]) -> None:
    register("host-a", SCANS)
    register("host-b", WatchClaim("mail", "7", "/srv/mail")).stop()
    with pg_store.open(host_id="host-a") as journal:
        journal.prune_history(before=0.0)  # stopped, but not before then: kept
        assert [h.host_id for h in journal.hosts()] == ["host-a", "host-b"]
        journal.prune_history(before=4e9)
        assert [h.host_id for h in journal.hosts()] == ["host-a"]  # a running host is never pruned
    assert pg_store.admin_sql("SELECT watch FROM syncd.host_watches") == [("scans",)]


def test_sqlite_has_no_hosts(sqlite_journal: Journal) -> None:
    assert sqlite_journal.hosts() == [] and not sqlite_journal.multi_host
    assert sqlite_journal.connection_pool() is None
    with pytest.raises(JournalError, match="only a PostgreSQL journal has hosts"):
        HostRegistration.start(sqlite_journal, version="9.9.9", watches=())
