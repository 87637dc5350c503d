"""What identifies one state of a file on disk: size, mtime_ns and inode together.

mtime alone is never trusted (`cp -p` keeps an old one); size, mtime and
inode together change whenever the content is rewritten in place or replaced.
"""

from __future__ import annotations

import os
import stat as stat_module
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class FileIdentity:
    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> FileIdentity:
        """Stat `path` without following a final symlink; raises OSError as os.stat does."""
        st = os.stat(path, follow_symlinks=False)
        if not stat_module.S_ISREG(st.st_mode):
            raise IsADirectoryError(f"{path} is not a regular file")
        return cls.from_stat(st)

    @classmethod
    def from_stat(cls, st: os.stat_result) -> FileIdentity:
        return cls(size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino)


def current_identity(path: Path) -> FileIdentity | None:
    """The file's identity now, or None when it is gone or no longer a regular file."""
    try:
        return FileIdentity.of(path)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
