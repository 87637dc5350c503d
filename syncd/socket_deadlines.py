"""Deadlines for calls on a database connection that the network may leave unanswered.

A partition that drops packets, or anything on the path that still acknowledges the
bytes (a proxy, a frozen server whose kernel is alive), leaves a query waiting for
an answer that never comes: the server's `statement_timeout` cannot fire for a query
it never received, and TCP's own timeouts only for bytes nobody acknowledged. Every
round trip to PostgreSQL (the journal's and the shared rate windows') is therefore
bounded here too: `DEADLINES.bound(conn, seconds)` around the call, and when it
overruns, one thread for the whole process shuts the connection's socket down. The
waiting call then fails at once with the driver's connection error, which the caller
maps to "unavailable", and the pool drops the broken connection.

Bottom layer (no syncd imports): the journal and the Box layer both use it and stay
independent of each other.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol


class HasSocket(Protocol):
    """A connection whose socket can be shut down (psycopg's `Connection`)."""

    closed: bool

    def fileno(self) -> int: ...


@dataclass(order=True)
class _Bound:
    deadline: float
    order: int
    conn: HasSocket = field(compare=False)
    done: bool = field(default=False, compare=False)
    cut: bool = field(default=False, compare=False)


class SocketDeadlines:
    """Shuts down the socket of a call that overran its deadline; one thread, started on first use."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._heap: list[_Bound] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def bound(self, conn: HasSocket, seconds: float) -> Iterator[None]:
        """Let the block talk on `conn` for at most `seconds`; past that its socket is shut down.

        The block's exit is recorded under the same lock the cut takes, so a late cut never
        touches a connection the block already gave back (to a pool, to another call).
        """
        entry = _Bound(self._clock() + seconds, next(self._order), conn)
        with self._lock:
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="socket-deadlines", daemon=True)
                self._thread.start()
            if self._heap[0] is entry:
                self._changed.notify()
        try:
            yield
        finally:
            with self._lock:
                entry.done = True

    def _run(self) -> None:
        while True:
            with self._lock:
                while self._heap and self._heap[0].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._changed.wait()
                    continue
                wait = self._heap[0].deadline - self._clock()
                if wait > 0:
                    self._changed.wait(wait)
                    continue
                entry = heapq.heappop(self._heap)
                if not entry.done:
                    entry.cut = True
                    _shut_down(entry.conn)


def _shut_down(conn: HasSocket) -> None:
    """Shut the connection's socket down both ways (its descriptor stays the driver's to close)."""
    with contextlib.suppress(Exception):
        if conn.closed:
            return
        with socket.socket(fileno=os.dup(conn.fileno())) as sock:
            sock.shutdown(socket.SHUT_RDWR)


#: The process's deadlines.
DEADLINES = SocketDeadlines()
