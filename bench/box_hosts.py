"""Box's host names pointed at this machine for the length of a benchmark, and never longer.

Clients whose Box URLs are built in (rclone's Box backend has ``https://api.box.com/2.0``,
``https://upload.box.com/api/2.0`` and ``https://app.box.com/api/oauth2/token`` compiled
in) reach the emulator the way any client reaches a test double: the names resolve to
127.0.0.1 through ``/etc/hosts`` and the emulator serves HTTPS on port 443.

    with box_hosts():          # one marked line appended to /etc/hosts
        ...                    # https://api.box.com is the emulator on 127.0.0.1:443
    # the line is gone again: on return, on an exception, on Ctrl-C and on SIGTERM/SIGHUP

The added line ends with :data:`MARKER`, and only lines ending with it are ever removed,
so edits someone else makes to the file meanwhile survive. A run killed with SIGKILL
cannot clean up; the next run removes its stale line first (and says so), and the line
carries the marker so that a person can see where it came from.

The file is rewritten in place (not replaced by a rename): in containers ``/etc/hosts``
is often a bind mount, which a rename cannot replace.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from bench.emulator import BenchError

HOSTS_FILE = Path("/etc/hosts")
#: Every host a Box client may be sent to: the regular and upload APIs, the OAuth hosts
#: (rclone's token URL is on app.box.com) and the download host, so that nothing a client
#: does during the run can leave this machine.
BOX_HOST_NAMES = ("api.box.com", "upload.box.com", "app.box.com", "account.box.com", "dl.boxcloud.com")
LOOPBACK = "127.0.0.1"
MARKER = "# syncd bench versus_rclone: temporary, removed when the benchmark ends"


class HostsFileError(BenchError):
    """The hosts file cannot be changed safely (a name is already mapped elsewhere, it cannot be written)."""


def _names_of(line: str) -> list[str]:
    fields = line.split("#", 1)[0].split()
    return [name.lower() for name in fields[1:]]


def marked_lines(text: str) -> list[str]:
    """The lines of a hosts file that a benchmark run added (they end with MARKER)."""
    return [line for line in text.splitlines() if line.rstrip().endswith(MARKER)]


def without_entries(text: str) -> str:
    """`text` without the lines a benchmark run added; every other line kept byte for byte."""
    return "".join(line for line in text.splitlines(keepends=True) if not line.rstrip().endswith(MARKER))


def with_entries(text: str, names: Sequence[str], address: str = LOOPBACK) -> str:
    """`text` with one marked line mapping `names` to `address` appended (a newline added before it if needed)."""
    if not names:
        raise ValueError("no host names to map")
    separator = "" if not text or text.endswith("\n") else "\n"
    return f"{text}{separator}{address} {' '.join(names)} {MARKER}\n"


def conflicting_lines(text: str, names: Sequence[str]) -> list[str]:
    """Unmarked lines that already map one of `names`: with them in the file a resolver may
    answer their address instead of ours, and a client could reach the real service."""
    wanted = {name.lower() for name in names}
    return [line for line in text.splitlines()
            if not line.rstrip().endswith(MARKER) and wanted.intersection(_names_of(line))]


def resolution_problems(names: Sequence[str], address: str = LOOPBACK) -> list[str]:
    """For each name that does not resolve to `address` alone, what it resolves to (empty: all good)."""
    problems = []
    for name in names:
        try:
            found = sorted({info[4][0] for info in socket.getaddrinfo(name, 443, proto=socket.IPPROTO_TCP)})
        except OSError as error:
            problems.append(f"{name}: {error}")
            continue
        if found != [address]:
            problems.append(f"{name} -> {', '.join(found)}")
    return problems


def _rewrite(path: Path, text: str) -> None:
    # In place: a rename cannot replace a bind-mounted /etc/hosts. fsync so a crash right
    # after cannot leave the old content behind the marker line's removal.
    with open(path, "r+", encoding="utf-8") as handle:
        handle.seek(0)
        handle.write(text)
        handle.truncate()
        handle.flush()
        os.fsync(handle.fileno())


_HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT/SIGTERM/SIGHUP are held (delivered on the way out) while inside."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C, so every cleanup on the way runs."""


@contextmanager
def termination_unwinds() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise :class:`Terminated` in the main thread instead of
    ending the process on the spot (their default), so `finally` blocks and context managers
    clean up. Outside the main thread (where handlers cannot be installed) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def unwind(signum: int, frame: FrameType | None) -> None:
        raise Terminated(f"signal {signal.Signals(signum).name}")

    previous = {signum: signal.signal(signum, unwind) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def box_hosts(path: Path = HOSTS_FILE, names: Sequence[str] = BOX_HOST_NAMES, address: str = LOOPBACK,
              *, check_resolution: bool = True) -> Iterator[None]:
    """Map `names` to `address` in the hosts file `path` while inside; the line is removed on the way out,
    however the block is left. HostsFileError (nothing changed) when a name is already mapped by a
    line of someone else's, or when, with the line in place, a name still resolves elsewhere."""
    with termination_unwinds():
        original = path.read_text(encoding="utf-8")
        stale = marked_lines(original)
        if stale:
            print(f"  {path}: removing {len(stale)} line(s) left by an earlier run that was killed: {stale}", flush=True)
            original = without_entries(original)
            _rewrite(path, original)
        conflicts = conflicting_lines(original, names)
        if conflicts:
            raise HostsFileError(f"{path} already maps {', '.join(names)} in {conflicts}; a client could reach "
                                 "another address than the emulator. Remove those lines for the run, or run on a "
                                 "machine without them")
        _rewrite(path, with_entries(original, names, address))
        try:
            if check_resolution:
                problems = resolution_problems(names, address)
                if problems:
                    raise HostsFileError(f"with {address} for Box's hosts in {path}, the resolver still answers "
                                         f"otherwise ({'; '.join(problems)}); check the hosts line of "
                                         "/etc/nsswitch.conf")
            yield
        finally:
            # Re-read: someone may have edited the file meanwhile, and their edits stay. A second
            # signal must not cut the rewrite short, so they wait until it is done.
            with _signals_held():
                _rewrite(path, without_entries(path.read_text(encoding="utf-8")))
