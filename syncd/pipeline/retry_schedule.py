"""When a file whose upload failed is tried again.

Journal-level retries are for failures that outlived the HTTP layer's own
quick retries (Box down for minutes, a quota to be freed, a folder being
unlocked). The next attempt time is stored in the journal, so the schedule
survives restarts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from syncd.config import RetryConfig


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """When a failed file is tried again: exponential backoff with full jitter, capped,
    for a bounded number of attempts. (HTTP-level retries are syncd.box's RetryPolicy.)"""

    max_attempts: int = 10
    initial_backoff: float = 5.0
    max_backoff: float = 3600.0

    @classmethod
    def from_config(cls, retry: RetryConfig) -> RetrySchedule:
        return cls(retry.max_attempts, retry.initial_backoff, retry.max_backoff)

    def exhausted(self, attempts: int) -> bool:
        """True once `attempts` uploads have been tried and no further one is allowed."""
        return attempts >= self.max_attempts

    def delay(self, attempts: int, *, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt number `attempts + 1`.

        Full jitter spreads the retries of a burst of files that failed together;
        a server's Retry-After is a floor, never shortened by jitter.
        """
        ceiling = min(self.max_backoff, self.initial_backoff * (2 ** max(0, attempts - 1)))
        delay = (rng or random).uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay
