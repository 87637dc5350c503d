"""Keeping the journal bounded: history older than the retention is deleted, and so are the
rows of files uploaded longer ago whose source is gone (deleted or archived after upload,
or removed by someone).

Both walk an index in batches, each batch its own short transaction, so a journal of
millions of rows is pruned without holding the write lock for more than a moment and
without loading it into memory. Whether a source is gone is the caller's question (the
journal knows no file system): `prune_uploaded` asks it for each candidate between
batches, outside any transaction, and deletes a row only if it is still uploaded, still
older than the cut-off and has no after-upload action waiting.
"""

from __future__ import annotations

from collections.abc import Callable

from syncd.journal.backend import rerun_on_conflict
from syncd.journal.core import JournalCore
from syncd.journal.relpaths import loaded_relpath

#: Rows deleted (or candidates examined) per transaction.
PRUNE_BATCH = 2000

# Candidates in (uploaded_at, id) order from the partial index, resumed after the last one seen.
UPLOADED_BEFORE = (
    "SELECT id, watch, relpath, uploaded_at FROM files INDEXED BY files_uploaded_age"
    " WHERE state = 'uploaded' AND uploaded_at < :before AND (uploaded_at, id) > (:after_ts, :after_id)"
    " ORDER BY uploaded_at, id LIMIT :limit"
)
OLD_HISTORY = "SELECT id FROM history INDEXED BY history_ts WHERE ts < :before LIMIT :limit"

#: source_gone(watch, relpath): True only when the file is certainly no longer in its watch.
SourceGone = Callable[[str, str], bool]


class Retention(JournalCore):
    """Part of `Journal`: history retention and forgetting uploaded files whose source is gone."""

    def prune_history(self, before: float, *, batch: int = PRUNE_BATCH) -> int:
        """Delete history entries older than `before`, `batch` per transaction, and (PostgreSQL) the
        registrations of hosts stopped before then. Returns how many history entries."""
        total = 0
        while True:
            deleted = self._prune_history_batch(float(before), batch)
            total += deleted
            if deleted < batch:
                break
        if self.multi_host:
            self._prune_stopped_hosts(float(before))
        return total

    @rerun_on_conflict
    def _prune_stopped_hosts(self, before: float) -> int:
        with self._write(durable=False) as conn:  # their watches go with them (ON DELETE CASCADE)
            return conn.execute("DELETE FROM hosts WHERE state = 'stopped' AND heartbeat_at < ?", (before,)).rowcount

    @rerun_on_conflict
    def _prune_history_batch(self, before: float, batch: int) -> int:
        with self._write(durable=False) as conn:
            return conn.execute(f"DELETE FROM history WHERE id IN ({OLD_HISTORY})",
                                {"before": before, "limit": batch}).rowcount

    def prune_uploaded(self, before: float, source_gone: SourceGone, *, batch: int = PRUNE_BATCH) -> int:
        """Forget rows uploaded before `before` whose source is gone (`source_gone` says so).

        A forgotten file dropped again under its name is uploaded again (a new version,
        by the conflict policy), as a file never seen: that is the price of a bounded
        journal, paid only after the retention. Returns how many rows were deleted.
        """
        after_ts, after_id = float("-inf"), 0
        total = 0
        while True:
            with self._read() as conn:
                page = conn.execute(UPLOADED_BEFORE, {"before": float(before), "after_ts": after_ts,
                                                      "after_id": after_id, "limit": batch}).fetchall()
            if not page:
                return total
            gone = [row_id for row_id, watch, relpath, _ in page if source_gone(watch, loaded_relpath(relpath))]
            after_id, after_ts = page[-1][0], page[-1][3]
            if gone:
                total += self._forget_uploaded(gone, float(before))

    @rerun_on_conflict
    def _forget_uploaded(self, ids: list[int], before: float) -> int:
        with self._write(durable=False) as conn:
            # Checked again in the write: a file observed, claimed or given an action meanwhile stays.
            return conn.execute(
                f"DELETE FROM files WHERE id IN ({', '.join('?' * len(ids))}) AND state = 'uploaded'"
                " AND uploaded_at < ? AND NOT EXISTS (SELECT 1 FROM post_actions p WHERE p.file_id = files.id)",
                (*ids, before),
            ).rowcount
