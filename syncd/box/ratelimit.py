"""Client-side rate limiting: Box's per-user limits kept as sliding windows, so that
the whole budget is spent without a 429.

Box allows each user about 1000 API calls and 240 uploads (direct uploads, version
uploads, session creations) per sliding minute. The limiter models exactly that: a
window per (Box user, kind), ``"api"`` or ``"upload"`` (an upload counts in both).
A request goes out at once while its window holds fewer than the limit, so a burst
spends the minute's budget as fast as the link allows; after that a request goes out
whenever an earlier one leaves the window. It never lets more than the limit into
any window of Box's:

- a request holds its **slot from the moment it is sent until its answer came back,
  and then for one window more**. Box counts a request somewhere between the two
  (when it arrives), so whatever the latency, every window of Box's sees at most what
  one of ours holds. (Stamping slots at send time would let a fast request that
  follows a slow one land in the same Box window.)

When Box answers 429 anyway (another client spends the same user's budget, or Box's
limit is lower than configured), the limiter:

- holds every request of that user and kind back for ``Retry-After`` seconds (the
  refused request itself was not counted by Box, so it gives its slot back);
- **shrinks the limit it allows for that user and kind** to 90 % of what its window
  held when the 429 came (what Box evidently lets us have beside whoever else spends
  the budget), at least one below the current limit and never below half of it:
  a storm of refusals that has nothing to do with our window (Box throttling for
  a while) must not collapse the budget. Once per 429 episode: a refusal of a request
  sent before the last shrink, or before any request sent since then was answered,
  does not shrink it again. Logged as
  ``box_rate_limit_learned`` (user, kind, limit, was, configured, reason), readable
  through :meth:`RateLimiter.learned_limits` for a metric;
- gives back half of what it took for every full window without a 429, until it is
  at the configured limit again (logged the same way, ``reason="quiet_window"``): a
  budget another client borrowed for a while is back within a few minutes.

Where the windows are kept is a :class:`WindowStore` (in memory by default,
:class:`MemoryWindows`); a store in PostgreSQL lets several hosts share one budget
per Box user (issue 16). The learned limit and the ``Retry-After`` hold stay in the
process.

``RateLimits.window_seconds`` scales the window (60 s, as on Box): a shorter window
keeps the per-minute rates and holds proportionally fewer requests, which lets tests
see the window turn over in seconds.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Literal, Protocol

from ..logs import get_logger
from .heartbeat import pause

log = get_logger(__name__)

DEFAULT_API_CALLS_PER_MINUTE = 950.0
DEFAULT_UPLOADS_PER_MINUTE = 230.0
WINDOW_SECONDS = 60.0
#: After a 429, the limit becomes this share of what the window held...
SHRINK_TO = 0.9
#: ...but never less than this share of the limit it had.
SHRINK_AT_MOST_TO = 0.5
#: How often a waiter looks again when every slot of a full window is still in flight.
IN_FLIGHT_POLL = 0.05

Kind = Literal["api", "upload"]


@dataclass(frozen=True)
class RateLimits:
    """Requests per minute per Box user (``None`` disables that limit), over a sliding ``window_seconds``."""

    api_calls_per_minute: float | None = DEFAULT_API_CALLS_PER_MINUTE
    uploads_per_minute: float | None = DEFAULT_UPLOADS_PER_MINUTE
    window_seconds: float = WINDOW_SECONDS

    def __post_init__(self) -> None:
        if self.window_seconds <= 0:
            raise ValueError(f"window_seconds must be positive, got {self.window_seconds}")
        for name in ("api_calls_per_minute", "uploads_per_minute"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None, got {value}")

    def per_window(self, kind: Kind) -> int | None:
        """Requests of ``kind`` one window may hold (at least 1), or None when unlimited."""
        per_minute = self.uploads_per_minute if kind == "upload" else self.api_calls_per_minute
        if per_minute is None:
            return None
        return max(1, math.floor(per_minute * self.window_seconds / 60.0 + 1e-9))


class Slot:
    """One request's place in a window (opaque to everyone but its store)."""

    __slots__ = ()


class WindowStore(Protocol):
    """Where sliding windows keep their requests, one window per key.

    A request holds a slot while it is in flight, and for ``window`` seconds after it
    was settled. Implementations must be safe to call from many threads (and, for a
    shared store, from many processes): ``try_take`` decides and records atomically.
    """

    def try_take(self, key: str, limit: int, window: float, now: float) -> Slot | float:
        """A new in-flight slot when fewer than ``limit`` are held at ``now``; else the seconds until
        one may free (a guess when every held slot is still in flight)."""
        ...

    def settle(self, key: str, slot: Slot, at: float | None) -> None:
        """The request holding ``slot`` ended at ``at`` (answered or failed): it leaves at ``at + window``.
        ``at`` None: Box refused it (429) and did not count it; the slot is free at once."""
        ...

    def held(self, key: str, window: float, now: float) -> int:
        """Slots held at ``now`` (in flight, or settled less than ``window`` ago)."""
        ...


class _MemorySlot(Slot):
    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key


@dataclass
class _Window:
    in_flight: set[_MemorySlot] = field(default_factory=set)
    settled: deque[float] = field(default_factory=deque)  # settle times, oldest first

    def expire(self, window: float, now: float) -> None:
        # `t + window <= now`, the same expression the wait is computed from: float rounding must
        # never call a slot both still held and free by now.
        while self.settled and self.settled[0] + window <= now:
            self.settled.popleft()

    def __len__(self) -> int:
        return len(self.in_flight) + len(self.settled)


class MemoryWindows:
    """The default WindowStore: windows in this process's memory."""

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def try_take(self, key: str, limit: int, window: float, now: float) -> Slot | float:
        with self._lock:
            entry = self._windows.setdefault(key, _Window())
            entry.expire(window, now)
            if len(entry) < limit:
                slot = _MemorySlot(key)
                entry.in_flight.add(slot)
                return slot
            if entry.settled:
                return max(0.0, entry.settled[0] + window - now)
            return IN_FLIGHT_POLL

    def settle(self, key: str, slot: Slot, at: float | None) -> None:
        with self._lock:
            entry = self._windows.setdefault(key, _Window())
            if slot not in entry.in_flight:
                return
            entry.in_flight.discard(slot)  # type: ignore[arg-type]
            if at is None:
                return
            # Settle times come from one monotonic clock under the lock: appending keeps them sorted,
            # except for a caller passing an older `at`, which is placed where it belongs.
            if entry.settled and at < entry.settled[-1]:
                entry.settled.insert(next(i for i, t in enumerate(entry.settled) if t > at), at)
            else:
                entry.settled.append(at)

    def held(self, key: str, window: float, now: float) -> int:
        with self._lock:
            entry = self._windows.get(key)
            if entry is None:
                return 0
            entry.expire(window, now)
            return len(entry)


@dataclass(frozen=True)
class _Grant:
    kind: Kind
    key: str
    slot: Slot
    generation: int  # of the learned limit when the slot was taken


@dataclass(frozen=True)
class Permit:
    """Permission to send one request: the slots it holds until :meth:`RateLimiter.release`."""

    user: str
    grants: tuple[_Grant, ...]
    waited: float


@dataclass
class _Learned:
    """What the limiter learned about one (user, kind) from Box's 429s."""

    limit: int
    generation: int = 0
    answered: bool = True  # a request sent under this generation was answered (not 429): a new episode may start
    blocked_until: float = 0.0
    grown_at: float = 0.0  # last 429 or last growth: the limit grows again one quiet window later


class RateLimiter:
    """Sliding windows per (Box user, kind) shared by everything using one transport.

    ``acquire`` before each send returns a :class:`Permit`; ``release`` it when the
    send ended (with ``retry_after`` when Box answered 429). Upload requests count
    in both the ``upload`` and the ``api`` windows, as on Box.
    """

    def __init__(
        self,
        limits: RateLimits = RateLimits(),
        *,
        store: WindowStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limits = limits
        self.store: WindowStore = store if store is not None else MemoryWindows()
        self._clock = clock
        self._sleep = sleep
        self._learned: dict[tuple[str, Kind], _Learned] = {}
        self._lock = threading.Lock()

    # -------------------------------------------------------------------- sending

    def acquire(self, user: str, *, upload: bool = False) -> Permit:
        """Wait until a request of ``user`` may go out (upload: in both windows); the permit holds its slots."""
        grants: list[_Grant] = []
        waited = 0.0
        kinds: tuple[Kind, ...] = ("upload", "api") if upload else ("api",)
        for kind in kinds:
            configured = self.limits.per_window(kind)
            if configured is None:
                continue
            key = f"{kind}:{user}"
            while True:
                now = self._clock()
                limit, generation, blocked = self._current(user, kind, configured, now)
                wait = blocked - now
                if wait <= 0:
                    taken = self.store.try_take(key, limit, self.limits.window_seconds, now)
                    if isinstance(taken, Slot):
                        grants.append(_Grant(kind, key, taken, generation))
                        break
                    wait = taken
                pause(wait, self._sleep)
                waited += wait
        return Permit(user, tuple(grants), waited)

    def release(self, permit: Permit, *, rate_limited: bool = False, retry_after: float | None = None) -> None:
        """The send of ``permit`` ended now; ``rate_limited`` when Box answered 429 (``retry_after`` seconds)."""
        now = self._clock()
        if rate_limited:
            self._learn(permit, now, retry_after)
        elif self._learned:
            self._answered(permit)
        for grant in permit.grants:
            # A refused request was not counted by Box: its slot frees at once (Retry-After holds back).
            self.store.settle(grant.key, grant.slot, None if rate_limited else now)

    # ------------------------------------------------------------------- learning

    def _current(self, user: str, kind: Kind, configured: int, now: float) -> tuple[int, int, float]:
        """(limit, generation, blocked until) for ``user``/``kind``, grown back after quiet windows."""
        with self._lock:
            learned = self._learned.get((user, kind))
            if learned is None:
                return configured, 0, 0.0
            window = self.limits.window_seconds
            if learned.limit < configured and now - learned.grown_at >= window:
                was = learned.limit
                learned.limit += max(1, (configured - learned.limit) // 2)
                learned.grown_at = now
                log.info("box_rate_limit_learned", user=user, kind=kind, limit=learned.limit, was=was,
                         configured=configured, reason="quiet_window")
            return learned.limit, learned.generation, learned.blocked_until

    def _learn(self, permit: Permit, now: float, retry_after: float | None) -> None:
        # Box does not say which limit a 429 is about: an upload's is taken as the upload limit's.
        grant = next((g for g in permit.grants if g.kind == "upload"), None) or next(iter(permit.grants), None)
        if grant is None:
            return
        configured = self.limits.per_window(grant.kind)
        assert configured is not None
        held = self.store.held(grant.key, self.limits.window_seconds, now)
        with self._lock:
            learned = self._learned.setdefault((permit.user, grant.kind), _Learned(configured))
            if retry_after:
                learned.blocked_until = max(learned.blocked_until, now + retry_after)
            learned.grown_at = now
            if grant.generation != learned.generation or not learned.answered:
                return  # the same episode: sent under the old limit, or nothing answered since the shrink
            was = learned.limit
            learned.limit = max(1, min(was - 1, max(math.floor(held * SHRINK_TO), math.floor(was * SHRINK_AT_MOST_TO))))
            learned.generation += 1
            learned.answered = False
        log.info("box_rate_limit_learned", user=permit.user, kind=grant.kind, limit=learned.limit, was=was,
                 configured=configured, reason="429", held=held, retry_after_s=retry_after)

    def _answered(self, permit: Permit) -> None:
        with self._lock:
            for grant in permit.grants:
                learned = self._learned.get((permit.user, grant.kind))
                if learned is not None and grant.generation == learned.generation:
                    learned.answered = True

    def learned_limits(self) -> dict[tuple[str, str], int]:
        """The limit per window now allowed, by (user, kind), for every pair a 429 ever shrank."""
        with self._lock:
            return {key: learned.limit for key, learned in self._learned.items()}

    def limit_for(self, user: str, kind: Kind) -> int | None:
        """The requests of ``kind`` one window may hold for ``user`` now (None: unlimited)."""
        configured = self.limits.per_window(kind)
        if configured is None:
            return None
        return self._current(user, kind, configured, self._clock())[0]
