"""systemd's side of NOTIFY_SOCKET for tests of a real daemon: every datagram, in order."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path


class NotifySocket:
    """A bound AF_UNIX datagram socket standing in for systemd's notify socket, drained as
    systemd does; records every notification with the time it arrived."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self._received: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._closed.is_set():
            try:
                message = self.sock.recv(4096).decode()
            except (TimeoutError, BlockingIOError):
                continue
            with self._lock:
                self._received.append((time.monotonic(), message))

    @property
    def messages(self) -> list[str]:
        """Every datagram so far, in arrival order (a copy)."""
        with self._lock:
            return [message for _, message in self._received]

    def pings(self, since: float = 0.0) -> list[float]:
        """When each WATCHDOG=1 arrived (time.monotonic()), from `since` on."""
        with self._lock:
            received = list(self._received)
        return [at for at, message in received if at >= since and "WATCHDOG=1" in message.split("\n")]

    def wait_for(self, prefix: str, timeout: float = 30.0, *, after: int = 0) -> str:
        """The first notification line starting with `prefix` among messages[after:]."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages[after:]:
                for line in message.splitlines():
                    if line.startswith(prefix):
                        return line
            time.sleep(0.05)
        raise AssertionError(f"no {prefix!r} notification; got {self.messages[-10:]}")

    def close(self) -> None:
        self._closed.set()
        self._thread.join(2)
        self.sock.close()
