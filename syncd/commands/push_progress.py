"""Terminal progress for `syncd push`: one bar for the current file, one for the total.

On a terminal the two lines are redrawn in place (at most 10 times a second);
elsewhere (a pipe, a log) one line is printed per finished file, so output
stays readable in CI logs. Byte counts arrive from upload threads, so updates
are locked.
"""

from __future__ import annotations

import threading
import time
from typing import TextIO

BAR_WIDTH = 24
REDRAW_INTERVAL = 0.1


def format_bytes(n: float) -> str:
    """Binary units, e.g. `12.3 MiB`."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """`[#####.......]  42%`."""
    fraction = 1.0 if total <= 0 else min(1.0, done / total)
    filled = int(round(fraction * width))
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:3.0f}%"


class PushProgress:
    """Progress of a batch of uploads: call `start_file`, `advance` (any thread), `finish_file`."""

    def __init__(self, stream: TextIO, total_bytes: int, total_files: int, *, tty: bool | None = None,
                 clock=time.monotonic) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.total_bytes = total_bytes
        self.total_files = total_files
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._file_started = self._started
        self._done_bytes = 0
        self._file_name = ""
        self._file_size = 0
        self._file_done = 0
        self._files_done = 0
        self._last_draw = 0.0
        self._drawn = False

    def start_file(self, name: str, size: int) -> None:
        with self._lock:
            self._file_name, self._file_size, self._file_done = name, size, 0
            self._file_started = self._clock()
            self._draw(force=True)

    def advance(self, n: int) -> None:
        with self._lock:
            self._file_done += n
            self._done_bytes += n
            self._draw()

    def finish_file(self, outcome: str) -> None:
        """`outcome` is a short word: uploaded, skipped, failed..."""
        with self._lock:
            # Already-present parts or a reconciled file may not have reported every byte.
            self._done_bytes += max(0, self._file_size - self._file_done)
            self._file_done = self._file_size
            self._files_done += 1
            elapsed = max(1e-6, self._clock() - self._file_started)
            line = (f"{outcome:<9} {self._file_name}  {format_bytes(self._file_size)}"
                    f"  {format_bytes(self._file_size / elapsed)}/s")
            if self.tty:
                self._clear()
                self.stream.write(line + "\n")
                self._drawn = False
                self._draw(force=True)
            else:
                self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        with self._lock:
            if self.tty and self._drawn:
                self._clear()
            elapsed = max(1e-6, self._clock() - self._started)
            self.stream.write(f"total     {self._files_done}/{self.total_files} files  "
                              f"{format_bytes(self._done_bytes)}  {format_bytes(self._done_bytes / elapsed)}/s\n")
            self.stream.flush()

    # ------------------------------------------------------------------ drawing

    def _lines(self) -> tuple[str, str]:
        now = self._clock()
        file_rate = self._file_done / max(1e-6, now - self._file_started)
        total_rate = self._done_bytes / max(1e-6, now - self._started)
        current = (f"{self._file_name[:40]:<40} {bar(self._file_done, self._file_size)} "
                   f"{format_bytes(self._file_done)}/{format_bytes(self._file_size)} {format_bytes(file_rate)}/s")
        total = (f"{'total ' + str(self._files_done) + '/' + str(self.total_files) + ' files':<40} "
                 f"{bar(self._done_bytes, self.total_bytes)} "
                 f"{format_bytes(self._done_bytes)}/{format_bytes(self.total_bytes)} {format_bytes(total_rate)}/s")
        return current, total

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[2K\x1b[1A\x1b[2K\r")  # clear the total line, then the file line above
            self._drawn = False

    def _draw(self, force: bool = False) -> None:
        if not self.tty:
            return
        now = self._clock()
        if not force and now - self._last_draw < REDRAW_INTERVAL:
            return
        self._last_draw = now
        current, total = self._lines()
        if self._drawn:
            self.stream.write("\x1b[1A\r\x1b[2K" + current + "\n\x1b[2K" + total)
        else:
            self.stream.write(current + "\n" + total)
        self._drawn = True
        self.stream.flush()
