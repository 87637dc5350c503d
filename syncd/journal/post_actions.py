"""After-upload actions as journaled steps (invariant 8): what happens to a source once Box
holds it (delete it, or move it to an archive) is written with the upload's outcome and
removed only once it is done, so a crash, a read-only drop folder or a full archive disk
delays it, never loses it.

`plan_post_action` runs inside `ClaimedFile.mark_uploaded`'s transaction. The applier
(`syncd.pipeline.post_actions`) reads the due actions, records where a move puts the
file before it puts it there (`post_action_archived_as`), and ends each with
`post_action_done` (the source is gone), `post_action_given_up` (the source stays) or
`post_action_failed` (tried again at the time given). Each is addressed by the action's
own id: a new upload of the same file replaces its action with a new id, so the
outcome of an old one can never be recorded against the new one.

On a journal several hosts share, an action belongs to the host whose `mark_uploaded`
committed (`owner_host`): only that host is handed it while it is alive; once its heartbeat
is older than a lease, or it stopped, any host is (docs/MULTI_HOST.md section 6). The
applier checks the bytes on disk against Box's SHA-1 first either way, and a move's name
is journaled before the copy, so a second host finishes an action, never repeats it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from syncd.journal.backend import Tx, rerun_on_conflict
from syncd.journal.core import JournalCore
from syncd.journal.records import (
    FileRecord,
    HistoryEvent,
    PlannedPostAction,
    PostAction,
    PostActionKind,
)
from syncd.journal.relpaths import loaded_relpath
from syncd.journal.rows import append_history, fetch_file, scrubbed
from syncd.journal.validation import check_limit, from_i64, to_i64

_COLUMNS = (
    "p.id", "p.file_id", "f.watch", "f.relpath", "p.action", "p.sha1", "p.size", "p.mtime_ns", "p.inode",
    "p.archive_path", "p.archived_as", "p.attempts", "p.next_attempt_at", "p.last_error", "p.last_error_code",
    "p.created_at",
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM post_actions p JOIN files f ON f.id = p.file_id"


def plan_post_action(conn: Tx, row: FileRecord, planned: PlannedPostAction | None, sha1: str,
                     now: float, owner_host: str) -> None:
    """Journal `planned` for the content of `row` (in the caller's transaction), replacing any
    action left for earlier content of the file; with None, only drop such a leftover.
    `owner_host` (the committing host) carries it out while it is alive."""
    conn.execute("DELETE FROM post_actions WHERE file_id = ?", (row.id,))
    if planned is None:
        return
    if (planned.action is PostActionKind.MOVE) != (planned.archive_path is not None):
        raise ValueError("an archive path goes with a move, and only with a move")
    conn.execute(
        "INSERT INTO post_actions (file_id, action, sha1, size, mtime_ns, inode, archive_path, attempts,"
        " next_attempt_at, created_at, updated_at, owner_host) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)",
        (row.id, planned.action.value, sha1, row.size, row.mtime_ns, to_i64(row.inode),
         _path_bytes(planned.archive_path), now, now, now, owner_host),
    )


def _path_bytes(path: Path | None) -> bytes | None:
    # File-system bytes: an archive path may hold names that are not UTF-8 (SQLite TEXT cannot).
    return None if path is None else os.fsencode(path)


def _path(raw: bytes | None) -> Path | None:
    return None if raw is None else Path(os.fsdecode(raw))


def _post_action(row: tuple[Any, ...]) -> PostAction:
    (id_, file_id, watch, relpath, action, sha1, size, mtime_ns, inode, archive_path, archived_as, attempts,
     next_attempt_at, last_error, last_error_code, created_at) = row
    # loaded_relpath: a name that is not UTF-8 is stored as bytes (always, on PostgreSQL).
    return PostAction(id_, file_id, watch, loaded_relpath(relpath), PostActionKind(action), sha1, size, mtime_ns,
                      from_i64(inode),
                      _path(archive_path), _path(archived_as), attempts, float(next_attempt_at), last_error,
                      last_error_code, float(created_at))


#: An action this host may carry out on a shared journal: its own, or one whose host is gone.
_OURS_OR_ORPHANED = (
    "(p.owner_host IS NULL OR p.owner_host = ? OR NOT EXISTS (SELECT 1 FROM hosts h WHERE h.host_id = p.owner_host"
    " AND h.state <> 'stopped' AND h.heartbeat_at > {db_now} - ?))"
)


class PostActions(JournalCore):
    """Part of `Journal`: the after-upload actions still to be carried out."""

    def due_post_actions(self, now: float | None, *, watch: str | None = None, after_id: int = 0,
                         limit: int = 100) -> list[PostAction]:
        """Actions due at `now` (every one when `now` is None: at start-up or a backstop scan),
        of one watch or all, by id from `after_id` (a pass walks them page by page). On a journal
        several hosts share, only this host's and those of hosts gone (stopped, or silent for a lease)."""
        check_limit(limit)
        where, params = ["p.id > ?"], [after_id]
        if self.multi_host:
            where.append(_OURS_OR_ORPHANED)
            params += [self.host_id, self.lease]
        if now is not None:
            where.append("p.next_attempt_at <= ?")
            params.append(float(now))
        if watch is not None:
            where.append("f.watch = ?")
            params.append(watch)
        with self._read() as conn:
            rows = conn.execute(f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY p.id LIMIT ?", (*params, limit))
            return [_post_action(r) for r in rows]

    def next_post_action_time(self) -> float | None:
        """When the earliest action this host may carry out is due (None when none is left)."""
        with self._read() as conn:
            if self.multi_host:
                found = conn.execute(f"SELECT min(p.next_attempt_at) FROM post_actions p WHERE {_OURS_OR_ORPHANED}",
                                     (self.host_id, self.lease)).fetchone()
            else:
                found = conn.execute("SELECT min(next_attempt_at) FROM post_actions").fetchone()
        return None if found is None or found[0] is None else float(found[0])

    def post_actions_pending(self, limit: int = 10) -> tuple[int, list[PostAction]]:
        """How many actions wait, and the `limit` that have waited longest (for `syncd status`)."""
        check_limit(limit)
        with self._read() as conn:
            count = int(conn.execute("SELECT count(*) FROM post_actions").fetchone()[0])
            oldest = [_post_action(r) for r in conn.execute(f"{_SELECT} ORDER BY p.created_at, p.id LIMIT ?",
                                                            (limit,))]
        return count, oldest

    @rerun_on_conflict
    def post_action_archived_as(self, action: PostAction, path: Path, *, now: float | None = None) -> bool:
        """Record the archive name a move is about to fill, before the copy lands there: after a
        crash, a copy found at that name with the uploaded SHA-1 is this action's. False when the
        action is no longer the current one (the file was uploaded again meanwhile)."""
        with self._write(durable=True) as conn:
            return conn.execute(
                "UPDATE post_actions SET archived_as = ?, updated_at = ? WHERE id = ?",
                (_path_bytes(path), self._now(now), action.id),
            ).rowcount > 0

    @rerun_on_conflict
    def post_action_failed(self, action: PostAction, error: str, code: str | None, next_attempt_at: float, *,
                           now: float | None = None) -> bool:
        """The action could not be carried out now (read-only drop folder, a writer has the file
        open, ...): it is tried again at `next_attempt_at`, and `syncd status` shows why."""
        with self._write(durable=False) as conn:
            return conn.execute(
                "UPDATE post_actions SET attempts = attempts + 1, last_error = ?, last_error_code = ?,"
                " next_attempt_at = ?, updated_at = ? WHERE id = ?",
                (scrubbed(error), code, float(next_attempt_at), self._now(now), action.id),
            ).rowcount > 0

    def post_action_done(self, action: PostAction, detail: str, *, now: float | None = None) -> bool:
        """The source was deleted or archived: the action ends, with a history line."""
        event = HistoryEvent.SOURCE_DELETED if action.action is PostActionKind.DELETE else HistoryEvent.SOURCE_ARCHIVED
        return self._end(action, event, detail, now)

    def post_action_given_up(self, action: PostAction, reason: str, *, now: float | None = None) -> bool:
        """The source is not touched, for good (it changed since the upload, Box's SHA-1 differs
        from its bytes): the action ends, with a history line saying why."""
        return self._end(action, HistoryEvent.SOURCE_KEPT, reason, now)

    @rerun_on_conflict
    def _end(self, action: PostAction, event: HistoryEvent, detail: str, now: float | None) -> bool:
        with self._write(durable=True) as conn:
            if conn.execute("DELETE FROM post_actions WHERE id = ?", (action.id,)).rowcount == 0:
                return False
            row = fetch_file(conn, "id = ?", (action.file_id,))
            if row is not None:
                append_history(conn, self._now(now), row, event, row.state, row.state, detail)
            return True
