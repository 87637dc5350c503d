"""Opening journals: creation, identity, corruption, schema versions and migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from syncd.journal import SCHEMA_VERSION, FileState, Journal, JournalError, ObservationKind, PartRecord, SessionRecord
from syncd.journal.migrations import Migration, apply_migrations, schema_version
from syncd.journal.schema import APPLICATION_ID, MIGRATIONS


def test_daemon_creates_the_directory_and_a_wal_journal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "var" / "journal.db"
    with Journal.open(path) as journal:
        journal.observe("inbox", "a", 1, 1, 1, now=1.0)
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert schema_version(conn) == SCHEMA_VERSION
        conn.close()
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(("-wal", "-shm"))) == [
        "journal.db",
        "journal.db.lock",
    ]


def test_reader_does_not_create_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    with pytest.raises(JournalError, match="no journal at"):
        Journal.open(path, role="reader")
    assert not path.exists()


def test_unknown_role_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="role"):
        Journal.open(tmp_path / "j.db", role="writer")  # type: ignore[arg-type]


def test_directory_as_journal_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="is a directory"):
        Journal.open(tmp_path)


def test_garbage_file_is_refused_and_left_untouched(journal_path: Path) -> None:
    journal_path.parent.mkdir(parents=True)
    garbage = b"this is not a database, it is a grocery list\n" * 200
    journal_path.write_bytes(garbage)
    for role in ("daemon", "reader"):
        with pytest.raises(JournalError, match="corrupt") as refused:
            Journal.open(journal_path, role=role)  # type: ignore[arg-type]
        assert "will not start from an empty journal" in str(refused.value)
    assert journal_path.read_bytes() == garbage


def test_corrupted_pages_are_detected_on_open(journal_path: Path) -> None:
    with Journal.open(journal_path) as journal:
        for n in range(3000):
            journal.observe("inbox", f"dir{n % 30}/file-{n:05}.bin", n, n, n, now=float(n))
    data = bytearray(journal_path.read_bytes())
    assert len(data) > 20 * 4096
    # Keep page 1 (header and schema) intact, scribble over the b-tree pages behind it.
    for page in range(2, len(data) // 4096, 3):
        data[page * 4096 + 100 : page * 4096 + 400] = b"\xa5" * 300
    journal_path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match="corrupt"):
        Journal.open(journal_path)


def test_empty_file_is_not_taken_for_a_new_journal(journal_path: Path) -> None:
    journal_path.parent.mkdir(parents=True)
    journal_path.touch()
    with pytest.raises(JournalError, match="not a syncd journal"):
        Journal.open(journal_path)
    assert journal_path.stat().st_size == 0


def test_another_programs_database_is_refused(journal_path: Path) -> None:
    journal_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(journal_path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with pytest.raises(JournalError, match="another program's database"):
        Journal.open(journal_path)


def test_journal_from_a_newer_syncd_is_refused(sqlite_journal: Journal, journal_path: Path) -> None:
    journal = sqlite_journal
    journal.observe("inbox", "a", 1, 1, 1, now=1.0)
    journal.close()
    conn = sqlite3.connect(journal_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    for role in ("daemon", "reader", "operator"):
        with pytest.raises(JournalError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
            Journal.open(journal_path, role=role)  # type: ignore[arg-type]


def build_version_1_journal(path: Path) -> None:
    """A journal as syncd schema version 1 wrote it, with one uploaded file."""
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    assert apply_migrations(conn, MIGRATIONS, target=1) == [1]
    conn.execute(
        "INSERT INTO files (watch, relpath, size, mtime_ns, inode, sha1, state, box_file_id, box_version_id,"
        " attempts, next_attempt_at, detected_at, ready_at, updated_at, uploaded_at)"
        f" VALUES ('inbox', 'old.pdf', 5, 9, 3, '{'c' * 40}', 'uploaded', 'F1', 'V1', 1, 10, 10, 10, 11, 11)"
    )
    conn.close()


def test_version_1_journal_is_migrated_by_the_daemon(journal_path: Path) -> None:
    build_version_1_journal(journal_path)
    with pytest.raises(JournalError, match="older than this syncd's.*start the syncd daemon once"):
        Journal.open(journal_path, role="reader")
    with Journal.open(journal_path) as journal:
        [known] = journal.known_files("inbox")
        assert known == ("old.pdf", 5, 9, 3, FileState.UPLOADED)
        changed = journal.observe("inbox", "old.pdf", 6, 10, 3, now=20.0)
        assert changed.kind is ObservationKind.CHANGED and changed.file.box_file_id == "F1"
        claimed = journal.claim_next(now=20.0)
        assert claimed is not None
        journal.claimed(claimed).save_session(SessionRecord("S", 4, 2, 6, 99.0))  # a version-2 table
        journal.claimed(claimed).add_part(PartRecord("P", 0, 4, "00" * 20))
    conn = sqlite3.connect(journal_path)
    assert schema_version(conn) == SCHEMA_VERSION
    conn.close()
    with Journal.open(journal_path, role="reader") as reader:
        assert reader.in_flight()[0].bytes_done == 4


def test_version_3_journal_gains_the_box_folder_table(journal_path: Path) -> None:
    # A journal as syncd wrote it before Box folder ids were kept (schema version 3).
    journal_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(journal_path, isolation_level=None)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    assert apply_migrations(conn, MIGRATIONS, target=3) == [1, 2, 3]
    conn.execute(
        "INSERT INTO files (watch, relpath, size, mtime_ns, inode, sha1, state, box_file_id, box_version_id,"
        " attempts, next_attempt_at, detected_at, ready_at, updated_at, uploaded_at)"
        f" VALUES ('inbox', 'a/b/old.pdf', 5, 9, 3, '{'c' * 40}', 'uploaded', 'F1', 'V1', 1, 10, 10, 10, 11, 11)"
    )
    conn.close()
    with Journal.open(journal_path) as journal:
        assert journal.box_folder_id("0", "a") is None
        journal.save_box_folder_id("0", "a", "100")
        assert journal.box_folder_id("0", "a") == "100"
        [known] = journal.known_files("inbox")
        assert known == ("a/b/old.pdf", 5, 9, 3, FileState.UPLOADED)
    conn = sqlite3.connect(journal_path)
    assert schema_version(conn) == SCHEMA_VERSION
    conn.close()
    with Journal.open(journal_path, role="reader") as reader:
        assert reader.box_folder_id("0", "A".casefold()) == "100"


def test_a_failing_migration_leaves_the_journal_at_its_old_version(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "j.db", isolation_level=None)
    steps = (
        Migration(1, "base", ("CREATE TABLE a (x)",)),
        Migration(2, "broken", ("CREATE TABLE b (y)", "INSERT INTO no_such_table VALUES (1)")),
    )
    apply_migrations(conn, steps[:1])
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        apply_migrations(conn, steps)
    assert schema_version(conn) == 1
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["a"]
    assert not conn.in_transaction
    conn.close()


def test_migrations_must_be_numbered_in_order(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "j.db", isolation_level=None)
    with pytest.raises(ValueError, match="out of order"):
        apply_migrations(conn, (Migration(2, "skips one", ()),))
    assert [m.version for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))
    conn.close()


def test_interrupted_creation_leaves_no_half_made_journal(journal_path: Path) -> None:
    # A crash during creation leaves only the staging file, which the next start replaces.
    journal_path.parent.mkdir(parents=True)
    (journal_path.parent / "journal.db.new").write_bytes(b"half")
    with Journal.open(journal_path) as journal:
        assert journal.counts_by_state()[FileState.PENDING] == 0
    assert not (journal_path.parent / "journal.db.new").exists()


def test_a_migration_is_preceded_by_a_backup_of_the_old_journal(journal_path: Path) -> None:
    """An upgrade keeps the file the old syncd wrote, whole and readable, before migrating it."""
    from syncd.journal.sqlite_file import backup_path_for

    build_version_1_journal(journal_path)
    backup = backup_path_for(journal_path, 1)
    with Journal.open(journal_path):
        pass
    assert backup.exists() and oct(backup.stat().st_mode & 0o777) == "0o600"
    conn = sqlite3.connect(backup)
    assert schema_version(conn) == 1
    assert conn.execute("SELECT relpath, state FROM files").fetchall() == [("old.pdf", "uploaded")]
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    before = backup.stat().st_mtime_ns
    with Journal.open(journal_path):  # already current: no new backup, the first one kept
        pass
    assert backup.stat().st_mtime_ns == before
    assert sorted(p.name for p in journal_path.parent.glob("*.bak*")) == [backup.name]
