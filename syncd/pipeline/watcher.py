"""Watch one root with a watchdog observer and turn its events into nominations.

A :class:`WatchObserver` owns one watchdog observer for one watched root
(inotify on Linux, or watchdog's ``PollingObserver`` when ``polling=True``, for
NFS/SMB mounts where inotify sees nothing) and reports :class:`Nomination`
values through a callback (``queue.Queue.put`` works). Events only nominate;
nothing here reads file contents, uploads, or touches the journal.

Translation of watchdog events (paths relative to the root, filtered by the
watch's :class:`~syncd.pipeline.filters.PathFilter`):

==========================================  =========================================
file created / modified / attrib            ``TOUCH`` (closed=False: full settle)
file closed after writing                   ``TOUCH`` (closed=True: short quiet period)
file moved: source in root                  ``GONE`` source
file moved: destination in root             ``TOUCH`` destination (closed=True under
                                            inotify: a rename puts a finished file in
                                            place; later writes still send events)
file deleted                                ``GONE``
directory created or moved in               ``SCAN_DIRECTORY`` (watchdog may not report
                                            the contents of a directory moved in)
directory deleted or moved out              ``GONE`` with ``is_directory=True``
opened / closed-without-write / dir         no nomination (our own reads must not
modified                                    re-nominate a file)
==========================================  =========================================

**Open/close counting** (inotify only). Given an
:class:`~syncd.pipeline.writers.OpenCounter`, the observer feeds it every
file's ``IN_OPEN``, ``IN_CLOSE_WRITE`` and ``IN_CLOSE_NOWRITE``, and renames,
straight from watchdog's emitter thread in kernel order, *before* watchdog's
event queue (which drops an event equal to the one before it, so two opens in
a row would count as one). Every file below the root is counted, excluded
names too: an editor's ``.x.swp`` renamed to ``x`` carries its count. The
counter is reset whenever events may have been lost (queue overflow,
observer restart) and suspended while the watch polls.

``RESCAN`` (scan the whole root again) is nominated whenever events may have
been lost. How watchdog 7 surfaces each case, and how it is caught here:

* inotify queue overflow (``IN_Q_OVERFLOW``): watchdog rebuilds its watches and
  only logs a warning; a subclass of its ``InotifyFD`` intercepts the overflow
  event in ``handle_event``.
* watch limit reached (``inotify_add_watch`` -> ``ENOSPC``): watchdog raises for
  the root but silently skips sub-directories it cannot watch; the same
  ``InotifyFD`` subclass sees the ``OSError`` in ``add_callback``. The root is
  then watched with the polling observer instead (``fallback_to_polling``),
  because a tree inotify cannot fully cover would otherwise only be seen by
  backstop scans. Running out of inotify instances (``inotify_init`` ->
  ``EMFILE``; each watch uses one) is handled the same way.
* observer, emitter or inotify reader thread dead (crash, or the emitter
  stopping itself after ``IN_DELETE_SELF`` on the root): found by a supervisor
  thread that checks every ``check_interval`` seconds, which restarts the
  observer.
* root deleted and recreated, or a mount on the root gone and back: the
  supervisor compares the root's ``(st_dev, st_ino)`` on every check; while
  the root is missing it nominates ``GONE`` for the root once and waits; when
  the identity changes it restarts the observer.

:meth:`WatchObserver.health` tells the daemon (and its systemd watchdog ping)
whether the observer is alive and when it was last restarted.
"""

from __future__ import annotations

import errno
import math
import os
import stat as stat_module
import threading
import warnings
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from watchdog.events import (
    EVENT_TYPE_ATTRIB,
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver
from watchdog.observers.inotify import InotifyEmitter
# watchdog >= 7: InotifyFD (one reader thread per inotify instance) is what this module extends.
from watchdog.observers.inotify_c import CallbackId, InotifyEvent, InotifyFD, Mask, WatchCallback, WatchDescriptor
from watchdog.observers.inotify_move_event_grouper import GroupedInotifyEvent, PathedInotifyEvent
from watchdog.observers.polling import PollingObserver

from syncd.logs import get_logger
from syncd.pipeline.filters import PathFilter
from syncd.pipeline.writers import OpenCounter

log = get_logger(__name__)

DEFAULT_POLL_INTERVAL = 1.0
DEFAULT_CHECK_INTERVAL = 1.0

# errno -> (reason, the kernel limit to raise): the two ways inotify runs out for this user.
_INOTIFY_LIMITS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("inotify watch limit reached", "fs.inotify.max_user_watches"),
    errno.EMFILE: ("inotify instance limit reached", "fs.inotify.max_user_instances"),
}


class NominationKind(StrEnum):
    """What a :class:`Nomination` asks the pipeline to do."""

    TOUCH = "touch"  # look at this file: (re)start its readiness wait
    GONE = "gone"  # this file (or directory, and all below it) is no longer there
    SCAN_DIRECTORY = "scan_directory"  # scan this directory: its contents came without events
    RESCAN = "rescan"  # events may have been lost: scan the whole root


@dataclass(frozen=True, slots=True)
class Nomination:
    """One request from a watcher; ``relpath`` is relative to the watch's root ("" = the root)."""

    kind: NominationKind
    watch: str
    relpath: str = ""
    closed: bool = False  # TOUCH only: close-after-write or rename into place
    is_directory: bool = False  # GONE only: a directory went away with everything below it
    reason: str = ""  # RESCAN and root GONE: why, for logs and status


@dataclass(frozen=True, slots=True)
class WatchHealth:
    """A snapshot of one watcher's state for status output and the systemd watchdog ping.

    ``alive``: an observer is running and all its threads are alive (False
    while the root is missing). ``supervised``: the supervisor thread that
    restarts the observer is running; this is what the daemon's systemd
    watchdog ping should require, since restarting the daemon would not bring
    a missing root back. ``mode``: ``"inotify"`` or ``"polling"``. Times are
    Unix timestamps.
    """

    watch: str
    root: str
    mode: str
    alive: bool
    supervised: bool
    root_present: bool
    started_at: float | None
    restarts: int
    last_restart_at: float | None
    last_restart_reason: str | None
    overflows: int
    inotify_limit_reached: bool
    last_error: str | None


class WatchError(RuntimeError):
    """A :class:`WatchObserver` was misused or misconfigured."""


# watchdog re-registers a directory's watch when a directory is created and walked at
# the same time, replacing an identical callback and printing a RuntimeWarning straight to
# stderr (outside the structured logs). The replacement is harmless; the noise is not.
warnings.filterwarnings("ignore", message=r"Callback with id .* already exists for watch",
                        category=RuntimeWarning)


class _ReportingInotifyFD(InotifyFD):
    """watchdog's inotify reader, reporting the two conditions watchdog swallows."""

    def __init__(self, on_overflow: Callable[[], None], on_watch_limit: Callable[[bytes, OSError], None]) -> None:
        super().__init__()
        self._report_overflow = on_overflow
        self._report_watch_limit = on_watch_limit

    def add_callback(self, path: bytes, mask: Mask, callback: WatchCallback, id_: CallbackId) -> WatchDescriptor:
        try:
            return super().add_callback(path, mask, callback, id_)
        except OSError as exc:
            # watchdog re-raises this only for the root; for sub-directories it drops it silently.
            if exc.errno == errno.ENOSPC:
                self._report_watch_limit(path, exc)
            raise

    def handle_event(self, event: InotifyEvent) -> None:
        super().handle_event(event)  # lets watchdog rebuild its recursive watches first
        if event.is_queue_overflow:
            self._report_overflow()


class _CountingInotifyEmitter(InotifyEmitter):
    """watchdog's inotify emitter, showing each raw (path-resolved) event to ``on_raw`` first."""

    def __init__(self, *args: object, on_raw: Callable[[GroupedInotifyEvent], None] | None = None,
                 **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._on_raw = on_raw

    def build_and_queue_event(self, event: GroupedInotifyEvent, *, full_events: bool = False) -> None:
        if self._on_raw is not None:
            self._on_raw(event)
        super().build_and_queue_event(event, full_events=full_events)


class _ReportingInotifyObserver(BaseObserver):
    """watchdog's InotifyObserver, built on :class:`_ReportingInotifyFD` and :class:`_CountingInotifyEmitter`."""

    def __init__(self, inotify_fd: _ReportingInotifyFD, *, timeout: float,
                 on_raw: Callable[[GroupedInotifyEvent], None] | None = None) -> None:
        self.inotify_fd = inotify_fd
        self.inotify_fd.start()
        super().__init__(_CountingInotifyEmitter, timeout=timeout, inotify_fd=inotify_fd, on_raw=on_raw)

    def on_thread_stop(self) -> None:
        super().on_thread_stop()
        self.inotify_fd.stop()
        if self.inotify_fd.is_alive():
            self.inotify_fd.join()

    def threads_alive(self) -> bool:
        return self.inotify_fd.is_alive()


class _EventTranslator(FileSystemEventHandler):
    def __init__(self, owner: WatchObserver) -> None:
        self._owner = owner

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            self._owner._translate(event)
        except Exception:  # an exception here would kill watchdog's dispatcher thread
            log.exception("fs_event_not_handled", watch=self._owner.name, detail=repr(event))
            self._owner.request_rescan("an event could not be handled")


def _root_identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat_module.S_ISDIR(st.st_mode) else None


class WatchObserver:
    """Watches one root and reports :class:`Nomination` values to ``on_nomination``.

    ``name``: the watch name put in every nomination. ``root``: the watched
    directory (a symlink to a directory is resolved). ``recursive``: watch
    sub-directories too. ``path_filter``: include/exclude rules (default
    excludes when None). ``polling``: use watchdog's polling observer, every
    ``poll_interval`` seconds, instead of inotify. ``check_interval``: how
    often the supervisor checks the observer threads and the root identity.
    ``fallback_to_polling``: switch to polling when the inotify watch limit is
    reached. ``open_counter``: fed with the open/close events of every file
    below the root (see the module docstring); None to skip counting.

    ``on_nomination`` is called from watchdog's dispatcher thread and from the
    supervisor thread; it must be quick and thread-safe (e.g. ``Queue.put``).
    Exceptions it raises are logged and answered with a ``RESCAN``.
    """

    def __init__(
        self,
        name: str,
        root: Path | str,
        on_nomination: Callable[[Nomination], None],
        *,
        recursive: bool = True,
        path_filter: PathFilter | None = None,
        polling: bool = False,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        check_interval: float = DEFAULT_CHECK_INTERVAL,
        fallback_to_polling: bool = True,
        open_counter: OpenCounter | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise WatchError(f"watch name must be a non-empty string, got {name!r}")
        for label, value in (("poll_interval", poll_interval), ("check_interval", check_interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise WatchError(f"{label} must be a finite number of seconds > 0, got {value!r}")
        self.name = name
        self.root_given = os.path.abspath(root)
        self.recursive = recursive
        self.path_filter = path_filter if path_filter is not None else PathFilter()
        self.poll_interval = float(poll_interval)
        self.check_interval = float(check_interval)
        self.fallback_to_polling = fallback_to_polling
        self._on_nomination = on_nomination
        self._open_counter = open_counter
        self._polling = polling
        self._lock = threading.RLock()
        self._observer: BaseObserver | None = None
        self._watched_path = os.path.realpath(self.root_given)
        self._root_ident: tuple[int, int] | None = None
        self._root_present = False
        self._root_gone_reported = False
        self._started_at: float | None = None
        self._restarts = 0
        self._last_restart_at: float | None = None
        self._last_restart_reason: str | None = None
        self._overflows = 0
        self._inotify_limit_reached = False
        self._switch_to_polling = False
        self._limit_reported = False
        self._last_error: str | None = None
        self._failed_starts = 0
        self._next_start_attempt = 0.0
        self._stop_event = threading.Event()
        self._check_now = threading.Event()
        self._supervisor: threading.Thread | None = None

    # ------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start watching. Returns once the observer is set up (or has failed,
        in which case :meth:`health` says why and the supervisor retries).
        A root that does not exist yet is waited for."""
        with self._lock:
            if self._supervisor is not None:
                raise WatchError(f"watch {self.name!r} is already started")
            self._stop_event.clear()
            self._root_ident = _root_identity(self.root_given)
            self._root_present = self._root_ident is not None
            if self._root_present:
                self._start_observer()
            else:
                self._last_error = f"watched root {self.root_given} does not exist or is not a directory"
                log.warning("watch_root_missing", watch=self.name, reason=self._last_error, detail="waiting for it")
            self._started_at = time.time()
            self._supervisor = threading.Thread(target=self._supervise, name=f"syncd-watch-{self.name}", daemon=True)
            self._supervisor.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the supervisor and the observer (idempotent)."""
        self._stop_event.set()
        self._check_now.set()
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None and supervisor is not threading.current_thread():
            supervisor.join(timeout)
        with self._lock:
            self._stop_observer(timeout)

    def __enter__(self) -> WatchObserver:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def request_rescan(self, reason: str) -> None:
        """Nominate a ``RESCAN`` of the whole root (also used internally)."""
        self._emit(Nomination(NominationKind.RESCAN, self.name, reason=reason))

    def is_alive(self) -> bool:
        """True if the observer and all its threads are running."""
        with self._lock:
            return self._observer_alive()

    def health(self) -> WatchHealth:
        """Current state, see :class:`WatchHealth`."""
        with self._lock:
            return WatchHealth(
                watch=self.name,
                root=self.root_given,
                mode="polling" if self._polling else "inotify",
                alive=self._observer_alive(),
                supervised=self._supervisor is not None and self._supervisor.is_alive(),
                root_present=self._root_present,
                started_at=self._started_at,
                restarts=self._restarts,
                last_restart_at=self._last_restart_at,
                last_restart_reason=self._last_restart_reason,
                overflows=self._overflows,
                inotify_limit_reached=self._inotify_limit_reached,
                last_error=self._last_error,
            )

    # -------------------------------------------------------------- observer

    def _new_observer(self) -> BaseObserver:
        counter = self._open_counter
        if self._polling:
            if counter is not None:
                counter.suspend("the watch is polled (no open/close events)")
            return PollingObserver(timeout=self.poll_interval)
        if counter is not None:
            counter.reset()  # a new observer: opens made before it are not known
        inotify_fd = _ReportingInotifyFD(self._on_overflow, self._on_watch_limit)
        return _ReportingInotifyObserver(inotify_fd, timeout=1.0,
                                         on_raw=self._count_opens if counter is not None else None)

    def _start_observer(self) -> bool:
        """Create, schedule and start an observer (caller holds the lock); False on failure."""
        self._watched_path = os.path.realpath(self.root_given)
        self._limit_reported = False
        observer: BaseObserver | None = None
        try:
            observer = self._new_observer()  # EMFILE here: no inotify instance left for this user
            observer.name = f"syncd-observer-{self.name}"
            observer.schedule(_EventTranslator(self), self._watched_path, recursive=self.recursive)
            observer.start()
        except OSError as exc:
            if observer is not None:
                observer.stop()  # also stops the inotify reader thread, which started in the constructor
            limit = _INOTIFY_LIMITS.get(exc.errno or 0) if not self._polling else None
            if limit is not None:
                self._report_inotify_limit(limit, str(self.root_given))
                if self.fallback_to_polling:
                    self._polling, self._switch_to_polling = True, False
                    return self._start_observer()
            self._last_error = f"cannot watch {self.root_given}: {exc.strerror or exc}"
            log.error("observer_start_failed", watch=self.name, reason=self._last_error)
            self._failed_starts += 1
            self._next_start_attempt = time.monotonic() + min(2.0 ** self._failed_starts, 60.0)
            return False
        self._observer = observer
        self._failed_starts = 0
        if not self._inotify_limit_reached:
            self._last_error = None
        return True

    def _stop_observer(self, timeout: float) -> None:
        observer, self._observer = self._observer, None
        if observer is None:
            return
        try:
            observer.stop()
            if observer.is_alive() and observer is not threading.current_thread():
                observer.join(timeout)
        except Exception:  # a half-dead observer must not prevent starting a fresh one
            log.exception("observer_stop_failed", watch=self.name)

    def _observer_alive(self) -> bool:
        observer = self._observer
        if observer is None or not observer.is_alive():
            return False
        emitters = list(observer.emitters)
        if not emitters or not all(e.is_alive() for e in emitters):
            return False
        if isinstance(observer, _ReportingInotifyObserver):
            return observer.threads_alive()
        return True

    def _restart(self, reason: str) -> None:
        """Replace the observer and nominate a rescan (caller holds the lock)."""
        log.warning("observer_restarting", watch=self.name, reason=reason)
        self._stop_observer(timeout=5.0)
        started = self._start_observer()
        self._restarts += 1
        self._last_restart_at = time.time()
        self._last_restart_reason = reason
        if started:
            self.request_rescan(reason)

    # ------------------------------------------------------------ supervisor

    def _supervise(self) -> None:
        while not self._stop_event.is_set():
            self._check_now.wait(self.check_interval)
            self._check_now.clear()
            if self._stop_event.is_set():
                return
            try:
                self.check()
            except Exception:  # the supervisor is what keeps everything else alive
                log.exception("watch_check_crashed", watch=self.name)

    def check(self) -> None:
        """One supervisor pass: restart the observer if the root changed or a
        thread died, fall back to polling after a watch-limit hit. Runs every
        ``check_interval`` in the supervisor thread; callable directly."""
        with self._lock:
            if self._stop_event.is_set():
                return
            identity = _root_identity(self.root_given)
            if identity is None:
                self._root_missing()
                return
            reason: str | None = None
            if not self._root_present:
                reason = "watched root appeared again"
            elif identity != self._root_ident:
                reason = "watched root was replaced or a mount on it changed"
            elif self._switch_to_polling and not self._polling:
                reason = "inotify limit reached; watching by polling instead"
            elif not self._observer_alive():
                if self._observer is None and time.monotonic() < self._next_start_attempt:
                    return  # the last start failed; retry with a backoff instead of every check
                reason = "observer thread died" if self._observer is not None else "observer was not running"
            self._root_ident, self._root_present, self._root_gone_reported = identity, True, False
            if reason is None:
                return
            if self._switch_to_polling:
                self._polling, self._switch_to_polling = True, False
            self._restart(reason)

    def _root_missing(self) -> None:
        self._root_present = False
        self._last_error = f"watched root {self.root_given} is missing"
        self._stop_observer(timeout=5.0)
        if not self._root_gone_reported:
            self._root_gone_reported = True
            log.warning("watch_root_missing", watch=self.name, reason=self._last_error,
                        detail="waiting for it to come back")
            self._emit(Nomination(NominationKind.GONE, self.name, "", is_directory=True,
                                  reason="watched root disappeared"))

    # ------------------------------------------------- inotify fd callbacks

    # These run in the inotify reader thread, possibly while another thread holds self._lock and
    # waits for that very thread to stop: they must not take the lock (plain assignments only).

    def _on_overflow(self) -> None:
        if self._open_counter is not None:
            self._open_counter.reset()  # opens and closes were lost: counts mean nothing any more
        self._overflows += 1
        log.warning("inotify_queue_overflowed", watch=self.name, detail="events were lost; the watch is rescanned")
        self.request_rescan("inotify event queue overflowed")

    def _on_watch_limit(self, path: bytes, exc: OSError) -> None:
        self._report_inotify_limit(_INOTIFY_LIMITS[errno.ENOSPC], os.fsdecode(path))

    def _report_inotify_limit(self, limit: tuple[str, str], where: str) -> None:
        if self._limit_reported:
            return  # one report per observer: every further sub-directory fails the same way
        reason, sysctl = limit
        self._limit_reported = True
        self._inotify_limit_reached = True
        self._last_error = f"{reason} at {where} ({sysctl})"
        if self.fallback_to_polling and not self._polling:
            self._switch_to_polling = True
        log.error("inotify_limit_reached", watch=self.name, reason=self._last_error)
        self.request_rescan(reason)
        self._check_now.set()

    # ------------------------------------------------------- open counting

    def _count_opens(self, event: GroupedInotifyEvent) -> None:
        """Feed the open counter one raw event (emitter thread, kernel order). Never raises."""
        counter = self._open_counter
        if counter is None:
            return
        try:
            if not isinstance(event, PathedInotifyEvent):  # a NamedTuple itself: test it, not tuple
                source, dest = event
                src_rel, dest_rel = self._relpath(source.path), self._relpath(dest.path)
                if src_rel and dest_rel:
                    counter.moved(src_rel, dest_rel)
                elif src_rel:
                    counter.removed(src_rel)
                return
            raw, relpath = event.ev, self._relpath(event.path)
            if not relpath:
                return
            if raw.is_directory:
                if raw.is_delete or raw.is_moved_from:
                    counter.removed(relpath)  # a tree gone: the closes of its files never reach us
            elif raw.is_open:
                counter.opened(relpath)
            elif raw.is_close_write:
                counter.closed(relpath, wrote=True)
            elif raw.is_close_nowrite:
                counter.closed(relpath, wrote=False)
            elif raw.is_moved_from:
                counter.removed(relpath)  # moved out of the watch (a move inside comes as a pair)
        except Exception:  # an exception here would kill watchdog's emitter thread
            log.exception("open_close_count_failed", watch=self.name, detail=repr(event))
            counter.reset()

    # ----------------------------------------------------------- translation

    def _relpath(self, path: bytes | str) -> str | None:
        text = os.fsdecode(path)
        root = self._watched_path
        if text == root:
            return ""
        if text.startswith(root) and text[len(root) : len(root) + 1] == "/":
            relpath = text[len(root) + 1 :]
            if not self.recursive and "/" in relpath:
                return None
            return relpath
        return None

    def _translate(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind not in (EVENT_TYPE_CREATED, EVENT_TYPE_MODIFIED, EVENT_TYPE_ATTRIB, EVENT_TYPE_CLOSED,
                        EVENT_TYPE_DELETED, EVENT_TYPE_MOVED):
            return  # opened, closed_no_write: our own reads must not nominate files again
        src = self._relpath(event.src_path)
        if event.is_directory:
            self._translate_directory(kind, src, event)
            return
        if kind == EVENT_TYPE_MOVED:
            if src:
                self._gone(src, is_directory=False)
            dest = self._relpath(event.dest_path) if event.dest_path else None
            if dest:
                self._touch(dest, closed=not self._polling)
        elif kind == EVENT_TYPE_DELETED:
            if src:
                self._gone(src, is_directory=False)
        elif src:
            self._touch(src, closed=kind == EVENT_TYPE_CLOSED)

    def _translate_directory(self, kind: str, src: str | None, event: FileSystemEvent) -> None:
        if kind == EVENT_TYPE_CREATED:
            if src and self.recursive and self.path_filter.accepts_directory(src):
                self._emit(Nomination(NominationKind.SCAN_DIRECTORY, self.name, src))
        elif kind == EVENT_TYPE_DELETED:
            if src == "":
                self._check_now.set()  # the root itself: let the supervisor look at once
            elif src:
                self._gone(src, is_directory=True)
        elif kind == EVENT_TYPE_MOVED:
            if src:
                self._gone(src, is_directory=True)
            dest = self._relpath(event.dest_path) if event.dest_path else None
            if dest and self.recursive and self.path_filter.accepts_directory(dest):
                self._emit(Nomination(NominationKind.SCAN_DIRECTORY, self.name, dest))

    def _touch(self, relpath: str, *, closed: bool) -> None:
        if self.path_filter.accepts_file(relpath):
            self._emit(Nomination(NominationKind.TOUCH, self.name, relpath, closed=closed))

    def _gone(self, relpath: str, *, is_directory: bool) -> None:
        accepted = (self.path_filter.accepts_directory(relpath) if is_directory
                    else self.path_filter.accepts_file(relpath))
        if accepted:
            self._emit(Nomination(NominationKind.GONE, self.name, relpath, is_directory=is_directory))

    def _emit(self, nomination: Nomination) -> None:
        try:
            self._on_nomination(nomination)
        except Exception:
            log.exception("nomination_callback_failed", watch=self.name, kind=str(nomination.kind))
