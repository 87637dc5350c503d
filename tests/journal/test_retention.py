"""Retention keeps the journal bounded: old history and the rows of uploaded files whose source is
gone are deleted, in batches, by index, without loading the journal into memory."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from syncd.journal import FileState, Journal, PlannedPostAction, PostActionKind
from syncd.journal import retention
from tests.journal.test_scale import assert_plan_uses

SHA = "c" * 40


def uploaded(journal: Journal, relpath: str, at: float) -> int:
    journal.observe("inbox", relpath, 1, 1, 1, now=at)
    record = journal.claim_next(at)
    assert record is not None and record.relpath == relpath
    journal.claimed(record).mark_uploaded(f"F-{relpath}", "V1", "1", SHA, at)
    return record.id


def test_uploaded_rows_go_only_when_old_and_their_source_is_gone(journal: Journal) -> None:
    for name, at in (("old-gone", 100.0), ("old-present", 110.0), ("young-gone", 900.0)):
        uploaded(journal, name, at)
    with_action = uploaded(journal, "old-gone-action-pending", 120.0)
    row = journal.get(with_action)
    assert row is not None
    journal.observe("inbox", row.relpath, 2, 2, 2, now=130.0)
    again = journal.claim_next(130.0)
    assert again is not None and again.id == with_action
    journal.claimed(again).mark_uploaded("F", "V2", "2", SHA, 130.0,
                                         post_action=PlannedPostAction(PostActionKind.DELETE))
    journal.observe("inbox", "old-pending", 1, 1, 1, now=50.0)  # never uploaded
    asked: list[str] = []

    def gone(watch: str, relpath: str) -> bool:
        asked.append(relpath)
        return relpath != "old-present"

    assert journal.prune_uploaded(500.0, gone, batch=2) == 1
    # Only uploaded rows older than the cut-off are looked at, oldest first.
    assert asked == ["old-gone", "old-present", "old-gone-action-pending"]
    assert {r.relpath for r in (journal.get(i) for i in range(1, 10)) if r is not None} == {
        "old-present", "young-gone", "old-gone-action-pending", "old-pending"}


def test_history_is_pruned_in_batches(journal: Journal) -> None:
    for i in range(25):
        journal.observe("inbox", f"f{i}", 1, 1, 1, now=float(i))
    assert journal.prune_history(10.0, batch=4) == 10
    assert len(journal.history(limit=100)) == 15
    assert journal.prune_history(10.0, batch=4) == 0


@pytest.mark.parametrize("sql", ["UPLOADED_BEFORE", "OLD_HISTORY"])
def test_retention_queries_walk_an_index(sqlite_journal: Journal, journal_path: Path, sql: str) -> None:
    expected = {"UPLOADED_BEFORE": "files_uploaded_age", "OLD_HISTORY": "history_ts"}[sql]
    conn = sqlite3.connect(journal_path)
    try:
        assert_plan_uses(conn, getattr(retention, sql), expected,
                         {"before": 1.0, "after_ts": 0.0, "after_id": 0, "limit": 10})
    finally:
        conn.close()


def test_a_million_row_journal_prunes_to_its_retention(million_row_journal: Path) -> None:
    # tests.support.big_journal: file i uploaded (90%) at t = 1000 + i, a history line for every fifth.
    cut_off = 1000.0 + 100_000
    present = {f"d{i // 1000:04d}/f{i:07d}.bin" for i in range(0, 100_000, 20)}  # still on disk
    with Journal.open(million_row_journal, role="daemon") as daemon:
        assert daemon.prune_uploaded(cut_off, lambda watch, relpath: relpath not in present) == 90_000 - 5_000
        counts = daemon.counts_by_state()
        assert counts[FileState.UPLOADED] == 900_000 - 85_000 and counts[FileState.PENDING] == 50_000
        assert daemon.prune_history(cut_off) == 20_000
    conn = sqlite3.connect(million_row_journal)
    try:
        assert conn.execute("SELECT count(*), min(ts) FROM history").fetchone() == (180_000, 1000.0 + 100_004)
        kept = conn.execute("SELECT count(*) FROM files WHERE state = 'uploaded' AND uploaded_at < ?",
                            (cut_off,)).fetchone()[0]
        assert kept == len(present)
    finally:
        conn.close()
