"""What identifies one state of one file, and how two states differ.

:class:`FileStat` (size, mtime_ns, inode) is what the journal stores today.
:class:`FileIdentity` adds the device and the inode change time (ctime):

* ``device`` + ``inode`` name the inode; without the device, two files on two
  file systems mounted inside one watch can share an inode number.
* ``ctime_ns`` is set by the kernel on every change of content, size, mode,
  owner, link count or name, and cannot be set back from user space (``touch
  -d``, ``cp -p`` and ``utime()`` set mtime, never ctime). A file whose size
  and mtime were restored after a change still has a newer ctime.

Readiness, the scanner and :mod:`syncd.pipeline.source` produce identities;
:meth:`FileIdentity.change_from` says whether the file is still the one seen
earlier, and how it differs when it is not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class FileStat:
    """The identity of one state of a file: all three change when it is rewritten or replaced."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def from_stat(cls, st: os.stat_result) -> FileStat:
        """The FileStat of an ``os.stat_result``."""
        return cls(size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino)


class ChangeKind(StrEnum):
    """How a file differs from the state seen earlier (the first difference found, in this order)."""

    REPLACED = "replaced"  # another inode (or device) is there now
    SIZE = "size"
    MTIME = "mtime"
    CTIME = "ctime"  # content, mode, owner, links or name changed, size and mtime put back or kept


@dataclass(frozen=True, slots=True)
class IdentityChange:
    """A file is no longer in the state it was seen in."""

    kind: ChangeKind
    expected: FileIdentity | FileStat
    found: FileIdentity

    @property
    def reason(self) -> str:
        """The difference in words, for logs and ``syncd status``."""
        if self.kind is ChangeKind.REPLACED:
            return "the file was replaced by another one (different inode)"
        if self.kind is ChangeKind.SIZE:
            return f"its size changed from {self.expected.size} to {self.found.size} bytes"
        if self.kind is ChangeKind.MTIME:
            return "its modification time changed"
        return "its inode changed (ctime: content, mode, owner, links or name)"

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """Device, inode, size, mtime and ctime of one state of a regular file.

    ``device`` is None in an identity recorded on a journal several hosts share: each host
    mounts the shared folder with its own device number, so only the inode (the file
    server's file id), size and times mean the same everywhere.
    """

    device: int | None
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def from_stat(cls, st: os.stat_result) -> FileIdentity:
        """The identity in an ``os.stat_result`` (from ``lstat``, ``fstat`` or ``DirEntry.stat``)."""
        return cls(device=st.st_dev, inode=st.st_ino, size=st.st_size, mtime_ns=st.st_mtime_ns,
                   ctime_ns=st.st_ctime_ns)

    @property
    def stat(self) -> FileStat:
        """The (size, mtime_ns, inode) part, as the journal stores it today."""
        return FileStat(self.size, self.mtime_ns, self.inode)

    def change_from(self, expected: FileIdentity | FileStat) -> IdentityChange | None:
        """How this state differs from ``expected``, or None when it is the same.

        A :class:`FileStat` (no device, no ctime) is compared on what it has:
        size, mtime and inode.
        """
        if isinstance(expected, FileIdentity) and None not in (self.device, expected.device):
            if (self.device, self.inode) != (expected.device, expected.inode):
                return IdentityChange(ChangeKind.REPLACED, expected, self)
        elif self.inode != expected.inode:
            return IdentityChange(ChangeKind.REPLACED, expected, self)
        if self.size != expected.size:
            return IdentityChange(ChangeKind.SIZE, expected, self)
        if self.mtime_ns != expected.mtime_ns:
            return IdentityChange(ChangeKind.MTIME, expected, self)
        if isinstance(expected, FileIdentity) and self.ctime_ns != expected.ctime_ns:
            return IdentityChange(ChangeKind.CTIME, expected, self)
        return None


class HasIdentity:
    """The journal's three fields read through a record's ``identity`` (for ScanEntry, ReadyCandidate)."""

    __slots__ = ()
    identity: FileIdentity

    @property
    def size(self) -> int:
        return self.identity.size

    @property
    def mtime_ns(self) -> int:
        return self.identity.mtime_ns

    @property
    def inode(self) -> int:
        return self.identity.inode

    @property
    def stat(self) -> FileStat:
        """Size, mtime_ns and inode as a :class:`FileStat`."""
        return self.identity.stat
