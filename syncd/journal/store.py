"""The Journal: syncd's durable record of every file, in one SQLite file (WAL mode).

Durability. The journal runs in WAL mode. With `synchronous=NORMAL` a committed
WAL transaction survives a crash of the process but can be lost if the machine
loses power before the next checkpoint. That is acceptable for what the scanner
can rediscover from the disk (observe/remove: at restart the start-up scan sees
the same files again), but not for an *intent* that precedes a remote step: if
"uploading" or a saved session were rolled back by a power loss after Box had
already committed the upload, the restarted daemon would see a pending row and
upload the file a second time (a duplicate version, breaking exactly-once), and
if "uploaded" were lost after the source file was deleted or moved, the record of
the verified upload would be gone. So every transaction written on behalf of a
worker (claims, hashes, sessions, parts, outcomes) and by an operator commits
with `synchronous=FULL` (the WAL is fsynced before COMMIT returns), and only
scanner bookkeeping commits with NORMAL. A FULL commit also makes every earlier
NORMAL commit durable, because the WAL is sequential.

Threads. One SQLite connection serves the whole process, guarded by a lock: every
method is one short transaction, so a worker pool shares it safely, and claims
are atomic (`BEGIN IMMEDIATE` also excludes other processes, e.g. `syncd retry`
run beside the daemon; `busy_timeout` makes them wait for each other instead of
failing). `known_files` reads through its own short-lived connection, so a long
start-up scan never blocks the workers.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from syncd.journal import queries
from syncd.journal.errors import InvalidTransition, JournalError
from syncd.journal.lock import DaemonLock, live_holder
from syncd.journal.records import (
    FileRecord,
    FileState,
    HistoryEntry,
    HistoryEvent,
    InFlight,
    KnownFile,
    Observation,
    ObservationKind,
    PartRecord,
    SessionRecord,
)
from syncd.journal.rows import (
    append_history,
    claimed_row,
    delete_row,
    describe_change,
    error_detail,
    fetch_file,
    fetch_files,
    fetch_session,
    file_record,
    history_entry,
    require_file,
    transition,
)
from syncd.journal.sqlite_file import ROLES, Role, connect, create_journal_file, database_error, prepare_connection
from syncd.journal.validation import (
    check_box_ids,
    check_limit,
    check_part,
    check_path,
    check_session,
    check_sha1,
    check_stat,
    from_i64,
    to_i64,
)

_STATE_BY_NAME = {state.value: state for state in FileState}


class Journal:
    """The journal of one syncd instance. Create with `Journal.open(...)`; close when done.

    Times are Unix epoch seconds. Methods that take `now` use it for every timestamp
    they write; where it is optional, the journal's clock supplies it. Outcome methods
    accept `claim_seq` (from the claimed FileRecord): if given and the row was claimed
    again or changed since, they raise StaleClaim and record nothing.
    """

    def __init__(
        self,
        path: Path,
        role: Role,
        conn: sqlite3.Connection,
        lock: DaemonLock | None,
        clock: Callable[[], float],
        busy_timeout: float,
    ) -> None:
        """Use `Journal.open`; this only assembles an already opened, checked journal."""
        self.path = path
        self.role = role
        self._conn = conn
        self._daemon_lock = lock
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._mutex = threading.RLock()
        self._sync_full: bool | None = None
        self._closed = False

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        role: Role = "daemon",
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 10.0,
    ) -> Journal:
        """Open (as daemon: create or migrate) the journal at `path`.

        Raises JournalLocked if role is "daemon" and another live process holds the
        journal, and JournalError if the file is corrupt, unreadable, not a syncd
        journal, from a newer syncd, or (for reader/operator) missing or not yet
        migrated. Never replaces an existing file by an empty journal.
        """
        if role not in ROLES:
            raise ValueError(f"journal role must be one of {sorted(ROLES)}, not {role!r}")
        journal_path = Path(path).absolute()
        lock: DaemonLock | None = None
        if role == "daemon":
            try:
                journal_path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise JournalError(
                    f"cannot create the journal directory {journal_path.parent}: {exc.strerror}",
                    path=journal_path,
                ) from exc
            lock = DaemonLock.acquire(journal_path)
        try:
            if journal_path.is_dir():
                raise JournalError(
                    f"journal path {journal_path} is a directory; point `journal:` at a file", path=journal_path
                )
            if not journal_path.exists():
                if role != "daemon":
                    raise JournalError(
                        f"no journal at {journal_path}: has the syncd daemon run with this config yet?",
                        path=journal_path,
                    )
                create_journal_file(journal_path)
            conn = connect(journal_path, busy_timeout)
            try:
                prepare_connection(conn, journal_path, role)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        return cls(journal_path, role, conn, lock, clock, busy_timeout)

    def close(self) -> None:
        """Close the connection and release the daemon lock. Safe to call twice."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.close()
            finally:
                if self._daemon_lock is not None:
                    self._daemon_lock.release()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal(path={str(self.path)!r}, role={self.role!r})"

    def daemon_pid(self) -> int | None:
        """PID of the live process holding this journal's daemon lock, or None."""
        if self._daemon_lock is not None and self._daemon_lock.held:
            return os.getpid()
        holder = live_holder(self.path)
        return holder.pid if holder else None

    # ------------------------------------------------------------ transactions

    @contextmanager
    def _write(self, *, durable: bool) -> Iterator[sqlite3.Connection]:
        if self.role == "reader":
            raise JournalError(f"journal {self.path} was opened read-only (role 'reader')", path=self.path)
        with self._mutex:
            self._check_open()
            conn = self._conn
            try:
                self._set_synchronous(full=durable)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise database_error(self.path, exc) from exc

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            self._check_open()
            conn = self._conn
            try:
                conn.execute("BEGIN")  # one snapshot for all the statements of a method
                try:
                    yield conn
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise database_error(self.path, exc) from exc

    def _set_synchronous(self, *, full: bool) -> None:
        # SQLite refuses to change the safety level inside a transaction, so this is
        # switched between transactions (under the mutex), and only when it changes.
        if self._sync_full is not full:
            self._conn.execute(f"PRAGMA synchronous = {'FULL' if full else 'NORMAL'}")
            self._sync_full = full

    def _check_open(self) -> None:
        if self._closed:
            raise JournalError(f"journal {self.path} is closed", path=self.path)

    def _now(self, now: float | None) -> float:
        return float(self._clock() if now is None else now)

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

    def next_attempt_time(self, *, max_size: int | None = None) -> float | None:
        """When the earliest pending file becomes due (None if nothing is pending)."""
        with self._read() as conn:
            if max_size is None:
                found = conn.execute(queries.NEXT_ATTEMPT).fetchone()
            else:
                found = conn.execute(queries.NEXT_ATTEMPT_MAX_SIZE, {"max_size": max_size}).fetchone()
        return None if found is None or found[0] is None else float(found[0])

    def record_sha1(self, file_id: int, sha1: str, *, claim_seq: int | None = None) -> FileRecord:
        """Store the SHA-1 (hex) of the content being uploaded."""
        digest = check_sha1(sha1)
        with self._write(durable=True) as conn:
            row = claimed_row(conn, file_id, claim_seq)
            conn.execute("UPDATE files SET sha1 = ? WHERE id = ?", (digest, row.id))
            return require_file(conn, file_id)

    def save_session(
        self, file_id: int, session: SessionRecord, *, claim_seq: int | None = None, now: float | None = None
    ) -> None:
        """Save the chunked-upload session of an uploading file, replacing any earlier one."""
        check_session(session)
        with self._write(durable=True) as conn:
            row = claimed_row(conn, file_id, claim_seq)
            if row.state is not FileState.UPLOADING:
                raise JournalError(f"journal row {file_id} is {row.state}, not uploading: cannot save a session")
            conn.execute("DELETE FROM upload_sessions WHERE file_id = ?", (file_id,))
            conn.execute(
                "INSERT INTO upload_sessions (file_id, session_id, part_size, total_parts, file_size, sha1,"
                " expires_at, created_at, endpoint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    file_id,
                    session.session_id,
                    session.part_size,
                    session.total_parts,
                    session.file_size,
                    None if session.sha1 is None else check_sha1(session.sha1),
                    float(session.expires_at),
                    self._now(session.created_at if session.created_at is not None else now),
                    session.endpoint,
                ),
            )

    def add_part(self, file_id: int, part: PartRecord, *, claim_seq: int | None = None) -> None:
        """Record a part Box acknowledged (replaces a part saved at the same offset)."""
        with self._write(durable=True) as conn:
            claimed_row(conn, file_id, claim_seq)
            session = fetch_session(conn, file_id)
            if session is None:
                raise JournalError(f"journal row {file_id} has no upload session: save_session first")
            check_part(part, session)
            conn.execute(
                "INSERT OR REPLACE INTO session_parts (file_id, part_offset, part_id, size, sha1)"
                " VALUES (?, ?, ?, ?, ?)",
                (file_id, part.offset, part.part_id, part.size, part.sha1),
            )

    def load_session(self, file_id: int) -> tuple[SessionRecord, list[PartRecord]] | None:
        """The saved session of a file and its parts in offset order, or None."""
        with self._read() as conn:
            session = fetch_session(conn, file_id)
            if session is None:
                return None
            parts = [
                PartRecord(part_id=r[0], offset=r[1], size=r[2], sha1=r[3])
                for r in conn.execute(
                    "SELECT part_id, part_offset, size, sha1 FROM session_parts WHERE file_id = ?"
                    " ORDER BY part_offset",
                    (file_id,),
                )
            ]
            return session, parts

    def drop_session(self, file_id: int) -> bool:
        """Forget a file's saved session (e.g. expired or aborted). True if there was one."""
        with self._write(durable=True) as conn:
            return conn.execute("DELETE FROM upload_sessions WHERE file_id = ?", (file_id,)).rowcount > 0

    def mark_uploaded(
        self,
        file_id: int,
        box_file_id: str,
        box_version_id: str | None,
        etag: str | None,
        sha1: str,
        now: float,
        *,
        claim_seq: int | None = None,
    ) -> FileRecord:
        """Record a verified upload: uploading -> uploaded; drops the saved session.

        Raises JournalError if a SHA-1 was recorded for this content and `sha1` differs
        (the verified bytes are not the ones hashed).
        """
        digest = check_sha1(sha1)
        if not box_file_id:
            raise ValueError("box_file_id must be a non-empty string")
        with self._write(durable=True) as conn:
            row = claimed_row(conn, file_id, claim_seq)
            if row.sha1 is not None and row.sha1 != digest:
                raise JournalError(
                    f"journal row {file_id}: uploaded SHA-1 {digest} differs from the recorded {row.sha1}"
                )
            conn.execute("DELETE FROM upload_sessions WHERE file_id = ?", (file_id,))
            return transition(
                conn,
                row,
                FileState.UPLOADED,
                HistoryEvent.UPLOADED,
                f"box file {box_file_id} version {box_version_id or '?'} sha1 {digest}",
                float(now),
                {
                    "box_file_id": box_file_id,
                    "box_version_id": box_version_id,
                    "box_etag": etag,
                    "sha1": digest,
                    "uploaded_at": float(now),
                    "last_error": None,
                    "last_error_code": None,
                },
            )

    def schedule_retry(
        self,
        file_id: int,
        error: str,
        code: str | None,
        next_attempt_at: float,
        *,
        claim_seq: int | None = None,
        now: float | None = None,
    ) -> FileRecord:
        """A retryable failure: uploading -> pending, due again at `next_attempt_at`.

        The saved session (if any) is kept, so the next attempt can resume it.
        """
        with self._write(durable=True) as conn:
            row = claimed_row(conn, file_id, claim_seq)
            if row.state is not FileState.UPLOADING:
                raise InvalidTransition(file_id, row.state, FileState.PENDING)
            return transition(
                conn,
                row,
                FileState.PENDING,
                HistoryEvent.RETRY_SCHEDULED,
                error_detail(error, code),
                self._now(now),
                {"last_error": error, "last_error_code": code, "next_attempt_at": float(next_attempt_at)},
            )

    def mark_failed(
        self, file_id: int, reason: str, code: str | None = None, *, claim_seq: int | None = None,
        now: float | None = None,
    ) -> FileRecord:
        """Give up on a file (retries exhausted or permanent error) until `retry`."""
        return self._park(file_id, FileState.FAILED, HistoryEvent.FAILED, reason, code, claim_seq, now)

    def mark_quarantined(
        self, file_id: int, reason: str, *, code: str | None = None, claim_seq: int | None = None,
        now: float | None = None,
    ) -> FileRecord:
        """Box can never take this file as it is (bad name, too large...)."""
        return self._park(file_id, FileState.QUARANTINED, HistoryEvent.QUARANTINED, reason, code, claim_seq, now)

    def mark_skipped(
        self, file_id: int, reason: str, *, claim_seq: int | None = None, now: float | None = None
    ) -> FileRecord:
        """Conflict policy `skip`: Box already has an item by this name."""
        return self._park(file_id, FileState.SKIPPED, HistoryEvent.SKIPPED, reason, None, claim_seq, now)

    def _park(
        self,
        file_id: int,
        state: FileState,
        event: HistoryEvent,
        reason: str,
        code: str | None,
        claim_seq: int | None,
        now: float | None,
    ) -> FileRecord:
        if not reason:
            raise ValueError(f"a reason is required to mark a file {state}")
        with self._write(durable=True) as conn:
            row = claimed_row(conn, file_id, claim_seq)
            conn.execute("DELETE FROM upload_sessions WHERE file_id = ?", (file_id,))
            return transition(
                conn, row, state, event, error_detail(reason, code), self._now(now),
                {"last_error": reason, "last_error_code": code},
            )

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

    # ----------------------------------------------------------- Box folders

    def box_folder_id(self, parent_id: str, name_key: str) -> str | None:
        """The recorded id of the Box folder `name_key` (a case-folded name) under `parent_id`."""
        check_box_ids(parent_id=parent_id, name_key=name_key)
        with self._read() as conn:
            found = conn.execute(
                "SELECT folder_id FROM box_folders WHERE parent_id = ? AND name_key = ?", (parent_id, name_key)
            ).fetchone()
        return None if found is None else str(found[0])

    def save_box_folder_id(self, parent_id: str, name_key: str, folder_id: str, *, now: float | None = None) -> None:
        """Record (or replace) the id of the Box folder `name_key` under `parent_id`.

        Committed without fsync, like scanner bookkeeping: an id lost to a power cut
        only costs one more question to Box (a create answered 409).
        """
        check_box_ids(parent_id=parent_id, name_key=name_key, folder_id=folder_id)
        with self._write(durable=False) as conn:
            conn.execute(
                "INSERT INTO box_folders (parent_id, name_key, folder_id, resolved_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (parent_id, name_key) DO UPDATE SET folder_id = excluded.folder_id,"
                " resolved_at = excluded.resolved_at",
                (parent_id, name_key, folder_id, self._now(now)),
            )

    def forget_box_folder(self, folder_id: str | None) -> int:
        """Drop the recorded ids of a Box folder and of every folder recorded below it.

        For a folder found deleted on Box: the ids under it are gone with it. None
        drops every recorded id. Returns how many were dropped.
        """
        with self._write(durable=False) as conn:
            if folder_id is None:
                return conn.execute("DELETE FROM box_folders").rowcount
            check_box_ids(folder_id=folder_id)
            # UNION (not UNION ALL) stops at ids already seen, should the entries ever form a cycle.
            conn.execute(
                "WITH RECURSIVE gone(id) AS (VALUES (?) UNION"
                " SELECT b.folder_id FROM box_folders AS b JOIN gone ON b.parent_id = gone.id)"
                " DELETE FROM box_folders WHERE folder_id IN (SELECT id FROM gone)"
                " OR parent_id IN (SELECT id FROM gone)",
                (folder_id,),
            )
            # sqlite3's rowcount is -1 for a statement that starts with WITH; changes() is not.
            return int(conn.execute("SELECT changes()").fetchone()[0])

    # ------------------------------------------------------------- reporting

    def get(self, file_id: int) -> FileRecord | None:
        """The row with this id, or None."""
        with self._read() as conn:
            return fetch_file(conn, "id = ?", (file_id,))

    def find(self, watch: str, relpath: str) -> FileRecord | None:
        """The row of one file, or None."""
        with self._read() as conn:
            return fetch_file(conn, "watch = ? AND relpath = ?", (watch, relpath))

    def counts_by_state(self, watch: str | None = None) -> dict[FileState, int]:
        """How many files are in each state (every state present, zeros included)."""
        with self._read() as conn:
            if watch is None:
                rows = conn.execute(queries.COUNTS_BY_STATE).fetchall()
            else:
                rows = conn.execute(queries.COUNTS_BY_STATE_IN_WATCH, {"watch": watch}).fetchall()
        counts = dict.fromkeys(FileState, 0)
        counts.update({FileState(state): n for state, n in rows})
        return counts

    def oldest_pending(self, watch: str | None = None) -> FileRecord | None:
        """The pending file that has waited longest since it was ready (None if none)."""
        with self._read() as conn:
            if watch is None:
                found = conn.execute(queries.OLDEST_PENDING).fetchone()
            else:
                found = conn.execute(queries.OLDEST_PENDING_IN_WATCH, {"watch": watch}).fetchone()
        return None if found is None else file_record(found)

    def recent_failures(self, limit: int = 20) -> list[FileRecord]:
        """Failed and quarantined files, most recent first."""
        check_limit(limit)
        with self._read() as conn:
            return [file_record(r) for r in conn.execute(queries.RECENT_FAILURES, {"limit": limit})]

    def last_uploaded(self, watch: str | None = None) -> HistoryEntry | None:
        """The latest upload, from the history (it outlives rows of deleted sources)."""
        with self._read() as conn:
            if watch is None:
                found = conn.execute(queries.LAST_UPLOADED).fetchone()
            else:
                found = conn.execute(queries.LAST_UPLOADED_IN_WATCH, {"watch": watch}).fetchone()
        return None if found is None else history_entry(found)

    def last_arrival(self, watch: str) -> float | None:
        """When a new or changed file was last observed in `watch` (None if never)."""
        with self._read() as conn:
            times = [r[0] for r in conn.execute(queries.LAST_ARRIVAL, {"watch": watch}) if r[0] is not None]
        return max(times) if times else None

    def in_flight(self) -> list[InFlight]:
        """Uploading files with their chunked-upload progress."""
        n = len(queries.FILE_COLUMNS)
        with self._read() as conn:
            rows = conn.execute(queries.IN_FLIGHT).fetchall()
        return [
            InFlight(
                file=file_record(r[:n]),
                session_id=r[n],
                total_parts=r[n + 1] or 0,
                parts_done=r[n + 2],
                bytes_done=r[n + 3],
            )
            for r in rows
        ]

    def history(
        self, watch: str | None = None, relpath: str | None = None, limit: int = 100
    ) -> list[HistoryEntry]:
        """History entries, newest first: all, of one watch, or of one file."""
        check_limit(limit)
        if relpath is not None and watch is None:
            raise ValueError("history of a relpath needs its watch")
        with self._read() as conn:
            if watch is None:
                rows = conn.execute(queries.HISTORY_ALL, {"limit": limit})
            elif relpath is None:
                rows = conn.execute(queries.HISTORY_IN_WATCH, {"watch": watch, "limit": limit})
            else:
                rows = conn.execute(queries.HISTORY_OF_PATH, {"watch": watch, "relpath": relpath, "limit": limit})
            return [history_entry(r) for r in rows]

    def prune_history(self, before: float) -> int:
        """Delete history entries older than `before` (retention). Returns how many."""
        with self._write(durable=False) as conn:
            return conn.execute("DELETE FROM history WHERE ts < ?", (float(before),)).rowcount

    def known_files(self, watch: str) -> Iterator[KnownFile]:
        """Every file of `watch` as (relpath, size, mtime_ns, inode, state), one query.

        Streams from a separate read connection (a consistent snapshot), so a scan
        of 100,000 files neither holds the journal's lock nor builds a big list.
        """
        self._check_open()
        conn = connect(self.path, self._busy_timeout)
        try:
            conn.execute("PRAGMA query_only = ON")
            cursor = conn.execute(queries.KNOWN_FILES, {"watch": watch})
            while batch := cursor.fetchmany(2000):
                for relpath, size, mtime_ns, inode, state in batch:
                    # A dict lookup, not FileState(state): this loop runs 100,000s of times.
                    yield KnownFile(relpath, size, mtime_ns, from_i64(inode), _STATE_BY_NAME[state])
        except sqlite3.Error as exc:
            raise database_error(self.path, exc) from exc
        finally:
            conn.close()
