"""Is another process writing this file? Seen by the kernel where Linux can tell, never guessed.

Three sources of evidence, strongest first; :class:`WriterDetector` asks them
in this order for one open descriptor of the file.

**1. Read leases** (``fcntl(fd, F_SETLEASE, F_RDLCK)`` on our ``O_RDONLY``
descriptor). The kernel grants a read lease only when *no* process has the
file open for writing (any name, any mount, writable ``mmap`` included), and
refuses with ``EAGAIN`` otherwise: a writer is **seen**, not inferred. Readers
(``tail -f``, a virus scanner, a backup) do not count. A lease is granted only
to the file's owner or a process with ``CAP_LEASE`` (root has it; the unit
grants it): otherwise ``EACCES``, and only the weaker evidence below remains.
Leases are not trusted on network and FUSE file systems (NFS, SMB/CIFS, Ceph,
9p, FUSE...): they see only this machine's opens, or refuse for reasons that
have nothing to do with writers (CIFS answers ``EAGAIN`` without an oplock),
so there the answer is "unknown". ``F_SETSIG`` is set to ``SIGURG`` before a
lease is taken: a lease break then sends a signal whose default action is to
ignore it, so no handler is needed and ``SIGIO``'s default (terminate) can
never fire.

Held leases (:class:`LeaseMonitor`) cover the time an upload runs: a process
that opens the file for writing (or truncates it) *breaks* the lease; its
``open()`` waits until we release it (or ``/proc/sys/fs/lease-break-time``,
45 s by default). One monitor thread polls ``F_GETLEASE`` of every held lease
(every 50 ms; a pending break reports the downgrade target, ``F_UNLCK``),
releases a broken lease at once so the writer goes on, and then calls the
job's cancel hook. A writer using ``O_NONBLOCK`` gets ``EWOULDBLOCK`` instead
of waiting, while a lease is held.

**2. Open/close events** (inotify watches only, :class:`OpenCounter`). The
watcher counts ``IN_OPEN`` against ``IN_CLOSE_WRITE``/``IN_CLOSE_NOWRITE`` per
path, discounting syncd's own opens. inotify does not say in which mode a file
was opened, so every opener counts, readers too. What it can see: opens made
*through the watched directories while the observer runs*. What it cannot:
a file opened before that (present at start-up, moved in from outside the
watch, created in a new sub-directory before its watch was added, open
across an inotify queue overflow), or opened through another hard link or
mount. And the kernel merges identical events still unread in the queue:
two opens (or two closes) of one file within the moment before the watcher
reads them arrive as one, so the count can be one short (an opener hidden)
or one over (a file that stays "held open" until the next overflow reset or
restart, which the never-settles report shows with this reason). For all of
these, "none seen" is no proof: it is evidence, and the lease is the
mechanism that gives the guarantee.

**3. Quiet time alone** (polling watches; NFS/SMB; files we may not lease and
cannot count). Readiness then only knows that the size, mtime, ctime and
inode stayed the same for ``settle`` seconds, checked by two stats. A writer
that pauses longer than ``settle`` with the file open is not seen: its file
is taken as finished. This is why polling watches need ``settle`` of at
least twice the poll interval (a config error otherwise), and why a long
``settle`` is the only protection there.

The outcome is a :class:`WriterObservation`: ``WRITER`` (seen: wait),
``NO_WRITER`` (the kernel said so: a lease), ``NONE_SEEN`` (no opener in the
events: evidence, not proof) or ``UNKNOWN`` (quiet time only).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from syncd.logs import get_logger
from syncd.pipeline.identity import FileIdentity
from syncd.pipeline.source import OpenRefused, open_source

log = get_logger(__name__)

F_SETSIG = getattr(fcntl, "F_SETSIG", 10)
F_SETLEASE = getattr(fcntl, "F_SETLEASE", 1024)
F_GETLEASE = getattr(fcntl, "F_GETLEASE", 1025)
#: Sent on a lease break; its default action is to ignore it, so a break can never kill syncd.
LEASE_BREAK_SIGNAL = signal.SIGURG
DEFAULT_LEASE_POLL = 0.05

# statfs f_type of file systems whose leases say nothing about writers on other machines.
_NETWORK_FILESYSTEMS = {
    0x6969: "NFS",
    0xFF534D42: "SMB/CIFS",
    0xFE534D42: "SMB2",
    0x517B: "SMB",
    0x65735546: "FUSE",
    0x00C36400: "Ceph",
    0x01021997: "9p",
    0x5346414F: "AFS",
    0x6B414653: "AFS",
    0x47504653: "GPFS",
    0x0BD00BD0: "Lustre",
}
_libc = ctypes.CDLL(None, use_errno=True)


class WriterState(StrEnum):
    """What is known about processes writing a file."""

    WRITER = "writer"  # a process has it open for writing (or, from events alone, open at all)
    NO_WRITER = "no_writer"  # the kernel granted a read lease: no process has it open for writing
    NONE_SEEN = "none_seen"  # open/close events show no other opener: evidence, not proof
    UNKNOWN = "unknown"  # nothing can tell: quiet time only


class WriterEvidence(StrEnum):
    """Where a :class:`WriterObservation` comes from."""

    LEASE = "lease"
    OPEN_EVENTS = "open_events"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class WriterObservation:
    """One answer to "is another process writing it?", with its evidence and the words for a person."""

    state: WriterState
    evidence: WriterEvidence
    detail: str

    @property
    def writer_seen(self) -> bool:
        """True when the file must keep waiting."""
        return self.state is WriterState.WRITER

    @property
    def authoritative(self) -> bool:
        """True when the kernel itself answered (a lease), so "no writer" is a fact."""
        return self.evidence is WriterEvidence.LEASE


QUIET_TIME_ONLY = WriterObservation(WriterState.UNKNOWN, WriterEvidence.NONE,
                                    "quiet time only (no lease and no open/close events here)")


# --------------------------------------------------------------------- leases


def filesystem_name(fd: int) -> str | None:
    """The name of a network/FUSE file system ``fd`` lives on (leases not trusted), else None."""
    buffer = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if _libc.fstatfs(fd, buffer) != 0:
        return None
    f_type = ctypes.c_long.from_buffer(buffer).value & 0xFFFFFFFF
    return _NETWORK_FILESYSTEMS.get(f_type)


def _lease_unavailable(reason: str) -> WriterObservation:
    return WriterObservation(WriterState.UNKNOWN, WriterEvidence.NONE, f"no lease: {reason}")


_LEASE_REFUSALS = {
    errno.EACCES: "syncd is not the file's owner and has no CAP_LEASE",
    errno.EPERM: "syncd is not the file's owner and has no CAP_LEASE",
    errno.EINVAL: "the file system does not support leases, or fs.leases-enable is 0",
    errno.ENOLCK: "the kernel is out of lease records",
    errno.ENOSYS: "the kernel has no leases",
}


def _take_read_lease(fd: int) -> WriterObservation | None:
    """Take a read lease on ``fd``; None when taken, else why not (a writer, or no lease possible)."""
    network = filesystem_name(fd)
    if network is not None:
        return _lease_unavailable(f"{network} leases do not see writers on other machines")
    try:
        fcntl.fcntl(fd, F_SETSIG, LEASE_BREAK_SIGNAL)
        fcntl.fcntl(fd, F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
            return WriterObservation(WriterState.WRITER, WriterEvidence.LEASE,
                                     "another process has it open for writing (read lease refused)")
        return _lease_unavailable(_LEASE_REFUSALS.get(exc.errno or 0, exc.strerror or str(exc)))
    return None


def _release_lease(fd: int) -> None:
    try:
        fcntl.fcntl(fd, F_SETLEASE, fcntl.F_UNLCK)
    except OSError:
        pass  # already gone (broken and timed out): nothing left to release


def probe_writer(fd: int) -> WriterObservation:
    """Ask the kernel, with a read lease taken and released at once, whether a writer has ``fd``'s file open.

    ``fd`` must be open read-only. ``WRITER``/``NO_WRITER`` with
    ``LEASE`` evidence, or ``UNKNOWN`` with the reason no lease could be had.
    """
    refused = _take_read_lease(fd)
    if refused is not None:
        return refused
    _release_lease(fd)
    return WriterObservation(WriterState.NO_WRITER, WriterEvidence.LEASE,
                             "no process has it open for writing (read lease granted)")


class HeldLease:
    """A read lease kept while a job reads the file; made by :meth:`LeaseMonitor.hold`."""

    def __init__(self, monitor: LeaseMonitor, fd: int, on_break: Callable[[], None], label: str) -> None:
        self._monitor = monitor
        self._fd = fd  # our own dup of the caller's descriptor: same open file, same lease
        self._on_break = on_break
        self.label = label
        self._broken = False
        self._released = False

    @property
    def broken(self) -> bool:
        """True once a writer opened (or truncated) the file while the lease was held."""
        return self._broken

    @property
    def active(self) -> bool:
        """True while the lease is held (neither broken nor released)."""
        return not self._released

    def release(self) -> None:
        """Give the lease up (idempotent); call it before closing the file."""
        self._monitor._release(self)

    def __enter__(self) -> HeldLease:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class LeaseMonitor:
    """Holds read leases for running jobs and reports a break to the job at once.

    One thread per monitor (started with the first lease, idle without any)
    polls every ``interval`` seconds. On a break it releases the lease first
    (the writer's ``open()`` proceeds) and then calls the lease's
    ``on_break`` from the monitor thread; keep it short (set an Event).
    """

    def __init__(self, *, interval: float = DEFAULT_LEASE_POLL) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        self.interval = interval
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._held: list[HeldLease] = []
        self._thread: threading.Thread | None = None
        self._stopping = False

    def hold(self, fd: int, on_break: Callable[[], None], *, label: str = "") -> HeldLease | WriterObservation:
        """Take a read lease on ``fd``'s file and watch it; or say why not.

        Returns a :class:`HeldLease`, or the :class:`WriterObservation` that
        refused it: ``WRITER`` (a writer has it open now) or ``UNKNOWN`` (no
        lease possible here). ``fd`` stays the caller's; the lease lives until
        :meth:`HeldLease.release`, a break, or :meth:`stop`.
        """
        own = os.dup(fd)
        refused = _take_read_lease(own)
        if refused is not None:
            os.close(own)
            return refused
        lease = HeldLease(self, own, on_break, label)
        with self._wakeup:
            if self._stopping:
                _release_lease(own)
                os.close(own)
                raise RuntimeError("the lease monitor is stopped")
            self._held.append(lease)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="syncd-leases", daemon=True)
                self._thread.start()
            self._wakeup.notify()
        return lease

    def held_count(self) -> int:
        """How many leases are held now."""
        with self._lock:
            return len(self._held)

    def stop(self, timeout: float = 5.0) -> None:
        """Release every lease and stop the thread."""
        with self._wakeup:
            self._stopping = True
            leases, self._held = self._held, []
            for lease in leases:
                self._drop(lease)
            thread, self._thread = self._thread, None
            self._wakeup.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _release(self, lease: HeldLease) -> None:
        with self._lock:
            if lease.active:
                self._held.remove(lease)
                self._drop(lease)

    def _drop(self, lease: HeldLease) -> None:
        """Release and close (caller holds the lock)."""
        lease._released = True
        _release_lease(lease._fd)
        os.close(lease._fd)

    def _run(self) -> None:
        while True:
            broken: list[HeldLease] = []
            with self._wakeup:
                while not self._held and not self._stopping:
                    self._wakeup.wait()
                if self._stopping:
                    return
                for lease in list(self._held):
                    try:
                        still_held = fcntl.fcntl(lease._fd, F_GETLEASE) == fcntl.F_RDLCK
                    except OSError:
                        still_held = False
                    if not still_held:
                        lease._broken = True
                        self._held.remove(lease)
                        self._drop(lease)  # first: the writer's open() is waiting for this
                        broken.append(lease)
            for lease in broken:
                try:
                    lease._on_break()
                except Exception:  # one job's hook must not stop the monitor of every other job
                    log.exception("lease_break_hook_failed", job=lease.label)
            with self._wakeup:
                if self._stopping:
                    return
                self._wakeup.wait(self.interval)


# ---------------------------------------------------------------- open events


class OpenCounter:
    """Opens of each path by other processes, counted from inotify open/close events (pure logic).

    The watcher feeds it the events in kernel order (:meth:`opened`,
    :meth:`closed`, :meth:`moved`, :meth:`removed`); syncd announces each of
    its own opens *before* making it (:meth:`expect_own_open`, which returns
    a token) and each close before making it (:meth:`expect_own_close`), or
    takes the announcement back when the open made no file event
    (:meth:`own_open_failed`): the :class:`~syncd.pipeline.source.OwnOpens`
    protocol. Tokens follow renames, so a file syncd holds open while it is
    renamed is still discounted under its new name.

    Per path it keeps the descriptors the events show open (opens minus
    closes; a close with none open belongs to an open made before counting
    and is ignored: the kernel reports an open before its close) and
    subtracts syncd's own. This is exact whenever every event has arrived and
    none were merged (the kernel merges an event with an identical one still
    unread: see the module docstring; two of syncd's own opens at one moment,
    readiness looking while a worker opens, can merge too). In between, syncd's own open is
    discounted from the moment it is announced, so until its ``IN_OPEN`` is
    read another process's open may be hidden by it: read the count *before*
    opening the file (:meth:`WriterDetector.look` does), and after syncd's
    close, until its ``IN_CLOSE_NOWRITE`` is read, one opener too many is
    counted.

    Paths are kept only while something is counted for them. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}  # descriptors open by anyone, as the events tell
        self._own: dict[int, str | None] = {}  # syncd's live descriptors: token -> path (None: left the watch)
        self._own_by_path: dict[str, int] = {}
        self._next_token = 1
        self._suspended: str | None = None

    # ------------------------------------------------------------- events

    def opened(self, relpath: str) -> None:
        """``IN_OPEN`` on the file ``relpath``."""
        with self._lock:
            self._open[relpath] = self._open.get(relpath, 0) + 1

    def closed(self, relpath: str, *, wrote: bool) -> None:
        """``IN_CLOSE_WRITE`` (``wrote``) or ``IN_CLOSE_NOWRITE`` on the file ``relpath``."""
        with self._lock:
            count = self._open.get(relpath, 0)
            if count <= 1:
                self._open.pop(relpath, None)  # at 0: opened before we counted, nothing to take back
            else:
                self._open[relpath] = count - 1

    def moved(self, src: str, dest: str) -> None:
        """``src`` (a file, or a directory and all below it) was renamed to ``dest`` inside the watch.

        Open descriptors follow the inode: their close events come under the new name.
        """
        with self._lock:
            for path in self._under(self._open, src):
                moved_to = dest + path[len(src):]
                self._open[moved_to] = self._open.get(moved_to, 0) + self._open.pop(path)
            for token, path in self._own.items():
                if path is not None and (path == src or path.startswith(src + "/")):
                    self._set_own_path(token, dest + path[len(src):])

    def removed(self, relpath: str) -> None:
        """``relpath`` (and all below it) left the watch: moved out, or a directory deleted.

        Its openers' close events will never reach this watch. (A deleted
        *file* is not removed: its openers' closes still arrive by its name.)
        """
        with self._lock:
            for path in self._under(self._open, relpath):
                del self._open[path]
            for token, path in self._own.items():
                if path is not None and (path == relpath or path.startswith(relpath + "/")):
                    self._set_own_path(token, None)

    def reset(self) -> None:
        """Events were lost or the observer restarted: start counting again, from syncd's own opens."""
        with self._lock:
            self._open = dict(self._own_by_path)
            self._suspended = None

    def suspend(self, reason: str) -> None:
        """Events stop coming (the watch falls back to polling): answer UNKNOWN until :meth:`reset`."""
        with self._lock:
            self._open.clear()
            self._suspended = reason

    # -------------------------------------------------------- syncd's own

    def expect_own_open(self, relpath: str) -> int:
        """syncd is about to open ``relpath``; returns the token of that descriptor."""
        with self._lock:
            token = self._next_token
            self._next_token += 1
            self._own[token] = None
            self._set_own_path(token, relpath)
            return token

    def own_open_failed(self, token: object) -> None:
        """The open announced with ``token`` made no file event (it failed, or was a directory)."""
        self._forget_own(token)

    def expect_own_close(self, token: object) -> None:
        """syncd is about to close the descriptor of ``token``."""
        self._forget_own(token)

    # ------------------------------------------------------------ answers

    def others_open(self, relpath: str) -> int:
        """How many descriptors other processes have open on ``relpath``, as the events tell."""
        with self._lock:
            return max(self._open.get(relpath, 0) - self._own_by_path.get(relpath, 0), 0)

    def observation(self, relpath: str) -> WriterObservation:
        """``WRITER`` while another process has ``relpath`` open, else ``NONE_SEEN`` (UNKNOWN when suspended)."""
        with self._lock:
            suspended = self._suspended
        if suspended is not None:
            return WriterObservation(WriterState.UNKNOWN, WriterEvidence.NONE, f"no open/close events: {suspended}")
        others = self.others_open(relpath)
        if others:
            return WriterObservation(WriterState.WRITER, WriterEvidence.OPEN_EVENTS,
                                     f"held open by {others} other open(s) (open/close events; without a lease "
                                     "a reader cannot be told from a writer)")
        return WriterObservation(WriterState.NONE_SEEN, WriterEvidence.OPEN_EVENTS,
                                 "no open by another process seen since the watch started")

    def tracked_paths(self) -> int:
        """How many paths hold a count (memory stays bounded by the files open at once)."""
        with self._lock:
            return len(self._open.keys() | self._own_by_path.keys())

    # ---------------------------------------------------------- internals

    @staticmethod
    def _under(table: dict[str, int], relpath: str) -> list[str]:
        prefix = relpath + "/"
        return [p for p in table if p == relpath or p.startswith(prefix)]

    def _set_own_path(self, token: int, path: str | None) -> None:
        """Move one own descriptor to ``path`` (caller holds the lock)."""
        old = self._own[token]
        if old is not None:
            left = self._own_by_path[old] - 1
            if left:
                self._own_by_path[old] = left
            else:
                del self._own_by_path[old]
        self._own[token] = path
        if path is not None:
            self._own_by_path[path] = self._own_by_path.get(path, 0) + 1

    def _forget_own(self, token: object) -> None:
        with self._lock:
            if not isinstance(token, int) or token not in self._own:
                return  # announced twice, or never: nothing to take back
            self._set_own_path(token, None)
            del self._own[token]


# ------------------------------------------------------------------- together


@dataclass(frozen=True, slots=True)
class WriterLook:
    """A file looked at through its own descriptor: its identity and who writes it."""

    identity: FileIdentity
    writer: WriterObservation


class WriterDetector:
    """The best evidence a watch has about writers: a lease, else open/close events, else none.

    ``leases``: try a read lease (True unless a test wants the fallback).
    ``open_counter``: the watch's :class:`OpenCounter` (inotify watches), or None.
    """

    def __init__(self, *, leases: bool = True, open_counter: OpenCounter | None = None) -> None:
        self.leases = leases
        self.open_counter = open_counter

    def look(self, root: Path | str, relpath: str) -> WriterLook | OpenRefused:
        """Open ``relpath`` beneath ``root`` (:func:`~syncd.pipeline.source.open_source`) and ask who writes it.

        The open count is read *before* syncd's own open: until its
        ``IN_OPEN`` is read back, syncd's own descriptor could hide another
        process's (see :class:`OpenCounter`).
        """
        counted = self.open_counter.observation(relpath) if self.open_counter is not None else None
        source = open_source(root, relpath, own_opens=self.open_counter)
        if isinstance(source, OpenRefused):
            return source
        with source:
            lease = probe_writer(source.fileno()) if self.leases else None
            return WriterLook(source.identity, self._combine(lease, counted, "leases are off"))

    def observe(self, fd: int | None, relpath: str) -> WriterObservation:
        """What is known about writers of ``relpath`` through ``fd``, a read-only descriptor syncd has
        held for a while (its own ``IN_OPEN`` already counted); None when syncd could not open it."""
        counted = self.open_counter.observation(relpath) if self.open_counter is not None else None
        lease = probe_writer(fd) if self.leases and fd is not None else None
        return self._combine(lease, counted, "syncd could not open it" if fd is None else "leases are off")

    @staticmethod
    def _combine(lease: WriterObservation | None, counted: WriterObservation | None,
                 no_lease: str) -> WriterObservation:
        if lease is not None and lease.state is not WriterState.UNKNOWN:
            return lease  # the kernel's answer: authoritative
        note = lease.detail if lease is not None else no_lease
        if counted is not None:
            return replace(counted, detail=f"{counted.detail}; {note}")
        return WriterObservation(WriterState.UNKNOWN, WriterEvidence.NONE, f"quiet time only; {note}")
