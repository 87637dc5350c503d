"""Fixtures for the Box client tests: a client bound to the real emulator process,
real files on disk, and an in-memory UploadProgress."""

from __future__ import annotations

import random
import threading
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import pytest

from syncd.box import (
    BoxClient, DeveloperTokenAuth, RateLimiter, RateLimits, RetryPolicy, SavedSession, Transport, UploadedPart,
)

# Small delays keep retry tests fast; the logic is the same as with production values.
FAST_RETRY = RetryPolicy(max_attempts=6, base_delay=0.05, max_delay=0.5, deadline=60.0)
NO_RATE_LIMIT = RateLimits(api_calls_per_minute=None, uploads_per_minute=None)

MB = 1_000_000


def make_client(emulator, auth=None, *, sleep: Callable[[float], None] | None = None, **kwargs) -> BoxClient:
    """A BoxClient for ``emulator`` (developer token unless ``auth`` is given).

    ``sleep`` replaces the transport's waits between retries (e.g. ``FakeTime.sleep``).
    """
    auth = auth or DeveloperTokenAuth(emulator.token)
    kwargs.setdefault("retry", FAST_RETRY)
    kwargs.setdefault("rate_limits", NO_RATE_LIMIT)
    kwargs.setdefault("timeout", (5.0, 30.0))
    if sleep is not None:
        kwargs["transport"] = Transport(auth, timeout=kwargs["timeout"], retry=kwargs["retry"],
                                        rate_limiter=RateLimiter(kwargs["rate_limits"]), sleep=sleep)
    return BoxClient(auth, api_url=emulator.api_url, upload_url=emulator.upload_url, **kwargs)


class FakeTime:
    """A clock that moves only when the code under test sleeps: waits are recorded, not spent.

    Pass ``clock`` and ``sleep`` where the code takes them; ``sleeps`` lists every wait asked for.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


@pytest.fixture
def client(emulator) -> Iterator[BoxClient]:
    box = make_client(emulator)
    yield box
    box.close()


def write_file(path: Path, size: int, seed: int = 0) -> Path:
    """A file of ``size`` pseudo-random bytes (incompressible, deterministic per seed)."""
    rng = random.Random(seed)
    with open(path, "wb") as handle:
        remaining = size
        while remaining:
            n = min(remaining, 4 * 1024 * 1024)
            handle.write(rng.randbytes(n))
            remaining -= n
    return path


@pytest.fixture
def make_file(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str, size: int, seed: int = 0) -> Path:
        return write_file(tmp_path / name, size, seed)
    return make


class MemoryProgress:
    """UploadProgress kept in memory, like the daemon's journal would keep it on disk."""

    def __init__(self, saved: SavedSession | None = None) -> None:
        self.saved = saved
        self.created = 0
        self.discarded = 0
        self.parts: list[UploadedPart] = []
        self._lock = threading.Lock()
        #: called after each recorded part (tests use it to inject a crash or a change)
        self.after_part: Callable[[UploadedPart], None] | None = None

    def load(self) -> SavedSession | None:
        return self.saved

    def session_created(self, session: SavedSession) -> None:
        self.saved = session
        self.created += 1

    def part_uploaded(self, part: UploadedPart) -> None:
        with self._lock:
            self.parts.append(part)
            if self.saved is not None:
                self.saved = replace(self.saved, parts=self.saved.parts + (part,))
        if self.after_part is not None:
            self.after_part(part)

    def session_discarded(self) -> None:
        self.saved = None
        self.discarded += 1


def count(stats: dict, endpoint: str, status: str | None = None) -> int:
    """Requests to ``endpoint`` in emulator stats (with ``status`` only, when given)."""
    by_status = stats.get("requests", {}).get(endpoint, {})
    if status is not None:
        return int(by_status.get(status, 0))
    return sum(int(n) for n in by_status.values())


def stop_dropping(emulator) -> None:
    """Turn drop_rate off. The emulator's drop fault also cuts admin requests
    that have a body, so the PUT itself may need a few tries."""
    import requests

    for _ in range(30):
        try:
            emulator.faults(drop_rate=0.0)
            return
        except requests.ConnectionError:
            continue
    raise AssertionError("could not switch drop_rate off")
