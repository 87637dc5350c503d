"""The journal across real processes: the single-writer lock and crash safety."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from syncd.journal import FileState, Journal, JournalLocked

REPO_ROOT = Path(__file__).resolve().parents[2]


def start_child(mode: str, journal_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.journal.journal_child", mode, str(journal_path)],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(child: subprocess.Popen[str], expected: str) -> None:
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    if line != expected:
        child.kill()
        _, err = child.communicate(timeout=10)
        raise AssertionError(f"child printed {line!r}, expected {expected!r}; stderr:\n{err}")


def kill_and_reap(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=10)


def test_second_daemon_process_is_refused_with_the_holders_pid(journal_path: Path) -> None:
    with Journal.open(journal_path, role="daemon"):
        child = start_child("try", journal_path)
        out, err = child.communicate(timeout=30)
        assert child.returncode == 3, err
        assert out.strip() == f"locked-by {os.getpid()}"
    # Once the holder is gone, the next daemon gets in.
    child = start_child("try", journal_path)
    out, err = child.communicate(timeout=30)
    assert (child.returncode, out.strip()) == (0, "opened"), err


def test_lock_of_a_killed_daemon_is_free_and_does_not_lie(journal_path: Path) -> None:
    holder = start_child("hold", journal_path)
    try:
        wait_for_line(holder, "locked")
        with pytest.raises(JournalLocked) as refused:
            Journal.open(journal_path, role="daemon")
        assert refused.value.pid == holder.pid
        assert str(holder.pid) in str(refused.value)
        with Journal.open(journal_path, role="reader") as reader:
            assert reader.daemon_pid() == holder.pid
            kill_and_reap(holder)
            # The lock file still names the dead process, but the lock itself is gone.
            assert str(holder.pid) in (journal_path.parent / "journal.db.lock").read_text()
            assert reader.daemon_pid() is None
    finally:
        if holder.poll() is None:
            kill_and_reap(holder)
    with Journal.open(journal_path, role="daemon") as daemon:
        assert daemon.daemon_pid() == os.getpid()


def test_reader_reports_no_daemon_when_there_never_was_one(sqlite_journal: Journal, journal_path: Path) -> None:
    journal = sqlite_journal
    journal.close()
    (journal_path.parent / "journal.db.lock").unlink()
    with Journal.open(journal_path, role="reader") as reader:
        assert reader.daemon_pid() is None
    assert not (journal_path.parent / "journal.db.lock").exists()


def test_daemon_killed_mid_write_leaves_a_consistent_journal(journal_path: Path) -> None:
    rng = random.Random(4)
    for _round in range(4):
        child = start_child("churn", journal_path)
        wait_for_line(child, "ready")
        for n in range(20):  # progress, not a timer: the machine may be busy
            wait_for_line(child, f"tick {n}")
        # `syncd status` beside a busy daemon: WAL readers never wait for the writer.
        with Journal.open(journal_path, role="reader") as status:
            assert status.daemon_pid() == child.pid
            assert sum(status.counts_by_state().values()) > 0
            assert status.history(limit=5) and isinstance(status.in_flight(), list)
        time.sleep(rng.uniform(0.0, 0.05))
        kill_and_reap(child)
        # Reopening runs quick_check and takes the lock the dead process held.
        with Journal.open(journal_path, role="daemon") as journal:
            interrupted = journal.recover_interrupted()
            assert all(row.state is FileState.UPLOADING for row in interrupted)
        assert_rows_match_history(journal_path)
    # Each round ran at least 20 loops, 14 of which end in an upload and 2 in a failure.
    conn = sqlite3.connect(journal_path)
    events = dict(conn.execute("SELECT event, count(*) FROM history GROUP BY event").fetchall())
    conn.close()
    assert events["uploaded"] >= 4 * 14 and events["failed"] >= 4 * 2, events


def assert_rows_match_history(journal_path: Path) -> None:
    """Each state change and its history line were committed together, or neither."""
    conn = sqlite3.connect(journal_path)
    try:
        rows = dict(conn.execute("SELECT id, state FROM files"))
        last_to_state = dict(
            conn.execute(
                "SELECT file_id, to_state FROM history h WHERE id = (SELECT max(id) FROM history WHERE file_id = h.file_id)"
            )
        )
        live = {file_id: state for file_id, state in last_to_state.items() if state is not None}
        assert live == rows
        orphans = conn.execute(
            "SELECT count(*) FROM upload_sessions s LEFT JOIN files f ON f.id = s.file_id WHERE f.id IS NULL"
        ).fetchone()[0]
        assert orphans == 0
        uploaded_without_box_id = conn.execute(
            "SELECT count(*) FROM files WHERE state = 'uploaded' AND (box_file_id IS NULL OR sha1 IS NULL)"
        ).fetchone()[0]
        assert uploaded_without_box_id == 0
    finally:
        conn.close()
