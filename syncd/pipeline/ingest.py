"""One file from claim to verified commit: the work a worker does.

The journal has already marked the row `uploading` (intent) when `Ingest.process`
runs; every outcome is written back before it returns:

    claimed row ─▶ still on disk, unchanged? ─▶ acceptable name? ─▶ Box folder
      ─▶ reconcile (a previous attempt may have finished remotely)
      ─▶ upload (resuming a saved session) ─▶ conflict policy
      ─▶ mark_uploaded ─▶ after-upload action (keep / delete / move)

Failures become a scheduled retry, `failed`, `quarantined` or `skipped`, each
with a reason a person can act on. A file that changed under us goes back to
`pending` without costing an attempt: the new content is what must go up.

Each claim is one `Attempt`: the claimed row, the journal handle bound to that
claim (every write checks the claim), the watch, the path, a bound logger, the
stop event. The stages take it instead of parameter lists; `process` returns an
`Outcome` whose `kind` is an `OutcomeKind`.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import structlog

from syncd.box import (
    BoxAPIError,
    BoxClient,
    BoxError,
    ErrorClass,
    FolderTree,
    OutcomeUnknown,
    SavedSession,
    SourceChanged,
    UploadCancelled,
    UploadedFile,
    UploadedPart,
    Uploader,
    hash_file,
)
from syncd.config import Config, WatchConfig
from syncd.journal import ClaimedFile, FileRecord, Journal, JournalError, PartRecord, SessionRecord, StaleClaim
from syncd.pipeline.actions import AfterUpload, SourceActionRefused, apply_after_upload
from syncd.pipeline.conflicts import ConflictOutcome, upload_with_policy
from syncd.pipeline.names import name_problem, sanitize_name
from syncd.pipeline.retry_schedule import RetrySchedule
from syncd.pipeline.scanner import FileStat, ProblemKind, ScanProblem, stat_candidate

log = structlog.get_logger("syncd.ingest")

class OutcomeKind(enum.StrEnum):
    """What became of one claimed file."""

    UPLOADED = "uploaded"  # committed in Box and recorded
    RETRY = "retry"  # pending again, due at a scheduled time
    FAILED = "failed"  # parked until `syncd retry` (permanent error, or retries exhausted)
    QUARANTINED = "quarantined"  # parked: Box can never take the file as it is
    SKIPPED = "skipped"  # parked by the conflict policy `skip`
    CHANGED = "changed"  # the file changed before or during its upload: pending again, no attempt spent
    GONE = "gone"  # the file vanished before its upload: row removed
    STALE = "stale"  # the claim went stale (new content claimed again): this attempt recorded nothing


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one claimed file (for metrics and tests)."""

    kind: OutcomeKind
    detail: str = ""
    uploaded: UploadedFile | None = None
    code: str | None = None  # Box error code or syncd's own (e.g. unreadable), for metrics labels


@dataclass(frozen=True, slots=True)
class Attempt:
    """One worker's attempt at one claimed file: what every stage of ingest works on."""

    record: FileRecord  # the row as claimed (`uploading`, attempts already counted)
    claim: ClaimedFile  # the journal's writes under this claim, each checked against it
    watch: WatchConfig
    path: Path  # the file on disk
    log: structlog.stdlib.BoundLogger  # bound with watch, path, file_row and attempt
    stopping: threading.Event | None = None  # set: a chunked upload pauses at its next part boundary
    interrupted: bool = False  # a crash left the row uploading: ask Box before sending anything

    @property
    def relpath(self) -> PurePosixPath:
        """The file's path below its watch."""
        return PurePosixPath(self.record.relpath)


class JournalProgress:
    """`syncd.box.UploadProgress` backed by the journal, so a chunked upload survives a crash."""

    def __init__(self, attempt: Attempt, upload_url: str) -> None:
        self._claim = attempt.claim
        self._log = attempt.log
        self._upload_url = upload_url

    def load(self) -> SavedSession | None:
        saved = self._claim.load_session()
        if saved is None:
            return None
        session, parts = saved
        return SavedSession.resumed(
            session.session_id,
            endpoint=session.endpoint,
            upload_url=self._upload_url,
            file_size=session.file_size,
            part_size=session.part_size,
            total_parts=session.total_parts,
            expires_at=datetime.fromtimestamp(session.expires_at, timezone.utc).isoformat(),
            parts=(UploadedPart(p.part_id, p.offset, p.size, p.sha1) for p in parts),
        )

    def session_created(self, session: SavedSession) -> None:
        self._claim.save_session(
            SessionRecord(
                session_id=session.session_id,
                part_size=session.part_size,
                total_parts=session.total_parts,
                file_size=session.file_size,
                expires_at=_epoch(session.expires_at),
                endpoint=session.upload_part_url,
            ),
        )
        self._log.info("upload_session_created", session_id=session.session_id, part_size=session.part_size,
                       total_parts=session.total_parts)

    def part_uploaded(self, part: UploadedPart) -> None:
        self._claim.add_part(PartRecord(part.part_id, part.offset, part.size, part.sha1))
        self._log.info("upload_part", offset=part.offset, size=part.size, part_id=part.part_id)

    def session_discarded(self) -> None:
        self._claim.drop_session()


def _epoch(iso: str | None) -> float:
    if not iso:
        return time.time() + 7 * 86400
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class Ingest:
    """Processes claimed journal rows: the policy layer between the journal and syncd.box."""

    def __init__(
        self,
        config: Config,
        journal: Journal,
        client: BoxClient,
        uploader: Uploader,
        folders: FolderTree,
        *,
        on_uploaded: Callable[[FileRecord, UploadedFile, float], None] | None = None,
        on_bytes: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.journal = journal
        self.client = client
        self.uploader = uploader
        self.folders = folders
        self.reconfigure(config)
        self._on_uploaded = on_uploaded
        self._on_bytes = on_bytes
        self._clock = clock

    def reconfigure(self, config: Config) -> None:
        """Use a reloaded configuration for the files claimed from now on."""
        self.config = config
        self.retry_schedule = RetrySchedule.from_config(config.retry)

    # ------------------------------------------------------------------ entry

    def process(self, record: FileRecord, stopping: threading.Event | None = None, *,
                interrupted: bool = False) -> Outcome:
        """Take one claimed (`uploading`) row to its next recorded state; never raises.

        `stopping` pauses a chunked upload at its next part boundary. `interrupted`
        says a crash left this row uploading: Box is asked first whether the upload
        already went through, so it is never sent twice.
        """
        bound = log.bind(watch=record.watch, path=record.relpath, file_row=record.id, attempt=record.attempts)
        claim = self.journal.claimed(record)
        try:
            watch = self.config.watch_named(record.watch)
        except KeyError:
            return self._guarded(claim, bound, lambda: self._watch_removed(claim))
        attempt = Attempt(record, claim, watch, watch.path / record.relpath, bound, stopping, interrupted)
        return self._guarded(claim, bound, lambda: self._ingest(attempt))

    def _guarded(self, claim: ClaimedFile, log_: structlog.stdlib.BoundLogger, step: Callable[[], Outcome]
                 ) -> Outcome:
        """Run `step`; a stale claim ends the attempt quietly, and a bug schedules a retry rather than
        strand the row in `uploading`. Journal failures propagate: nothing can be recorded."""
        try:
            return step()
        except StaleClaim:
            outcome = Outcome(OutcomeKind.STALE, "the file changed during the upload; its new content is pending")
            log_.info("upload_superseded", reason=outcome.detail)
            return outcome
        except JournalError:
            log_.exception("journal_write_failed")
            raise
        except Exception as exc:
            log_.exception("ingest_crashed")
            return self._retry(claim, log_, f"internal error: {type(exc).__name__}: {exc}", "internal_error")

    def _watch_removed(self, claim: ClaimedFile) -> Outcome:
        reason = f"watch {claim.record.watch!r} is no longer in the configuration"
        claim.mark_failed(reason, "watch_removed")
        return Outcome(OutcomeKind.FAILED, reason, code="watch_removed")

    def _ingest(self, attempt: Attempt) -> Outcome:
        record, claim, watch, log_ = attempt.record, attempt.claim, attempt.watch, attempt.log
        current = stat_candidate(watch.path, record.relpath)
        if isinstance(current, ScanProblem):
            return self._unusable(attempt, current)
        claimed = FileStat(record.size, record.mtime_ns, record.inode)
        if current != claimed:
            self.journal.observe(watch.name, record.relpath, current.size, current.mtime_ns, current.inode, self._clock())
            log_.info("file_changed_before_upload")
            return Outcome(OutcomeKind.CHANGED)

        name = attempt.relpath.name
        problem = name_problem(name)
        if problem is not None:
            if watch.invalid_names == "quarantine":
                reason = f"Box cannot take this name: {problem}"
                claim.mark_quarantined(reason, code="item_name_invalid")
                log_.warning("file_quarantined", reason=reason)
                return Outcome(OutcomeKind.QUARANTINED, reason, code="item_name_invalid")
            name = sanitize_name(name)
        started = time.monotonic()
        try:
            result = self._upload_into_folder(attempt, name)
        except UploadCancelled as exc:
            # Shutdown: parts sent so far are recorded; the next start resumes the session.
            claim.schedule_retry(str(exc), "shutdown", self._clock())
            log_.info("upload_paused_for_shutdown")
            return Outcome(OutcomeKind.RETRY, "stopped by shutdown", code="shutdown")
        except SourceChanged as exc:
            return self._changed_during_upload(attempt, str(exc))
        except BoxAPIError as exc:
            return self._box_error(attempt, exc)
        except OutcomeUnknown as exc:
            # The next attempt reconciles with Box before sending anything again.
            return self._retry(claim, log_, str(exc), "outcome_unknown")
        except BoxError as exc:
            return self._retry(claim, log_, str(exc), type(exc).__name__, retry_after=getattr(exc, "retry_after", None))
        except OSError as exc:
            return self._retry(claim, log_, f"cannot read the file: {exc.strerror or exc}", "unreadable")
        if isinstance(result, Outcome):
            return result
        return self._committed(attempt, result, time.monotonic() - started)

    # --------------------------------------------------------------- stages

    def _box_parents(self, attempt: Attempt) -> tuple[str, ...]:
        """The Box sub-folder path of a file under the watch's folder (empty: the folder itself)."""
        if not attempt.watch.mirror_subfolders:
            return ()
        return tuple(sanitize_name(p) if name_problem(p) else p for p in attempt.relpath.parent.parts)

    def _upload_into_folder(self, attempt: Attempt, name: str) -> UploadedFile | Outcome:
        """Upload into the file's Box folder; a sub-folder deleted on Box is created again.

        syncd made the sub-folders, so one an operator deleted (or trashed) is made
        again and the upload tried once more, rather than failing every file under it
        until a restart. The watch's own folder is the operator's: a 404 on it stays a
        configuration failure.
        """
        watch = attempt.watch
        box_parents = self._box_parents(attempt)
        if not box_parents:
            return self._upload(attempt, watch.folder_id, name)
        folder_id = self.folders.ensure(watch.folder_id, box_parents)
        try:
            return self._upload(attempt, folder_id, name)
        except BoxAPIError as exc:
            # Ask Box before re-creating anything: a 404 about something else (a file
            # deleted meanwhile) must stay the error it is.
            if exc.status != 404 or not self.folders.is_gone(folder_id):
                raise
        recreated = self.folders.recreate(watch.folder_id, box_parents, folder_id)
        attempt.log.warning("box_folder_recreated", folder_path="/".join(box_parents), old_folder_id=folder_id,
                            folder_id=recreated, reason="the folder was deleted in Box")
        return self._upload(attempt, recreated, name)

    def _upload(self, attempt: Attempt, folder_id: str, name: str) -> UploadedFile | Outcome:
        record, log_ = attempt.record, attempt.log
        sha1: str | None = record.sha1
        if attempt.interrupted or record.attempts > 1 or record.box_file_id:
            # A previous attempt may have finished remotely (crash or lost answer
            # after commit): look before sending anything, so it is never sent twice.
            sha1 = sha1 or self._hash(attempt)
            existing = self._already_in_box(record, folder_id, name, sha1)
            if existing is not None:
                log_.info("upload_reconciled", file_id=existing.file_id, sha1=sha1)
                return existing
        progress = JournalProgress(attempt, self.client.upload_url)
        log_.info("upload_started", size=record.size, folder_id=folder_id, new_version_of=record.box_file_id)

        def upload(attempt_name: str, existing_id: str | None) -> UploadedFile:
            return self.uploader.upload(attempt.path, folder_id, attempt_name, existing_file_id=existing_id,
                                        sha1=sha1, progress=progress, on_bytes=self._on_bytes,
                                        cancel=attempt.stopping)

        def decided(decision: str, reason: str) -> None:
            log_.info("name_conflict_resolved", decision=decision, reason=reason)

        policy = attempt.watch.conflict
        try:
            outcome = upload_with_policy(upload, name, policy, existing_file_id=record.box_file_id,
                                         on_decision=decided)
        except BoxAPIError as exc:
            if exc.status != 404 or record.box_file_id is None:
                raise
            # The file we uploaded before was deleted in Box: this content goes up as a new file.
            outcome = upload_with_policy(upload, name, policy, on_decision=decided)
        if isinstance(outcome, ConflictOutcome):
            if outcome.skipped:
                attempt.claim.mark_skipped(outcome.reason)
                log_.info("file_skipped", reason=outcome.reason)
                return Outcome(OutcomeKind.SKIPPED, outcome.reason)
            attempt.claim.mark_failed(outcome.reason, outcome.code)
            log_.warning("upload_failed", reason=outcome.reason, error_code=outcome.code)
            return Outcome(OutcomeKind.FAILED, outcome.reason, code=outcome.code)
        return outcome

    def _hash(self, attempt: Attempt) -> str:
        sha1, _ = hash_file(attempt.path)
        attempt.claim.record_sha1(sha1)
        return sha1

    def _already_in_box(self, record: FileRecord, folder_id: str, name: str, sha1: str) -> UploadedFile | None:
        try:
            if record.box_file_id:
                item = self.client.get_file(record.box_file_id)
            else:
                found = self.client.find_file(folder_id, name)
                item = self.client.get_file(str(found["id"])) if found else None
        except BoxAPIError as exc:
            if exc.status == 404:
                return None
            raise
        if item and str(item.get("sha1", "")).lower() == sha1.lower():
            return UploadedFile.from_json(item)
        return None

    def _committed(self, attempt: Attempt, result: UploadedFile, duration: float) -> Outcome:
        uploaded = attempt.claim.mark_uploaded(result.file_id, result.version_id, result.etag, result.sha1,
                                               self._clock())
        attempt.log.info("upload_committed", size=result.size, sha1=result.sha1, file_id=result.file_id,
                         version_id=result.version_id, duration_ms=round(duration * 1000),
                         parts_reused=result.parts_reused, bytes_reused=result.bytes_reused)
        if self._on_uploaded is not None:
            self._on_uploaded(uploaded, result, duration)
        self._after_upload(attempt, result)
        return Outcome(OutcomeKind.UPLOADED, uploaded=result)

    def _after_upload(self, attempt: Attempt, result: UploadedFile) -> None:
        watch, record, log_ = attempt.watch, attempt.record, attempt.log
        action = AfterUpload(watch.after_upload)
        if action is AfterUpload.KEEP:
            return
        hashed = FileStat(record.size, record.mtime_ns, record.inode)
        target = watch.archive_path(record.relpath, datetime.now().astimezone()) if action is AfterUpload.MOVE else None
        try:
            # Hash the bytes on disk now: the source is only touched if they are what Box holds.
            local_sha1, _ = hash_file(attempt.path)
            moved = apply_after_upload(action, attempt.path, hashed=hashed, local_sha1=local_sha1,
                                       box_sha1=result.sha1, archive_target=target)
        except (SourceActionRefused, SourceChanged, OSError) as exc:
            log_.warning("source_action_refused", action=str(action), reason=str(exc))
            return
        if moved is None:
            log_.info("source_deleted", sha1=local_sha1)
        else:
            log_.info("source_moved", archive=str(moved), sha1=local_sha1)

    # ------------------------------------------------------------- failures

    def _unusable(self, attempt: Attempt, problem: ScanProblem) -> Outcome:
        if problem.kind is ProblemKind.VANISHED:
            self.journal.remove(attempt.watch.name, attempt.record.relpath, "file disappeared before upload")
            attempt.log.info("file_gone_before_upload")
            return Outcome(OutcomeKind.GONE)
        return self._retry(attempt.claim, attempt.log, str(problem), str(problem.kind))

    def _changed_during_upload(self, attempt: Attempt, reason: str) -> Outcome:
        watch, record = attempt.watch, attempt.record
        current = stat_candidate(watch.path, record.relpath)
        attempt.log.info("upload_discarded_file_changed", reason=reason)
        try:
            if isinstance(current, ScanProblem):
                return self._unusable(attempt, current)
            observation = self.journal.observe(
                watch.name, record.relpath, current.size, current.mtime_ns, current.inode, self._clock()
            )
            if observation.kind == "unchanged":
                # Changed and changed back (or truncated and rewritten to the same stat):
                # hash again on the next attempt rather than trust anything read.
                return self._retry(attempt.claim, attempt.log, f"file changed during upload: {reason}",
                                   "source_changed")
        except StaleClaim:
            # Intake saw the change first and the new content was claimed again (or already
            # uploaded): the line above already says this upload was discarded, once.
            return Outcome(OutcomeKind.STALE, reason)
        return Outcome(OutcomeKind.CHANGED, reason)

    def _box_error(self, attempt: Attempt, exc: BoxAPIError) -> Outcome:
        claim, log_ = attempt.claim, attempt.log
        match exc.error_class:
            case ErrorClass.QUARANTINE:
                reason = f"Box cannot take this file: {exc.message} ({exc.code})"
                claim.mark_quarantined(reason, code=exc.code)
                log_.warning("file_quarantined", reason=reason, error_code=exc.code, request_id=exc.request_id)
                return Outcome(OutcomeKind.QUARANTINED, reason, code=exc.code)
            case ErrorClass.PERMANENT_CONFIG:
                reason = _config_reason(exc)
                claim.mark_failed(reason, exc.code)
                log_.error("upload_failed", reason=reason, error_code=exc.code, request_id=exc.request_id,
                           status=exc.status)
                return Outcome(OutcomeKind.FAILED, reason, code=exc.code)
            case ErrorClass.PERMANENT_FILE:
                reason = f"Box refused the upload: {exc}"
                claim.mark_failed(reason, exc.code)
                log_.warning("upload_failed", reason=reason, error_code=exc.code, request_id=exc.request_id)
                return Outcome(OutcomeKind.FAILED, reason, code=exc.code)
            case _:  # RETRY_LATER, QUOTA (until space is freed), REFRESH_AUTH, NAME_CONFLICT
                return self._retry(claim, log_, str(exc), exc.code or str(exc.status), retry_after=exc.retry_after,
                                   request_id=exc.request_id)

    def _retry(self, claim: ClaimedFile, log_: structlog.stdlib.BoundLogger, reason: str, code: str | None, *,
               retry_after: float | None = None, request_id: str | None = None) -> Outcome:
        """Schedule the claimed file's next attempt, or park it as failed once its attempts are spent."""
        attempts = claim.record.attempts
        if self.retry_schedule.exhausted(attempts):
            final = f"gave up after {attempts} attempts: {reason}"
            claim.mark_failed(final, code)
            log_.error("upload_failed", reason=final, error_code=code, request_id=request_id)
            return Outcome(OutcomeKind.FAILED, final, code=code)
        delay = self.retry_schedule.delay(attempts, retry_after=retry_after)
        claim.schedule_retry(reason, code, self._clock() + delay)
        log_.warning("upload_retry_scheduled", reason=reason, error_code=code, request_id=request_id,
                     retry_in_s=round(delay, 1))
        return Outcome(OutcomeKind.RETRY, reason, code=code)


def _config_reason(exc: BoxAPIError) -> str:
    if exc.status == 404:
        return f"the Box folder or file does not exist or is not visible to this account: {exc}"
    if exc.status in (401, 403) or exc.code in {"invalid_grant", "invalid_client"}:
        return f"Box refused the credentials or permissions: {exc}"
    return f"configuration problem: {exc}"
