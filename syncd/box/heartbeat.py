"""Heartbeats of an upload: ``on_bytes(0)`` at least every few seconds while the upload
waits or works without sending, so that a watchdog crediting progress to the job
(the daemon's) can tell a slow upload from a stuck one.

A heartbeat marks progress actually made: a block hashed, a block of a body handed
to the socket, a slice of a wait that Box or the rate limit asked for. Nothing
ticks on its own, so an upload stuck in a read or a send stays silent and the
watchdog sees it.

The upload in progress on a thread is a context variable (:func:`beating`), so the
transport's waits (rate limiter, retry backoff) and the Box calls an upload makes
beat for it without every call passing it along. Part workers run in a copy of
the submitting thread's context.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .upload_values import OnBytes

#: A heartbeat goes out at most this often, and a wait is cut into slices this long.
HEARTBEAT_EVERY = 2.0


class Heartbeat:
    """The progress callback of one upload: bytes acknowledged (``sent``) and heartbeats (``beat``)."""

    def __init__(self, on_bytes: OnBytes | None, *, every: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._on_bytes = on_bytes
        self.every = HEARTBEAT_EVERY if every is None else every
        self._clock = clock
        self._last = clock()

    def sent(self, n: int) -> None:
        """Box acknowledged ``n`` bytes (a part, a piece of a direct body)."""
        if self._on_bytes is not None and n > 0:
            self._last = self._clock()
            self._on_bytes(n)

    def beat(self) -> None:
        """Work went on without bytes acknowledged: ``on_bytes(0)`` unless one went out recently."""
        if self._on_bytes is None:
            return
        now = self._clock()
        # Racy between part threads by design: at worst two heartbeats go out together.
        if now - self._last >= self.every:
            self._last = now
            self._on_bytes(0)


_current: contextvars.ContextVar[Heartbeat | None] = contextvars.ContextVar("syncd_box_heartbeat", default=None)


@contextmanager
def beating(heartbeat: Heartbeat) -> Iterator[Heartbeat]:
    """Make ``heartbeat`` the current upload's for the block (this thread, and contexts copied from it)."""
    token = _current.set(heartbeat)
    try:
        yield heartbeat
    finally:
        _current.reset(token)


def beat() -> None:
    """A heartbeat for the upload in progress on this thread, if any."""
    heartbeat = _current.get()
    if heartbeat is not None:
        heartbeat.beat()


def pause(seconds: float, sleep: Callable[[float], None] = time.sleep) -> None:
    """Sleep ``seconds`` in slices of at most :data:`HEARTBEAT_EVERY`, beating between them."""
    remaining = max(0.0, seconds)
    while True:
        step = min(remaining, HEARTBEAT_EVERY)
        if step > 0:
            sleep(step)
        remaining -= step
        beat()
        if remaining <= 0:
            return
