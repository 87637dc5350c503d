"""systemd's side of NOTIFY_SOCKET for tests of a real daemon: every datagram, in order."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path


class NotifyRecorder:
    """A bound AF_UNIX datagram socket that records every notification with the time it arrived."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.received: list[tuple[float, str]] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._closed.is_set():
            try:
                message = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            self.received.append((time.monotonic(), message))

    def messages(self) -> list[str]:
        """Every datagram so far, in arrival order."""
        return [message for _, message in list(self.received)]

    def pings(self, since: float = 0.0) -> list[float]:
        return [at for at, message in list(self.received) if at >= since and "WATCHDOG=1" in message.split("\n")]

    def close(self) -> None:
        self._closed.set()
        self._thread.join(2)
        self.sock.close()
