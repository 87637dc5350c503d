"""What only a PostgreSQL journal can show: its schema and migrations (advisory lock, syncd_meta,
refusals), the schema's parity with SQLite's, and several connections ("hosts") writing at once:
one row per new file, never one row claimed twice, a batch whose entry the database refuses,
and a deadlock survived by running the journal method again. A real cluster, real connections."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from syncd.journal import FileState, HistoryEvent, Journal, JournalError, ObservationKind, ObservedFile
from syncd.journal import schema_postgres
from syncd.journal.errors import JournalUnavailable
from syncd.testing.postgres import PostgresCluster
from tests.journal.conftest import JournalStore, pg_config
from tests.support.postgres import PgDatabase
from tests.support.waiting import wait_until

WAIT = 60.0


def run_together(count: int, work: Callable[[int], object]) -> list[object]:
    """Run `work(i)` in `count` threads released at once; their results (or exceptions) in order."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(i: int) -> None:
        barrier.wait(WAIT)
        try:
            results[i] = work(i)
        except Exception as exc:  # reported through the results: the test asserts on them
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)
    return results


# ------------------------------------------------------------------ schema


def test_hosts_migrating_one_empty_database_at_once_make_one_schema(pg_database: PgDatabase) -> None:
    config = pg_config(pg_database.cluster, pg_database.name)
    opened = run_together(4, lambda _: Journal.open(config, role="daemon", host_id="h"))
    try:
        assert all(isinstance(journal, Journal) for journal in opened), opened
        first, second = opened[0], opened[1]
        assert isinstance(first, Journal) and isinstance(second, Journal)
        first.observe("inbox", "a.txt", 1, 1, 1, now=1.0)
        assert second.find("inbox", "a.txt") is not None  # one schema, seen by all
    finally:
        for journal in opened:
            if isinstance(journal, Journal):
                journal.close()
    with pg_database.cluster.admin(pg_database.name) as conn:
        meta = conn.execute("SELECT application, schema_version, compatible_from, migrated_by"
                            " FROM syncd.syncd_meta").fetchall()
    assert [row[:3] for row in meta] == [("syncd-journal", schema_postgres.SCHEMA_VERSION,
                                          schema_postgres.COMPATIBLE_FROM)]
    assert meta[0][3].startswith("h syncd ")


def test_another_programs_schema_is_refused_and_left_alone(pg_database: PgDatabase) -> None:
    with pg_database.connect(autocommit=True) as conn:
        conn.execute("CREATE SCHEMA syncd")
        conn.execute("CREATE TABLE syncd.files (theirs text)")
    for role in ("daemon", "reader", "operator"):
        with pytest.raises(JournalError, match="another program's"):
            Journal.open(pg_config(pg_database.cluster, pg_database.name), role=role)  # type: ignore[arg-type]
    with pg_database.connect() as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'syncd'").fetchall()
    assert tables == [("files",)]


def test_readers_and_operators_need_a_migrated_journal(pg_database: PgDatabase) -> None:
    for role in ("reader", "operator"):
        with pytest.raises(JournalError, match="start the syncd daemon once"):
            Journal.open(pg_config(pg_database.cluster, pg_database.name), role=role)  # type: ignore[arg-type]


def test_a_schema_this_syncd_may_no_longer_write_is_refused(pg_store: JournalStore) -> None:
    newer = schema_postgres.SCHEMA_VERSION + 1
    pg_store.admin_sql("UPDATE syncd.syncd_meta SET schema_version = %s", (newer,))
    with pg_store.open() as journal:  # newer, but compatible: hosts upgrade one at a time
        journal.observe("inbox", "a.txt", 1, 1, 1, now=1.0)
    pg_store.admin_sql("UPDATE syncd.syncd_meta SET compatible_from = %s", (newer,))
    for role in ("daemon", "reader", "operator"):
        with pytest.raises(JournalError, match=f"needs {newer} or newer"):
            pg_store.open(role)


def test_an_unreachable_server_is_unavailable_and_a_wrong_password_is_not(pg_database: PgDatabase,
                                                                         pg_cluster: PostgresCluster) -> None:
    from syncd.config import PostgresJournalConfig, Secret
    from syncd.testing.postgres import free_port

    nobody = PostgresJournalConfig(pg_cluster.app_dsn(pg_database.name, port=free_port()), None, lease=8.0)
    with pytest.raises(JournalUnavailable, match="unreachable"):
        Journal.open(nobody)
    wrong = PostgresJournalConfig(pg_cluster.app_dsn(pg_database.name), Secret("not-the-password-7f3a", "test"))
    with pytest.raises(JournalError, match="refused the credentials") as refused:
        Journal.open(wrong)
    assert not isinstance(refused.value, JournalUnavailable)
    assert "not-the-password-7f3a" not in str(refused.value)


def test_both_engines_have_the_same_tables_and_columns(pg_store: JournalStore, sqlite_journal: Journal,
                                                       journal_path: Path) -> None:
    conn = sqlite3.connect(journal_path)
    try:
        tables = [name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        sqlite_columns = {
            table: sorted((row[1], bool(row[3] or row[5])) for row in conn.execute(f"PRAGMA table_info({table})"))
            for table in tables}
    finally:
        conn.close()
    postgres_columns: dict[str, list[tuple[str, bool]]] = {}
    for table, column, nullable in pg_store.admin_sql(
            "SELECT table_name, column_name, is_nullable FROM information_schema.columns"
            " WHERE table_schema = 'syncd' AND table_name <> 'syncd_meta'"):
        postgres_columns.setdefault(str(table), []).append((str(column), nullable == "NO"))
    # The only tables one engine has, by design: the hosts registry (several hosts share PostgreSQL).
    postgres_only = {"hosts", "host_watches"}
    assert postgres_only <= set(postgres_columns)
    assert {table: sorted(columns) for table, columns in postgres_columns.items()
            if table not in postgres_only} == sqlite_columns
    sqlite_indexes = {name for (name,) in sqlite3.connect(journal_path).execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    postgres_indexes = {str(name) for (name,) in pg_store.admin_sql(
        "SELECT indexname FROM pg_indexes WHERE schemaname = 'syncd'")}
    assert sqlite_indexes <= postgres_indexes  # every named index (and its predicate's query) exists on both


# ----------------------------------------------------------- several hosts


def test_hosts_observing_the_same_new_file_at_once_make_one_row(pg_store: JournalStore,
                                                                open_journals: Callable[..., Journal]) -> None:
    hosts = [open_journals(pg_store) for _ in range(2)]
    for round_ in range(10):
        relpath = f"drop-{round_}.pdf"
        seen = run_together(6, lambda i: hosts[i % 2].observe("inbox", relpath, 5, 1, 9, now=float(round_)))
        kinds = sorted(str(getattr(s, "kind", s)) for s in seen)
        assert kinds == ["new"] + ["unchanged"] * 5, seen
    assert hosts[0].counts_by_state()[FileState.PENDING] == 10
    arrivals = [e for e in hosts[1].history(limit=100) if e.event is HistoryEvent.ARRIVED]
    assert len(arrivals) == 10


def test_two_hosts_scanning_one_folder_in_opposite_orders_record_each_file_once(
        pg_store: JournalStore, open_journals: Callable[..., Journal]) -> None:
    hosts = [open_journals(pg_store) for _ in range(2)]
    files = [ObservedFile(f"d{n % 7}/f{n:04}.bin", n, 1, n + 1) for n in range(600)]
    orders = [files, files[::-1]]  # without locking in one order, these would deadlock

    def scan(host: int) -> int:
        batch_files = orders[host]
        refused = 0
        for start in range(0, len(batch_files), 100):
            batch = hosts[host].observe_many("inbox", batch_files[start:start + 100], now=1.0)
            refused += len(batch.refused)
        return refused

    assert run_together(2, scan) == [0, 0]
    assert hosts[0].counts_by_state()[FileState.PENDING] == 600
    assert sum(1 for _ in hosts[1].known_files("inbox")) == 600
    [(arrived,)] = pg_store.admin_sql("SELECT count(*) FROM syncd.history WHERE event = 'arrived'")
    assert arrived == 600


def test_claimers_on_two_hosts_never_claim_the_same_row(pg_store: JournalStore,
                                                       open_journals: Callable[..., Journal]) -> None:
    hosts = [open_journals(pg_store) for _ in range(2)]
    hosts[0].observe_many("inbox", [ObservedFile(f"f{n:03}", n, 1, n + 1) for n in range(500)], now=1.0)

    def claim_all(worker: int) -> list[int]:
        journal = hosts[worker % 2]
        claimed = []
        while (row := journal.claim_next(now=10.0, max_size=100 if worker % 4 == 1 else None)) is not None:
            claimed.append(row.id)
        return claimed

    claims = run_together(8, claim_all)
    every = [file_id for ids in claims for file_id in ids]  # type: ignore[union-attr]
    assert sorted(every) == list(range(1, 501))  # each row once, across threads and hosts
    assert hosts[1].counts_by_state()[FileState.UPLOADING] == 500
    [(claimed_lines,)] = pg_store.admin_sql("SELECT count(*) FROM syncd.history WHERE event = 'claimed'")
    assert claimed_lines == 500


def test_a_claim_passes_over_a_row_another_host_has_locked(pg_store: JournalStore) -> None:
    with pg_store.open() as journal:
        first = journal.observe("inbox", "first", 1, 1, 1, now=1.0).file
        second = journal.observe("inbox", "second", 2, 1, 2, now=1.0).file
        assert pg_store.cluster is not None and pg_store.database is not None
        with pg_store.cluster.admin(pg_store.database) as other:
            other.execute("BEGIN")
            other.execute("SELECT id FROM syncd.files WHERE id = %s FOR UPDATE", (first.id,))
            taken = journal.claim_next(now=5.0)  # neither waits for the lock nor takes the locked row
            assert taken is not None and taken.id == second.id
            other.execute("ROLLBACK")
        again = journal.claim_next(now=5.0)
        assert again is not None and again.id == first.id


def refuse_one_name(store: JournalStore) -> None:
    """Make the database itself refuse to store the name 'refused.txt' (a trigger)."""
    if store.backend == "sqlite":
        conn = sqlite3.connect(store.where)  # type: ignore[arg-type]
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON files WHEN NEW.relpath = 'refused.txt'"
                     " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
        conn.commit()
        conn.close()
        return
    store.admin_sql(
        "CREATE FUNCTION syncd.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.relpath = 'refused.txt'::bytea THEN RAISE EXCEPTION 'refused by the test'; END IF;"
        " RETURN NEW; END $$")
    store.admin_sql("CREATE TRIGGER refuse BEFORE INSERT ON syncd.files FOR EACH ROW EXECUTE FUNCTION syncd.refuse()")


def test_an_entry_the_database_refuses_is_refused_alone(journal: Journal, journal_store: JournalStore) -> None:
    # Inside a PostgreSQL transaction an error aborts everything after it, unless the entry
    # ran inside its own savepoint: the other entries of the batch must still be recorded.
    refuse_one_name(journal_store)
    batch = journal.observe_many("inbox", [ObservedFile("a.txt", 1, 1, 1), ObservedFile("refused.txt", 1, 1, 2),
                                           ObservedFile("z.txt", 1, 1, 3)], now=1.0)
    assert [o.file.relpath for o in batch.observations] == ["a.txt", "z.txt"]
    assert [r.relpath for r in batch.refused] == ["refused.txt"]
    assert "refused by the test" in batch.refused[0].reason
    assert journal.counts_by_state()[FileState.PENDING] == 2
    assert [e.relpath for e in journal.history(limit=10)] == ["z.txt", "a.txt"]


def test_a_journal_method_caught_in_a_deadlock_runs_again(pg_store: JournalStore) -> None:
    assert pg_store.cluster is not None and pg_store.database is not None
    with pg_store.open() as journal:
        ids = [journal.observe("inbox", name, 1, 1, n, now=1.0).file.id for n, name in enumerate(("a", "b"))]
        with pg_store.cluster.admin(pg_store.database) as other:
            # The other session waits long before checking for deadlocks: the journal's is the victim.
            other.execute("SET deadlock_timeout = '20s'")
            other.execute("BEGIN")
            other.execute("SELECT id FROM syncd.files WHERE id = %s FOR UPDATE", (ids[1],))
            removing = run_in_thread(lambda: journal.remove_many("inbox", ["a", "b"], "gone"))
            wait_until(lambda: waiting_sessions(pg_store) == 1)  # the journal holds "a", waits for "b"
            other.execute("SELECT id FROM syncd.files WHERE id = %s FOR UPDATE", (ids[0],))  # deadlock
            other.execute("COMMIT")  # reached once PostgreSQL rolled the journal's transaction back
            removed = removing()
        assert sorted(row.relpath for row in removed) == ["a", "b"]  # type: ignore[union-attr]
        assert journal.counts_by_state()[FileState.PENDING] == 0
        assert [e.event for e in journal.history("inbox", "a")] == [HistoryEvent.REMOVED, HistoryEvent.ARRIVED]
    [(deadlocks,)] = pg_store.admin_sql("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
    assert deadlocks >= 1


def run_in_thread(work: Callable[[], object]) -> Callable[[], object]:
    """Start `work` in a thread; the returned call joins it and returns its result (or raises)."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(work())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()

    def join() -> object:
        thread.join(WAIT)
        assert not thread.is_alive() and outcome
        if isinstance(outcome[0], Exception):
            raise outcome[0]
        return outcome[0]

    return join


def waiting_sessions(store: JournalStore) -> int:
    [(count,)] = store.admin_sql(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
    return int(count)  # type: ignore[call-overload]


def test_observations_of_the_same_new_file_in_one_process_make_one_new(journal: Journal) -> None:
    seen = run_together(4, lambda _: journal.observe("inbox", "same.txt", 3, 1, 4, now=2.0))
    assert sorted(o.kind for o in seen) == [ObservationKind.NEW] + [ObservationKind.UNCHANGED] * 3  # type: ignore[union-attr]


def test_the_password_never_reaches_the_dsn_or_the_journals_text(pg_store: JournalStore) -> None:
    with pg_store.open() as journal:
        password = pg_store.cluster.app_password  # type: ignore[union-attr]
        assert password not in repr(journal) and password not in journal.location
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(journal.location, connect_timeout=5).close()  # the DSN alone does not log in


def test_the_journal_opens_from_a_loaded_config_under_the_hosts_name(pg_database: PgDatabase, tmp_path: Path) -> None:
    from syncd.config import load_config

    config = load_config(pg_database.syncd_config(tmp_path, host_id="host-a", lease="3s"), environ={})
    with Journal.open(config.journal, role="daemon", host_id=config.host_id) as journal:
        journal.observe("inbox", "a.txt", 1, 1, 1, now=1.0)
        assert pg_database.cluster.sessions(dbname=pg_database.name, application_name="syncd:host-a")
        assert pg_database.password not in f"{journal!r} {journal.location}"
    with Journal.open(config.journal, role="reader") as reader:
        assert reader.find("inbox", "a.txt") is not None


def test_a_pooled_connection_the_server_ended_is_replaced_unnoticed(pg_store: JournalStore) -> None:
    assert pg_store.cluster is not None and pg_store.database is not None
    with pg_store.open(host_id="host-t") as journal:
        journal.observe("inbox", "a.txt", 1, 1, 1, now=1.0)
        ended = pg_store.cluster.terminate_backends(dbname=pg_store.database, application_name="syncd:host-t")
        assert ended >= 1  # the pool's idle connection(s), as after a server restart
        assert journal.observe("inbox", "b.txt", 1, 1, 2, now=2.0).kind is ObservationKind.NEW
        assert journal.find("inbox", "a.txt") is not None
