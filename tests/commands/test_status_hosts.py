"""`syncd status` on a PostgreSQL journal: every host (id, hostname, version, state, heartbeat age,
`lost`, uploads in flight), who holds each upload and its lease, and `--check` graded on the
hosts' heartbeats. A real cluster; the hosts are real registrations; silence is made by SQL."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd import __version__
from syncd.config import load_config
from syncd.journal import Journal, WatchClaim
from syncd.journal.hosts import HostRegistration
from syncd.testing.daemon_process import run_syncd
from tests.support.postgres import PgDatabase

#: Long enough that a host the test does not silence stays fresh however slow the machine is
#: (nothing heartbeats on its own here); silence is made by SQL, never waited for.
LEASE_S = 60.0


@pytest.fixture
def config_path(tmp_path: Path, pg_database: PgDatabase) -> Path:
    return pg_database.syncd_config(tmp_path, host_id="ingest-1", lease=f"{LEASE_S:g}s")


@pytest.fixture
def hosts(config_path: Path) -> Iterator[dict[str, tuple[Journal, HostRegistration]]]:
    """Two hosts on the journal, each a daemon journal and a running registration."""
    where = load_config(config_path).journal
    started: dict[str, tuple[Journal, HostRegistration]] = {}
    try:
        for host_id in ("ingest-1", "ingest-2"):
            journal = Journal.open(where, "daemon", host_id=host_id)  # type: ignore[arg-type]
            started[host_id] = (journal, HostRegistration.start(
                journal, version=__version__, watches=[WatchClaim("inbox", "0", "/srv/inbox")]))
        yield started
    finally:
        for journal, registration in started.values():
            registration.stop()
            journal.close()


def status(config_path: Path, *options: str) -> tuple[int, str]:
    done = run_syncd("status", "-c", str(config_path), *options)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout + done.stderr


def test_status_shows_every_host_and_who_holds_each_upload(config_path: Path, pg_database: PgDatabase,
                                                           hosts: dict[str, tuple[Journal, HostRegistration]]
                                                           ) -> None:
    first, _ = hosts["ingest-1"]
    first.observe("inbox", "scan.pdf", 5, 1, 1, now=time.time())
    assert first.claim_next(time.time()) is not None
    code, out = status(config_path, "--json")
    assert code == 0, out
    report = json.loads(out)
    assert [(h["host_id"], h["hostname"], h["version"], h["state"], h["lost"], h["alive"], h["in_flight"])
            for h in report["hosts"]] == [("ingest-1", socket.gethostname(), __version__, "running", False, True, 1),
                                          ("ingest-2", socket.gethostname(), __version__, "running", False, True, 0)]
    assert all(0 <= h["heartbeat_age_s"] <= LEASE_S for h in report["hosts"])
    [flight] = report["in_flight"]
    assert flight["holder"] == "ingest-1" and 0 < flight["lease_expires_in_s"] <= LEASE_S
    assert report["journal"] == pg_database.dsn() and report["check"]["level"] == "ok"
    code, text = status(config_path)
    assert code == 0
    assert "hosts:     2 of 2 alive" in text and "inbox:scan.pdf" in text and "held by ingest-1, lease " in text
    assert f"ingest-2  {socket.gethostname()} pid " in text and "0 uploading" in text
    assert pg_database.password not in out + text


def test_status_check_grades_the_hosts_heartbeats(config_path: Path, pg_database: PgDatabase,
                                                  hosts: dict[str, tuple[Journal, HostRegistration]]) -> None:
    def silence(host_id: str) -> None:  # no heartbeat for longer than the lease, without waiting for it
        with pg_database.cluster.admin(pg_database.name) as conn:
            conn.execute("UPDATE syncd.hosts SET heartbeat_at = heartbeat_at - %s WHERE host_id = %s",
                         (LEASE_S * 4, host_id))

    assert status(config_path, "--check") == (0, "SYNCD OK\n")
    silence("ingest-2")
    code, line = status(config_path, "--check")
    assert code == 1 and line.startswith("SYNCD WARNING - host ingest-2 lost: no heartbeat for "), line
    code, text = status(config_path)
    assert "LOST" in text and "hosts:     1 of 2 alive" in text
    silence("ingest-1")
    code, line = status(config_path, "--check")
    assert code == 2 and line.startswith("SYNCD CRITICAL - no syncd host has a fresh heartbeat")
    assert "host ingest-1 lost" in line and "host ingest-2 lost" in line
    hosts["ingest-1"][1].heartbeat()
    assert status(config_path, "--check")[0] == 1  # one alive again; the other still lost
    hosts["ingest-2"][1].stop()  # a stopped host is not lost: it said goodbye
    assert status(config_path, "--check") == (0, "SYNCD OK\n")
    hosts["ingest-1"][1].stop()
    code, line = status(config_path, "--check")
    assert (code, line) == (2, "SYNCD CRITICAL - no syncd host has a fresh heartbeat\n")
