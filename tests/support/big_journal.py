"""A journal of a million rows, built once per test session and copied for each test that needs one.

Filling it takes seconds (the rows are generated inside SQLite); copying the file takes a
fraction of that, so the scale tests of the journal, `syncd status` and retention share one.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from syncd.journal import Journal

#: Files in the journal, and one history line for every HISTORY_EVERY-th of them.
ROWS = 1_000_000
HISTORY_EVERY = 5


def fill_million_rows(path: Path) -> None:
    """1,000,000 files in 4 watches: 90% uploaded, 5% pending, 3% failed, 1% quarantined, 1% skipped.

    File i was detected, and if uploaded, uploaded, at t = 1000 + i; every fifth file has
    its `uploaded` (or `arrived`) history line at that time. One INSERT ... SELECT over a
    recursive CTE per table inside one transaction: the rows are generated inside SQLite,
    twice as fast as executemany from Python.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # A throwaway bulk load: no WAL (it would write the 155 MB twice), no fsync.
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -65536")
        conn.execute("BEGIN")
        conn.execute(
            f"""
            WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS - 1})
            INSERT INTO files (watch, relpath, size, mtime_ns, inode, state,
                               next_attempt_at, detected_at, ready_at, updated_at, uploaded_at)
            SELECT 'w' || (i / 250000), printf('d%04d/f%07d.bin', i / 1000, i), (i * 7919) % 100000, i, i,
                   CASE WHEN i % 100 < 90 THEN 'uploaded' WHEN i % 100 < 95 THEN 'pending'
                        WHEN i % 100 < 98 THEN 'failed' WHEN i % 100 = 98 THEN 'quarantined'
                        ELSE 'skipped' END,
                   1000.0 + i, 1000.0 + i, 1000.0 + i, 1000.0 + i,
                   CASE WHEN i % 100 < 90 THEN 1000.0 + i END
            FROM n
            """
        )
        conn.execute(
            f"""
            INSERT INTO history (ts, file_id, watch, relpath, event, from_state, to_state, attempt)
            SELECT detected_at, id, watch, relpath,
                   CASE WHEN state = 'uploaded' THEN 'uploaded' ELSE 'arrived' END,
                   CASE WHEN state = 'uploaded' THEN 'uploading' END,
                   CASE WHEN state = 'uploaded' THEN 'uploaded' ELSE 'pending' END, 1
            FROM files WHERE id % {HISTORY_EVERY} = 0
            """
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def build_template(path: Path) -> Path:
    """A migrated journal at `path`, filled with `fill_million_rows`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Journal.open(path, role="daemon").close()
    fill_million_rows(path)
    return path


def copy_journal(template: Path, dest: Path) -> Path:
    """A private copy of the template at `dest` (parents created)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, dest)
    return dest


def remove_journal(path: Path) -> None:
    """Delete a journal and its -wal/-shm files (hundreds of MB: never left behind)."""
    for leftover in path.parent.glob(path.name + "*"):
        leftover.unlink()
