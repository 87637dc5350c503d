"""The reporting and claiming queries stay index-driven, with bounded work on 1,000,000 rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from syncd.journal import FileState, Journal
from syncd.journal import queries
from tests.support.sqlite_work import COUNT_STEPS_PER_ROW, POINT_QUERY_STEPS, journal_connection, sqlite_work

PARAMS = {"now": 1e12, "max_size": 1000, "watch": "w1", "relpath": "d/f", "limit": 20}

# Query -> the index that must serve it. No plan may scan a table or sort rows.
EXPECTED_INDEX = {
    "CLAIM_CANDIDATE": "files_pending_due",
    "CLAIM_CANDIDATE_MAX_SIZE": "files_pending_small",
    "NEXT_ATTEMPT": "files_pending_due",
    "NEXT_ATTEMPT_MAX_SIZE": "files_pending_small",
    "COUNTS_BY_STATE": "COVERING INDEX files_state",
    "COUNTS_BY_STATE_IN_WATCH": "COVERING INDEX files_watch_state",
    "OLDEST_PENDING": "files_pending_age",
    "OLDEST_PENDING_IN_WATCH": "files_pending_age",
    "RECENT_FAILURES": "files_failures",
    "LAST_UPLOADED": "history_event",
    "LAST_UPLOADED_IN_WATCH": "history_watch_event",
    "LAST_ARRIVAL": "history_watch_event",
    "HISTORY_IN_WATCH": "history_watch",
    "HISTORY_OF_PATH": "history_path",
    "KNOWN_FILES": "(watch=?)",
}


def query_plan(conn: sqlite3.Connection, sql: str, params: dict | None = None) -> list[str]:
    return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params or PARAMS)]


def assert_plan_uses(conn: sqlite3.Connection, sql: str, index: str, params: dict | None = None) -> None:
    """`sql` is served by `index`: no table scanned without an index, no rows sorted."""
    plan = query_plan(conn, sql, params)
    assert any(index in step for step in plan), (sql, plan)
    assert not any(step.startswith("SCAN") and "INDEX" not in step for step in plan), (sql, plan)
    assert not any("TEMP B-TREE" in step for step in plan), (sql, plan)


def assert_index_driven(conn: sqlite3.Connection, name: str) -> None:
    assert_plan_uses(conn, getattr(queries, name), EXPECTED_INDEX[name])


@pytest.mark.parametrize("name", sorted(EXPECTED_INDEX))
def test_hot_queries_use_their_index(sqlite_journal: Journal, journal_path: Path, name: str) -> None:
    conn = sqlite3.connect(journal_path)
    try:
        assert_index_driven(conn, name)
    finally:
        conn.close()


def test_million_row_journal_answers_with_bounded_work(million_row_journal: Path) -> None:
    journal_path = million_row_journal
    with Journal.open(journal_path, role="daemon") as daemon:
        conn = journal_connection(daemon)
        counts, w_counts = sqlite_work(conn, daemon.counts_by_state)
        assert counts == {
            FileState.UPLOADED: 900_000, FileState.PENDING: 50_000, FileState.FAILED: 30_000,
            FileState.QUARANTINED: 10_000, FileState.SKIPPED: 10_000, FileState.UPLOADING: 0,
        }
        oldest, w_oldest = sqlite_work(conn, daemon.oldest_pending)
        assert oldest is not None and oldest.relpath == "d0000/f0000090.bin"
        failures, w_failures = sqlite_work(conn, daemon.recent_failures, 20)
        assert [f.relpath for f in failures[:2]] == ["d0999/f0999998.bin", "d0999/f0999997.bin"]
        claimed, w_claim = sqlite_work(conn, daemon.claim_next, 1e12)
        assert claimed is not None and claimed.relpath == "d0000/f0000090.bin"
        small, w_small = sqlite_work(conn, daemon.claim_next, 1e12, max_size=10)
        assert small is not None and small.size <= 10
        in_watch, w_watch = sqlite_work(conn, daemon.counts_by_state, "w1")
        assert sum(in_watch.values()) == 250_000
        # The start-up reconcile streams a whole watch in one query on its own connection
        # (its plan is checked below).
        assert sum(1 for _ in daemon.known_files("w2")) == 250_000
    point_queries = {"oldest": w_oldest, "failures": w_failures, "claim": w_claim, "claim_small": w_small}
    assert all(steps <= POINT_QUERY_STEPS for steps in point_queries.values()), point_queries
    assert w_counts <= COUNT_STEPS_PER_ROW * 1_000_000, w_counts
    assert w_watch <= COUNT_STEPS_PER_ROW * 250_000, w_watch
    conn = sqlite3.connect(journal_path)
    try:
        for name in ("CLAIM_CANDIDATE", "CLAIM_CANDIDATE_MAX_SIZE", "COUNTS_BY_STATE", "OLDEST_PENDING",
                     "RECENT_FAILURES", "KNOWN_FILES"):
            assert_index_driven(conn, name)
    finally:
        conn.close()
