"""After-upload actions on a journal several hosts share (docs/MULTI_HOST.md section 6): the
host that committed the upload carries its action out; another host is handed it only once that
host is gone (stopped, or its heartbeat older than a lease). PostgreSQL only: SQLite has one host."""

from __future__ import annotations

from syncd.journal import Journal, PlannedPostAction, PostActionKind
from syncd.journal.hosts import HostRegistration
from tests.journal.conftest import JournalStore

SHA = "b" * 40


def commit_with_delete(journal: Journal, relpath: str) -> int:
    file_id = journal.observe("inbox", relpath, 10, mtime_ns=1, inode=9, now=100.0).file.id
    record = journal.claim_next(150.0)
    assert record is not None and record.id == file_id
    journal.claimed(record).mark_uploaded("box-1", "v1", "0", SHA, 160.0,
                                          post_action=PlannedPostAction(PostActionKind.DELETE))
    return file_id


def due_files(journal: Journal) -> list[int]:
    return [action.file_id for action in journal.due_post_actions(None)]


def test_a_live_hosts_actions_are_its_own_until_it_is_gone(pg_store: JournalStore) -> None:
    with pg_store.open(host_id="host-a") as a, pg_store.open(host_id="host-b") as b:
        registration = HostRegistration.start(a, version="test", watches=[])
        try:
            file_id = commit_with_delete(a, "scan.pdf")
            assert due_files(a) == [file_id]
            assert due_files(b) == []  # a is alive: its action is a's
            assert a.next_post_action_time() == 160.0
            assert b.next_post_action_time() is None  # b's applier does not wake for it
            pg_store.poke("UPDATE hosts SET heartbeat_at = 0 WHERE host_id = 'host-a'")
            assert due_files(b) == [file_id]  # silent for longer than a lease: anyone's
            registration.heartbeat()
            assert due_files(b) == []
        finally:
            registration.stop()
        assert due_files(b) == [file_id]  # a stopped: b carries it out at once
