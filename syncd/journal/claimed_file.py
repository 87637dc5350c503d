"""The journal as the worker holding a claim sees it: every write it makes for its
file, checked against its claim.

`Journal.claim_next` (and, after a crash, `recover_interrupted`) hands a worker a
FileRecord whose `claim_seq` names its claim; `Journal.claimed(record)` binds a
`ClaimedFile` to it. Intake invalidates the claim when the file changes during its
upload (`observe` bumps `claim_seq`), and a new claim of the same row bumps it too.
Every write through the handle runs in one durable transaction that first checks
the claim (`_claimed_write`, the only place the check is made): a stale handle
raises StaleClaim and records nothing, so an upload of old content can never be
recorded as the file's outcome, nor touch the saved session of the claim that
replaced it. The check is the fencing rule of docs/MULTI_HOST.md section 5.4: the claim
must still be the row's (`claim_seq`) and this host must hold its lease (`lease_owner`);
a write that passes renews the lease in the same transaction.

Outcomes are re-runnable: a `mark_uploaded`, `schedule_retry` or `release` whose commit
answer was lost (`JournalOutcomeUnknown`) may simply be written again; finding its own
outcome already there (same claim, same host, same Box file and SHA-1), it returns the row.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from syncd.journal import leases
from syncd.journal.backend import Tx, rerun_on_conflict
from syncd.journal.box_names import BoxPathClash, OwnedBoxPath, owned_box_path, take_box_path
from syncd.journal.core import JournalCore
from syncd.journal.errors import InvalidTransition, JournalError
from syncd.journal.post_actions import plan_post_action
from syncd.journal.records import (
    WAITING_FOR_READINESS,
    FileRecord,
    FileState,
    HistoryEvent,
    PartRecord,
    PlannedPostAction,
    SessionRecord,
)
from syncd.journal.rows import (
    append_history, claimed_row, error_detail, fetch_file, fetch_session, require_file, saved_session, transition,
)
from syncd.journal.validation import check_part, check_session, check_sha1


class ClaimedFile:
    """The journal writes of one claim of one file (from `Journal.claimed(record)`).

    `record` is the row as claimed; its `claim_seq` is checked by every write.
    Outcome methods (`mark_uploaded`, `schedule_retry`, `mark_failed`,
    `mark_quarantined`, `mark_skipped`) end the upload; the claim check stays the
    same afterwards, and the state machine refuses what the new state does not allow.
    """

    def __init__(self, journal: JournalCore, record: FileRecord) -> None:
        self._journal = journal
        self.record = record

    def __repr__(self) -> str:
        return f"ClaimedFile(file_row={self.record.id}, claim_seq={self.record.claim_seq})"

    @contextmanager
    def _claimed_write(self, *, durable: bool = True) -> Iterator[tuple[Tx, FileRecord]]:
        """A write transaction (durable unless told) and the row, if this claim is still the current one
        and this host holds its lease; the lease renewed (while uploading) in the same transaction."""
        journal = self._journal
        with journal._write(durable=durable) as conn:
            row = claimed_row(conn, self.record.id, self.record.claim_seq, journal.host_id)
            if row.state is FileState.UPLOADING:
                row = leases.renew_one(conn, row, journal._lease_params())
            yield conn, row

    # ------------------------------------------------------------ its Box path

    def owned_box_path(self) -> OwnedBoxPath | None:
        """The Box path this file owns in its watch (see `syncd.journal.box_names`), or None."""
        with self._journal._read() as conn:
            return owned_box_path(conn, self.record.id)

    @rerun_on_conflict
    def take_box_path(self, base_key: str, path_key: str, box_path: str) -> BoxPathClash | None:
        """Own `path_key` (the Box path `box_path`, wanted as `base_key`) in the file's watch.

        None when taken (or already this file's); the clash when another file of the
        watch owns it or a folder on it. Not durable on its own: the next durable write
        of the attempt (the hash, the outcome) makes it so, and a key lost to a power
        failure is taken again by the next attempt.
        """
        with self._claimed_write(durable=False) as (conn, row):
            return take_box_path(conn, row.watch, row.id, base_key, path_key, box_path)

    # ------------------------------------------------------------- the upload

    @rerun_on_conflict
    def record_sha1(self, sha1: str) -> FileRecord:
        """Store the SHA-1 (hex) of the content being uploaded."""
        digest = check_sha1(sha1)
        with self._claimed_write() as (conn, row):
            conn.execute("UPDATE files SET sha1 = ? WHERE id = ?", (digest, row.id))
            return require_file(conn, row.id)

    def load_session(self) -> tuple[SessionRecord, list[PartRecord]] | None:
        """The saved chunked-upload session of the file and its parts in offset order, or None."""
        with self._journal._read() as conn:
            return saved_session(conn, self.record.id)

    @rerun_on_conflict
    def save_session(self, session: SessionRecord, *, now: float | None = None) -> None:
        """Save the chunked-upload session of the uploading file, replacing any earlier one."""
        check_session(session)
        with self._claimed_write() as (conn, row):
            if row.state is not FileState.UPLOADING:
                raise JournalError(f"journal row {row.id} is {row.state}, not uploading: cannot save a session")
            conn.execute("DELETE FROM upload_sessions WHERE file_id = ?", (row.id,))
            conn.execute(
                "INSERT INTO upload_sessions (file_id, session_id, part_size, total_parts, file_size, sha1,"
                " expires_at, created_at, endpoint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.id,
                    session.session_id,
                    session.part_size,
                    session.total_parts,
                    session.file_size,
                    None if session.sha1 is None else check_sha1(session.sha1),
                    float(session.expires_at),
                    self._journal._now(session.created_at if session.created_at is not None else now),
                    session.endpoint,
                ),
            )

    @rerun_on_conflict
    def add_part(self, part: PartRecord) -> None:
        """Record a part Box acknowledged (replaces a part saved at the same offset)."""
        with self._claimed_write() as (conn, row):
            session = fetch_session(conn, row.id)
            if session is None:
                raise JournalError(f"journal row {row.id} has no upload session: save_session first")
            check_part(part, session)
            conn.execute(
                "INSERT INTO session_parts (file_id, part_offset, part_id, size, sha1) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (file_id, part_offset) DO UPDATE SET part_id = excluded.part_id,"
                " size = excluded.size, sha1 = excluded.sha1",
                (row.id, part.offset, part.part_id, part.size, part.sha1),
            )

    @rerun_on_conflict
    def drop_session(self) -> bool:
        """Forget the saved session (expired or aborted). True if there was one.

        Checked like every other write: a stale worker must not delete the session
        of the claim that replaced it.
        """
        with self._claimed_write() as (conn, row):
            return conn.execute("DELETE FROM upload_sessions WHERE file_id = ?", (row.id,)).rowcount > 0

    # --------------------------------------------------------------- outcomes

    @rerun_on_conflict
    def mark_uploaded(
        self, box_file_id: str, box_version_id: str | None, etag: str | None, sha1: str, now: float,
        *, post_action: PlannedPostAction | None = None,
    ) -> FileRecord:
        """Record a verified upload: uploading -> uploaded; drops the saved session.

        `post_action` (delete or move the source) is journaled in the same transaction,
        so a crash after the commit finishes it instead of forgetting it (invariant 8);
        without one, an action left from earlier content of the file is dropped.
        Raises JournalError if a SHA-1 was recorded for this content and `sha1` differs
        (the verified bytes are not the ones hashed).
        """
        digest = check_sha1(sha1)
        if not box_file_id:
            raise ValueError("box_file_id must be a non-empty string")
        with self._claimed_write() as (conn, row):
            if (row.state is FileState.UPLOADED and row.box_file_id == box_file_id and row.sha1 == digest):
                return row  # this very outcome, written again after its commit's answer was lost
            if row.sha1 is not None and row.sha1 != digest:
                raise JournalError(
                    f"journal row {row.id}: uploaded SHA-1 {digest} differs from the recorded {row.sha1}"
                )
            conn.execute("DELETE FROM upload_sessions WHERE file_id = ?", (row.id,))
            plan_post_action(conn, row, post_action, digest, float(now), self._journal.host_id)
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

    @rerun_on_conflict
    def schedule_retry(
        self, error: str, code: str | None, next_attempt_at: float, *, now: float | None = None
    ) -> FileRecord:
        """A retryable failure: uploading -> pending, due again at `next_attempt_at`.

        The saved session (if any) is kept, so the next attempt can resume it.
        """
        with self._claimed_write() as (conn, row):
            if row.state is FileState.PENDING:
                return row  # this claim's outcome is written already (a re-run after a lost commit answer)
            if row.state is not FileState.UPLOADING:
                raise InvalidTransition(row.id, row.state, FileState.PENDING)
            return transition(
                conn,
                row,
                FileState.PENDING,
                HistoryEvent.RETRY_SCHEDULED,
                error_detail(error, code),
                self._journal._now(now),
                {"last_error": error, "last_error_code": code, "next_attempt_at": float(next_attempt_at)},
            )

    @rerun_on_conflict
    def back_to_readiness(self, reason: str, *, now: float | None = None) -> FileRecord:
        """The file changed after it was found ready (at the claim, or during the upload):
        uploading -> pending, not claimable until readiness finds it stable again
        (`WAITING_FOR_READINESS`; `Journal.observe` then makes it due). The attempt is not
        counted, the hash and any saved session (of the old content) are dropped.
        """
        with self._claimed_write() as (conn, row):
            if row.state is not FileState.UPLOADING:
                raise InvalidTransition(row.id, row.state, FileState.PENDING)
            conn.execute("DELETE FROM upload_sessions WHERE file_id = ?", (row.id,))
            return transition(
                conn, row, FileState.PENDING, HistoryEvent.CHANGED, f"{reason}; waiting for it to settle",
                self._journal._now(now),
                {"attempts": max(row.attempts - 1, 0), "sha1": None, "next_attempt_at": WAITING_FOR_READINESS,
                 "last_error": reason, "last_error_code": "changed"},
            )

    @rerun_on_conflict
    def release(self, reason: str, code: str | None, next_attempt_at: float, *, now: float | None = None
                ) -> FileRecord:
        """Give the claim back without spending an attempt: uploading -> pending, due at
        `next_attempt_at`, the claim's attempt not counted (Box refused the credentials or the
        watch's folder: the file is not at fault). The saved session is kept."""
        with self._claimed_write() as (conn, row):
            if row.state is FileState.PENDING:
                return row  # this claim's outcome is written already (a re-run after a lost commit answer)
            if row.state is not FileState.UPLOADING:
                raise InvalidTransition(row.id, row.state, FileState.PENDING)
            return transition(
                conn, row, FileState.PENDING, HistoryEvent.DEFERRED, error_detail(reason, code),
                self._journal._now(now),
                {"attempts": max(0, row.attempts - 1), "last_error": reason, "last_error_code": code,
                 "next_attempt_at": float(next_attempt_at)},
            )

    @rerun_on_conflict
    def remember_commit(self, box_file_id: str, box_version_id: str | None, etag: str | None, *,
                        now: float | None = None) -> bool:
        """After a stale claim: keep the Box file this claim's upload committed, so that the next
        attempt (of the file's new content) uploads a version of it instead of a duplicate.

        Not checked against the claim (it is stale by definition) but against the row's Box
        fields as this claim saw them: only when no later attempt recorded a Box file since is
        the row changed (its id, version and etag; never its state, SHA-1 or claim). True when
        it was. Raises JournalError when the journal cannot be written.
        """
        if not box_file_id:
            raise ValueError("box_file_id must be a non-empty string")
        claimed = self.record
        with self._journal._write(durable=True) as conn:
            updated = conn.execute(
                "UPDATE files SET box_file_id = ?, box_version_id = ?, box_etag = ?"
                " WHERE id = ? AND box_file_id IS NOT DISTINCT FROM ? AND box_etag IS NOT DISTINCT FROM ?",
                (box_file_id, box_version_id, etag, claimed.id, claimed.box_file_id, claimed.box_etag),
            ).rowcount
            row = fetch_file(conn, "id = ?", (claimed.id,))
            if not updated or row is None:
                return False
            append_history(conn, self._journal._now(now), row, HistoryEvent.COMMIT_REMEMBERED, row.state, row.state,
                           f"a superseded upload committed box file {box_file_id} version {box_version_id or '?'};"
                           " the file's new content goes up as its next version")
            return True

    @rerun_on_conflict
    def mark_failed(self, reason: str, code: str | None = None, *, now: float | None = None) -> FileRecord:
        """Give up on the file (retries exhausted or permanent error) until `syncd retry`."""
        return self._park(FileState.FAILED, HistoryEvent.FAILED, reason, code, now)

    @rerun_on_conflict
    def mark_quarantined(self, reason: str, *, code: str | None = None, now: float | None = None) -> FileRecord:
        """Box can never take this file as it is (bad name, too large...)."""
        return self._park(FileState.QUARANTINED, HistoryEvent.QUARANTINED, reason, code, now)

    @rerun_on_conflict
    def mark_skipped(self, reason: str, *, now: float | None = None) -> FileRecord:
        """Conflict policy `skip`: Box already has an item by this name."""
        return self._park(FileState.SKIPPED, HistoryEvent.SKIPPED, reason, None, now)

    def _park(
        self, state: FileState, event: HistoryEvent, reason: str, code: str | None, now: float | None
    ) -> FileRecord:
        if not reason:
            raise ValueError(f"a reason is required to mark a file {state}")
        with self._claimed_write() as (conn, row):
            if row.state is state:
                return row  # this claim's outcome is written already (a re-run after a lost commit answer)
            conn.execute("DELETE FROM upload_sessions WHERE file_id = ?", (row.id,))
            return transition(
                conn, row, state, event, error_detail(reason, code), self._journal._now(now),
                {"last_error": reason, "last_error_code": code},
            )
