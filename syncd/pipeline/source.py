"""One open, one identity: open a file beneath its watch root and read it only through that descriptor.

DESIGN.md invariant 7. :func:`open_source` opens ``relpath`` below the watch
root so that **no symbolic link is followed on any component** and the path
cannot leave the root, whatever is swapped in on disk at any moment:

* where the kernel has ``openat2(2)`` (Linux >= 5.6), one call resolves the
  whole path from a descriptor of the root with ``RESOLVE_BENEATH |
  RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS``: a symlink anywhere on the
  path, or a ``..`` that would climb out, makes the kernel refuse;
* otherwise (older kernel, or a seccomp filter answering ``ENOSYS``/``EPERM``,
  ``EINVAL``) the path is walked one component at a time from the root's
  descriptor, each directory opened with ``O_PATH | O_NOFOLLOW |
  O_DIRECTORY`` relative to the previous one and the file with
  ``O_NOFOLLOW``. Every step is relative to a descriptor already checked, so
  a component swapped for a symlink between two steps is refused, not
  followed. ``..`` never reaches either resolver (:class:`RelativePathError`).

The root itself is opened by path and may be (or sit below) a symlink: it is
the administrator's configuration, not drop-folder content.

The file is opened ``O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC``: a FIFO
swapped in opens at once without a writer (and is then refused), a UNIX
socket fails with ``ENXIO``, a device never becomes a controlling terminal;
nothing here can hang a worker. ``fstat`` on the descriptor then decides:
anything but a regular file is refused with the reason (``is a FIFO (named
pipe)``, ``is a directory``...), and the identity (device, inode, size,
mtime, ctime) is compared with what readiness saw (``expect``); a difference
is refused as :attr:`ProblemKind.CHANGED` with what differs and what is there
now, so the caller can send the file back through readiness.

An :class:`OpenedSource` is the only way the file is read afterwards: the
SHA-1 (:meth:`OpenedSource.sha1`), parts (:meth:`OpenedSource.pread`, by
offset, so parallel part readers share no file position) and streamed bodies
(:meth:`OpenedSource.stream`) all come from the one descriptor, whose inode
cannot change under it. :meth:`OpenedSource.check_unchanged` (one ``fstat``)
says whether the content may have changed since it was opened (size, mtime or
ctime moved); a rename or delete of the path does not change what is read.

What this does not cover: a hard link is a regular file inside the root
whatever other name it has (``fs.protected_hardlinks``, on by default, stops
a user from linking a file they cannot read and write); a mount point inside
the root is crossed like a directory.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import platform
import stat as stat_module
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from collections.abc import Callable
from typing import Protocol

from syncd.box import SourceChanged, SourceWindow, pread_into
from syncd.pipeline.identity import FileIdentity, FileStat, IdentityChange
from syncd.pipeline.names import display_path
from syncd.pipeline.scanner import (
    FINAL_PROBLEMS,
    ProblemKind,
    RelativePathError,
    ScanProblem,
    normalize_relpath,
    not_regular_reason,
)

#: Flags of the one descriptor a file is read through.
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_ROOT_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC

# linux/openat2.h
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
_RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
# openat2 has one number on every architecture using the generic syscall table (x86_64 too).
_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437}.get(platform.machine())
# ENOSYS: no such call; EPERM: a seccomp filter; EINVAL/E2BIG: a kernel that knows openat2 but
# not these flags or this struct. The component walk is as safe, only slower.
_FALLBACK_ERRNOS = frozenset({errno.ENOSYS, errno.EPERM, errno.EINVAL, errno.E2BIG})

HASH_BLOCK = 1 << 20


class Resolver(StrEnum):
    """How a path is resolved beneath the root (tests force each; callers keep AUTO)."""

    AUTO = "auto"  # openat2 where the kernel has it, else the walk
    OPENAT2 = "openat2"
    WALK = "walk"


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_openat2_missing = _SYS_OPENAT2 is None  # set once ENOSYS was seen: no point asking again


def _openat2(dir_fd: int, path: bytes, flags: int) -> int:
    if _SYS_OPENAT2 is None:
        raise OSError(errno.ENOSYS, f"openat2 has no known number on {platform.machine()}")
    how = _OpenHow(flags, 0, _RESOLVE)
    # ctypes releases the GIL for the call: a hung network mount blocks this thread only.
    fd = _syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dir_fd), ctypes.c_char_p(path),
                  ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return int(fd)


def _is_symlink(name: bytes, dir_fd: int) -> bool:
    try:
        return stat_module.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _walk(dir_fd: int, parts: list[bytes]) -> int:
    """Open ``parts`` below ``dir_fd`` one component at a time, never following a link."""
    opened: list[int] = []
    current = dir_fd
    try:
        for part in parts[:-1]:
            try:
                current = os.open(part, _DIR_FLAGS, dir_fd=current)
            except NotADirectoryError:
                # O_PATH|O_NOFOLLOW|O_DIRECTORY answers ENOTDIR for a symlink: say what openat2 says.
                if _is_symlink(part, current):
                    raise OSError(errno.ELOOP, "a path component is a symbolic link") from None
                raise
            opened.append(current)
        return os.open(parts[-1], OPEN_FLAGS | os.O_NOFOLLOW, dir_fd=current)
    finally:
        for fd in opened:
            os.close(fd)


def open_beneath(dir_fd: int, relpath: str, *, resolver: Resolver = Resolver.AUTO) -> int:
    """A descriptor (``OPEN_FLAGS``) of ``relpath`` below the directory ``dir_fd``; raises OSError.

    A symbolic link on any component raises ``ELOOP`` with either resolver.
    ``relpath`` is normalised first (:class:`RelativePathError` for ``..``,
    an absolute path or NUL); names that are not UTF-8 (surrogate escapes)
    are opened by their bytes.
    """
    global _openat2_missing
    normal = normalize_relpath(relpath)
    if not normal:
        raise RelativePathError(relpath, "names the watched root itself, not a file")
    encoded = os.fsencode(normal)
    if resolver is Resolver.OPENAT2:
        return _openat2(dir_fd, encoded, OPEN_FLAGS)
    if resolver is Resolver.AUTO and not _openat2_missing:
        try:
            return _openat2(dir_fd, encoded, OPEN_FLAGS)
        except OSError as exc:
            if exc.errno not in _FALLBACK_ERRNOS:
                raise
            if exc.errno == errno.ENOSYS:
                _openat2_missing = True
    return _walk(dir_fd, encoded.split(b"/"))


def openat2_available() -> bool:
    """True when this kernel resolves paths with openat2 (False after it answered ENOSYS)."""
    return not _openat2_missing


# ------------------------------------------------------------------ outcomes


@dataclass(frozen=True, slots=True)
class OpenRefused:
    """Why a file was not opened (or was opened and then refused).

    ``kind`` reuses the scanner's :class:`ProblemKind`. For ``CHANGED``,
    ``found`` is the identity of what is there now and ``change`` how it
    differs from what was expected.
    """

    relpath: str
    kind: ProblemKind
    detail: str
    found: FileIdentity | None = None
    change: IdentityChange | None = None

    @property
    def final(self) -> bool:
        """True when trying again cannot help until the entry itself changes (park it, with the reason)."""
        return self.kind in FINAL_PROBLEMS

    @property
    def problem(self) -> ScanProblem:
        """The same refusal as the scanner and readiness report problems."""
        return ScanProblem(self.relpath, self.kind, self.detail)

    def __str__(self) -> str:
        return f"{display_path(self.relpath)}: {self.detail}"


class SourceChangedError(SourceChanged):
    """The opened file's content changed (or was found short) while it was being read.

    A :class:`syncd.box.SourceChanged`, so the Box layer reading an
    :class:`OpenedSource` (``UploadSource``) reports it as it reports its own.
    """

    def __init__(self, relpath: str, reason: str, change: IdentityChange | None = None) -> None:
        super().__init__(display_path(relpath), reason)
        self.relpath = relpath
        self.change = change


class OwnOpens(Protocol):
    """Told about syncd's own opens so open/close event counting can discount them.

    Called *before* the syscalls whose inotify events they announce, so an
    event can never arrive before its announcement. ``expect_own_open``
    returns a token naming that descriptor for the two other calls.
    """

    def expect_own_open(self, relpath: str) -> object: ...

    def own_open_failed(self, token: object) -> None: ...

    def expect_own_close(self, token: object) -> None: ...


_REFUSALS: dict[int, tuple[ProblemKind, str]] = {
    errno.ELOOP: (ProblemKind.SYMLINK_SKIPPED, "a symbolic link is on its path (links are never followed)"),
    # openat2 also says EXDEV when a folder on the path is moved out of the root while it resolves.
    errno.EXDEV: (ProblemKind.SYMLINK_OUTSIDE_ROOT, "its path leads out of the watched root"),
    errno.ENOENT: (ProblemKind.VANISHED, "disappeared before it could be opened"),
    errno.ENOTDIR: (ProblemKind.VANISHED, "a folder on its path is not a folder (any more)"),
    errno.EACCES: (ProblemKind.PERMISSION_DENIED, "permission denied"),
    errno.EPERM: (ProblemKind.PERMISSION_DENIED, "operation not permitted"),
    errno.EAGAIN: (ProblemKind.BUSY, "another process holds a lease on it (e.g. a file server); trying again later"),
    errno.ENAMETOOLONG: (ProblemKind.IO_ERROR, "its name is too long for the file system"),
    errno.EMFILE: (ProblemKind.IO_ERROR, "syncd has too many files open"),
    errno.ENFILE: (ProblemKind.IO_ERROR, "the system has too many files open"),
}


def _refusal(root: str, relpath: str, exc: OSError) -> OpenRefused:
    if exc.errno == errno.ENXIO:
        # A socket (or a device without a driver): name the type, from a stat that is only words.
        try:
            detail = not_regular_reason(os.lstat(os.path.join(root, relpath)).st_mode)
        except OSError:
            detail = "is not a regular file"
        return OpenRefused(relpath, ProblemKind.NOT_REGULAR_FILE, detail)
    kind, detail = _REFUSALS.get(exc.errno or 0, (ProblemKind.IO_ERROR, exc.strerror or str(exc)))
    return OpenRefused(relpath, kind, detail)


def open_source(
    root: Path | str,
    relpath: str,
    *,
    expect: FileIdentity | FileStat | None = None,
    own_opens: OwnOpens | None = None,
    resolver: Resolver = Resolver.AUTO,
) -> OpenedSource | OpenRefused:
    """Open the regular file ``relpath`` beneath ``root`` for reading, or say why not.

    ``expect``: the identity readiness saw; the file must still have it
    (a :class:`FileStat` compares size, mtime and inode only). ``own_opens``:
    told of the open and close (see :class:`OwnOpens`). Never raises for
    conditions on disk; raises :class:`RelativePathError` for a malformed
    ``relpath``.
    """
    root_str = os.fspath(root)
    normal = normalize_relpath(relpath)
    if not normal:
        raise RelativePathError(relpath, "names the watched root itself, not a file")
    try:
        root_fd = os.open(root_str, _ROOT_FLAGS)
    except OSError as exc:
        return OpenRefused(normal, ProblemKind.VANISHED if isinstance(exc, FileNotFoundError) else ProblemKind.IO_ERROR,
                           f"the watched root cannot be opened: {exc.strerror or exc}")
    token = own_opens.expect_own_open(normal) if own_opens is not None else None
    try:
        fd = open_beneath(root_fd, normal, resolver=resolver)
    except OSError as exc:
        if own_opens is not None:
            own_opens.own_open_failed(token)
        return _refusal(root_str, normal, exc)
    finally:
        os.close(root_fd)
    source = OpenedSource(fd, normal, own_opens=own_opens, own_token=token)
    try:
        st = os.fstat(fd)
    except OSError as exc:
        source.close()
        return OpenRefused(normal, ProblemKind.IO_ERROR, exc.strerror or str(exc))
    if not stat_module.S_ISREG(st.st_mode):
        source.close(is_directory=stat_module.S_ISDIR(st.st_mode))
        return OpenRefused(normal, ProblemKind.NOT_REGULAR_FILE, not_regular_reason(st.st_mode))
    identity = FileIdentity.from_stat(st)
    change = identity.change_from(expect) if expect is not None else None
    if change is not None:
        source.close()
        return OpenRefused(normal, ProblemKind.CHANGED, f"changed since it was found ready: {change.reason}",
                           found=identity, change=change)
    source._identity = identity
    return source


# ------------------------------------------------------------ the open file


class OpenedSource:
    """One regular file, open read-only beneath its root; every byte syncd uses comes from here.

    Reads are positional (``pread``), so any number of threads may read
    parts at once. :meth:`close` (or leaving the ``with`` block) must come
    after the last read. Made by :func:`open_source` only.
    """

    def __init__(self, fd: int, relpath: str, *, own_opens: OwnOpens | None = None,
                 own_token: object = None) -> None:
        self._fd = fd
        self.relpath = relpath
        self._own_opens = own_opens
        self._own_token = own_token
        self._identity: FileIdentity | None = None
        self._close_lock = threading.Lock()
        self._interrupted: str | None = None
        #: For messages and logs (the ``UploadSource`` protocol of ``syncd.box``).
        self.label = display_path(relpath)

    @property
    def identity(self) -> FileIdentity:
        """Device, inode, size, mtime and ctime when it was opened (and checked)."""
        assert self._identity is not None, "OpenedSource is made by open_source"
        return self._identity

    @property
    def size(self) -> int:
        """The size when it was opened: the bytes that are hashed and sent."""
        return self.identity.size

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def fileno(self) -> int:
        """The descriptor (for a lease, ``fcntl``); it stays owned by this object."""
        if self._fd < 0:
            raise ValueError(f"{display_path(self.relpath)} is closed")
        return self._fd

    # ------------------------------------------------------------- reading

    def interrupt(self, reason: str) -> None:
        """Make every later read raise :class:`SourceChangedError` with ``reason`` (from any thread).

        What a lease break or a write event does: an upload reading through this
        source (parts, a streamed direct body, the hash) stops at its next read
        instead of sending bytes a writer may be changing.
        """
        self._interrupted = reason

    @property
    def interrupted(self) -> str | None:
        """Why reads were interrupted (:meth:`interrupt`), or None."""
        return self._interrupted

    def fstat(self) -> os.stat_result:
        """``fstat`` of the descriptor (content times for Box; the ``UploadSource`` protocol)."""
        return os.fstat(self.fileno())

    def readinto(self, buffer: bytearray | memoryview, offset: int) -> int:
        """Fill ``buffer`` from ``offset``; fewer bytes only at the end of the file."""
        if self._interrupted is not None:
            raise SourceChangedError(self.relpath, self._interrupted)
        return pread_into(self.fileno(), buffer, offset)

    def pread(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset`` (fewer only at the end of the file)."""
        buffer = bytearray(length)
        n = self.readinto(buffer, offset)
        del buffer[n:]
        return bytes(buffer)

    def read_exact(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes from ``offset``; :class:`SourceChangedError` when the file is shorter."""
        data = self.pread(offset, length)
        if len(data) != length:
            raise SourceChangedError(self.relpath, f"the file shrank: read {len(data)} of {length} bytes at "
                                                   f"offset {offset}", self.check_unchanged())
        return data

    def stream(self, offset: int = 0, length: int | None = None) -> SourceWindow:
        """A file-like reader of ``length`` bytes from ``offset`` (default: to the size at open).

        For streamed request bodies (``requests``, ``MultipartEncoder``):
        ``len()`` is the range's length. Each stream has its own position;
        closing it leaves the source open.
        """
        if length is None:
            length = self.size - offset
        if offset < 0 or length < 0:
            raise ValueError(f"bad range offset={offset} length={length}")
        return SourceWindow(self.readinto, offset, length, lambda reached: SourceChangedError(
            # A body shorter than announced must fail here, not reach Box as a truncated upload.
            self.relpath, f"the file shrank: read ended at offset {reached}", self.check_unchanged()))

    def sha1(self, block_size: int = HASH_BLOCK, *, on_progress: Callable[[int], None] | None = None) -> str:
        """SHA-1 (hex) of the file's ``size`` bytes at open, checked unchanged across the read.

        ``on_progress(n)`` is called after each block with the bytes hashed (a long
        hash is progress for the job). Raises :class:`SourceChangedError` when the
        file is shorter or longer than at open, its size, mtime or ctime moved while
        it was read, or reads were interrupted.
        """
        digest = hashlib.sha1()
        buffer = bytearray(block_size)
        view = memoryview(buffer)
        offset = 0
        while offset < self.size:
            want = min(block_size, self.size - offset)
            n = self.readinto(view[:want], offset)
            if n < want:
                raise SourceChangedError(self.relpath, f"the file shrank: read {offset + n} of {self.size} bytes",
                                         self.check_unchanged())
            digest.update(view[:n])
            offset += n
            if on_progress is not None:
                on_progress(n)
        if self.pread(self.size, 1):
            raise SourceChangedError(self.relpath, "the file grew while it was read", self.check_unchanged())
        self.ensure_unchanged()
        return digest.hexdigest()

    # ------------------------------------------------------------ checking

    def current_identity(self) -> FileIdentity:
        """The identity now (one ``fstat``; same device and inode by construction)."""
        return FileIdentity.from_stat(os.fstat(self.fileno()))

    def check_unchanged(self) -> IdentityChange | None:
        """How the file changed since it was opened (size, mtime, ctime), or None."""
        return self.current_identity().change_from(self.identity)

    def ensure_unchanged(self) -> None:
        """:meth:`check_unchanged`, raising :class:`SourceChangedError` on a change."""
        change = self.check_unchanged()
        if change is not None:
            raise SourceChangedError(self.relpath, change.reason, change)

    # ------------------------------------------------------------- closing

    def close(self, *, is_directory: bool = False) -> None:
        """Close the descriptor (idempotent)."""
        with self._close_lock:
            fd, self._fd = self._fd, -1
            if fd < 0:
                return
            if self._own_opens is not None:
                # A directory's open and close are not file events: nothing will come to match.
                if is_directory:
                    self._own_opens.own_open_failed(self._own_token)
                else:
                    self._own_opens.expect_own_close(self._own_token)
            os.close(fd)

    def __enter__(self) -> OpenedSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<OpenedSource {display_path(self.relpath)} fd={self._fd}>"
