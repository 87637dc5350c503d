"""Client-side rate limiting: a token bucket per Box user, so that a burst of
work is spread out instead of turning into a storm of 429s.

Box allows about 1000 API calls and 240 upload requests per minute per user;
the defaults stay just under both.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

DEFAULT_API_CALLS_PER_MINUTE = 950.0
DEFAULT_UPLOADS_PER_MINUTE = 230.0


class TokenBucket:
    """A thread-safe token bucket: ``rate`` tokens per second, holding at most ``capacity``."""

    def __init__(
        self,
        rate_per_second: float,
        capacity: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_second <= 0:
            raise ValueError(f"rate must be positive, got {rate_per_second}")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.rate = rate_per_second
        self.capacity = capacity
        self._clock = clock
        self._sleep = sleep
        self._tokens = capacity
        self._updated = clock()
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        self._updated = now

    def try_acquire(self, tokens: float = 1.0) -> float:
        """Take ``tokens`` if available and return 0; else take nothing and return the wait in seconds."""
        with self._lock:
            self._refill(self._clock())
            if self._tokens >= tokens:
                self._tokens -= tokens
                return 0.0
            return (tokens - self._tokens) / self.rate

    def acquire(self, tokens: float = 1.0) -> float:
        """Block until ``tokens`` are taken; return the total time waited."""
        if tokens > self.capacity:
            raise ValueError(f"cannot take {tokens} tokens from a bucket of {self.capacity}")
        waited = 0.0
        while True:
            wait = self.try_acquire(tokens)
            if wait <= 0:
                return waited
            self._sleep(wait)
            waited += wait

    def penalize(self, seconds: float) -> None:
        """Empty the bucket for ``seconds`` (Box said Retry-After): later callers wait too."""
        with self._lock:
            self._refill(self._clock())
            self._tokens = min(self._tokens, 0.0) - seconds * self.rate


@dataclass(frozen=True)
class RateLimits:
    """Requests per minute per Box user; ``None`` disables that limit."""

    api_calls_per_minute: float | None = DEFAULT_API_CALLS_PER_MINUTE
    uploads_per_minute: float | None = DEFAULT_UPLOADS_PER_MINUTE
    # A burst of this many seconds' worth of requests may go out at once. Box counts per
    # minute, so a minute that starts from idle may carry the rate plus the burst: 2 s keeps
    # the defaults under Box's limits (230 + 7.7 < 240 uploads, 950 + 31.7 < 1000 calls).
    burst_seconds: float = 2.0


class RateLimiter:
    """Token buckets keyed by (Box user, kind), where kind is ``"api"`` or ``"upload"``.

    Upload requests count against both buckets, as on Box.
    """

    def __init__(
        self,
        limits: RateLimits = RateLimits(),
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._lock = threading.Lock()

    def _bucket(self, user: str, kind: str) -> TokenBucket | None:
        per_minute = self.limits.uploads_per_minute if kind == "upload" else self.limits.api_calls_per_minute
        if per_minute is None:
            return None
        with self._lock:
            bucket = self._buckets.get((user, kind))
            if bucket is None:
                rate = per_minute / 60.0
                bucket = TokenBucket(
                    rate, max(1.0, rate * self.limits.burst_seconds), clock=self._clock, sleep=self._sleep
                )
                self._buckets[(user, kind)] = bucket
            return bucket

    def acquire(self, user: str, *, upload: bool = False) -> float:
        """Wait for permission to send one request as ``user``; return seconds waited."""
        waited = 0.0
        kinds = ("upload", "api") if upload else ("api",)
        for kind in kinds:
            bucket = self._bucket(user, kind)
            if bucket is not None:
                waited += bucket.acquire()
        return waited

    def penalize(self, user: str, seconds: float, *, upload: bool = False) -> None:
        """Hold back every request of ``user`` (of that kind) for ``seconds`` after a 429."""
        bucket = self._bucket(user, "upload" if upload else "api")
        if bucket is not None:
            bucket.penalize(seconds)
