"""Rows in and out of the journal's tables, and the one function that changes a state.

All functions here run on a connection inside the caller's transaction. A read whose row
is then changed locks it (`lock=True`: `FOR UPDATE` on PostgreSQL, where transactions of
several hosts interleave; nothing on SQLite, whose writers are serialised).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from syncd.journal import queries
from syncd.journal.backend import Tx
from syncd.journal.box_names import NAME_COLLISION, owned_box_path
from syncd.journal.errors import InvalidTransition, StaleClaim, UnknownFile
from syncd.logs import scrub_text
from syncd.journal.records import FileRecord, FileState, HistoryEntry, HistoryEvent, PartRecord, SessionRecord
from syncd.journal.relpaths import loaded_relpath
from syncd.journal.validation import from_i64

_P = FileState
# The state machine. A removal (row deleted, history kept) is allowed from any state.
ALLOWED_TRANSITIONS: Mapping[FileState, frozenset[FileState]] = {
    _P.PENDING: frozenset({_P.PENDING, _P.UPLOADING, _P.FAILED, _P.QUARANTINED, _P.SKIPPED}),
    _P.UPLOADING: frozenset({_P.UPLOADING, _P.PENDING, _P.UPLOADED, _P.FAILED, _P.QUARANTINED, _P.SKIPPED}),
    _P.UPLOADED: frozenset({_P.PENDING}),
    _P.FAILED: frozenset({_P.PENDING}),
    _P.QUARANTINED: frozenset({_P.PENDING}),
    _P.SKIPPED: frozenset({_P.PENDING}),
}

# Columns a transition may set (they are spliced into SQL, so never from callers).
_SETTABLE_COLUMNS = frozenset(queries.FILE_COLUMNS) - {"id", "watch", "relpath", "state", "updated_at"}

_FLOAT_COLUMNS = ("next_attempt_at", "detected_at", "ready_at", "updated_at", "uploaded_at", "lease_expires_at")


def file_record(row: tuple[Any, ...]) -> FileRecord:
    """Build a FileRecord from a row selected with queries.FILE_SELECT."""
    values = dict(zip(queries.FILE_COLUMNS, row, strict=True))
    values["state"] = FileState(values["state"])
    values["relpath"] = loaded_relpath(values["relpath"])
    values["inode"] = from_i64(values["inode"])
    if values["device"] is not None:
        values["device"] = from_i64(values["device"])
    # RETURNING hands back bound values before column affinity applies (100.0 -> 100).
    for key in _FLOAT_COLUMNS:
        if values[key] is not None:
            values[key] = float(values[key])
    return FileRecord(**values)


def history_entry(row: tuple[Any, ...]) -> HistoryEntry:
    """Build a HistoryEntry from a row selected with queries.HISTORY_SELECT."""
    values = dict(zip(queries.HISTORY_COLUMNS, row, strict=True))
    values["event"] = HistoryEvent(values["event"])
    values["relpath"] = loaded_relpath(values["relpath"])
    for key in ("from_state", "to_state"):
        values[key] = None if values[key] is None else FileState(values[key])
    return HistoryEntry(**values)


def _locking(lock: bool) -> str:
    return " {for_update}" if lock else ""


def fetch_file(conn: Tx, where: str, params: tuple[Any, ...], *, lock: bool = False) -> FileRecord | None:
    """The one file row matching `where`, or None (`lock`: locked until the transaction ends)."""
    found = conn.execute(f"SELECT {queries.FILE_SELECT} FROM files WHERE {where}{_locking(lock)}", params).fetchone()
    return None if found is None else file_record(found)


def fetch_path(conn: Tx, watch: str, relpath: str, *, lock: bool = False) -> FileRecord | None:
    """The row of `relpath` in `watch`, or None (the path converted to its stored form)."""
    return fetch_file(conn, "watch = ? AND relpath = ?", (watch, conn.dialect.relpath_in(relpath)), lock=lock)


def fetch_files(conn: Tx, where: str, params: tuple[Any, ...], *, lock: bool = False) -> list[FileRecord]:
    """All file rows matching `where` (which may end with ORDER BY)."""
    return [file_record(r) for r in
            conn.execute(f"SELECT {queries.FILE_SELECT} FROM files WHERE {where}{_locking(lock)}", params)]


def require_file(conn: Tx, file_id: int, *, lock: bool = False) -> FileRecord:
    """The row with this id, or raise UnknownFile."""
    row = fetch_file(conn, "id = ?", (file_id,), lock=lock)
    if row is None:
        raise UnknownFile(file_id)
    return row


def claimed_row(conn: Tx, file_id: int, claim_seq: int, host_id: str) -> FileRecord:
    """The row with this id (locked), if `claim_seq` is still its current claim and `host_id` holds
    its lease (the fencing rule, docs/MULTI_HOST.md section 5.4); else StaleClaim. A lapsed lease
    nobody took over is still the holder's: a takeover bumps `claim_seq` under the same lock."""
    row = require_file(conn, file_id, lock=True)
    if claim_seq != row.claim_seq or row.lease_owner != host_id:
        raise StaleClaim(file_id, claim_seq, row.claim_seq, holder=row.lease_owner, host_id=host_id)
    return row


def fetch_session(conn: Tx, file_id: int) -> SessionRecord | None:
    """The saved upload session of a file, or None."""
    found = conn.execute(
        "SELECT session_id, part_size, total_parts, file_size, expires_at, sha1, created_at, endpoint"
        " FROM upload_sessions WHERE file_id = ?",
        (file_id,),
    ).fetchone()
    return None if found is None else SessionRecord(*found)


def saved_session(conn: Tx, file_id: int) -> tuple[SessionRecord, list[PartRecord]] | None:
    """The saved upload session of a file and its parts in offset order, or None."""
    session = fetch_session(conn, file_id)
    if session is None:
        return None
    parts = [
        PartRecord(part_id=r[0], offset=r[1], size=r[2], sha1=r[3])
        for r in conn.execute(
            "SELECT part_id, part_offset, size, sha1 FROM session_parts WHERE file_id = ? ORDER BY part_offset",
            (file_id,),
        )
    ]
    return session, parts


def transition(
    conn: Tx,
    row: FileRecord,
    to_state: FileState,
    event: HistoryEvent,
    detail: str | None,
    now: float,
    columns: Mapping[str, Any],
    *,
    attempt: int | None = None,
) -> FileRecord:
    """The one way an existing row changes state: validate, update, append history.

    Must run inside the caller's write transaction, so the row and its history line
    commit together. (A row is born in Journal._observe and dies in delete_row,
    each also with its history line in the same transaction.)
    """
    if to_state not in ALLOWED_TRANSITIONS[row.state]:
        raise InvalidTransition(row.id, row.state, to_state)
    unknown = set(columns) - _SETTABLE_COLUMNS
    if unknown:
        raise ValueError(f"not settable by a transition: {sorted(unknown)}")
    if columns.get("last_error"):
        columns = {**columns, "last_error": scrubbed(columns["last_error"])}
    assignments = ", ".join(f"{name} = ?" for name in columns)
    updated = conn.execute(
        f"UPDATE files SET state = ?, updated_at = ?, {assignments} WHERE id = ? RETURNING {queries.FILE_SELECT}"
        if columns
        else f"UPDATE files SET state = ?, updated_at = ? WHERE id = ? RETURNING {queries.FILE_SELECT}",
        (to_state.value, now, *columns.values(), row.id),
    ).fetchone()
    record = file_record(updated)
    append_history(conn, now, record, event, row.state, to_state, detail, attempt=attempt)
    return record


def delete_row(
    conn: Tx, watch: str, relpath: str, event: HistoryEvent, detail: str, now: float
) -> FileRecord | None:
    """Delete a file row (sessions, parts and its Box name cascade) and append its last history line."""
    row = fetch_path(conn, watch, relpath, lock=True)
    if row is None:
        return None
    delete_fetched(conn, row, event, detail, now)
    return row


def delete_fetched(conn: Tx, row: FileRecord, event: HistoryEvent, detail: str, now: float) -> None:
    """Delete the fetched `row`, append its last history line, and free the Box name it held."""
    held_box_name = owned_box_path(conn, row.id) is not None
    conn.execute("DELETE FROM files WHERE id = ?", (row.id,))  # sessions, parts and its Box name cascade
    append_history(conn, now, row, event, row.state, None, detail)
    if held_box_name:
        retry_parked_collisions(conn, row.watch, now)


def retry_parked_collisions(conn: Tx, watch: str, now: float) -> None:
    """A Box name of `watch` was freed: files parked because their name collided try again."""
    parked = fetch_files(conn, "watch = ? AND state = 'quarantined' AND last_error_code = ? ORDER BY id",
                         (watch, NAME_COLLISION), lock=True)
    for row in parked:
        transition(conn, row, FileState.PENDING, HistoryEvent.RETRIED,
                   "a colliding Box name was freed; trying again", now,
                   {"attempts": 0, "next_attempt_at": now, "last_error": None, "last_error_code": None})


def append_history(
    conn: Tx,
    now: float,
    row: FileRecord,
    event: HistoryEvent,
    from_state: FileState | None,
    to_state: FileState | None,
    detail: str | None,
    *,
    attempt: int | None = None,
) -> None:
    """Append one history line describing `row`."""
    conn.execute(
        "INSERT INTO history (ts, file_id, watch, relpath, event, from_state, to_state, detail, attempt)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            now,
            row.id,
            row.watch,
            conn.dialect.relpath_in(row.relpath),
            event.value,
            None if from_state is None else from_state.value,
            None if to_state is None else to_state.value,
            None if detail is None else scrubbed(detail),
            row.attempts if attempt is None else attempt,
        ),
    )


def describe_change(row: FileRecord, size: int, mtime_ns: int, inode: int, device: int | None = None,
                    ctime_ns: int | None = None) -> str:
    """Say, for the history, how a file on disk differs from its row."""
    parts = []
    if row.size != size:
        parts.append(f"size {row.size} -> {size}")
    if row.mtime_ns != mtime_ns:
        parts.append("mtime changed")
    if row.inode != inode or (None not in (row.device, device) and row.device != device):
        parts.append("replaced (new inode)")
    elif None not in (row.ctime_ns, ctime_ns) and row.ctime_ns != ctime_ns:
        parts.append("ctime changed (content, mode, owner, links or name)")
    return ", ".join(parts)


def same_identity(row: FileRecord, size: int, mtime_ns: int, inode: int, device: int | None,
                  ctime_ns: int | None) -> bool:
    """True when the file on disk is the state the row records (device and ctime compared when both
    sides have them: rows from before schema version 5 have neither)."""
    if (row.size, row.mtime_ns, row.inode) != (size, mtime_ns, inode):
        return False
    if None not in (row.device, device) and row.device != device:
        return False
    return None in (row.ctime_ns, ctime_ns) or row.ctime_ns == ctime_ns
def scrubbed(text: str) -> str:
    """`text` with every secret the process knows masked: error text reaches the journal (and
    `syncd status`, `syncd history`) only this way (invariant 9)."""
    return scrub_text(text)


def error_detail(message: str, code: str | None) -> str:
    """A history detail for an error, prefixed by its code when there is one."""
    return f"{code}: {message}" if code else message
