"""Decide when a nominated file has stopped changing and may be ingested.

Events and scans only *nominate* paths (:meth:`ReadinessTracker.touch`); the
tracker turns them into :class:`ReadyCandidate` values once the file is stable:

* no event touched it for the settle period (``settle``, default 2 s), or only
  ``close_quiet`` (default 0.4 s; never more than ``settle``) when the last
  event was a close-after-write (``touch(..., closed=True)``); any later write
  event restarts the full wait;
* and two looks at its identity (device, inode, size, mtime_ns, ctime_ns),
  both after the last event, agree: the first taken early in the quiet period
  (``stat_interval`` after the event, or sooner for a close) and the second at
  its end, at least ``stat_interval`` apart. mtime alone is never trusted:
  ``cp -p`` keeps an old mtime, so a file is never "old enough" by its mtime.
  Even with ``settle=0`` both looks are taken, so a file is never ready sooner
  than ``stat_interval`` after an event;
* and no writer is seen at the second look. For a watch registered with a
  :class:`~syncd.pipeline.writers.WriterDetector`, the second look opens the
  file with :func:`~syncd.pipeline.source.open_source` (beneath the root, no
  symlinks, non-blocking) and asks, in this order: a read lease (the kernel
  says whether any process has it open for writing: authoritative, readers
  such as ``tail -f`` do not count), else the watch's open/close event count
  (inotify watches: any opener counts, see :mod:`syncd.pipeline.writers` for
  what it cannot see), else nothing: quiet time alone decides (polling
  watches on NFS/SMB, and files syncd may not lease on watches without
  events). A file a writer holds open keeps waiting, re-checked with the
  backoff below, however long it has been quiet; its writer's close
  (``IN_CLOSE_WRITE``) nominates it again at once.

What is guaranteed, by watch type:

* where leases work (a local file system; syncd owns the files or has
  ``CAP_LEASE``; inotify or polling): at the second look, no process had the
  file open for writing, under any name; plus quiet time. (A writer that
  opens it after that look is the upload's business: it holds a lease, see
  :class:`~syncd.pipeline.writers.LeaseMonitor`.)
* inotify watch without leases: at the second look, no process that opened
  it through the watched directories since the observer started still had
  it open (readers count too); a writer that opened it earlier (start-up,
  moved in, across an event overflow) is caught only by quiet time, and
  inotify's merging of identical events can hide one opener (see
  :mod:`syncd.pipeline.writers`).
* polling watch on NFS/SMB, or a watch without a detector: quiet time only:
  a writer that pauses longer than ``settle`` with the file open is not seen,
  and its partial file is taken as finished. Polling watches therefore need
  ``settle`` >= 2 x poll interval (enforced by the config loader).

**Files found by a scan** (``touch(..., found_by_scan=True)``) may skip the
wait when the tracker is built with ``ready_by_ctime=True`` (the tracker's
default is off; the daemon turns it on unless ``readiness.ready_by_ctime`` is
false; see :func:`ready_by_ctime`): the first look is taken at once and the
file is ready then if its ctime is older than ``settle`` and a lease says no
process has it open for writing. ctime cannot be set back (``cp -p`` and
``touch`` set mtime only), so an old ctime means nothing changed the file for
that long. Anything else settles as above: a fresh ctime, a writer, or no
lease to ask (NFS/SMB, a file syncd may not lease: the answer is unknown).

**Files sent back** (:meth:`ReadinessTracker.requeue`): a worker that finds a
file changed after it was ready (at its claim, or a writer during its upload)
sends it back here rather than uploading what it found. It waits as any
nominated file does, and at least ``settle`` x 2^(n-1) after its n-th return
(up to ``recheck_max``), so a file rewritten in bursts is not claimed, hashed
and sent again at every pause; its tracking time counts from its first return.

A file that changes between two stats without any event (NFS/SMB, writes
through mmap, lost events) counts as still being written: it is re-checked
with an exponential backoff (``settle`` doubling up to ``recheck_max``). A file
that has not settled after ``unsettled_after`` (default 1 h) is reported
through ``on_unsettled`` (again every ``unsettled_after``) and stays tracked.

Latency with the defaults: a file written and closed in one go is ready
``close_quiet`` (0.4 s) after the close; without a close event (polling) it is
ready ``settle`` after the last event the observer reported.

One thread, one heap of deadlines, one small record per tracked file; no
per-file timers. A stream of events on one file costs a dict update each and
at most one heap entry, re-armed when it comes due. Callbacks run in the
tracker's thread, outside its lock; an exception from a callback is logged and
does not stop the tracker.
"""

from __future__ import annotations

import heapq
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from syncd.logs import get_logger
from syncd.pipeline.identity import FileIdentity, HasIdentity
from syncd.pipeline.scanner import FINAL_PROBLEMS, ProblemKind, ScanProblem, normalize_relpath, stat_identity
from syncd.pipeline.source import OpenRefused
from syncd.pipeline.writers import (
    QUIET_TIME_ONLY,
    WriterDetector,
    WriterEvidence,
    WriterLook,
    WriterObservation,
    WriterState,
)

log = get_logger(__name__)

DEFAULT_SETTLE = 2.0
DEFAULT_CLOSE_QUIET = 0.4
DEFAULT_STAT_INTERVAL = 0.3
DEFAULT_RECHECK_MAX = 60.0
DEFAULT_UNSETTLED_AFTER = 3600.0
# Requeued files remembered (for their backoff) before old entries are pruned.
_BOUNCES_KEPT = 256


@dataclass(frozen=True, slots=True)
class ReadyCandidate(HasIdentity):
    """A file that stopped changing: what the journal needs to decide whether it is new work.

    ``identity`` is what the worker must find when it opens the file
    (``open_source(..., expect=identity)``); ``writer`` is the evidence that
    no writer had it open (for logs and metrics); ``by_ctime``: a file found by a
    scan, ready at once by its old ctime and a lease (no quiet period waited).
    """

    watch: str
    relpath: str
    identity: FileIdentity
    writer: WriterObservation = QUIET_TIME_ONLY
    by_ctime: bool = False


@dataclass(frozen=True, slots=True)
class UnsettledFile:
    """A file still changing, or still held open by a writer, after ``unsettled_after`` seconds of tracking."""

    watch: str
    relpath: str
    tracked_seconds: float
    last_stat: FileIdentity | None
    reason: str


def ready_by_ctime(identity: FileIdentity, writer: WriterObservation, *, now_ns: int, settle: float) -> bool:
    """True when a file found by a scan may be ready without waiting (issue 12's rule).

    Its ctime must be at least ``settle`` in the past (a ctime in the future,
    from a skewed clock, is not old) and the kernel must have said, through a
    lease, that no process has it open for writing. Counting open events is
    not enough: a file found by a scan may have been opened before the watch
    started.
    """
    return (writer.state is WriterState.NO_WRITER and writer.evidence is WriterEvidence.LEASE
            and identity.ctime_ns <= now_ns - int(settle * 1e9))


@dataclass(slots=True)
class _Tracked:
    watch: str
    relpath: str
    first_seen: float
    last_event: float
    closed: bool
    next_unsettled_report: float
    events: int = 0  # bumped by every touch, to discard a stat taken while an event arrived
    by_scan: bool = False  # nominated by a scan and no event since: may be ready by its ctime
    last_stat: FileIdentity | None = None
    last_stat_at: float = 0.0
    quiet_checks_failed: int = 0  # consecutive checks that found changes without events or errors
    problem_reported: bool = False
    hold_until: float = 0.0  # not ready before this (a requeued file's backoff)
    token: int = 0  # identifies the one live heap entry; 0 = none
    scheduled_at: float = math.inf


@dataclass(slots=True)
class _Bounce:
    """How often a file came back from the workers changed (see ReadinessTracker.requeue)."""

    count: int
    since: float
    last: float


@dataclass(slots=True)
class _Watch:
    root: Path
    follow_symlinks: bool
    writers: WriterDetector | None


# Heap entries are plain tuples (deadline, token, key): compared in C, and tokens are unique so
# keys are never compared. A dataclass with order=True cost a third of a 100,000-file pass.
_HeapEntry = tuple[float, int, tuple[str, str]]


class ReadinessError(ValueError):
    """Bad configuration of, or bad input to, a :class:`ReadinessTracker`."""


class ReadinessTracker:
    """Turns nominated paths into :class:`ReadyCandidate` once they are stable.

    ``on_ready(candidate)``: called once per stable file (the record is then
    dropped; a later event nominates it again). ``on_gone(watch, relpath)``:
    a tracked file vanished before it settled. ``on_problem(watch, problem)``:
    a tracked path is unusable (symlink, FIFO, permission denied...; see
    :class:`~syncd.pipeline.scanner.ScanProblem`). ``on_unsettled(file)``: a
    file has been changing (or held open by a writer) for longer than
    ``unsettled_after``. ``ready_by_ctime``: let files found by a scan skip
    the wait (see :func:`ready_by_ctime`). Durations are seconds; ``clock`` is
    a monotonic clock and ``wall_clock_ns`` the clock ctimes are compared
    with (both injectable so the decision logic can be tested without
    sleeping).

    Call :meth:`add_watch` for every root, then :meth:`start`; or drive it
    without a thread by calling :meth:`process_due`.
    """

    def __init__(
        self,
        on_ready: Callable[[ReadyCandidate], None],
        *,
        settle: float = DEFAULT_SETTLE,
        close_quiet: float = DEFAULT_CLOSE_QUIET,
        stat_interval: float = DEFAULT_STAT_INTERVAL,
        recheck_max: float = DEFAULT_RECHECK_MAX,
        unsettled_after: float = DEFAULT_UNSETTLED_AFTER,
        on_gone: Callable[[str, str], None] | None = None,
        on_problem: Callable[[str, ScanProblem], None] | None = None,
        on_unsettled: Callable[[UnsettledFile], None] | None = None,
        ready_by_ctime: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        _check_durations(settle, close_quiet, stat_interval, recheck_max, unsettled_after)
        self.settle = settle
        self.close_quiet = close_quiet
        self.stat_interval = stat_interval
        self.recheck_max = recheck_max
        self.unsettled_after = unsettled_after
        self._on_ready = on_ready
        self._on_gone = on_gone
        self._on_problem = on_problem
        self._on_unsettled = on_unsettled
        self.ready_by_ctime = ready_by_ctime
        self._clock = clock
        self._wall_clock_ns = wall_clock_ns
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._watches: dict[str, _Watch] = {}
        self._records: dict[tuple[str, str], _Tracked] = {}
        self._bounces: dict[tuple[str, str], _Bounce] = {}
        self._heap: list[_HeapEntry] = []
        self._next_token = 1
        self._delivering = 0  # ready files taken off the records whose callbacks have not run yet
        self._stopping = False
        self._kicked = False
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- setup

    def add_watch(self, name: str, root: Path | str, *, follow_symlinks: bool = False,
                  writers: WriterDetector | None = None) -> None:
        """Register a watched root under ``name`` (the name nominations use).

        ``follow_symlinks`` must match the watch's Scanner so both agree on
        what a candidate is (see :mod:`syncd.pipeline.scanner`). ``writers``:
        how to see writers of this watch's files; None means quiet time only.
        A watch that follows symlinks gets quiet time only too: the open that
        asks about writers never follows a link.
        """
        if not isinstance(name, str) or not name:
            raise ReadinessError(f"watch name must be a non-empty string, got {name!r}")
        with self._lock:
            self._watches[name] = _Watch(root=Path(os.path.abspath(root)), follow_symlinks=follow_symlinks,
                                         writers=None if follow_symlinks else writers)

    def reconfigure(
        self,
        *,
        settle: float | None = None,
        close_quiet: float | None = None,
        stat_interval: float | None = None,
        recheck_max: float | None = None,
        unsettled_after: float | None = None,
        ready_by_ctime: bool | None = None,
    ) -> None:
        """Change durations (and ``ready_by_ctime``) at run time (config reload); None keeps a value.

        Validated together like the constructor's (raises :class:`ReadinessError`
        and changes nothing on a bad combination). Files already waiting use
        the new values from their next check on.
        """
        with self._wakeup:
            new = {
                "settle": self.settle if settle is None else settle,
                "close_quiet": self.close_quiet if close_quiet is None else close_quiet,
                "stat_interval": self.stat_interval if stat_interval is None else stat_interval,
                "recheck_max": self.recheck_max if recheck_max is None else recheck_max,
                "unsettled_after": self.unsettled_after if unsettled_after is None else unsettled_after,
            }
            _check_durations(**new)
            self.settle, self.close_quiet, self.stat_interval = new["settle"], new["close_quiet"], new["stat_interval"]
            self.recheck_max, self.unsettled_after = new["recheck_max"], new["unsettled_after"]
            if ready_by_ctime is not None:
                self.ready_by_ctime = ready_by_ctime  # for files nominated from now on
            self._kicked = True  # shorter periods may make some files due earlier than planned
            self._wakeup.notify()

    def start(self) -> None:
        """Start the tracker thread (idempotent)."""
        with self._lock:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="syncd-readiness", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the tracker thread; tracked records are kept (nothing is reported)."""
        with self._wakeup:
            self._stopping = True
            thread, self._thread = self._thread, None
            self._wakeup.notify_all()
        if thread is not None:
            thread.join(timeout)

    def __enter__(self) -> ReadinessTracker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def is_alive(self) -> bool:
        """True while the tracker thread runs (for the daemon's health check)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    # ----------------------------------------------------------- nominations

    def touch(self, watch: str, relpath: str, *, closed: bool = False, found_by_scan: bool = False) -> None:
        """Something happened to ``relpath`` under ``watch``: (re)start its wait.

        ``closed=True`` for a close-after-write (or a rename into place under
        inotify): only ``close_quiet`` is then needed; any other event sets the
        full ``settle`` wait again. ``found_by_scan=True`` for a nomination by a
        scan rather than an event: with ``ready_by_ctime`` the file may be
        ready at once (only while no event touched it). Raises
        :class:`ReadinessError` for an unknown watch and
        :class:`~syncd.pipeline.scanner.RelativePathError` for a path that
        would leave the root.
        """
        relpath = normalize_relpath(relpath)
        with self._wakeup:
            record = self._touch(watch, relpath, closed=closed, found_by_scan=found_by_scan)
            self._schedule(record, self._first_stat_time(record))

    def requeue(self, watch: str, relpath: str) -> float:
        """A file found ready changed afterwards (a worker saw it at its claim or during its upload):
        wait for it again, longer each time. Returns the seconds it is held at least.

        The wait is the usual one (quiet time, two agreeing looks, no writer)
        and at least ``settle`` x 2^(n-1) after the n-th requeue within a while
        (capped at ``recheck_max``), so a file rewritten in bursts is not
        claimed, hashed and sent again at every pause. The file's tracking time
        counts from its first requeue, so one that never settles is reported
        after ``unsettled_after`` as any other.
        """
        relpath = normalize_relpath(relpath)
        with self._wakeup:
            now = self._clock()
            key = (watch, relpath)
            bounce = self._bounces.get(key)
            if bounce is None or now - bounce.last > self._bounce_memory():
                bounce = _Bounce(count=0, since=now, last=now)
                self._bounces[key] = bounce
                self._forget_old_bounces(now)
            bounce.count += 1
            bounce.last = now
            hold = min(max(self.settle, self.stat_interval) * 2 ** min(bounce.count - 1, 30), self.recheck_max)
            record = self._touch(watch, relpath, closed=False, found_by_scan=False)
            record.hold_until = max(record.hold_until, now + hold)
            if bounce.since < record.first_seen:
                record.first_seen = bounce.since
                record.next_unsettled_report = max(bounce.since + self.unsettled_after, now)
            self._schedule(record, self._first_stat_time(record))
            return hold

    def _touch(self, watch: str, relpath: str, *, closed: bool, found_by_scan: bool) -> _Tracked:
        """Record an event for ``relpath`` (caller holds the lock); the caller schedules it."""
        if not relpath:
            raise ReadinessError("cannot track the watched root itself as a file")
        if watch not in self._watches:
            raise ReadinessError(f"unknown watch {watch!r}; call add_watch first")
        now = self._clock()
        key = (watch, relpath)
        record = self._records.get(key)
        if record is None:
            record = _Tracked(watch, relpath, first_seen=now, last_event=now, closed=closed,
                              next_unsettled_report=now + self.unsettled_after,
                              by_scan=found_by_scan and self.ready_by_ctime
                              and self._watches[watch].writers is not None)
            self._records[key] = record
        else:
            record.by_scan = False  # an event (or a second scan) since: it settles
        record.last_event = now
        record.closed = closed
        record.events += 1
        record.last_stat = None  # an event invalidates every stat taken before it
        record.quiet_checks_failed = 0
        record.problem_reported = False
        return record

    def _bounce_memory(self) -> float:
        """How long a requeue is remembered: a file quiet for longer starts its backoff afresh."""
        return 4 * max(self.recheck_max, self.settle)

    def _forget_old_bounces(self, now: float) -> None:
        if len(self._bounces) > _BOUNCES_KEPT:
            memory = self._bounce_memory()
            for key in [k for k, b in self._bounces.items() if now - b.last > memory]:
                del self._bounces[key]

    def gone(self, watch: str, relpath: str, *, is_directory: bool = False) -> None:
        """``relpath`` was deleted or moved away: stop tracking it (and, for a
        directory, everything below it). Unknown paths are ignored."""
        relpath = normalize_relpath(relpath)
        with self._lock:
            if is_directory:
                prefix = relpath + "/" if relpath else ""
                doomed = [k for k in self._records if k[0] == watch and (k[1].startswith(prefix))]
            else:
                doomed = [(watch, relpath)] if (watch, relpath) in self._records else []
            for key in doomed:
                del self._records[key]  # its heap entry goes stale and is skipped when popped

    def forget_watch(self, watch: str) -> None:
        """Drop every record of ``watch`` (e.g. its root disappeared); the watch stays registered."""
        self.gone(watch, "", is_directory=True)

    def is_tracking(self, watch: str, relpath: str) -> bool:
        """True if ``relpath`` is being waited on."""
        with self._lock:
            return (watch, normalize_relpath(relpath)) in self._records

    def tracked_count(self) -> int:
        """How many files are being waited on."""
        with self._lock:
            return len(self._records)

    def busy(self) -> bool:
        """True while a file is waited on or a decision about one is still being delivered (a
        ready file has left the records before its ``on_ready`` ran: it is counted until then)."""
        with self._lock:
            return bool(self._records) or self._delivering > 0

    # ------------------------------------------------------------ processing

    def process_due(self) -> float | None:
        """Examine every file whose deadline has passed and fire callbacks.

        Returns the seconds until the next deadline, or None when nothing is
        tracked. The tracker thread calls this in a loop; tests may call it
        directly with an injected clock.
        """
        callbacks: list[Callable[[], None]] = []
        due = self._take_due(callbacks)
        parents_checked: dict[tuple[str, str], dict[str, bool]] = {}
        results = [(key, events, self._examine(key, second_look, parents_checked))
                   for key, events, second_look in due]
        with self._lock:
            now = self._clock()
            for key, events, result in results:
                record = self._records.get(key)
                if record is None or record.events != events:
                    continue  # gone meanwhile, or a new event already re-armed it
                self._apply(record, result, now, callbacks)
            wait = self._seconds_to_next(now)
            self._delivering = len(callbacks)  # in the same hold as the records they left
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a consumer's bug must not stop readiness for every other file
                log.exception("readiness_callback_failed")
        if callbacks:
            with self._lock:
                self._delivering = 0
        return wait

    def _take_due(self, callbacks: list[Callable[[], None]]) -> list[tuple[tuple[str, str], int, bool]]:
        """Pop due heap entries; return those that need a look now (key, event counter, second look?)."""
        due: list[tuple[tuple[str, str], int, bool]] = []
        with self._lock:
            now = self._clock()
            while self._heap and self._heap[0][0] <= now:
                _, token, key = heapq.heappop(self._heap)
                record = self._records.get(key)
                if record is None or record.token != token:
                    continue  # stale entry: record gone or re-armed earlier
                record.token, record.scheduled_at = 0, math.inf
                first_stat_at = self._first_stat_time(record)
                if record.last_stat is None and first_stat_at > now:
                    # Events kept arriving since this entry was armed: just re-arm, no syscall.
                    self._check_unsettled(record, now, callbacks)
                    self._schedule(record, first_stat_at)
                    continue
                due.append((key, record.events, record.last_stat is not None or record.by_scan))
        return due

    def _examine(self, key: tuple[str, str], second_look: bool, parents_checked: dict[tuple[str, str], dict[str, bool]]
                 ) -> FileIdentity | WriterLook | ScanProblem:
        """Outside the lock (a hung network mount must not block touch()): a stat, or the second look."""
        watch = self._watches.get(key[0])
        if watch is None:
            return ScanProblem(key[1], ProblemKind.VANISHED, "its watch was removed")
        if second_look and watch.writers is not None:
            return self._second_look(watch.root, key[1], watch.writers)
        # One batch shares the parent-directory checks (many due files share few directories).
        batch_cache = parents_checked.setdefault((key[0], str(watch.root)), {})
        return stat_identity(watch.root, key[1], follow_symlinks=watch.follow_symlinks, parents_checked=batch_cache)

    @staticmethod
    def _second_look(root: Path, relpath: str, writers: WriterDetector) -> WriterLook | ScanProblem:
        """Open the file beneath its root (never a link, never blocking) and ask who writes it."""
        look = writers.look(root, relpath)
        if not isinstance(look, OpenRefused):
            return look
        if look.kind is ProblemKind.PERMISSION_DENIED:
            # Cannot open it to ask (the upload will say so): decide without a lease.
            identity = stat_identity(root, relpath)
            if isinstance(identity, ScanProblem):
                return identity
            return WriterLook(identity, writers.observe(None, relpath))
        return look.problem  # BUSY (a file server's lease: somebody has it open) waits like other problems

    def _apply(self, record: _Tracked, result: FileIdentity | WriterLook | ScanProblem, now: float,
               callbacks: list[Callable[[], None]]) -> None:
        if isinstance(result, ScanProblem):
            self._apply_problem(record, result, now, callbacks)
            return
        identity, writer = (result.identity, result.writer) if isinstance(result, WriterLook) else (result, None)
        quiet = self._quiet(record)
        if record.by_scan:
            record.by_scan = False
            if writer is not None and ready_by_ctime(
                    identity, writer, now_ns=self._wall_clock_ns(), settle=self.settle):
                self._ready(record, identity, writer, callbacks, by_ctime=True)
                return
            # Not old enough, or no lease to vouch for it: this look opens the usual wait.
        if record.last_stat is None:
            record.last_stat, record.last_stat_at = identity, now
            self._schedule(record, max(record.last_event + quiet, now + self.stat_interval))
        elif identity != record.last_stat:
            # Changed with no event seen: a writer the observer cannot see (network mount, mmap)
            # or lost events. Treat it as activity and back off: such files are often written for long.
            record.quiet_checks_failed += 1
            record.last_stat, record.last_stat_at = identity, now
            record.last_event, record.closed = now, False
            self._schedule(record, now + self._backoff(record))
        elif writer is not None and writer.writer_seen:
            # Quiet, but held open: wait (with the backoff) for the writer to close it. Its
            # close-write event nominates the file again at once; a lease is asked again each time.
            record.quiet_checks_failed += 1
            self._schedule(record, now + self._backoff(record))
            self._check_unsettled(record, now, callbacks, f"held open by a writer: {writer.detail}")
            return
        else:
            ready_at = max(record.last_event + quiet, record.last_stat_at + self.stat_interval, record.hold_until)
            if now >= ready_at:
                self._ready(record, identity, writer or QUIET_TIME_ONLY, callbacks)
                return
            self._schedule(record, ready_at)
        reason = "changes without file system events" if record.quiet_checks_failed else "events keep arriving"
        self._check_unsettled(record, now, callbacks, reason)

    def _ready(self, record: _Tracked, identity: FileIdentity, writer: WriterObservation,
               callbacks: list[Callable[[], None]], *, by_ctime: bool = False) -> None:
        del self._records[(record.watch, record.relpath)]
        candidate = ReadyCandidate(record.watch, record.relpath, identity, writer, by_ctime)
        callbacks.append(lambda: self._on_ready(candidate))

    def _apply_problem(self, record: _Tracked, problem: ScanProblem, now: float,
                       callbacks: list[Callable[[], None]]) -> None:
        key = (record.watch, record.relpath)
        watch = record.watch
        if problem.kind is ProblemKind.VANISHED:
            del self._records[key]
            if self._on_gone is not None:
                on_gone, relpath = self._on_gone, record.relpath
                callbacks.append(lambda: on_gone(watch, relpath))
            return
        if problem.kind in FINAL_PROBLEMS:
            del self._records[key]
        else:
            # Permission denied, I/O error: may clear up (chmod, mount back); keep trying, slower.
            record.quiet_checks_failed += 1
            record.last_stat = None
            self._schedule(record, now + self._backoff(record))
            if record.problem_reported:
                return
            record.problem_reported = True
        if self._on_problem is not None:
            on_problem = self._on_problem
            callbacks.append(lambda: on_problem(watch, problem))

    def _check_unsettled(self, record: _Tracked, now: float, callbacks: list[Callable[[], None]],
                         reason: str = "events keep arriving") -> None:
        if now < record.next_unsettled_report or self._on_unsettled is None:
            return
        record.next_unsettled_report = now + self.unsettled_after
        report = UnsettledFile(record.watch, record.relpath, now - record.first_seen, record.last_stat, reason)
        on_unsettled = self._on_unsettled
        callbacks.append(lambda: on_unsettled(report))

    def _backoff(self, record: _Tracked) -> float:
        exponent = min(record.quiet_checks_failed - 1, 30)
        return min(max(self.settle, self.stat_interval) * (2 ** max(exponent, 0)), self.recheck_max)

    def _quiet(self, record: _Tracked) -> float:
        # A close-after-write can only shorten the wait, never make it longer than settle.
        return min(self.close_quiet, self.settle) if record.closed else self.settle

    def _first_stat_time(self, record: _Tracked) -> float:
        if record.by_scan:
            return record.last_event  # its ctime may make it ready now: look at once
        quiet = self._quiet(record)
        # The first stat opens the window the second must confirm; open it early so the two agreeing
        # stats span (nearly) the whole quiet period: a writer the observer cannot see (network
        # mount, mmap) that pauses for less than the quiet period is then still caught.
        delay = min(self.stat_interval, quiet - self.stat_interval)
        return record.last_event + max(delay, 0.0)

    def _schedule(self, record: _Tracked, when: float) -> None:
        """Arm ``record`` at ``when`` unless it is already armed earlier (caller holds the lock)."""
        if record.token and record.scheduled_at <= when:
            return  # the earlier entry re-evaluates and re-arms; keeps one heap entry per busy file
        token = self._next_token
        self._next_token += 1
        record.token, record.scheduled_at = token, when
        entry: _HeapEntry = (when, token, (record.watch, record.relpath))
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:
            # New earliest deadline: the thread may be sleeping on a later one (or on none). The flag
            # covers the gap between process_due() computing its wait and the thread starting to wait.
            self._kicked = True
            self._wakeup.notify()

    def _seconds_to_next(self, now: float) -> float | None:
        while self._heap:
            when, token, key = self._heap[0]
            record = self._records.get(key)
            if record is not None and record.token == token:
                return max(when - now, 0.0)
            heapq.heappop(self._heap)  # drop stale heads so the heap does not hold dead entries
        return None

    def _run(self) -> None:
        while True:
            try:
                wait = self.process_due()
            except Exception:  # keep the one readiness thread alive whatever happens
                log.exception("readiness_pass_crashed")
                wait = 1.0
            with self._wakeup:
                if self._stopping:
                    return
                if not self._kicked:
                    self._wakeup.wait(timeout=wait)
                self._kicked = False
                if self._stopping:
                    return


def _check_durations(settle: float, close_quiet: float, stat_interval: float, recheck_max: float,
                     unsettled_after: float) -> None:
    values = {"settle": settle, "close_quiet": close_quiet, "stat_interval": stat_interval,
              "recheck_max": recheck_max, "unsettled_after": unsettled_after}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ReadinessError(f"{name} must be a finite number of seconds, got {value!r}")
    if stat_interval <= 0:
        raise ReadinessError(f"stat_interval must be > 0 seconds, got {stat_interval}")
    for name in ("settle", "close_quiet"):
        if values[name] < 0:
            raise ReadinessError(f"{name} must be >= 0 seconds, got {values[name]}")
    if recheck_max <= 0:
        raise ReadinessError(f"recheck_max must be > 0 seconds, got {recheck_max}")
    if unsettled_after <= 0:
        raise ReadinessError(f"unsettled_after must be > 0 seconds, got {unsettled_after}")
