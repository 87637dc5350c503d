"""After-upload actions as a journaled step (invariant 8): carry out the deletes and moves
the journal holds, and keep each until it is done.

`Ingest` journals the action with the upload (`mark_uploaded(post_action=...)`) and pokes
the runner. One thread (`PostActionRunner`) then carries out:

- every action at once, after a restart (`start`): a crash between the commit and the
  action, or in the middle of it, is finished, not forgotten;
- a new action as soon as it is poked;
- every action of a watch at its backstop scan (`run_for_scan`), whatever its retry time;
- an action that could not be done now (read-only drop folder, permission, a writer has
  the file open, archive disk full or read-only, ...) again at its retry time, with the
  same backoff as uploads (``retry``), never giving up: `syncd status` and the
  ``syncd_post_actions_pending`` metric show it, with the reason, until it is done.

Each action is checked and carried out by `syncd.pipeline.actions` (the file is the one
uploaded, nobody writes it, its bytes are Box's; nothing overwritten). An action whose
source is already gone ends (`source_already_gone`); one whose source changed since the
upload is given up (the new content is intake's business): the source stays.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from syncd.config import Config
from syncd.journal import Journal, JournalError, PostAction, PostActionKind
from syncd.logs import get_logger
from syncd.pipeline.actions import (
    ActionDeferred,
    ActionRefused,
    ArchivePlan,
    UploadedSource,
    archive_verified,
    delete_verified,
    open_uploaded,
    remove_set_aside,
    verify,
)
from syncd.pipeline.identity import FileStat
from syncd.pipeline.names import display_path
from syncd.pipeline.progress import JobProgress
from syncd.pipeline.retry_schedule import RetrySchedule
from syncd.pipeline.writers import LeaseMonitor

log = get_logger(__name__)

#: Actions read from the journal per page of a pass.
PAGE = 100
#: Seconds between passes while the journal refuses to record outcomes (disk full).
JOURNAL_REFUSED_WAIT = 5.0


class PostActionRunner:
    """Carries out the journaled after-upload actions on one thread (see the module docstring)."""

    def __init__(self, config: Config, journal: Journal, *, leases: LeaseMonitor | None = None,
                 on_activity: Callable[[], None] | None = None, clock: Callable[[], float] = time.time) -> None:
        self.journal = journal
        self._leases = leases
        self._on_activity = on_activity  # after each action: `syncd once` may be done (syncd.pipeline.activity)
        self._clock = clock
        self._config = config
        self._schedule = RetrySchedule.from_config(config.retry)
        self._wake = threading.Condition()
        self._poked = False
        self._everything: set[str | None] = {None}  # watches (None: all) whose actions are all due now
        self._stopping = False
        self._thread: threading.Thread | None = None
        #: The action being carried out, for the health check (None when idle).
        self.progress: JobProgress | None = None
        self._journal_refused = False
        self._started_pass = False

    def reconfigure(self, config: Config) -> None:
        """Use a reloaded configuration (watch roots, retry backoff) from the next action on."""
        self._config = config
        self._schedule = RetrySchedule.from_config(config.retry)

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the thread; its first pass takes every journaled action (a restart finishes them)."""
        self._thread = threading.Thread(target=self._run, name="post-actions", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the action in progress (the journal keeps the rest)."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def poke(self) -> None:
        """A new action was journaled: look now."""
        with self._wake:
            self._poked = True
            self._wake.notify_all()

    def run_for_scan(self, watch: str) -> None:
        """A backstop scan of `watch` finished: take all its actions now, whatever their retry time."""
        with self._wake:
            self._everything.add(watch)
            self._wake.notify_all()

    # ---------------------------------------------------------------- passes

    def run_pass(self, *, everything_of: set[str | None] = frozenset()) -> int:
        """Carry out every due action (and every action of the watches in `everything_of`, None for
        all); returns how many were tried. The thread calls this; tests may too."""
        tried = 0
        if None in everything_of:
            return self._walk(None, None)
        for watch in everything_of:
            tried += self._walk(None, watch)
        return tried + self._walk(self._clock(), None)

    def _walk(self, due_by: float | None, watch: str | None) -> int:
        tried, after = 0, 0
        while not self._stopping:
            try:
                page = self.journal.due_post_actions(due_by, watch=watch, after_id=after, limit=PAGE)
            except JournalError as exc:
                log.warning("post_actions_unreadable", reason=str(exc))
                return tried
            if not page:
                return tried
            for action in page:
                if self._stopping:
                    return tried
                self.carry_out(action)
                tried += 1
            after = page[-1].id
        return tried

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and not self._poked and not self._everything:
                    self._wake.wait(self._idle_wait())
                    if self._due_now():
                        break
                if self._stopping:
                    return
                everything, self._everything = self._everything, set()
                self._poked = False
            self._journal_refused = False
            first = self._started_pass is False
            self._started_pass = True
            try:
                tried = self.run_pass(everything_of=everything)
            except Exception:  # one bad action must not end the thread that does them all
                log.exception("post_actions_pass_failed")
            else:
                if first and tried:
                    log.info("post_actions_resumed", actions=tried,
                             detail="after-upload actions left by the previous run were carried out")
            if self._journal_refused:
                # The actions stay due: wait for the journal rather than try them again at once.
                with self._wake:
                    self._wake.wait_for(lambda: self._stopping, JOURNAL_REFUSED_WAIT)

    def _idle_wait(self) -> float:
        try:
            due = self.journal.next_post_action_time()
        except JournalError:
            return 5.0
        return 60.0 if due is None else min(60.0, max(0.05, due - self._clock()))

    def _due_now(self) -> bool:
        try:
            due = self.journal.next_post_action_time()
        except JournalError:
            return False
        return due is not None and due <= self._clock()

    # ---------------------------------------------------------------- one action

    def carry_out(self, action: PostAction) -> None:
        """Try one action and record its outcome (done, given up, or tried again later)."""
        bound = log.bind(watch=action.watch, path=display_path(action.relpath), file_row=action.file_id,
                         action=action.action.value)
        self.progress = progress = JobProgress(f"{action.watch}:{action.relpath}")
        try:
            self._carry_out(action, bound, progress)
        except ActionRefused as exc:
            kept = f"source kept: {exc}"
            self._record(lambda: self.journal.post_action_given_up(action, kept))
            bound.warning("source_action_refused", reason=str(exc), sha1=action.sha1)
        except ActionDeferred as exc:
            self._defer(action, bound, str(exc), exc.code)
        except OSError as exc:
            self._defer(action, bound, exc.strerror or str(exc), _errno_name(exc))
        except Exception as exc:  # a bug: the action waits with backoff instead of being retried in a loop
            bound.exception("source_action_crashed")
            self._defer(action, bound, f"internal error: {type(exc).__name__}: {exc}", "internal_error")
        finally:
            self.progress = None
            if self._on_activity is not None:
                self._on_activity()

    def _carry_out(self, action: PostAction, bound: structlog.stdlib.BoundLogger, progress: JobProgress) -> None:
        try:
            watch = self._config.watch_named(action.watch)
        except KeyError:
            raise ActionDeferred(f"watch {action.watch!r} is no longer in the configuration",
                                 "watch_removed") from None
        uploaded = UploadedSource(watch.path, action.relpath, FileStat(action.size, action.mtime_ns, action.inode),
                                  action.sha1)
        target = open_uploaded(uploaded, self._leases)
        if target is None:
            # Gone: deleted by someone, or by a run that crashed before it could say so (which may
            # have left the file set aside next to its name: finished now).
            leftovers = remove_set_aside(uploaded, progress.advance)
            self._record(lambda: self.journal.post_action_done(action, "the source was already gone"))
            bound.info("source_already_gone", set_aside_removed=leftovers)
            return
        with target:
            verify(target, action.sha1, progress.advance)
            if action.action is PostActionKind.DELETE:
                delete_verified(target)
                self._record(lambda: self.journal.post_action_done(action, "source deleted after upload"))
                bound.info("source_deleted", sha1=action.sha1)
                return
            assert action.archive_path is not None
            plan = ArchivePlan(action.archive_path, action.id, action.archived_as)
            archived = archive_verified(target, plan, action.sha1, on_progress=progress.advance,
                                        record_name=lambda path: self._record_name(action, path))
        self._record(lambda: self.journal.post_action_done(action, f"source archived as {archived}"))
        bound.info("source_moved", archive=str(archived), sha1=action.sha1)

    def _record_name(self, action: PostAction, path: Path) -> None:
        if not self.journal.post_action_archived_as(action, path):
            raise ActionDeferred("the file was uploaded again meanwhile", "superseded")

    def _defer(self, action: PostAction, bound: structlog.stdlib.BoundLogger, reason: str, code: str) -> None:
        delay = self._schedule.delay(action.attempts + 1)
        self._record(lambda: self.journal.post_action_failed(action, reason, code, self._clock() + delay))
        bound.warning("source_action_deferred", reason=reason, error_code=code, attempt=action.attempts + 1,
                      retry_in_s=round(delay, 1))

    def _record(self, write: Callable[[], object]) -> None:
        """Journal an outcome; if the journal refuses, the action stays as it was and is tried again."""
        try:
            write()
        except JournalError as exc:
            self._journal_refused = True
            log.warning("post_action_not_recorded", reason=str(exc),
                        detail="the action stays journaled and is tried again")


def _errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, "EIO")
