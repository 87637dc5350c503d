"""The single-writer lock: one daemon per journal, enforced with `fcntl.flock`.

The lock is an exclusive flock on `<journal>.lock`, a file that also holds the
holder's PID and start time so that a refused second daemon can say who is in the
way. The flock, not the file's contents, is the truth: the kernel drops it when
the holder dies (even by SIGKILL), so a stale file left behind never blocks a new
daemon and is never reported as a live holder.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from syncd.journal.errors import JournalError, JournalLocked

# A holder writes its PID right after taking the lock; a contender that reads the
# file in between sees it empty, so it re-reads for a short while.
_PID_READ_ATTEMPTS = 50
_PID_READ_PAUSE_S = 0.01


def lock_path_for(journal_path: Path) -> Path:
    """Return the lock file path of a journal: `<journal>.lock` beside it."""
    return journal_path.with_name(journal_path.name + ".lock")


@dataclass(frozen=True, slots=True)
class LockHolder:
    """What the lock file says about the process holding it."""

    pid: int
    started_at: float


class DaemonLock:
    """An acquired single-writer lock. Release it with `release()` (idempotent)."""

    def __init__(self, lock_path: Path, fd: int) -> None:
        self.lock_path = lock_path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, journal_path: Path) -> DaemonLock:
        """Take the lock without waiting, or raise JournalLocked naming the holder's PID."""
        lock_path = lock_path_for(journal_path)
        try:
            # O_CLOEXEC: a child process started by the daemon must not inherit (and so
            # keep holding) the lock after the daemon dies.
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise JournalError(
                f"cannot open journal lock file {lock_path}: {exc.strerror}; check the directory's permissions",
                path=journal_path,
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder_waiting(fd)
            os.close(fd)
            raise JournalLocked(journal_path, lock_path, holder.pid if holder else None) from None
        except OSError as exc:
            os.close(fd)
            raise JournalError(f"cannot lock {lock_path}: {exc.strerror}", path=journal_path) from exc
        record = json.dumps({"pid": os.getpid(), "started_at": time.time()}) + "\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
        return cls(lock_path, fd)

    @property
    def held(self) -> bool:
        """True until `release()` is called."""
        return self._fd is not None

    def release(self) -> None:
        """Clear the holder record and drop the lock. Safe to call twice."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # a stale file would not lie anyway, but an empty one is clearer
        finally:
            os.close(fd)  # closing the descriptor releases the flock


def live_holder(journal_path: Path) -> LockHolder | None:
    """Return the live process holding the journal's lock, or None if nobody does.

    Never creates the lock file and never takes the lock for longer than a probe.
    """
    lock_path = lock_path_for(journal_path)
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise JournalError(f"cannot read journal lock file {lock_path}: {exc.strerror}", path=journal_path) from exc
    try:
        try:
            # A shared lock is granted only if no process holds the exclusive one.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder_waiting(fd)
            if holder is None:
                raise JournalError(
                    f"journal lock {lock_path} is held but names no process", path=journal_path
                ) from None
            return holder
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_holder_waiting(fd: int) -> LockHolder | None:
    for _ in range(_PID_READ_ATTEMPTS):
        holder = _parse_holder(os.pread(fd, 4096, 0))
        if holder is not None:
            return holder
        time.sleep(_PID_READ_PAUSE_S)
    return None


def _parse_holder(raw: bytes) -> LockHolder | None:
    try:
        data = json.loads(raw.decode())
        return LockHolder(pid=int(data["pid"]), started_at=float(data["started_at"]))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None
