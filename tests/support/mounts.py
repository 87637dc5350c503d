"""Small real file systems for tests (tests run as root): a size-limited tmpfs mounted on a
directory, remountable read-only, always unmounted at the end, even when the test fails."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class Mount:
    """A tmpfs mounted at `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def remount(self, *, read_only: bool) -> None:
        """Make the file system read-only (writes fail with EROFS) or writable again."""
        subprocess.run(["mount", "-o", f"remount,{'ro' if read_only else 'rw'}", str(self.path)], check=True)


@contextmanager
def tmpfs(path: Path, size: str = "16m") -> Iterator[Mount]:
    """Mount a tmpfs of `size` at `path` (created); unmounted (lazily, so nothing can hold it) on exit."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True)
    try:
        yield Mount(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
