"""Opening the journal's SQLite file: create it atomically, identify it, check it, migrate it.

Everything here turns SQLite's failures into JournalError messages that say what
to do, and never lets an existing file be mistaken for a new, empty journal.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from syncd.journal.backend import Role
from syncd.journal.errors import JournalError
from syncd.journal.migrations import apply_migrations, schema_version
from syncd.journal.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION



def connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """Open a connection in autocommit mode, shareable between threads."""
    try:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves. check_same_thread=False:
        # the connection is shared by threads, serialised by Journal._mutex.
        return sqlite3.connect(str(path), timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise database_error(path, exc) from exc


def create_journal_file(path: Path) -> None:
    """Build a fresh, fully migrated journal beside `path`, then rename it into place.

    So an existing journal file is always a complete one: a file that exists but is
    empty or unmarked is treated as damaged, never as "new".
    """
    staging = path.with_name(path.name + ".new")
    for leftover in (staging, Path(f"{staging}-journal"), Path(f"{staging}-wal"), Path(f"{staging}-shm")):
        leftover.unlink(missing_ok=True)
    conn = connect(staging, 5.0)
    try:
        conn.execute("PRAGMA journal_mode = DELETE")  # no -wal file to carry along the rename
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        apply_migrations(conn, MIGRATIONS)
    finally:
        conn.close()
    os.replace(staging, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def prepare_connection(conn: sqlite3.Connection, path: Path, role: Role) -> None:
    """Configure the connection, identify and check the file, migrate (daemon only)."""
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        application_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        version = schema_version(conn)
        if application_id != APPLICATION_ID:
            what = "an empty or unfinished database" if version == 0 else "another program's database"
            raise JournalError(
                f"{path} is not a syncd journal ({what}); syncd will not overwrite it. "
                "Point `journal:` at another path, or move this file aside if it is a damaged journal.",
                path=path,
            )
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"journal {path} has schema version {version}, newer than this syncd understands "
                f"({SCHEMA_VERSION}); run the newer syncd that wrote it, or restore a backup made "
                "before the upgrade",
                path=path,
            )
        if role == "daemon":
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(
                    f"journal {path}: the filesystem does not support SQLite WAL mode (got {mode!r}); "
                    "put the journal on a local filesystem",
                    path=path,
                )
            conn.execute("PRAGMA journal_size_limit = 67108864")
            quick_check(conn, path)
            if 0 < version < SCHEMA_VERSION:
                backup_before_migration(conn, path, version)
            apply_migrations(conn, MIGRATIONS)
        else:
            if version < SCHEMA_VERSION:
                raise JournalError(
                    f"journal {path} has schema version {version}, older than this syncd's "
                    f"{SCHEMA_VERSION}; start the syncd daemon once to migrate it",
                    path=path,
                )
            if role == "operator":
                quick_check(conn, path)
            else:
                conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA synchronous = FULL")
    except sqlite3.Error as exc:
        raise database_error(path, exc) from exc


def backup_path_for(path: Path, version: int) -> Path:
    """Where the journal at schema `version` is copied before a newer syncd migrates it."""
    return path.with_name(f"{path.name}.schema-{version}.bak")


def backup_before_migration(conn: sqlite3.Connection, path: Path, version: int) -> Path:
    """Copy the journal aside before migrating it from `version`: an upgrade that goes wrong,
    or a downgrade, can then restore the file the old syncd wrote (deploy/README.md, "Upgrade").

    SQLite's online backup API gives a consistent copy (WAL content included) under the
    daemon lock; it is written to a temporary name, fsynced and renamed, so a crash leaves
    either no backup or a whole one. An existing backup of the same version is kept: it is
    the oldest, made before the first attempt. Mode 0600, like the state it copies.
    """
    target = backup_path_for(path, version)
    if target.exists():
        return target
    staging = target.with_name(target.name + ".tmp")
    staging.unlink(missing_ok=True)
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    copy = sqlite3.connect(str(staging))
    try:
        conn.backup(copy)
        copy.execute("PRAGMA journal_mode = DELETE")  # a self-contained file, no -wal beside it
    finally:
        copy.close()
    fd = os.open(staging, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(staging, target)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target


def quick_check(conn: sqlite3.Connection, path: Path) -> None:
    """Run `PRAGMA quick_check` (O(size), about 1.5 s per million rows); raise JournalError if damaged."""
    problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
    if problems != ["ok"]:
        raise JournalError(
            f"journal {path} is corrupt ({'; '.join(problems)}). " + _CORRUPT_ADVICE.format(path=path),
            path=path,
        )


_CORRUPT_ADVICE = (
    "syncd will not start from an empty journal. Stop syncd, move {path} (and its -wal/-shm files) "
    "aside for inspection and restore a backup; or, to start afresh, remove them, knowing that every "
    "file still in the watched folders will then be uploaded again (per each watch's conflict policy)."
)


def database_error(path: Path, exc: sqlite3.Error) -> JournalError:
    """Turn an sqlite3 error into a JournalError that says what to do about it."""
    text = str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in text or "malformed" in text or "corrupt" in text
    ):
        return JournalError(
            f"journal {path} is unreadable or corrupt ({text}). " + _CORRUPT_ADVICE.format(path=path), path=path
        )
    if "database is locked" in text:
        return JournalError(f"journal {path} stayed locked by another connection too long ({text})", path=path)
    if "unable to open" in text:
        return JournalError(
            f"cannot open journal {path} ({text}); check that the directory exists and is writable", path=path
        )
    return JournalError(f"journal {path}: {text}", path=path)
