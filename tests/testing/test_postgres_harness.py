"""The PostgreSQL harness the multi-host tests stand on: a real cluster run unprivileged,
a fresh database per test, one client cut off while another still gets through (blackhole
and reset, then healed), crash and restart, and nothing left behind when it ends."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import yaml

from syncd.config import PostgresJournalConfig, load_config

from syncd.testing.postgres import APP_ROLE, PG_BIN_ENV, PostgresCluster, PostgresUnavailable, find_postgres_bin
from syncd.testing.tcp_proxy import LinkState, TcpProxy
from tests.support.postgres import PgDatabase
from tests.support.waiting import wait_until

WAIT = 30.0


def process_uid(pid: int) -> int | None:
    """The real uid of a process, or None when it ended meanwhile (a backend of a closed session)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return None
    for line in status.splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for process {pid}")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def server_pids(cluster: PostgresCluster) -> list[int]:
    """The postmaster and its children (backends, checkpointer, ...)."""
    pid = cluster.postmaster_pid
    assert pid is not None
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


class SlowQuery(threading.Thread):
    """One query in a thread of its own: its answer, or the error it ended with."""

    def __init__(self, conn: psycopg.Connection, query: str) -> None:
        super().__init__(daemon=True)
        self.conn, self.query = conn, query
        self.answer: object = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.answer = self.conn.execute(self.query).fetchone()
        except BaseException as exc:
            self.error = exc


# ------------------------------------------------------------------ the cluster


def test_the_cluster_runs_unprivileged_and_takes_passwords_over_tcp(pg_cluster: PostgresCluster,
                                                                   pg_database: PgDatabase) -> None:
    assert pg_cluster.running
    uids = [process_uid(pid) for pid in server_pids(pg_cluster)]
    assert uids[0] not in (None, 0) and 0 not in uids
    with pg_database.connect() as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (APP_ROLE, pg_database.name)
        assert conn.info.host == "127.0.0.1" and conn.info.port == pg_cluster.port
    # SCRAM is in force over TCP: the DSN alone, or a wrong password, is refused.
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg_database.dsn(), password="not-the-password", connect_timeout=5)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg_database.dsn(), connect_timeout=5, passfile="/dev/null")
    # The password is never part of a DSN the harness hands out.
    assert pg_database.password not in pg_database.dsn() + pg_cluster.superuser_dsn()


def test_each_test_gets_a_fresh_database_the_app_role_owns(pg_cluster: PostgresCluster,
                                                           pg_database: PgDatabase) -> None:
    with pg_database.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
        conn.execute("CREATE TABLE files (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, relpath bytea)")
        conn.execute("INSERT INTO files (relpath) VALUES (%s)", (b"caf\xe9.txt",))
        conn.commit()
        assert conn.execute("SELECT relpath FROM files").fetchone() == (b"caf\xe9.txt",)
    other = pg_cluster.create_database()
    try:
        with psycopg.connect(pg_cluster.app_dsn(other), password=pg_cluster.app_password) as conn:
            assert conn.execute("SELECT to_regclass('files')").fetchone() == (None,)
    finally:
        pg_cluster.drop_database(other)
    assert other not in pg_cluster.databases()
    assert pg_database.name in pg_cluster.databases()


def test_terminate_backends_ends_one_clients_sessions_only(pg_cluster: PostgresCluster,
                                                           pg_database: PgDatabase) -> None:
    with pg_database.connect(application_name="host-a", autocommit=True) as a, \
            pg_database.connect(application_name="host-b", autocommit=True) as b:
        assert pg_cluster.terminate_backends(application_name="host-b") == 1
        with pytest.raises(psycopg.OperationalError):
            b.execute("SELECT 1")
        assert a.execute("SELECT 1").fetchone() == (1,)
        assert len(pg_cluster.sessions(application_name="host-a")) == 1


def test_a_crash_loses_nothing_committed(pg_cluster_factory: Callable[..., PostgresCluster]) -> None:
    cluster = pg_cluster_factory(durable=True)
    name = cluster.create_database()
    dsn, password = cluster.app_dsn(name), cluster.app_password
    conn = psycopg.connect(dsn, password=password)
    conn.execute("CREATE TABLE t (n int)")
    conn.execute("INSERT INTO t SELECT generate_series(1, 1000)")
    conn.commit()
    conn.execute("INSERT INTO t VALUES (-1)")  # in flight, never committed
    old_pids = server_pids(cluster)
    cluster.crash()
    conn.close()
    assert not any(alive(pid) for pid in old_pids)
    cluster.restart()
    with psycopg.connect(dsn, password=password) as conn:
        assert conn.execute("SELECT count(*), min(n) FROM t").fetchone() == (1000, 1)
    assert "database system was interrupted" in cluster.log_file.read_text()


def test_closing_leaves_no_process_and_no_folder(pg_cluster_factory: Callable[..., PostgresCluster]) -> None:
    cluster = pg_cluster_factory()
    name = cluster.create_database()
    with psycopg.connect(cluster.app_dsn(name), password=cluster.app_password):
        pids = server_pids(cluster)
        assert len(pids) >= 3  # postmaster, its helpers and our backend
    cluster.close()
    assert not any(alive(pid) for pid in pids)
    assert not cluster.base_dir.exists()
    cluster.close()  # twice is fine


def test_the_server_dies_with_the_process_that_started_it() -> None:
    # A test process killed by SIGKILL cannot clean up: the kernel's parent-death signal must.
    script = textwrap.dedent("""
        import sys, time
        from syncd.testing.postgres import PostgresCluster
        cluster = PostgresCluster.start()
        print(cluster.postmaster_pid, cluster.base_dir, flush=True)
        time.sleep(600)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[2])
    try:
        pid_text, base_dir = child.stdout.readline().split()  # type: ignore[union-attr]
        postmaster = int(pid_text)
        assert alive(postmaster)
        child.kill()
        child.wait(WAIT)
        wait_until(lambda: not alive(postmaster), message="the postmaster to stop after its parent died")
    finally:
        if child.poll() is None:
            child.kill()
        if child.stdout is not None:
            child.stdout.close()
    shutil.rmtree(base_dir, ignore_errors=True)  # the folder is the one thing a SIGKILL leaves


def test_the_binaries_are_found_or_the_error_says_how_to_get_them(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    found = find_postgres_bin()
    assert (found / "initdb").is_file() and (found / "postgres").is_file()
    monkeypatch.setenv(PG_BIN_ENV, str(tmp_path))
    with pytest.raises(PostgresUnavailable, match=f"{PG_BIN_ENV}.*lacks an executable initdb or postgres"):
        find_postgres_bin()
    monkeypatch.setenv(PG_BIN_ENV, str(found))
    assert find_postgres_bin() == found


# -------------------------------------------------------------------- the link


def test_a_blackholed_link_holds_one_client_while_the_other_goes_on(
        pg_cluster: PostgresCluster, pg_database: PgDatabase,
        tcp_proxy_factory: Callable[[PostgresCluster], TcpProxy]) -> None:
    link = tcp_proxy_factory(pg_cluster)
    with pg_database.connect(application_name="host-a", autocommit=True) as a, \
            pg_database.connect(port=link.port, application_name="host-b", autocommit=True) as b:
        assert b.execute("SELECT 1").fetchone() == (1,)
        link.blackhole()
        assert link.state is LinkState.BLACKHOLE
        query = SlowQuery(b, "SELECT 42")
        query.start()
        # Host A works on while B's question is held: B gets no answer, no error.
        for n in range(20):
            assert a.execute("SELECT %s::int", (n,)).fetchone() == (n,)
        assert query.is_alive() and query.answer is None and query.error is None
        # The server still has B's session (a blackhole tells it nothing either).
        assert len(pg_cluster.sessions(application_name="host-b")) == 1
        forwarded = link.bytes_forwarded
        link.heal()
        query.join(WAIT)
        assert query.answer == (42,) and query.error is None
        assert link.bytes_forwarded > forwarded


def test_a_reset_link_refuses_one_client_until_healed(
        pg_cluster: PostgresCluster, pg_database: PgDatabase,
        tcp_proxy_factory: Callable[[PostgresCluster], TcpProxy]) -> None:
    link = tcp_proxy_factory(pg_cluster)
    with pg_database.connect(application_name="host-a", autocommit=True) as a:
        b = pg_database.connect(port=link.port, application_name="host-b", autocommit=True)
        b.execute("SELECT 1")
        link.reset()
        with pytest.raises(psycopg.OperationalError):
            b.execute("SELECT 1")
        b.close()
        wait_until(lambda: not pg_cluster.sessions(application_name="host-b"),
                   message="the server to end B's session")
        with pytest.raises(psycopg.OperationalError):
            pg_database.connect(port=link.port, application_name="host-b")
        assert a.execute("SELECT 2").fetchone() == (2,)
        link.heal()
        with pg_database.connect(port=link.port, application_name="host-b") as again:
            assert again.execute("SELECT 3").fetchone() == (3,)


def test_a_connection_opened_during_a_blackhole_goes_through_when_healed(
        pg_cluster: PostgresCluster, pg_database: PgDatabase,
        tcp_proxy_factory: Callable[[PostgresCluster], TcpProxy]) -> None:
    link = tcp_proxy_factory(pg_cluster)
    link.blackhole()
    outcome: list[object] = []

    def connect() -> None:
        try:
            with pg_database.connect(port=link.port, application_name="host-b") as conn:
                outcome.append(conn.execute("SELECT 5").fetchone())
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    wait_until(lambda: link.accepted == 1, message="the proxy to take the connection")
    assert worker.is_alive() and outcome == []
    assert pg_cluster.sessions(application_name="host-b") == []
    link.heal()
    worker.join(WAIT)
    assert outcome == [(5,)]


def test_the_link_carries_large_answers_and_requests_both_ways(
        pg_cluster: PostgresCluster, pg_database: PgDatabase,
        tcp_proxy_factory: Callable[[PostgresCluster], TcpProxy]) -> None:
    link = tcp_proxy_factory(pg_cluster)
    blob = os.urandom(3 << 20)  # more than the proxy buffers per direction
    with pg_database.connect(port=link.port) as conn:
        conn.execute("CREATE TABLE blobs (data bytea)")
        conn.execute("INSERT INTO blobs VALUES (%s)", (blob,))
        assert conn.execute("SELECT data FROM blobs").fetchone() == (blob,)
        assert conn.execute("SELECT length(repeat('x', 4000000))").fetchone() == (4_000_000,)
    assert link.bytes_forwarded > 2 * len(blob)
    link.close()
    with pytest.raises(psycopg.OperationalError):
        pg_database.connect(port=link.port)


def test_a_config_made_for_the_test_database_loads_and_connects(pg_database: PgDatabase, tmp_path: Path) -> None:
    # What the multi-host daemon tests write: the journal mapping, its password in a 0600 file.
    (tmp_path / "inbox").mkdir()
    journal = pg_database.journal_config(tmp_path / "secrets" / "pg-password", lease="3s")
    config_file = tmp_path / "syncd.yaml"
    config_file.write_text(yaml.safe_dump({
        "box": {"api_url": "http://127.0.0.1:8765/2.0", "upload_url": "http://127.0.0.1:8765/api/2.0",
                "auth": {"type": "developer_token", "token": "dev-token"}},
        "journal": journal, "host_id": "host-a",
        "watches": [{"path": str(tmp_path / "inbox"), "folder_id": "0"}],
    }))
    config = load_config(config_file, environ={})
    assert isinstance(config.journal, PostgresJournalConfig) and config.journal.lease == 3.0
    assert config.journal.password is not None and pg_database.password not in config_file.read_text()
    with psycopg.connect(config.journal.dsn, password=config.journal.password.reveal(),
                         application_name=f"syncd:{config.host_id}") as conn:
        assert conn.execute("SELECT current_user").fetchone() == (APP_ROLE,)
        sessions = pg_database.cluster.sessions(dbname=pg_database.name, application_name="syncd:host-a")
        assert len(sessions) == 1
