"""What an upload reads from: :class:`UploadSource`, an open regular file read by
offset, and :class:`PathSource`, which opens a path for ``syncd push`` and library users.

Invariant 7 (one open, one identity): the SHA-1 and every byte sent come from one
descriptor. Uploads never reopen or re-stat a path: parts come from
:meth:`UploadSource.read_exact`, direct bodies from :meth:`UploadSource.stream`,
"has it changed?" from :meth:`UploadSource.check_unchanged`, file times from
:meth:`UploadSource.fstat`. The daemon's ``syncd.pipeline.source.OpenedSource``
satisfies the protocol too (opened beneath its watch root, links refused).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat as stat_module
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Protocol

from .errors import SourceChanged

#: Block size of a full read pass (hashing); large enough that a pass costs a few syscalls per MiB.
READ_BLOCK = 1 << 20


class UploadSource(Protocol):
    """An open regular file that an upload reads by offset (invariant 7: one open, one identity)."""

    label: str  # for messages and logs (a display path)

    @property
    def size(self) -> int:
        """Bytes, as opened; fixed for the upload."""
        ...

    def read_exact(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes from ``offset``, or raise :class:`SourceChanged` (a subclass is fine)."""
        ...

    def stream(self, offset: int = 0, length: int | None = None) -> io.RawIOBase:
        """A readable binary stream of exactly ``length`` bytes (a multipart body part)."""
        ...

    def check_unchanged(self) -> object | None:
        """None, or a change whose ``str()`` is the reason."""
        ...

    def fstat(self) -> os.stat_result:
        """For ``content_modified_at`` / ``content_created_at``."""
        ...


def pread_into(fd: int, buffer: bytearray | memoryview, offset: int) -> int:
    """Fill ``buffer`` from ``offset`` of ``fd`` by position (no shared file offset, so windows
    and threads never disturb each other); fewer bytes only at the end of the file."""
    view = memoryview(buffer).cast("B")
    total = 0
    while total < len(view):
        n = os.preadv(fd, [view[total:]], offset + total)
        if n == 0:
            break
        total += n
    return total


@dataclass(frozen=True)
class SourceChange:
    """How an open file changed since it was opened (``str()`` is the reason)."""

    reason: str

    def __str__(self) -> str:
        return self.reason


def ensure_unchanged(source: UploadSource) -> None:
    """Raise :class:`SourceChanged` when ``source`` changed since it was opened."""
    change = source.check_unchanged()
    if change is not None:
        raise SourceChanged(source.label, str(change))


def source_sha1(source: UploadSource, *, on_block: Callable[[], None] | None = None) -> str:
    """SHA-1 (hex) of the source's ``size`` bytes, read through the source, checked unchanged after.

    ``on_block`` is called after every block read (heartbeats while a large file is hashed).
    """
    digest = hashlib.sha1()
    offset = 0
    while offset < source.size:
        block = source.read_exact(offset, min(READ_BLOCK, source.size - offset))
        digest.update(block)
        offset += len(block)
        if on_block is not None:
            on_block()
    ensure_unchanged(source)
    return digest.hexdigest()


def _not_regular(mode: int) -> str:
    for test, what in ((stat_module.S_ISDIR, "a directory"), (stat_module.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat_module.S_ISSOCK, "a socket"), (stat_module.S_ISCHR, "a character device"),
                       (stat_module.S_ISBLK, "a block device")):
        if test(mode):
            return what
    return "not a regular file"


class PathSource:
    """A path opened once, read-only, for one or more uploads: every byte comes from that descriptor.

    For ``syncd push`` and library users (the daemon opens files beneath their watch
    root instead). Symbolic links are followed (the caller named the path). Anything
    but a regular file is refused at open with :class:`IsADirectoryError` or
    :class:`OSError`. Reads are positional, so parallel part readers share no file
    position. Close it (or use ``with``) after the last read.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.label = self.path
        # O_NONBLOCK: a FIFO opens at once (and is then refused) instead of waiting for a writer.
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            opened = os.fstat(fd)
            if not stat_module.S_ISREG(opened.st_mode):
                what = _not_regular(opened.st_mode)
                if stat_module.S_ISDIR(opened.st_mode):
                    raise IsADirectoryError(f"{self.label} is {what}, not a file")
                raise OSError(f"{self.label} is {what}, not a regular file")
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._opened = opened
        self._close_lock = threading.Lock()

    @property
    def size(self) -> int:
        """The size when it was opened: the bytes that are hashed and sent."""
        return self._opened.st_size

    def fileno(self) -> int:
        if self._fd < 0:
            raise ValueError(f"{self.label} is closed")
        return self._fd

    def fstat(self) -> os.stat_result:
        """The file's status now (through the descriptor: the same inode whatever the path names)."""
        return os.fstat(self.fileno())

    def readinto(self, buffer: bytearray | memoryview, offset: int) -> int:
        """Fill ``buffer`` from ``offset``; fewer bytes only at the end of the file."""
        return pread_into(self.fileno(), buffer, offset)

    def read_exact(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes from ``offset``; :class:`SourceChanged` when the file is shorter."""
        buffer = bytearray(length)
        n = self.readinto(buffer, offset)
        if n != length:
            raise SourceChanged(self.label, f"the file shrank: read {n} of {length} bytes at offset {offset}")
        return bytes(buffer)

    def stream(self, offset: int = 0, length: int | None = None) -> io.RawIOBase:
        """A reader of ``length`` bytes from ``offset`` (default: to the size at open); ``len()`` is its length."""
        if length is None:
            length = self.size - offset
        return SourceWindow(self.readinto, offset, length, lambda reached: SourceChanged(
            self.label, f"the file shrank: read ended at offset {reached}"))

    def check_unchanged(self) -> SourceChange | None:
        """How the content may have changed since the open (size, mtime or ctime moved), or None."""
        now = self.fstat()
        if now.st_size != self._opened.st_size:
            return SourceChange(f"size changed from {self._opened.st_size} to {now.st_size}")
        if now.st_mtime_ns != self._opened.st_mtime_ns:
            return SourceChange("modification time changed")
        if now.st_ctime_ns != self._opened.st_ctime_ns:
            # mtime can be set back (touch -d, cp -p); ctime cannot.
            return SourceChange("status change time changed (written, or its times set back)")
        return None

    def close(self) -> None:
        """Close the descriptor (idempotent)."""
        with self._close_lock:
            fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> PathSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PathSource({self.label!r}, size={self.size})"


class SourceWindow(io.RawIOBase):
    """A read-only, seekable window ``[offset, offset + length)`` of an open file, read by
    position (so windows share no file position); ``len()`` is its length, for a
    Content-Length. A read that ends early raises ``short_read(offset_reached)``: a body
    shorter than announced must fail here, not reach Box as a truncated upload.

    ``readinto(buffer, offset)`` fills ``buffer`` from ``offset`` (fewer bytes only at the
    end of the file). Any open-file type can serve a window this way.
    """

    def __init__(self, readinto: Callable[[memoryview, int], int], offset: int, length: int,
                 short_read: Callable[[int], Exception]) -> None:
        super().__init__()
        if offset < 0 or length < 0:
            raise ValueError(f"bad range offset={offset} length={length}")
        self._read_at = readinto
        self._short_read = short_read
        self._start = offset
        self._length = length
        self._position = 0

    def __len__(self) -> int:
        return self._length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}[whence]
        self._position = min(max(base + offset, 0), self._length)
        return self._position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.closed:
            raise ValueError("read from a closed stream")
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._length - self._position)
        if want <= 0:
            return 0
        n = self._read_at(view[:want], self._start + self._position)
        if n < want:
            raise self._short_read(self._start + self._position + n)
        self._position += n
        return n


@contextmanager
def opened(source: UploadSource | str | os.PathLike[str]) -> Iterator[UploadSource]:
    """``source`` itself, or a :class:`PathSource` for a path, closed when the block ends."""
    if isinstance(source, (str, os.PathLike)):
        with PathSource(source) as path_source:
            yield path_source
    else:
        yield source
