"""The emulator's clock: wall time plus an offset that tests can advance.

Session expiry (7 days), access-token expiry and authorization-code lifetime
all read this clock, so `POST /_emulator/clock` lets a test jump a week ahead
in no time. The offset is persisted by the store so that it survives a restart.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import re

_ISO_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$"
)


class Clock:
    """Wall clock shifted by `offset` seconds."""

    def __init__(self, offset: float = 0.0) -> None:
        self._offset = offset
        self._lock = threading.Lock()

    @property
    def offset(self) -> float:
        return self._offset

    def now(self) -> float:
        """Seconds since the epoch, as the emulator sees them."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> float:
        """Move the clock forward (or back, if negative); returns the new offset."""
        with self._lock:
            self._offset += seconds
            return self._offset


def iso(timestamp: float) -> str:
    """Box's time format: ISO-8601, whole seconds, explicit offset (UTC here)."""
    return datetime.fromtimestamp(int(timestamp), tz=timezone.utc).isoformat()


def parse_iso(value: object) -> float:
    """Parse a client-supplied ISO-8601 time (offset required); ValueError if invalid."""
    if not isinstance(value, str) or not _ISO_RE.match(value):
        raise ValueError(f"not an ISO-8601 date-time with offset: {value!r}")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return float(int(parsed.timestamp()))
