"""Fixtures for the journal tests: real journals on both engines.

`journal` is parametrised over the two backends: a SQLite file in a temporary folder,
and a fresh database on the session's real PostgreSQL cluster (`tests.support.postgres`),
copied from a template migrated once per test process (CREATE DATABASE ... TEMPLATE:
cheaper than migrating each). `journal_store` is where that journal lives, to open it
again (`reader`, `operator`, a second "host"). Tests of one engine's mechanics take
`sqlite_journal` (with `journal_path`) or `pg_store` instead.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from psycopg import sql

from syncd.config import PostgresJournalConfig, Secret
from syncd.journal import Journal
from syncd.testing.postgres import APP_ROLE, PostgresCluster

CLOCK = 5000.0


@dataclass(frozen=True)
class JournalStore:
    """Where one test's journal lives: a SQLite file or a PostgreSQL database."""

    backend: str
    where: Path | PostgresJournalConfig
    cluster: PostgresCluster | None = None
    database: str | None = None

    def open(self, role: str = "daemon", **options: object) -> Journal:
        """Another `Journal` on the same store (the caller closes it)."""
        options.setdefault("clock", lambda: CLOCK)
        return Journal.open(self.where, role=role, **options)  # type: ignore[arg-type]

    def poke(self, statement: str) -> None:
        """Change rows behind the journal's back on either engine (the schema's tables by name; no
        parameters): what a test arranges that no API does, e.g. a lease expired without waiting."""
        if self.cluster is None:
            conn = sqlite3.connect(self.where)  # type: ignore[arg-type]
            try:
                with conn:
                    conn.execute(statement)
            finally:
                conn.close()
        else:
            assert self.database is not None
            with self.cluster.admin(self.database) as conn:
                conn.execute("SET search_path = syncd")
                conn.execute(statement)

    def admin_sql(self, statement: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """Run SQL on the PostgreSQL database as its superuser (tests poking at rows directly)."""
        assert self.cluster is not None and self.database is not None
        with self.cluster.admin(self.database) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []


def pg_config(cluster: PostgresCluster, database: str, **options: object) -> PostgresJournalConfig:
    return PostgresJournalConfig(cluster.app_dsn(database), Secret(cluster.app_password, "test"),
                                 **options)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pg_journal_template(pg_cluster: PostgresCluster) -> Iterator[str]:
    """A database migrated to the current schema, copied for each test (no connection stays on it)."""
    name = pg_cluster.create_database(f"journal_template_{uuid.uuid4().hex[:8]}")
    Journal.open(pg_config(pg_cluster, name), role="daemon").close()
    yield name
    pg_cluster.drop_database(name)


@pytest.fixture
def fresh_pg_database(pg_cluster: PostgresCluster, pg_journal_template: str) -> Iterator[str]:
    """A migrated, empty journal database of this test's own, dropped after it."""
    name = f"j_{uuid.uuid4().hex[:16]}"
    with pg_cluster.admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {} STRATEGY FILE_COPY").format(
            sql.Identifier(name), sql.Identifier(pg_journal_template), sql.Identifier(APP_ROLE)))
    yield name
    pg_cluster.drop_database(name)


@pytest.fixture
def pg_store(pg_cluster: PostgresCluster, fresh_pg_database: str) -> JournalStore:
    return JournalStore("postgres", pg_config(pg_cluster, fresh_pg_database), pg_cluster, fresh_pg_database)


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "journal.db"


@pytest.fixture(params=["sqlite", "postgres"])
def journal_store(request: pytest.FixtureRequest, journal_path: Path) -> JournalStore:
    if request.param == "sqlite":
        return JournalStore("sqlite", journal_path)
    return request.getfixturevalue("pg_store")


@pytest.fixture
def journal(journal_store: JournalStore) -> Iterator[Journal]:
    with journal_store.open() as opened:
        yield opened


@pytest.fixture
def sqlite_journal(journal_path: Path) -> Iterator[Journal]:
    """The SQLite journal, for tests of the file itself (WAL, flock, query plans, corruption)."""
    with Journal.open(journal_path, role="daemon", clock=lambda: CLOCK) as opened:
        yield opened


@pytest.fixture
def open_journals() -> Iterator[Callable[..., Journal]]:
    """Open more journals on a store (more "hosts"; `open_one(store, role=..., host_id=...)`); all are
    closed after the test."""
    opened: list[Journal] = []

    def open_one(store: JournalStore, role: str = "daemon", **options: object) -> Journal:
        opened.append(store.open(role, **options))
        return opened[-1]

    yield open_one
    for journal in opened:
        journal.close()
