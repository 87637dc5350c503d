"""Count the work SQLite does for a call: virtual-machine steps, not seconds.

A query served by its index touches a few rows whatever the table's size; one degraded
into scanning (or sorting) a million rows runs millions of VM instructions. The count is
the same on an idle laptop and a loaded CI box, so tests can bound it where a timer could
only guess.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

STEPS_PER_TICK = 1000  # the progress handler runs every this many VM instructions

# Budgets for queries on the million-row journal (tests.support.big_journal). Point queries
# read a few index entries (they measure under 1,000 steps); counts walk a covering index,
# about 7 steps an entry (7,000,000 for all rows, 2,000,000 for a watch's 250,000). A plan
# that scans the table, or sorts, runs several times that.
POINT_QUERY_STEPS = 10_000
COUNT_STEPS_PER_ROW = 10


def sqlite_work(conn: sqlite3.Connection, call: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, int]:
    """Run ``call``; return its result and the VM steps (rounded down to thousands) ``conn`` ran for it."""
    ticks = 0

    def tick() -> int:
        nonlocal ticks
        ticks += 1
        return 0  # 0: carry on

    conn.set_progress_handler(tick, STEPS_PER_TICK)
    try:
        result = call(*args, **kwargs)
    finally:
        conn.set_progress_handler(None, STEPS_PER_TICK)
    return result, ticks * STEPS_PER_TICK


def journal_connection(journal: Any) -> sqlite3.Connection:
    """The SQLite connection behind an open `syncd.journal.Journal` (its backend's one connection)."""
    conn = journal._backend._conn
    assert isinstance(conn, sqlite3.Connection), type(conn)
    return conn
