"""HTTP-level retries of the Box client: which answers are retried, how often,
and how long to wait (exponential backoff with full jitter, ``Retry-After``
obeyed). :class:`RetryState` decides for one request;
:class:`~syncd.box.transport.Transport` sends, waits and sends again as it says.

Not to be confused with the journal-level schedule of a file's next attempt
(``syncd.pipeline.retry_schedule``), which takes over once these retries are spent.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Answers worth another try: rate limited, or a server error that may pass.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Methods sent again when their answer was lost (the others raise OutcomeUnknown instead).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often to retry transient failures.

    ``max_attempts`` bounds ordinary retries (5xx, 429, connection failures);
    ``deadline`` bounds the total time a single call may spend retrying.
    """

    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 60.0
    deadline: float = 600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.deadline < 0:
            raise ValueError("delays and deadline must be >= 0")


def backoff_delay(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(max_delay, base * 2**attempt)]."""
    ceiling = min(policy.max_delay, policy.base_delay * (2 ** min(attempt, 32)))
    return rng.uniform(0.0, ceiling)


def retry_delay(attempt: int, retry_after: float | None, policy: RetryPolicy, rng: random.Random) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based).

    Box's ``Retry-After`` is obeyed (with a little jitter on top, so that
    parallel workers do not return in lockstep); otherwise full-jitter backoff.
    """
    if retry_after is not None:
        return min(retry_after, policy.deadline) + rng.uniform(0.0, min(1.0, 0.1 * retry_after + 0.05))
    return backoff_delay(attempt, policy, rng)


#: delay(retry, retry_after) -> seconds before retry number ``retry`` (0-based), e.g. ``retry_delay`` under a policy.
Delay = Callable[[int, "float | None"], float]


class RetryState:
    """The retries of one logical request: whether to send it again, and after how long.

    ``failures`` counts the sends that failed so far (the one being decided
    included), so it is also the 1-based number of that send. Ordinary retries
    stop after ``policy.max_attempts`` sends or once ``policy.deadline`` seconds
    would be passed.
    """

    def __init__(self, policy: RetryPolicy, delay: Delay, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.failures = 0
        self._delay = delay
        self._clock = clock
        self._started = clock()

    def after_no_answer(self) -> float | None:
        """A send got no answer (and is safe to repeat): seconds to wait before the next, or None to give up."""
        self.failures += 1
        if self.failures >= self.policy.max_attempts or self._elapsed() > self.policy.deadline:
            return None
        return self._delay(self.failures - 1, None)

    def after_answer(self, status: int, retry_after: float | None, *, replay_safe: bool) -> float | None:
        """Box answered ``status``: seconds to wait before sending again, or None when the answer is final.

        Rate limits (429) and server errors are retried, ``Retry-After`` obeyed; a
        5xx to a request that is not safe to repeat is final, since Box warns the
        write may have been applied anyway (the caller looks before sending it again).
        """
        if status not in RETRYABLE_STATUSES or (status >= 500 and not replay_safe):
            return None
        self.failures += 1
        wait = self._delay(self.failures - 1, retry_after)
        if self.failures >= self.policy.max_attempts or self._elapsed() + wait > self.policy.deadline:
            return None
        return wait

    def _elapsed(self) -> float:
        return self._clock() - self._started
