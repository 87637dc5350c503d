"""Real child processes that hold a file open, so tests see what the kernel sees (no mocks).

``FileHolder(path, "a")`` starts a Python child that opens ``path`` in that
mode and keeps it open until :meth:`FileHolder.release` (or the ``with``
block ends). ``start_open=False`` makes the child wait for :meth:`open_now`
first, so a test can order the child's ``open()`` against its own steps; the
child prints ``opened`` once its ``open()`` returned.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import mmap, os, sys
path, mode, start_open = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
if not start_open:
    sys.stdin.readline()
if mode == "mmap":  # a writable shared mapping outlives its descriptor
    handle = open(path, "r+b")
    mapping = mmap.mmap(handle.fileno(), 0)
    handle.close()
elif mode == "truncate":
    os.truncate(path, 0)
else:
    flags = {"r": os.O_RDONLY, "a": os.O_WRONLY | os.O_APPEND, "rw": os.O_RDWR}[mode]
    fd = os.open(path, flags)
    if len(sys.argv) > 4:
        os.write(fd, sys.argv[4].encode())
print("opened", flush=True)
last = sys.stdin.readline().rstrip("\n")
if last and mode in ("a", "rw"):
    os.write(fd, last.encode())  # the rest of the file, written just before the close
"""


class FileHolder:
    """A child process holding ``path`` open in ``mode``: r, a (append), rw, mmap, or truncate (no hold)."""

    def __init__(self, path: Path | str, mode: str, *, start_open: bool = True, write: str | None = None) -> None:
        args = [sys.executable, "-c", _CHILD, str(path), mode, "1" if start_open else "0"]
        if write is not None:
            args.append(write)
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.opened = False
        if start_open:
            self.wait_opened()

    def open_now(self) -> None:
        """Let a ``start_open=False`` child make its ``open()`` now (returns at once)."""
        assert self.process.stdin is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()

    def wait_opened(self) -> None:
        """Block until the child's ``open()`` returned (it prints ``opened``)."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line == "opened\n", f"holder child failed: {line!r}, exit {self.process.poll()}"
        self.opened = True

    def release(self, *, write_first: str = "") -> None:
        """Close the file (the child exits; in mode a/rw it writes ``write_first`` just before) and reap it."""
        if self.process.poll() is None:
            assert self.process.stdin is not None
            try:
                self.process.stdin.write(write_first + "\n")
                self.process.stdin.close()
            except BrokenPipeError:
                pass
        self.process.wait(timeout=60)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> FileHolder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.release()
