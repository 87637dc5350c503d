"""One file from claim to verified commit: the work a worker does.

The journal has already marked the row `uploading` (intent) when `Ingest.process`
runs; every outcome is written back before it returns:

    claimed row ─▶ opened once, beneath its root, as readiness saw it? ─▶ its Box path,
      owned in the watch (names, collisions) ─▶ lease held, writes watched ─▶ Box folder
      ─▶ reconcile (a previous attempt may have finished remotely)
      ─▶ upload (resuming a saved session) ─▶ conflict policy
      ─▶ mark_uploaded, with the after-upload action (delete / move) journaled in the
         same transaction; `syncd.pipeline.post_actions` carries it out

The first three steps are `pipeline.claimed_source`'s. Failures become a
scheduled retry, `failed`, `quarantined` or `skipped`, each with a reason a
person can act on. A file that changed under us (at the claim, or a writer
during the upload) goes back through readiness without costing an attempt,
and waits its settle time again, longer each time: the new content is what
must go up, once it is finished. A file whose upload Box refused because it
refuses the credentials or the watch's folder (a `ClaimGate` confirms it by
asking Box, and pauses that scope) is given back without costing an attempt:
the file is not at fault. When the journal itself refuses to record an outcome
(disk full, locked too long), the claim goes to `StrandedClaims`, which puts the
row back to `pending` as soon as the journal accepts writes. When the claim went
stale but Box committed the upload, the Box file is remembered, so the next
attempt versions it.

Each claim is one `Attempt`: the claimed row, the journal handle bound to that
claim (every write checks the claim), the watch, the path, a bound logger, the
stop event and the job's progress (every byte hashed or sent, every heartbeat of
the Box layer, counts for the job whatever thread reports it). The stages take it
instead of parameter lists; `process` returns an `Outcome` whose `kind` is an
`OutcomeKind`.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Protocol

import structlog

from syncd.box import (
    AuthError,
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
from syncd.journal import (
    ClaimedFile,
    FileRecord,
    Journal,
    JournalError,
    PartRecord,
    PlannedPostAction,
    PostActionKind,
    SessionRecord,
    StaleClaim,
)
from syncd.logs import get_logger
from syncd.pipeline.actions import AfterUpload
from syncd.pipeline.claim_holds import AnyEvent, ClaimHold
from syncd.pipeline.claims import PAUSED_CODE, Paused
from syncd.pipeline.conflicts import ConflictOutcome, upload_with_policy
from syncd.pipeline.claimed_source import Next, Refusal, UploadGuard, claim_box_path, open_claimed
from syncd.pipeline.intake import Intake
from syncd.pipeline.names import display_path
from syncd.pipeline.progress import JobProgress
from syncd.pipeline.retry_schedule import RetrySchedule
from syncd.pipeline.source import OpenedSource
from syncd.pipeline.stranded import StrandedClaims
from syncd.pipeline.writers import HeldLease, LeaseMonitor

log = get_logger(__name__)

class OutcomeKind(enum.StrEnum):
    """What became of one claimed file."""

    UPLOADED = "uploaded"  # committed in Box and recorded
    RETRY = "retry"  # pending again, due at a scheduled time
    FAILED = "failed"  # parked until `syncd retry` (permanent error, or retries exhausted)
    QUARANTINED = "quarantined"  # parked: Box can never take the file as it is
    SKIPPED = "skipped"  # parked by the conflict policy `skip`
    CHANGED = "changed"  # changed before or during its upload: back through readiness, no attempt spent
    GONE = "gone"  # the file vanished before its upload: row removed
    STALE = "stale"  # the claim went stale (new content claimed again): this attempt recorded nothing
    PAUSED = "paused"  # Box refuses the credentials or the watch's folder: given back, no attempt spent
    STRANDED = "stranded"  # the journal refused the outcome: put back to pending once it accepts writes
    LOST = "lost"  # the claim's lease was lost (several hosts): stopped before its next Box write, nothing recorded


class BoxRefusals(Protocol):
    """Box refusing a whole scope, told apart from a refusal of one file (the service's circuit breaker)."""

    def confirm(self, watch: WatchConfig, error: BoxError) -> Paused | None:
        """`error` ended an upload into `watch`: if Box refuses the credentials or the watch's folder
        (asked again, not guessed from the error), pause that scope and say until when; None when
        the refusal is this file's alone."""


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
    progress: JobProgress = field(default_factory=JobProgress)  # this job's, whatever thread reports
    source: OpenedSource | None = None  # the file, opened once (claimed_source): every byte comes from it
    lease: HeldLease | None = None  # held while the upload (and what follows) runs, where one could be had
    cancel: threading.Event | None = None  # for the uploader: shutdown, or a writer seen (`changed`)
    changed: threading.Event | None = None  # a writer was seen during the upload
    hold: ClaimHold | None = None  # the claim's lease (several hosts): lost, the job stops at its next Box write

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
        self._log.info("part_uploaded", offset=part.offset, size=part.size, part_id=part.part_id)

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
        on_post_action: Callable[[], None] | None = None,
        refusals: BoxRefusals | None = None,
        on_outcome_refused: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        intake: Intake | None = None,
        leases: LeaseMonitor | None = None,
    ) -> None:
        self.journal = journal
        #: Where a changed file goes back to readiness, whose open counters see our opens, and
        #: which reports write events during an upload (None: no readiness to send files back to).
        self.intake = intake
        #: Holds a read lease on each file while it is uploaded (None: quiet time only).
        self.leases = leases
        self.client = client
        self.uploader = uploader
        self.folders = folders
        self.reconfigure(config)
        self._on_uploaded = on_uploaded
        self._on_bytes = on_bytes
        self._on_post_action = on_post_action
        self._refusals = refusals
        #: Claims whose outcome the journal refused; `on_outcome_refused` hears of each one that another
        #: holder's claim replaced meanwhile (a host that took the row over).
        self.stranded = StrandedClaims(lambda attempts: self.retry_schedule.delay(attempts), clock=clock,
                                       on_refused=on_outcome_refused)
        self._clock = clock

    def reconfigure(self, config: Config) -> None:
        """Use a reloaded configuration for the files claimed from now on."""
        self.config = config
        self.retry_schedule = RetrySchedule.from_config(config.retry)

    # ------------------------------------------------------------------ entry

    def process(self, record: FileRecord, stopping: threading.Event | None = None, *,
                interrupted: bool = False, progress: JobProgress | None = None,
                hold: ClaimHold | None = None) -> Outcome:
        """Take one claimed (`uploading`) row to its next recorded state; never raises.

        `stopping` pauses a chunked upload at its next part boundary. `interrupted`
        says a crash left this row uploading: Box is asked first whether the upload
        already went through, so it is never sent twice. `progress` is the job's
        (the worker pool's health check reads it). `hold` is the claim's lease on a journal
        shared by several hosts: once it is lost the upload stops before its next Box write
        and nothing is recorded (the row is, or will be, another holder's).
        """
        bound = log.bind(watch=record.watch, path=display_path(record.relpath), file_row=record.id,
                         attempt=record.attempts)
        claim = self.journal.claimed(record)
        try:
            watch = self.config.watch_named(record.watch)
        except KeyError:
            return self._guarded(claim, bound, lambda: self._watch_removed(claim))
        if hold is not None:
            stopping = AnyEvent(stopping, hold.lost)
        attempt = Attempt(record, claim, watch, watch.path / record.relpath, bound, stopping, interrupted,
                          progress or JobProgress(), hold=hold)
        return self._guarded(claim, bound, lambda: self._ingest(attempt), hold)

    def _guarded(self, claim: ClaimedFile, log_: structlog.stdlib.BoundLogger, step: Callable[[], Outcome],
                 hold: ClaimHold | None = None) -> Outcome:
        """Run `step`; a stale claim ends the attempt quietly, a bug schedules a retry, and a journal
        that refuses to record the outcome gets the claim back once it accepts writes: no row is
        left `uploading` until a restart."""
        try:
            return step()
        except StaleClaim:
            if hold is not None and hold.lost.is_set():
                return _lost(hold)
            outcome = Outcome(OutcomeKind.STALE, "the file changed during the upload; its new content is pending")
            log_.info("upload_superseded", reason=outcome.detail)
            return outcome
        except JournalError as exc:
            log_.error("journal_write_failed", reason=str(exc),
                       detail="the file goes back to pending as soon as the journal accepts writes")
            self.stranded.add(claim, str(exc))
            return Outcome(OutcomeKind.STRANDED, str(exc), code="journal_error")
        except Exception as exc:
            log_.exception("ingest_crashed")
            return self._retry(claim, log_, f"internal error: {type(exc).__name__}: {exc}", "internal_error")

    def _watch_removed(self, claim: ClaimedFile) -> Outcome:
        reason = f"watch {claim.record.watch!r} is no longer in the configuration"
        claim.mark_failed(reason, "watch_removed")
        return Outcome(OutcomeKind.FAILED, reason, code="watch_removed")

    def _ingest(self, attempt: Attempt) -> Outcome:
        own_opens = self.intake.own_opens(attempt.watch.name) if self.intake is not None else None
        opened = open_claimed(attempt.record, attempt.watch, own_opens)
        if isinstance(opened, Refusal):
            return self._refused(attempt, opened)
        with opened as source:
            names = claim_box_path(attempt.claim, attempt.watch)
            if isinstance(names, Refusal):
                return self._refused(attempt, names)
            if "/".join(names) != (attempt.record.relpath if attempt.watch.mirror_subfolders else attempt.relpath.name):
                # Sanitised (invalid_names: sanitize) or renamed for a collision (name_collisions: rename).
                attempt.log.info("box_name_mapped", box_path="/".join(names))
            with UploadGuard(source, attempt.watch.name, leases=self.leases, intake=self.intake,
                             stopping=attempt.stopping) as guard:
                if guard.refusal is not None:
                    return self._refused(attempt, guard.refusal)
                attempt = replace(attempt, source=source, lease=guard.lease, cancel=guard.cancel,
                                  changed=guard.changed)
                return self._upload_guarded(attempt, names, guard)

    def _upload_guarded(self, attempt: Attempt, names: tuple[str, ...], guard: UploadGuard) -> Outcome:
        claim, log_ = attempt.claim, attempt.log
        started = time.monotonic()
        try:
            result = self._upload_into_folder(attempt, names)
        except UploadCancelled as exc:
            if attempt.hold is not None and attempt.hold.lost.is_set():
                # The session stays open on Box: the next holder resumes it from Box's part list.
                return _lost(attempt.hold)
            if guard.changed.is_set():
                return self._refused(attempt, Refusal(Next.BACK_TO_READINESS, guard.change_reason or str(exc),
                                                      "writer_seen"))
            # Shutdown: parts sent so far are recorded; the next start resumes the session.
            claim.schedule_retry(str(exc), "shutdown", self._clock())
            log_.info("upload_paused_for_shutdown")
            return Outcome(OutcomeKind.RETRY, "stopped by shutdown", code="shutdown")
        except SourceChanged as exc:
            return self._refused(attempt, Refusal(Next.BACK_TO_READINESS, guard.change_reason or exc.reason,
                                                  "source_changed"))
        except BoxAPIError as exc:
            return self._paused(attempt, exc) or self._box_error(attempt, exc)
        except OutcomeUnknown as exc:
            # The next attempt reconciles with Box before sending anything again.
            return self._retry(claim, log_, str(exc), "outcome_unknown")
        except AuthError as exc:
            return self._paused(attempt, exc) or self._retry(claim, log_, str(exc), exc.code or "auth_error")
        except BoxError as exc:
            return self._retry(claim, log_, str(exc), type(exc).__name__, retry_after=getattr(exc, "retry_after", None))
        except OSError as exc:
            return self._retry(claim, log_, f"cannot read the file: {exc.strerror or exc}", "unreadable")
        if isinstance(result, Outcome):
            return result
        if guard.changed.is_set() and self.intake is not None:
            # Committed before the writer's bytes could reach Box (Box checks the SHA-1 hashed from our
            # descriptor): what it holds is the file as it was found ready. The new content follows.
            self.intake.back_to_readiness(attempt.watch.name, attempt.record.relpath)
        return self._committed(attempt, result, time.monotonic() - started)

    # --------------------------------------------------------------- stages

    def _upload_into_folder(self, attempt: Attempt, names: tuple[str, ...]) -> UploadedFile | Outcome:
        """Upload into the file's Box folder; a sub-folder deleted on Box is created again.

        syncd made the sub-folders, so one an operator deleted (or trashed) is made
        again and the upload tried once more, rather than failing every file under it
        until a restart. The watch's own folder is the operator's: a 404 on it stays a
        configuration failure.
        """
        watch = attempt.watch
        box_parents, name = names[:-1], names[-1]
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
        elif sha1 is None and record.size < self.uploader.chunked_threshold:
            # A direct upload sends its SHA-1 first (Box checks the body against it): hash it here,
            # from the one descriptor. A chunked upload hashes its parts as it sends them.
            sha1 = attempt.source.sha1(on_progress=attempt.progress.advance) if attempt.source is not None else None
        progress = JournalProgress(attempt, self.client.upload_url)
        log_.info("upload_started", size=record.size, folder_id=folder_id, new_version_of=record.box_file_id)
        # Every byte sent comes from the descriptor opened and checked at the claim (invariant 7).
        source = attempt.source if attempt.source is not None else attempt.path

        def upload(attempt_name: str, existing_id: str | None) -> UploadedFile:
            # A version of the file this row uploaded goes only onto the version it knows (If-Match):
            # Box answers 412 if someone changed it since, unless the change was our own lost commit.
            etag = record.box_etag if existing_id is not None and existing_id == record.box_file_id else None
            return self.uploader.upload(source, folder_id, attempt_name, existing_file_id=existing_id,
                                        etag=etag, sha1=sha1, progress=progress,
                                        on_bytes=lambda n: self._bytes(attempt, n),
                                        cancel=attempt.cancel or attempt.stopping)

        def decided(decision: str, reason: str) -> None:
            log_.info("name_conflict_resolved", decision=decision, reason=reason)

        def ours(file_id: str) -> bool:
            # A superseded attempt of this row may have committed it (remember_commit) after this claim began.
            current = self.journal.get(record.id)
            return current is not None and current.box_file_id == file_id

        policy = attempt.watch.conflict
        try:
            outcome = upload_with_policy(upload, name, policy, existing_file_id=record.box_file_id,
                                         on_decision=decided, ours=ours)
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

    def _bytes(self, attempt: Attempt, n: int) -> None:
        """Bytes Box acknowledged, or a heartbeat (0) while the upload waits: the job's progress."""
        attempt.progress.advance(n)
        if self._on_bytes is not None and n:
            self._on_bytes(n)

    def _hash(self, attempt: Attempt) -> str:
        sha1 = attempt.source.sha1(on_progress=attempt.progress.advance) if attempt.source is not None else hash_file(attempt.path)[0]
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
        planned = self._post_action(attempt)
        try:
            uploaded = attempt.claim.mark_uploaded(result.file_id, result.version_id, result.etag, result.sha1,
                                                   self._clock(), post_action=planned)
        except StaleClaim:
            # Box holds this upload although the file changed meanwhile: keep the Box file, so the
            # new content goes up as its next version, not as a duplicate (nor skipped, nor renamed).
            if attempt.claim.remember_commit(result.file_id, result.version_id, result.etag):
                attempt.log.info("superseded_commit_remembered", file_id=result.file_id,
                                 version_id=result.version_id)
            raise
        attempt.log.info("upload_committed", size=result.size, sha1=result.sha1, file_id=result.file_id,
                         version_id=result.version_id, duration_ms=round(duration * 1000),
                         parts_reused=result.parts_reused, bytes_reused=result.bytes_reused,
                         after_upload=planned.action.value if planned else "keep")
        if self._on_uploaded is not None:
            self._on_uploaded(uploaded, result, duration)
        if planned is not None and self._on_post_action is not None:
            self._on_post_action()
        return Outcome(OutcomeKind.UPLOADED, uploaded=result)

    def _post_action(self, attempt: Attempt) -> PlannedPostAction | None:
        """The watch's after-upload action for this file, decided now (the archive path included)."""
        watch = attempt.watch
        action = AfterUpload(watch.after_upload)
        if action is AfterUpload.KEEP:
            return None
        if action is AfterUpload.DELETE:
            return PlannedPostAction(PostActionKind.DELETE)
        return PlannedPostAction(PostActionKind.MOVE,
                                 watch.archive_path(attempt.record.relpath, datetime.now().astimezone()))

    # ------------------------------------------------------------- failures

    def _refused(self, attempt: Attempt, refusal: Refusal) -> Outcome:
        """Record why the claimed file was not (or no longer) uploaded (see `claimed_source.Next`)."""
        claim, log_, record = attempt.claim, attempt.log, attempt.record
        match refusal.next:
            case Next.GONE:
                self.journal.remove(attempt.watch.name, record.relpath, "file disappeared before upload")
                log_.info("file_gone_before_upload", reason=refusal.reason)
                return Outcome(OutcomeKind.GONE, refusal.reason)
            case Next.BACK_TO_READINESS:
                # No attempt spent: readiness waits for it again (longer each time) before a worker may.
                claim.back_to_readiness(refusal.reason, now=self._clock())
                if self.intake is not None:
                    self.intake.back_to_readiness(attempt.watch.name, record.relpath)
                log_.info("upload_discarded_file_changed", reason=refusal.reason, error_code=refusal.code)
                return Outcome(OutcomeKind.CHANGED, refusal.reason, code=refusal.code)
            case Next.PARK:
                claim.mark_quarantined(refusal.reason, code=refusal.code)
                log_.warning("file_quarantined", reason=refusal.reason, error_code=refusal.code)
                return Outcome(OutcomeKind.QUARANTINED, refusal.reason, code=refusal.code)
            case _:
                return self._retry(claim, log_, refusal.reason, refusal.code)

    def _paused(self, attempt: Attempt, exc: BoxError) -> Outcome | None:
        """Box refuses the credentials or the watch's folder, not this file: give the claim back
        without spending an attempt, due when Box is asked again. None when it is the file's refusal."""
        if self._refusals is None or exc.error_class not in (ErrorClass.PERMANENT_CONFIG, ErrorClass.REFRESH_AUTH):
            return None
        paused = self._refusals.confirm(attempt.watch, exc)
        if paused is None:
            return None
        attempt.claim.release(paused.reason, PAUSED_CODE, paused.until)
        attempt.log.info("upload_paused_box_refusing", reason=paused.reason, error_code=getattr(exc, "code", None))
        return Outcome(OutcomeKind.PAUSED, paused.reason, code=PAUSED_CODE)

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
                if exc.status == 412 and attempt.record.box_etag:
                    reason = (f"Box's copy changed since syncd uploaded it (its etag is no longer "
                              f"{attempt.record.box_etag}): not uploaded over it; `syncd forget` the file to upload "
                              f"it again by the watch's conflict policy ({exc})")
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


def _lost(hold: ClaimHold) -> Outcome:
    """A job stopped because its claim's lease was lost (the lease keeper logged `claim_lost`)."""
    return Outcome(OutcomeKind.LOST, hold.lost_reason or "the claim's lease was lost", code="claim_lost")


def _config_reason(exc: BoxAPIError) -> str:
    if exc.status == 404:
        return f"the Box folder or file does not exist or is not visible to this account: {exc}"
    if exc.status in (401, 403) or exc.code in {"invalid_grant", "invalid_client"}:
        return f"Box refused the credentials or permissions: {exc}"
    return f"configuration problem: {exc}"
