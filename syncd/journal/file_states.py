"""The file state machine of the journal: files observed on disk, claimed by a
worker, and their outcomes (uploaded, retry, failed, quarantined, skipped),
with saved upload sessions; operator retries; recovery after a crash.

Every method is one transaction; those written on behalf of a worker or an
operator are durable (see `syncd.journal.core`). What a worker writes for the
file it claimed (hash, session, parts, outcome) goes through the handle
`claimed(record)` returns (`syncd.journal.claimed_file`), which checks the claim.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable
from typing import Any

from syncd.journal import queries
from syncd.journal.claimed_file import ClaimedFile
from syncd.journal.core import JournalCore
from syncd.journal.errors import JournalError
from syncd.journal.records import (
    FileRecord,
    FileState,
    HistoryEvent,
    Observation,
    ObservationKind,
    PartRecord,
    SessionRecord,
)
from syncd.journal.rows import (
    append_history,
    delete_row,
    describe_change,
    fetch_file,
    fetch_files,
    file_record,
    require_file,
    saved_session,
    transition,
)
from syncd.journal.validation import check_path, check_stat, to_i64


class FileStates(JournalCore):
    """Part of `Journal`: the state of each file, from observed to uploaded or parked."""

    # ------------------------------------------------------------- observing

    def observe(
        self, watch: str, relpath: str, size: int, mtime_ns: int, inode: int, now: float
    ) -> Observation:
        """Record a stable file seen on disk; returns what happened.

        New file: a pending row. Known file whose size, mtime_ns or inode changed:
        pending again (the Box file id is kept, so it goes up as a new version; any
        saved upload session is dropped; an upload in progress is invalidated).
        Unchanged: nothing is written.
        """
        check_stat(watch, relpath, size, mtime_ns, inode)
        with self._write(durable=False) as conn:
            return self._observe(conn, watch, relpath, size, mtime_ns, inode, float(now))

    def observe_many(
        self, watch: str, files: Iterable[tuple[str, int, int, int]], now: float
    ) -> list[Observation]:
        """Observe many (relpath, size, mtime_ns, inode) in one transaction.

        For a start-up scan that finds thousands of new files: one commit instead
        of one per file. Returns the observations of new and changed files only
        (unchanged ones are not listed). Each new file costs roughly 50-150 us
        (a row, its indexes and a history line), and the journal is locked for the
        whole call, so pass batches of a few hundred, not 100,000 at once.
        """
        entries = list(files)
        for relpath, size, mtime_ns, inode in entries:
            check_stat(watch, relpath, size, mtime_ns, inode)
        with self._write(durable=False) as conn:
            results = (self._observe(conn, watch, *entry, float(now)) for entry in entries)
            return [obs for obs in results if obs.kind is not ObservationKind.UNCHANGED]

    def _observe(
        self, conn: sqlite3.Connection, watch: str, relpath: str, size: int, mtime_ns: int, inode: int, now: float
    ) -> Observation:
        row = fetch_file(conn, "watch = ? AND relpath = ?", (watch, relpath))
        if row is None:
            created = file_record(
                conn.execute(
                    "INSERT INTO files (watch, relpath, size, mtime_ns, inode, state, attempts, next_attempt_at,"
                    " detected_at, ready_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)"
                    f" RETURNING {queries.FILE_SELECT}",
                    (watch, relpath, size, mtime_ns, to_i64(inode), now, now, now, now),
                ).fetchone()
            )
            append_history(conn, now, created, HistoryEvent.ARRIVED, None, FileState.PENDING, f"size {size}")
            return Observation(ObservationKind.NEW, created, None)
        if (row.size, row.mtime_ns, row.inode) == (size, mtime_ns, inode):
            return Observation(ObservationKind.UNCHANGED, row, row.state)
        changes = describe_change(row, size, mtime_ns, inode)
        if row.state is FileState.UPLOADING:
            changes += "; changed during upload, that upload is discarded"
        conn.execute("DELETE FROM upload_sessions WHERE file_id = ?", (row.id,))
        updated = transition(
            conn,
            row,
            FileState.PENDING,
            HistoryEvent.CHANGED,
            changes,
            now,
            {
                "size": size,
                "mtime_ns": mtime_ns,
                "inode": to_i64(inode),
                "sha1": None,
                "attempts": 0,
                "next_attempt_at": now,
                "ready_at": now,
                "last_error": None,
                "last_error_code": None,
                # Invalidate a worker's claim: its upload is of the old content.
                "claim_seq": row.claim_seq + 1 if row.state is FileState.UPLOADING else row.claim_seq,
            },
        )
        return Observation(ObservationKind.CHANGED, updated, row.state)

    def remove(self, watch: str, relpath: str, reason: str, *, now: float | None = None) -> FileRecord | None:
        """The file was deleted locally: forget its row (cancelling any pending work).

        Uploaded rows are forgotten too, so a new file later dropped under the same
        name is uploaded again (as a new version, by the conflict policy); the
        history keeps the story. Returns the removed row, or None if unknown.
        """
        check_path(watch, relpath)
        with self._write(durable=False) as conn:
            return delete_row(conn, watch, relpath, HistoryEvent.REMOVED, reason, self._now(now))

    def forget(self, watch: str, relpath: str, *, now: float | None = None) -> bool:
        """Operator command: drop a file's row whatever its state. True if there was one."""
        check_path(watch, relpath)
        with self._write(durable=True) as conn:
            removed = delete_row(conn, watch, relpath, HistoryEvent.FORGOTTEN, "forgotten by operator", self._now(now))
            return removed is not None

    # --------------------------------------------------------------- working

    def claim_next(self, now: float, *, max_size: int | None = None) -> FileRecord | None:
        """Atomically take the next due pending file and mark it uploading (attempts + 1).

        Without `max_size` (general lane): oldest next_attempt_at first, then
        smallest, so nothing starves. With `max_size` (small-files lane): the
        smallest due file up to that many bytes, so small files keep flowing while
        large ones occupy the other workers.
        """
        if max_size is not None and max_size < 0:
            raise ValueError(f"max_size must be >= 0, not {max_size}")
        sql = queries.CLAIM_CANDIDATE if max_size is None else queries.CLAIM_CANDIDATE_MAX_SIZE
        params = {"now": float(now), "max_size": max_size}
        with self._mutex:
            # Look before taking the write lock: idle workers poll often.
            with self._read() as conn:
                if conn.execute(sql, params).fetchone() is None:
                    return None
            with self._write(durable=True) as conn:
                found = conn.execute(sql, params).fetchone()
                if found is None:
                    return None
                row = require_file(conn, found[0])
                return transition(
                    conn,
                    row,
                    FileState.UPLOADING,
                    HistoryEvent.CLAIMED,
                    None,
                    float(now),
                    {"attempts": row.attempts + 1, "claim_seq": row.claim_seq + 1},
                    attempt=row.attempts + 1,
                )

    def next_attempt_time(self, *, max_size: int | None = None, excluding: Collection[str] = ()) -> float | None:
        """When the earliest pending file becomes due (None if nothing is pending), leaving out the
        watches in `excluding` (those Box refuses: their files wait for it, not for their time)."""
        with self._read() as conn:
            if excluding:
                found = conn.execute(
                    f"{queries.NEXT_ATTEMPT} AND watch NOT IN ({', '.join('?' * len(excluding))})", tuple(excluding)
                ).fetchone()
            elif max_size is None:
                found = conn.execute(queries.NEXT_ATTEMPT).fetchone()
            else:
                found = conn.execute(queries.NEXT_ATTEMPT_MAX_SIZE, {"max_size": max_size}).fetchone()
        return None if found is None or found[0] is None else float(found[0])

    def defer_pending(self, watch: str, until: float) -> int:
        """Make the pending files of `watch` due no earlier than `until` (Box refuses the watch's
        folder until then at least): one statement, no history line, attempts untouched. Returns
        how many were pushed back."""
        if not watch:
            raise ValueError("watch must be a non-empty string")
        with self._write(durable=False) as conn:
            return conn.execute(
                "UPDATE files SET next_attempt_at = ? WHERE watch = ? AND state = 'pending' AND next_attempt_at < ?",
                (float(until), watch, float(until)),
            ).rowcount

    def claimed(self, record: FileRecord) -> ClaimedFile:
        """The journal writes of the worker holding `record`'s claim (from `claim_next` or
        `recover_interrupted`): hash, session, parts and outcome, each checked against the
        claim (StaleClaim if the file changed or was claimed again since)."""
        return ClaimedFile(self, record)

    def load_session(self, file_id: int) -> tuple[SessionRecord, list[PartRecord]] | None:
        """The saved session of a file and its parts in offset order, or None."""
        with self._read() as conn:
            return saved_session(conn, file_id)

    def recover_interrupted(self, *, now: float | None = None) -> list[FileRecord]:
        """At daemon start: the rows a crash left `uploading`, for reconciliation with Box.

        They stay `uploading` (owned by the reconciler, with their saved sessions):
        putting them back to pending would let a worker upload again a file that
        Box may already hold. The reconciler then calls mark_uploaded (found in Box
        with the same SHA-1), resumes the saved session, or schedule_retry. Each
        gets an `interrupted` history entry. Daemon role only.
        """
        if self.role != "daemon":
            raise JournalError("only the daemon may recover interrupted uploads", path=self.path)
        with self._write(durable=True) as conn:
            stamp = self._now(now)
            return [
                transition(
                    conn, row, FileState.UPLOADING, HistoryEvent.INTERRUPTED,
                    "daemon stopped during upload; to be reconciled with Box", stamp, {},
                )
                for row in fetch_files(conn, "state = 'uploading' ORDER BY id", ())
            ]

    def retry(
        self,
        watch: str | None = None,
        relpath: str | None = None,
        failed_only: bool = True,
        *,
        now: float | None = None,
    ) -> int:
        """Operator command: make parked files pending again, due now, attempts reset.

        Takes failed rows (and quarantined and skipped ones if not `failed_only`),
        all of them, those of a watch, or one file. Returns how many.
        """
        if relpath is not None and watch is None:
            raise ValueError("retry of a relpath needs its watch")
        states = ("failed",) if failed_only else ("failed", "quarantined", "skipped")
        where = f"state IN ({', '.join('?' * len(states))})"
        params: list[Any] = list(states)
        if watch is not None:
            where += " AND watch = ?"
            params.append(watch)
        if relpath is not None:
            where += " AND relpath = ?"
            params.append(relpath)
        with self._write(durable=True) as conn:
            stamp = self._now(now)
            rows = fetch_files(conn, where, tuple(params))
            for row in rows:
                transition(
                    conn, row, FileState.PENDING, HistoryEvent.RETRIED, "retry requested", stamp,
                    {"attempts": 0, "next_attempt_at": stamp},
                )
            return len(rows)
