"""Waiting in tests: poll a condition with a generous timeout; never assert on elapsed time."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], *, timeout: float = 30.0, interval: float = 0.25,
               message: Callable[[], str] | str = "condition not met") -> None:
    """Poll `predicate` until it is true; AssertionError with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(interval)
