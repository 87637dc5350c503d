"""Intake: what happens in the drop folders becomes journal rows.

    WatchObserver ─nominations─┐
    Scanner (start-up, backstop, rescans, moved-in directories) ─┤
                               ▼
                     one intake thread ──touch/gone──▶ ReadinessTracker
                               ▲                              │
                               └──────── ready candidates ◀───┘
                               │
                               ▼
                     Journal.observe_many  ──new work──▶ workers woken

Events only nominate paths; the tracker decides when a file is stable; the
journal decides whether a stable file is new work. One thread owns the queue
so that nominations from watchdog's threads stay cheap and journal writes are
batched (a cold start-up scan of 100,000 files is a few transactions, not
100,000), each entry on its own: one the journal refuses is logged with the
reason and keeps no other out (issue 10).

Every entry is accounted for: a link, FIFO, socket or device found by a scan
or an event is parked in the journal (quarantined, with the reason `syncd
status` shows) instead of only being logged. A file a worker found changed
after it was ready, or written to while it was uploaded, comes back here
(:meth:`Intake.back_to_readiness`) and waits again, longer each time
(:meth:`ReadinessTracker.requeue`); a worker uploading a file registers
with :meth:`Intake.guard_upload`, and a write event for that path cancels
the upload at once.

Scans are compared with the journal in SQL (`Journal.compare_with_disk`):
no dict of a watch's rows, no set of every path seen.
"""

from __future__ import annotations

import os
import queue
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from syncd.config import Config, ConfigChanges, WatchConfig
from syncd.journal import FileState, Journal, ObservedFile, ParkedEntry
from syncd.logs import get_logger
from syncd.pipeline.filters import watch_filter
from syncd.pipeline.identity import FileIdentity
from syncd.pipeline.names import display_path
from syncd.pipeline.readiness import ReadinessTracker, ReadyCandidate, UnsettledFile
from syncd.pipeline.scanner import FINAL_PROBLEMS, ScanProblem, Scanner
from syncd.pipeline.watcher import Nomination, NominationKind, WatchHealth, WatchObserver
from syncd.pipeline.writers import OpenCounter, WriterDetector

log = get_logger(__name__)

#: Rows kept when their file disappears. An uploaded row stays so that a file coming
#: back unchanged (a remount, a restored backup, an archive move undone) is not uploaded
#: again, while a different file under the same name still goes up as a new version.
#: An uploading row belongs to its worker, which sees the file gone by itself.
KEEP_WHEN_GONE = frozenset({FileState.UPLOADED, FileState.UPLOADING})
#: Most ready candidates written to the journal in one transaction (a larger one holds
#: the journal long enough to delay workers recording progress).
OBSERVE_BATCH = 500
#: Removals of files a scan found gone, written per transaction.
REMOVE_BATCH = 500


@dataclass(frozen=True, slots=True)
class _Scan:
    watch: str
    subdir: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class _Requeue:
    """A worker sends a file back: it changed after it was found ready."""

    watch: str
    relpath: str


@dataclass(frozen=True, slots=True)
class _Park:
    """An entry that is not a regular file (a link, a FIFO...), to be parked with its reason."""

    watch: str
    problem: ScanProblem


@dataclass
class WatchRuntime:
    """The live parts of one watch."""

    config: WatchConfig
    observer: WatchObserver
    scanner: Scanner
    writers: WriterDetector  # its open_counter is what a worker's open_source(own_opens=...) reports to
    last_scan_at: float | None = None


class Intake:
    """Owns the observers, the readiness tracker and the scanners of every watch."""

    def __init__(
        self,
        config: Config,
        journal: Journal,
        *,
        on_new_work: Callable[[], None],
        on_scan: Callable[[str, float], None] | None = None,
        on_observer_restart: Callable[[str], None] | None = None,
        on_activity: Callable[[], None] | None = None,
        observe_events: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.journal = journal
        self.observe_events = observe_events
        self._on_new_work = on_new_work
        self._on_scan = on_scan
        self._on_observer_restart = on_observer_restart
        self._on_activity = on_activity
        self._clock = clock
        # A Queue, not a SimpleQueue: its count of unfinished items covers an item from its put
        # until the intake thread is done with it (see busy()).
        self._queue: queue.Queue[Nomination | ReadyCandidate | _Scan | _Requeue | _Park | None] = queue.Queue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._backstop: threading.Thread | None = None
        self._lock = threading.Lock()
        self.watches: dict[str, WatchRuntime] = {}
        # (watch, relpath) -> what to call when a write event arrives for a file a worker uploads.
        self._uploads: dict[tuple[str, str], Callable[[], None]] = {}
        self.scan_interval = config.scan_interval
        self.tracker = ReadinessTracker(
            self._put,
            settle=config.readiness.settle,
            close_quiet=config.readiness.closed_settle,
            unsettled_after=config.readiness.never_settles_after,
            ready_by_ctime=config.readiness.ready_by_ctime,
            on_gone=lambda watch, relpath: self._put(Nomination(NominationKind.GONE, watch, relpath)),
            on_problem=self._problem,
            on_unsettled=self._unsettled,
        )
        self._config = config

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the tracker, one observer per watch, and queue a start-up scan of each."""
        self.tracker.start()
        self._thread = threading.Thread(target=self._run, name="intake", daemon=True)
        self._thread.start()
        for watch in self._config.watches:
            self.add_watch(watch)
        self._backstop = threading.Thread(target=self._backstop_loop, name="backstop-scan", daemon=True)
        self._backstop.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop intake: observers first (no new nominations), then the queue and tracker."""
        self._stopping.set()
        for runtime in list(self.watches.values()):
            runtime.observer.stop(timeout)
        self._queue.put(None)  # not counted as activity: nothing waits for the pipeline any more
        if self._thread is not None:
            self._thread.join(timeout)
        self.tracker.stop(timeout)

    def add_watch(self, watch: WatchConfig) -> None:
        """Start watching one more root (also used by a config reload)."""
        path_filter = watch_filter(watch)
        polling = watch.observer == "polling"
        # Writers are seen by a read lease where the kernel grants one, else (inotify) by
        # counting open/close events, else only quiet time tells: see syncd.pipeline.writers.
        writers = WriterDetector(open_counter=None if polling else OpenCounter())
        observer = WatchObserver(
            watch.name, watch.path, self._put, recursive=watch.recursive, path_filter=path_filter,
            polling=polling, poll_interval=watch.poll_interval, open_counter=writers.open_counter,
        )
        scanner = Scanner(watch.path, recursive=watch.recursive, path_filter=path_filter)  # problems: per scan
        with self._lock:
            self.watches[watch.name] = WatchRuntime(watch, observer, scanner, writers)
        self.tracker.add_watch(watch.name, watch.path, writers=writers)
        if self.observe_events:
            observer.start()
        self.request_scan(watch.name, reason="start-up")
        log.info("watch_started", watch=watch.name, root=str(watch.path), folder_id=watch.folder_id,
                 mode="polling" if watch.observer == "polling" else "inotify")

    def remove_watch(self, name: str) -> None:
        """Stop watching a root; its journal rows stay (a re-added watch picks them up)."""
        with self._lock:
            runtime = self.watches.pop(name, None)
        if runtime is not None:
            runtime.observer.stop()
            self.tracker.forget_watch(name)
            log.info("watch_stopped", watch=name)

    def reconfigure(self, config: Config, changes: ConfigChanges) -> None:
        """Apply a reloaded config: watches added, removed or changed are (re)started."""
        self._config = config
        self.scan_interval = config.scan_interval
        self.tracker.reconfigure(settle=config.readiness.settle, close_quiet=config.readiness.closed_settle,
                                 unsettled_after=config.readiness.never_settles_after,
                                 ready_by_ctime=config.readiness.ready_by_ctime)
        for watch in changes.watches_removed:
            self.remove_watch(watch.name)
        for change in changes.watches_changed:
            self.remove_watch(change.old.name)
            self.add_watch(change.new)
        for watch in changes.watches_added:
            self.add_watch(watch)

    def request_scan(self, watch: str, subdir: str = "", *, reason: str = "") -> None:
        """Queue a scan of a watch (or one directory of it)."""
        self._put(_Scan(watch, subdir, reason))

    # ------------------------------------------------------- for the workers

    def own_opens(self, watch: str) -> OpenCounter | None:
        """The open/close counter a worker reports its own opens of `watch`'s files to (None: polling)."""
        runtime = self.watches.get(watch)
        return None if runtime is None else runtime.writers.open_counter

    def back_to_readiness(self, watch: str, relpath: str) -> None:
        """A worker found `relpath` changed after it was ready (at its claim, or during its upload):
        readiness waits for it again, longer each time, before the journal makes it due. Any thread."""
        self._put(_Requeue(watch, relpath))

    @contextmanager
    def guard_upload(self, watch: str, relpath: str, on_write: Callable[[], None]) -> Iterator[None]:
        """While a worker uploads `relpath`, a write event for it calls `on_write` (once, from the
        intake thread: keep it short). Where a lease is held, a writer breaks it first; this
        covers watches whose files cannot be leased."""
        key = (watch, relpath)
        with self._lock:
            self._uploads[key] = on_write
        try:
            yield
        finally:
            with self._lock:
                if self._uploads.get(key) is on_write:
                    del self._uploads[key]

    # ----------------------------------------------------------------- health

    def health(self) -> list[WatchHealth]:
        with self._lock:
            runtimes = list(self.watches.values())
        return [r.observer.health() for r in runtimes]

    def problems(self) -> list[str]:
        """What keeps intake from seeing new files (empty when healthy), for the watchdog and /healthz."""
        found = []
        if self._thread is None or not self._thread.is_alive():
            found.append("intake thread not running")
        if not self.tracker.is_alive():
            found.append("readiness tracker not running")
        if self.observe_events:
            found += [f"observer of {h.watch} dead" for h in self.health() if not h.alive and h.root_present]
        return found

    def busy(self) -> bool:
        """Files are being looked at: nominations, scans or ready files queued or being handled, or
        files not yet settled.

        The queue is looked at first: only the intake thread, handling an item, hands readiness a
        file, so with the queue idle readiness can only empty. Readiness hands a ready file back
        through the queue before it stops counting it. Between two equal reads of the pipeline's
        activity generation (every put counts), False is therefore an instant's truth.
        """
        return self._queue.unfinished_tasks > 0 or self.tracker.busy()

    def _put(self, item: Nomination | ReadyCandidate | _Scan | _Requeue | _Park) -> None:
        """Queue an item for the intake thread (any thread); it counts as pipeline activity."""
        self._queue.put(item)
        self._moved()

    def _moved(self) -> None:
        if self._on_activity is not None:
            self._on_activity()

    # ------------------------------------------------------------- the thread

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            taken = 1
            batch: list[ReadyCandidate | _Park] = []
            while True:
                if item is None:
                    self._flush(batch)
                    return
                if isinstance(item, (ReadyCandidate, _Park)):
                    batch.append(item)
                    if len(batch) >= OBSERVE_BATCH:
                        self._flush(batch)
                        batch = []
                else:
                    if not (isinstance(item, Nomination) and item.kind is NominationKind.TOUCH):
                        # What the journal already holds first: a file ready, then deleted, must
                        # reach the journal before its removal does.
                        self._flush(batch)
                        batch = []
                    try:
                        self._handle(item)
                    except Exception:
                        log.exception("intake_error", item=repr(item))
                try:
                    item = self._queue.get_nowait()
                    taken += 1
                except queue.Empty:
                    break
            self._flush(batch)
            for _ in range(taken):  # done with them only now: their rows are in the journal
                self._queue.task_done()
            self._moved()  # intake may be idle now

    def _flush(self, batch: list[ReadyCandidate | _Park]) -> None:
        ready = [item for item in batch if isinstance(item, ReadyCandidate)]
        parks = [item for item in batch if isinstance(item, _Park)]
        try:
            self._observe(ready)
        except Exception:
            # The files stay on disk: the next backstop scan nominates them again.
            log.exception("intake_observe_failed", files=len(ready))
        try:
            self._park(parks)
        except Exception:
            log.exception("intake_park_failed", entries=len(parks))

    def _handle(self, item: Nomination | _Scan | _Requeue) -> None:
        if isinstance(item, _Scan):
            self._scan(item)
            return
        if item.watch not in self.watches:
            return
        if isinstance(item, _Requeue):
            hold = self.tracker.requeue(item.watch, item.relpath)
            log.info("file_back_to_readiness", watch=item.watch, path=display_path(item.relpath),
                     hold_s=round(hold, 1))
            return
        if item.kind is NominationKind.TOUCH:
            if not self.tracker.is_tracking(item.watch, item.relpath):
                log.info("file_detected", watch=item.watch, path=display_path(item.relpath), closed=item.closed)
            self.tracker.touch(item.watch, item.relpath, closed=item.closed)
            self._written_during_upload(item.watch, item.relpath)
        elif item.kind is NominationKind.GONE:
            self.tracker.gone(item.watch, item.relpath, is_directory=item.is_directory)
            self._forget_gone(item.watch, item.relpath, item.is_directory)
        elif item.kind is NominationKind.SCAN_DIRECTORY:
            self._scan(_Scan(item.watch, item.relpath, "directory appeared"))
        elif item.kind is NominationKind.RESCAN:
            if self._on_observer_restart is not None:
                self._on_observer_restart(item.watch)
            self._scan(_Scan(item.watch, "", item.reason or "events may have been lost"))

    def _written_during_upload(self, watch: str, relpath: str) -> None:
        with self._lock:
            on_write = self._uploads.pop((watch, relpath), None)
        if on_write is not None:
            log.info("upload_cancelled_file_written", watch=watch, path=display_path(relpath))
            on_write()

    def _observe(self, batch: list[ReadyCandidate]) -> None:
        if not batch:
            return
        by_watch: dict[str, list[ObservedFile]] = {}
        for c in batch:
            by_watch.setdefault(c.watch, []).append(ObservedFile.of(c.relpath, c.identity))
        new_work = False
        now = self._clock()
        for watch, files in by_watch.items():
            runtime = self.watches.get(watch)
            if runtime is None:
                continue
            observed = self.journal.observe_many(watch, files, now)
            by_ctime = {c.relpath for c in batch if c.watch == watch and c.by_ctime}
            for observation in observed:
                new_work = True
                row = observation.file
                log.info("file_ready", watch=watch, path=display_path(row.relpath), size=row.size,
                         change=str(observation.kind), previous_state=observation.previous_state,
                         ready_by="ctime" if row.relpath in by_ctime else "quiet_time")
            for refused in observed.refused:
                # Only this entry is left out; the next scan or event offers it again.
                log.error("intake_entry_refused", watch=watch, path=display_path(refused.relpath),
                          reason=refused.reason)
        if new_work:
            self._on_new_work()

    def _park(self, parks: list[_Park]) -> None:
        by_watch: dict[str, list[ParkedEntry]] = {}
        for park in parks:
            runtime = self.watches.get(park.watch)
            entry = _parked_entry(runtime.config.path if runtime else None, park.problem)
            if entry is not None:
                by_watch.setdefault(park.watch, []).append(entry)
        for watch, entries in by_watch.items():
            parked, refused = self.journal.park_entries(watch, entries, self._clock())
            for row in parked:
                log.warning("path_problem", watch=watch, path=display_path(row.relpath), kind=row.last_error_code,
                            detail=row.last_error, parked=True)
            for entry in refused:
                log.error("intake_entry_refused", watch=watch, path=display_path(entry.relpath), reason=entry.reason)

    def _forget_gone(self, watch: str, relpath: str, is_directory: bool) -> None:
        if not relpath:
            # The root itself went away (unmounted, deleted): its files may come back
            # as they were. Forgetting them now would upload them all again.
            log.warning("watch_root_gone", watch=watch)
            return
        if is_directory:
            removed = self.journal.remove_below(watch, relpath, "deleted from the drop folder", keep=KEEP_WHEN_GONE)
        else:
            row = self.journal.remove(watch, relpath, "deleted from the drop folder", keep=KEEP_WHEN_GONE)
            removed = [] if row is None else [row]
        for row in removed:
            log.info("file_removed", watch=watch, path=display_path(row.relpath))

    def _scan(self, scan: _Scan) -> None:
        """Walk a watch (or one folder), compared with the journal in SQL as it goes (bounded memory):
        files new or changed go to readiness, links and special files are parked, rows of files no
        longer there are removed (whole-watch scans only, never below a folder it could not list)."""
        runtime = self.watches.get(scan.watch)
        if runtime is None:
            return
        started = time.monotonic()
        unlisted: list[str] = []
        parks: list[_Park] = []
        nominated = removed = 0
        with self.journal.compare_with_disk(scan.watch) as comparison:

            def problem(found: ScanProblem) -> None:
                self._problem(scan.watch, found, during_scan=True)
                if found.directory:
                    unlisted.append(found.relpath)
                elif found.kind in FINAL_PROBLEMS:
                    comparison.seen(found.relpath)
                    parks.append(_Park(scan.watch, found))

            for entry in runtime.scanner.scan(scan.subdir, on_problem=problem):
                comparison.found(entry.relpath, entry.identity)
            for relpath in comparison.to_look_at():
                if not self.tracker.is_tracking(scan.watch, relpath):
                    # At debug: a start-up scan may find 100,000 files; scan_finished counts them.
                    log.debug("file_detected", watch=scan.watch, path=display_path(relpath), by="scan")
                    self.tracker.touch(scan.watch, relpath, found_by_scan=True)
                    nominated += 1
            if not scan.subdir and runtime.config.path.is_dir():
                gone: list[str] = []
                for relpath, _state in comparison.missing(keep=KEEP_WHEN_GONE, skip_below=unlisted):
                    gone.append(relpath)
                    if len(gone) >= REMOVE_BATCH:
                        removed += self._remove_gone(scan.watch, gone)
                        gone = []
                removed += self._remove_gone(scan.watch, gone)
            seen = comparison.count
        self._park(parks)
        finished = self._clock()
        if not scan.subdir:
            runtime.last_scan_at = finished
            if self._on_scan is not None:
                self._on_scan(scan.watch, finished)
        log.info("scan_finished", watch=scan.watch, subdir=display_path(scan.subdir) if scan.subdir else None,
                 reason=scan.reason or None,
                 files=seen, nominated=nominated, removed=removed, unlisted=len(unlisted) or None,
                 duration_ms=round((time.monotonic() - started) * 1000))

    def _remove_gone(self, watch: str, relpaths: list[str]) -> int:
        if not relpaths:
            return 0
        return len(self.journal.remove_many(watch, relpaths, "no longer in the drop folder", keep=KEEP_WHEN_GONE))

    def _backstop_loop(self) -> None:
        while not self._stopping.wait(min(self.scan_interval, 60.0)):
            now = self._clock()
            with self._lock:
                due = [r.config.name for r in self.watches.values()
                       if r.last_scan_at is None or now - r.last_scan_at >= self.scan_interval]
            for name in due:
                self.request_scan(name, reason="backstop")

    # -------------------------------------------------------------- callbacks

    def _problem(self, watch: str, problem: ScanProblem, *, during_scan: bool = False) -> None:
        """A path readiness or a scan could not use. Links and special files are parked (the scan
        parks its own after comparing); anything else may clear up and is only logged."""
        if problem.kind in FINAL_PROBLEMS and not problem.directory:
            if not during_scan:
                self._put(_Park(watch, problem))
            return  # logged once parked, not at every scan
        log.warning("path_problem", watch=watch, path=display_path(problem.relpath), kind=str(problem.kind),
                    detail=problem.detail)

    def _unsettled(self, unsettled: UnsettledFile) -> None:
        # Still tracked (and re-checked with a backoff): this only tells a person.
        log.warning("file_never_settles", watch=unsettled.watch, path=display_path(unsettled.relpath),
                    tracked_s=round(unsettled.tracked_seconds), reason=unsettled.reason)


def _parked_entry(root: Path | None, problem: ScanProblem) -> ParkedEntry | None:
    """The journal entry for a link or special file, with its own identity (lstat); None if it
    vanished, or if a regular file stands there again.

    The problem was seen a moment ago; the entry is looked at again now. A regular file that
    took the link's place since (renamed over it) is readiness's to decide, through its own
    event: parking it would record the regular file's identity on a parked row, and the
    file, once ready, would look unchanged and never go up.
    """
    if root is None:
        return None
    try:
        st = os.lstat(os.path.join(root, problem.relpath))
    except OSError:
        return None
    if stat.S_ISREG(st.st_mode):
        return None
    return ParkedEntry(problem.relpath, FileIdentity.from_stat(st), str(problem.kind), problem.detail)
