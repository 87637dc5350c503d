"""What the journal keeps after a commit (issue 11): after-upload actions journaled with the
upload, claims given back without costing an attempt, the commit of a superseded claim
remembered, secrets scrubbed from what it stores, and probes on connections of its own."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from syncd import logs
from syncd.journal import (
    FileState,
    HistoryEvent,
    Journal,
    JournalError,
    JournalProbe,
    PlannedPostAction,
    PostActionKind,
    StaleClaim,
)
from tests.journal.conftest import JournalStore

SHA_A = "a" * 40
SHA_B = "b" * 40


def claimed_row(journal: Journal, relpath: str = "a.txt", *, size: int = 10, now: float = 100.0):
    journal.observe("inbox", relpath, size, mtime_ns=5, inode=7, now=now)
    record = journal.claim_next(now)
    assert record is not None and record.relpath == relpath
    return record


# ------------------------------------------------------------- after-upload actions


def test_an_action_is_journaled_with_the_upload_and_ends_once(journal: Journal) -> None:
    record = claimed_row(journal)
    archive = Path("/srv/archive/2026/01/a.txt")
    journal.claimed(record).mark_uploaded("F1", "V1", "1", SHA_A, 200.0,
                                          post_action=PlannedPostAction(PostActionKind.MOVE, archive))
    [action] = journal.due_post_actions(200.0)
    assert (action.watch, action.relpath, action.action, action.sha1) == ("inbox", "a.txt", PostActionKind.MOVE, SHA_A)
    assert (action.size, action.mtime_ns, action.inode, action.archive_path) == (10, 5, 7, archive)
    assert action.archived_as is None and action.attempts == 0
    assert journal.post_actions_pending() == (1, [action])

    assert journal.post_action_failed(action, "read-only file system", "EROFS", next_attempt_at=260.0, now=210.0)
    assert journal.due_post_actions(250.0) == []
    assert journal.next_post_action_time() == 260.0
    [again] = journal.due_post_actions(None)  # start-up and backstop scans take every one
    assert (again.attempts, again.last_error, again.last_error_code) == (1, "read-only file system", "EROFS")
    assert journal.post_action_archived_as(again, Path("/srv/archive/2026/01/a (1).txt"))
    assert journal.due_post_actions(None)[0].archived_as == Path("/srv/archive/2026/01/a (1).txt")

    assert journal.post_action_done(again, "archived as /srv/archive/2026/01/a (1).txt", now=300.0)
    assert not journal.post_action_done(again, "twice", now=301.0)  # an action ends once
    assert journal.post_actions_pending() == (0, [])
    assert journal.next_post_action_time() is None
    last = journal.history("inbox", "a.txt", limit=1)[0]
    assert (last.event, last.from_state, last.to_state) == (HistoryEvent.SOURCE_ARCHIVED, FileState.UPLOADED,
                                                             FileState.UPLOADED)
    assert journal.get(record.id).state is FileState.UPLOADED  # type: ignore[union-attr]


def test_a_new_upload_of_the_file_replaces_its_action_and_the_old_one_records_nothing(journal: Journal) -> None:
    record = claimed_row(journal)
    journal.claimed(record).mark_uploaded("F1", "V1", "1", SHA_A, 200.0,
                                          post_action=PlannedPostAction(PostActionKind.DELETE))
    [old] = journal.due_post_actions(None)
    journal.observe("inbox", "a.txt", 11, mtime_ns=6, inode=7, now=210.0)  # new content
    again = journal.claim_next(220.0)
    assert again is not None
    journal.claimed(again).mark_uploaded("F1", "V2", "2", SHA_B, 230.0,
                                         post_action=PlannedPostAction(PostActionKind.DELETE))
    [new] = journal.due_post_actions(None)
    assert new.id != old.id and (new.sha1, new.size, new.mtime_ns) == (SHA_B, 11, 6)
    assert not journal.post_action_failed(old, "late", None, 999.0)
    assert not journal.post_action_given_up(old, "late")
    assert journal.due_post_actions(None) == [new]


def test_an_upload_kept_in_place_drops_an_action_left_for_earlier_content(journal: Journal) -> None:
    record = claimed_row(journal)
    journal.claimed(record).mark_uploaded("F1", "V1", "1", SHA_A, 200.0,
                                          post_action=PlannedPostAction(PostActionKind.DELETE))
    journal.observe("inbox", "a.txt", 11, mtime_ns=6, inode=7, now=210.0)
    again = journal.claim_next(220.0)
    assert again is not None
    journal.claimed(again).mark_uploaded("F1", "V2", "2", SHA_B, 230.0)
    assert journal.post_actions_pending()[0] == 0


def test_a_given_up_action_leaves_the_reason_in_the_history(journal: Journal) -> None:
    record = claimed_row(journal)
    journal.claimed(record).mark_uploaded("F1", "V1", "1", SHA_A, 200.0,
                                          post_action=PlannedPostAction(PostActionKind.DELETE))
    [action] = journal.due_post_actions(None)
    assert journal.post_action_given_up(action, "the file changed after it was uploaded")
    last = journal.history("inbox", "a.txt", limit=1)[0]
    assert (last.event, last.detail) == (HistoryEvent.SOURCE_KEPT, "the file changed after it was uploaded")


def test_an_action_goes_with_its_row_and_a_move_needs_its_archive_path(journal: Journal) -> None:
    record = claimed_row(journal)
    with pytest.raises(ValueError, match="archive path goes with a move"):
        journal.claimed(record).mark_uploaded("F1", "V1", "1", SHA_A, 200.0,
                                              post_action=PlannedPostAction(PostActionKind.MOVE))
    assert journal.get(record.id).state is FileState.UPLOADING  # type: ignore[union-attr]  # nothing written
    journal.claimed(record).mark_uploaded("F1", "V1", "1", SHA_A, 200.0,
                                          post_action=PlannedPostAction(PostActionKind.DELETE))
    assert journal.forget("inbox", "a.txt")
    assert journal.post_actions_pending()[0] == 0


def test_archive_paths_that_are_not_utf8_round_trip(journal: Journal) -> None:
    record = claimed_row(journal)
    archive = Path(os.fsdecode(b"/srv/archive/caf\xe9.txt"))
    journal.claimed(record).mark_uploaded("F1", "V1", "1", SHA_A, 200.0,
                                          post_action=PlannedPostAction(PostActionKind.MOVE, archive))
    [action] = journal.due_post_actions(None)
    assert os.fsencode(action.archive_path) == b"/srv/archive/caf\xe9.txt"  # type: ignore[arg-type]


# ---------------------------------------------------------------- claims given back


def test_a_released_claim_costs_no_attempt_and_keeps_its_session(journal: Journal) -> None:
    from syncd.journal import SessionRecord

    record = claimed_row(journal, size=20)
    claim = journal.claimed(record)
    claim.save_session(SessionRecord("S1", 8, 3, 20, expires_at=9999.0))
    assert record.attempts == 1
    released = claim.release("Box refuses the credentials", "box_refusing", next_attempt_at=500.0, now=150.0)
    assert (released.state, released.attempts, released.next_attempt_at) == (FileState.PENDING, 0, 500.0)
    assert released.last_error_code == "box_refusing"
    assert journal.load_session(record.id) is not None
    assert journal.history("inbox", "a.txt", limit=1)[0].event is HistoryEvent.DEFERRED
    # Written again (its commit's answer was lost): the same row back, nothing written twice.
    assert claim.release("twice", None, 600.0) == released
    assert [e.event for e in journal.history("inbox", "a.txt")].count(HistoryEvent.DEFERRED) == 1
    assert journal.claim_next(499.0) is None
    assert journal.claim_next(500.0).attempts == 1  # type: ignore[union-attr]


# ------------------------------------------------------------ superseded commits


def test_a_stale_claim_remembers_its_commit_for_the_next_attempt(journal: Journal) -> None:
    record = claimed_row(journal)
    journal.observe("inbox", "a.txt", 12, mtime_ns=9, inode=7, now=150.0)  # changed during the upload
    stale = journal.claimed(record)
    with pytest.raises(StaleClaim):
        stale.mark_uploaded("F1", "V1", "e1", SHA_A, 160.0)
    assert stale.remember_commit("F1", "V1", "e1", now=161.0)
    row = journal.get(record.id)
    assert row is not None
    # The Box file is known; the state, the content's identity and the claim are the new content's.
    assert (row.box_file_id, row.box_version_id, row.box_etag) == ("F1", "V1", "e1")
    assert (row.state, row.size, row.sha1, row.claim_seq) == (FileState.PENDING, 12, None, record.claim_seq + 1)
    assert journal.history("inbox", "a.txt", limit=1)[0].event is HistoryEvent.COMMIT_REMEMBERED


def test_a_late_stale_claim_never_overwrites_a_newer_commit(journal: Journal) -> None:
    record = claimed_row(journal)
    journal.observe("inbox", "a.txt", 12, mtime_ns=9, inode=7, now=150.0)
    newer = journal.claim_next(160.0)
    assert newer is not None
    journal.claimed(newer).mark_uploaded("F1", "V2", "e2", SHA_B, 170.0)
    assert not journal.claimed(record).remember_commit("F1", "V1", "e1")
    row = journal.get(record.id)
    assert row is not None and (row.box_version_id, row.box_etag) == ("V2", "e2")


# -------------------------------------------------------------------- secrets


def stored_bytes(store: JournalStore) -> bytes:
    """Everything the journal holds, as bytes: the SQLite files, or every row of every table."""
    if isinstance(store.where, Path):
        return b"".join(path.read_bytes() for path in store.where.parent.iterdir())
    tables = [name for (name,) in store.admin_sql("SELECT tablename FROM pg_tables WHERE schemaname = 'syncd'")]
    return "\n".join(repr(store.admin_sql(f"SELECT * FROM syncd.{table}")) for table in tables).encode()


def test_error_text_is_scrubbed_before_it_is_stored(journal: Journal, journal_store: JournalStore) -> None:
    secret = "runtime-refresh-token-93f1c2"
    logs.register_secret(secret)
    try:
        record = claimed_row(journal)
        journal.claimed(record).schedule_retry(f"token endpoint said {secret} is spent", "invalid_grant", 300.0)
        again = journal.claim_next(300.0)
        assert again is not None
        journal.claimed(again).mark_uploaded("F1", "V1", "1", SHA_A, 310.0,
                                             post_action=PlannedPostAction(PostActionKind.DELETE))
        [action] = journal.due_post_actions(None)
        journal.post_action_failed(action, f"refused with {secret}", None, 400.0)
        journal.close()
    finally:
        logs.forget_secrets()
    stored = stored_bytes(journal_store)
    assert b"token endpoint said *** is spent" in stored and secret.encode() not in stored
    with journal_store.open(role="reader") as reader:
        details = [e.detail or "" for e in reader.history()]
        assert any("token endpoint said *** is spent" in d for d in details), details


# --------------------------------------------------------------------- probes


def test_probes_answer_while_a_worker_holds_the_journal(sqlite_journal: Journal, journal_path: Path) -> None:
    journal = sqlite_journal
    probe = JournalProbe(journal_path)
    try:
        assert probe.readable() is None
        probe.writable(1234.5)
        assert probe.readable() == 1234.5
        inside, done = threading.Event(), threading.Event()

        def hold_the_journal() -> None:
            with journal._read():  # the lock every worker write takes: a slow fsync holds it this way
                inside.set()
                done.wait(10)

        holder = threading.Thread(target=hold_the_journal)
        holder.start()
        try:
            assert inside.wait(5)
            assert probe.readable() == 1234.5  # its own connection: no wait behind the worker
            probe.writable(1300.0)
        finally:
            done.set()
            holder.join()
        assert probe.readable() == 1300.0
    finally:
        probe.close()


def test_the_write_probe_fails_while_another_connection_holds_the_write_lock(sqlite_journal: Journal,
                                                                           journal_path: Path) -> None:
    probe = JournalProbe(journal_path, busy_timeout=0.05)
    other = sqlite3.connect(journal_path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(JournalError, match="locked"):
            probe.writable(1.0)
        assert probe.readable() is None  # reads still answer
        other.execute("ROLLBACK")
        probe.writable(2.0)  # and it recovers by itself
        assert probe.readable() == 2.0
    finally:
        other.close()
        probe.close()


def test_pending_files_of_a_paused_watch_are_pushed_back_in_one_statement(journal: Journal) -> None:
    for relpath, watch, due in (("a", "w1", 100.0), ("b", "w1", 900.0), ("c", "w2", 100.0)):
        journal.observe(watch, relpath, 1, 1, 1, now=due)
    claimed = journal.claim_next(100.0)  # w1:a, now uploading: not pending, not touched
    assert claimed is not None and claimed.relpath == "a"
    journal.observe("w1", "d", 1, 1, 1, now=100.0)
    assert journal.defer_pending("w1", 500.0) == 1  # d only: b is already due later
    assert [journal.find("w1", r).next_attempt_at for r in ("b", "d")] == [900.0, 500.0]  # type: ignore[union-attr]
    assert journal.find("w2", "c").next_attempt_at == 100.0  # type: ignore[union-attr]
    assert journal.find("w1", "d").attempts == 0  # type: ignore[union-attr]
