"""Schema versioning: an ordered list of migrations tracked by `PRAGMA user_version`.

Each journal file records the number of the last migration applied to it. Opening
a journal applies the missing ones, all in one transaction, so a crash mid-way
leaves the file at its old version, never half-migrated (SQLite DDL is
transactional).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema: run `statements` to go from `version - 1` to `version`."""

    version: int
    description: str
    statements: tuple[str, ...]


def schema_version(conn: sqlite3.Connection) -> int:
    """Return the journal's schema version (0 for a file no migration has touched)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def check_migration_order(migrations: Sequence[Migration]) -> None:
    """Raise ValueError unless the migrations are numbered 1, 2, 3, ... in order."""
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise ValueError(
                f"migration list out of order: position {expected} holds version {migration.version}"
            )


def apply_migrations(
    conn: sqlite3.Connection, migrations: Sequence[Migration], *, target: int | None = None
) -> list[int]:
    """Bring the schema up to `target` (default: the last migration) in one transaction.

    `conn` must be in autocommit mode (isolation_level=None). Returns the versions
    applied (empty when already current). The version is re-read inside the write
    transaction, so two processes racing to migrate cannot both apply a step.
    Any failure rolls everything back and re-raises.
    """
    check_migration_order(migrations)
    goal = len(migrations) if target is None else target
    if not 0 <= goal <= len(migrations):
        raise ValueError(f"target schema version {goal} is not in 0..{len(migrations)}")
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = schema_version(conn)
        applied: list[int] = []
        for migration in migrations[current:goal]:
            for statement in migration.statements:
                conn.execute(statement)
            applied.append(migration.version)
        if applied:
            # user_version lives in the database header, which is written in the same
            # transaction as the DDL above: both commit or neither does.
            conn.execute(f"PRAGMA user_version = {int(applied[-1])}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return applied
