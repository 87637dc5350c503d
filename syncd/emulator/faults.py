"""Fault knobs, rate limits and request statistics.

All knobs are off by default and can be changed while the emulator runs
(`PUT /_emulator/faults`). Everything here is thread-safe: handler threads
consult it concurrently.
"""

from __future__ import annotations

import collections
import math
import random
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Endpoints that count against Box's "240 upload requests per minute per user":
# the requests that start or complete an upload of file content.
UPLOAD_ENDPOINTS = frozenset(
    {"files.upload", "files.upload_version", "sessions.create", "sessions.create_version"}
)


@dataclass
class FaultSettings:
    """Every knob, named as the CLI options in snake_case. 0 means off."""

    latency_ms: float = 0
    bandwidth: int = 0
    upload_rate_limit: int = 0
    api_rate_limit: int = 0
    commit_202: int = 0
    commit_retry_after: int = 1
    fail_rate: float = 0.0
    drop_rate: float = 0.0
    token_ttl: int = 3600
    max_file_size: int = 0
    storage_quota: int = 0
    min_chunked_size: int = 20_000_000
    seed: int | None = None

    def validate(self) -> None:
        """Raise ValueError naming the first knob whose value is out of range."""
        for name in ("latency_ms", "bandwidth", "upload_rate_limit", "api_rate_limit", "commit_202",
                     "commit_retry_after", "max_file_size", "storage_quota", "min_chunked_size"):
            value = getattr(self, name)
            if not 0 <= value <= _MAXIMUMS.get(name, 2**62):
                raise ValueError(f"{name} must be between 0 and {_MAXIMUMS.get(name, 2**62)}")
        if self.seed is not None and not -(2**62) <= self.seed <= 2**62:
            raise ValueError("seed is out of range")
        if not 0 < self.token_ttl <= _MAXIMUMS["token_ttl"]:
            raise ValueError(f"token_ttl must be between 1 and {_MAXIMUMS['token_ttl']}")
        for name in ("fail_rate", "drop_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")


# Upper bounds that keep every knob usable (a sleep of 1e20 ms would overflow).
_MAXIMUMS: dict[str, int] = {
    "latency_ms": 600_000, "commit_retry_after": 86_400, "token_ttl": 10 * 365 * 86_400,
    "commit_202": 1_000_000, "upload_rate_limit": 10**9, "api_rate_limit": 10**9,
}

_KNOB_TYPES: dict[str, type] = {
    "latency_ms": float, "bandwidth": int, "upload_rate_limit": int, "api_rate_limit": int,
    "commit_202": int, "commit_retry_after": int, "fail_rate": float, "drop_rate": float,
    "token_ttl": int, "max_file_size": int, "storage_quota": int, "min_chunked_size": int,
    "seed": int,
}


@dataclass
class RejectRule:
    """`reject_next`: answer the next `count` matching requests with `status`."""

    count: int
    status: int
    retry_after: int | None = None
    endpoint: str | None = None
    applied: bool = False  # handle the request first, then answer the error (a 5xx whose write happened)


@dataclass
class RefuseRule:
    """`refuse`: Box refuses us for `seconds`: every matching request answers `status` (401 or 403).

    401 also makes the token endpoint refuse every grant with 400 `invalid_grant` (nothing is
    spent: a refresh token sent meanwhile works again afterwards), so a client cannot cure the
    401 by refreshing: the credentials look revoked. 403 is `access_denied_insufficient_permissions`.
    `endpoints` limits it to those endpoint names (default: every endpoint but the admin API).
    """

    status: int
    until: float  # time.monotonic()
    endpoints: frozenset[str] | None = None

    def covers(self, endpoint: str, now: float) -> bool:
        return now < self.until and (self.endpoints is None or endpoint in self.endpoints)


@dataclass(frozen=True)
class Injected:
    """A fault decided for one request before it is handled."""

    status: int
    retry_after: int | None = None
    applied: bool = False


class SlidingWindow:
    """Counts events per key over the last 60 seconds (monotonic time)."""

    WINDOW = 60.0

    def __init__(self) -> None:
        self._events: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)

    def admit(self, key: str, limit: int, now: float) -> int | None:
        """Record an event if under `limit`; else return the seconds to wait (>= 1)."""
        events = self._events[key]
        while events and events[0] <= now - self.WINDOW:
            events.popleft()
        if len(events) >= limit:
            return max(1, math.ceil(events[0] + self.WINDOW - now))
        events.append(now)
        return None


class Faults:
    """Current knob values plus the state the knobs need (RNG, windows, rules)."""

    def __init__(self, settings: FaultSettings) -> None:
        settings.validate()
        self._settings = settings
        self._lock = threading.Lock()
        self._random = random.Random(settings.seed)
        self._uploads = SlidingWindow()
        self._calls = SlidingWindow()
        self._reject: RejectRule | None = None
        self._refuse: RefuseRule | None = None

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            data = asdict(self._settings)
            rule = self._reject
            data["reject_next"] = asdict(rule) if rule and rule.count > 0 else None
            refuse = self._refuse
            left = refuse.until - time.monotonic() if refuse is not None else 0.0
            data["refuse"] = None if refuse is None or left <= 0 else {
                "status": refuse.status, "seconds_left": round(left, 3),
                "endpoints": None if refuse.endpoints is None else sorted(refuse.endpoints)}
            return data

    def update(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply a partial update (snake_case knob names); ValueError on bad input."""
        if not isinstance(changes, dict):
            raise ValueError("body must be a JSON object")
        unknown = sorted(set(changes) - set(_KNOB_TYPES) - {"reject_next", "refuse"})
        if unknown:
            raise ValueError(f"unknown knob(s): {', '.join(unknown)}")
        with self._lock:
            values = asdict(self._settings)
            for name, value in changes.items():
                if name in ("reject_next", "refuse"):
                    continue
                if value is None and name == "seed":
                    values[name] = None
                    continue
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"{name} must be a number")
                kind = _KNOB_TYPES[name]
                if not math.isfinite(value) or (kind is int and value != int(value)):
                    raise ValueError(f"{name} must be a finite {'integer' if kind is int else 'number'}")
                values[name] = kind(value)
            new = FaultSettings(**values)
            new.validate()
            rule = self._reject
            if "reject_next" in changes:
                rule = _parse_reject(changes["reject_next"])
            refuse = _parse_refuse(changes["refuse"]) if "refuse" in changes else self._refuse
            if "seed" in changes:
                self._random = random.Random(new.seed)
            self._settings = new
            self._reject = rule
            self._refuse = refuse
        return self.snapshot()

    def refusing(self, endpoint: str) -> int | None:
        """The status (401 or 403) a `refuse` rule answers this request with, or None."""
        with self._lock:
            refuse = self._refuse
        return refuse.status if refuse is not None and refuse.covers(endpoint, time.monotonic()) else None

    def random(self) -> float:
        with self._lock:
            return self._random.random()

    def randint(self, low: int, high: int) -> int:
        with self._lock:
            return self._random.randint(low, high)

    def should_drop(self) -> bool:
        rate = self._settings.drop_rate
        return rate > 0 and self.random() < rate

    def injected(self, endpoint: str) -> Injected | None:
        """A `reject_next` rule or a random failure due for this request, if any."""
        with self._lock:
            rule = self._reject
            if rule is not None and rule.count > 0 and rule.endpoint in (None, endpoint):
                rule.count -= 1
                return Injected(rule.status, rule.retry_after, rule.applied)
            rate = self._settings.fail_rate
            if rate > 0 and self._random.random() < rate:
                status = self._random.choice((500, 502, 503))
                return Injected(status, 1 if status == 503 else None)
        return None

    def rate_limited(self, endpoint: str, user_id: str) -> int | None:
        """Seconds to wait if this call exceeds a rate limit, else None (call recorded)."""
        now = time.monotonic()
        with self._lock:
            settings = self._settings
            if settings.api_rate_limit:
                wait = self._calls.admit(user_id, settings.api_rate_limit, now)
                if wait is not None:
                    return wait
            if settings.upload_rate_limit and endpoint in UPLOAD_ENDPOINTS:
                wait = self._uploads.admit(user_id, settings.upload_rate_limit, now)
                if wait is not None:
                    return wait
        return None


def _parse_reject(value: Any) -> RejectRule | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("reject_next must be an object")
    count = value.get("count")
    status = value.get("status")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError("reject_next.count must be a non-negative integer")
    if status not in (429, 500, 502, 503):
        raise ValueError("reject_next.status must be 429, 500, 502 or 503")
    retry_after = value.get("retry_after")
    if retry_after is not None and (isinstance(retry_after, bool) or not isinstance(retry_after, int)
                                    or not 0 <= retry_after <= 86_400):
        raise ValueError("reject_next.retry_after must be an integer between 0 and 86400")
    endpoint = value.get("endpoint")
    if endpoint is not None and endpoint not in ENDPOINT_NAMES:
        raise ValueError(f"reject_next.endpoint must be one of {sorted(ENDPOINT_NAMES)}")
    applied = value.get("applied", False)
    if not isinstance(applied, bool):
        raise ValueError("reject_next.applied must be true or false")
    if applied and status == 429:
        raise ValueError("reject_next.applied needs a 5xx status (a 429 never does the work)")
    return RejectRule(count, status, retry_after, endpoint, applied)


def _parse_refuse(value: Any) -> RefuseRule | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("refuse must be an object {status, seconds, endpoints?}")
    unknown = sorted(set(value) - {"status", "seconds", "endpoints"})
    if unknown:
        raise ValueError(f"refuse: unknown key(s): {', '.join(unknown)}")
    status, seconds = value.get("status"), value.get("seconds")
    if status not in (401, 403):
        raise ValueError("refuse.status must be 401 or 403")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 86_400:
        raise ValueError("refuse.seconds must be a number between 0 and 86400")
    endpoints = value.get("endpoints")
    if endpoints is not None:
        if not isinstance(endpoints, list) or not endpoints or any(e not in ENDPOINT_NAMES for e in endpoints):
            raise ValueError(f"refuse.endpoints must be a non-empty list of {sorted(ENDPOINT_NAMES)}")
        endpoints = frozenset(endpoints)
    return RefuseRule(status, time.monotonic() + float(seconds), endpoints)


ENDPOINT_NAMES = frozenset({
    "oauth.token", "oauth.authorize", "files.upload", "files.upload_version", "files.preflight",
    "sessions.create", "sessions.create_version", "sessions.get", "sessions.upload_part",
    "sessions.list_parts", "sessions.plan", "sessions.commit", "sessions.abort",
    "folders.create", "folders.get", "folders.delete", "folders.items",
    "files.get", "files.update", "files.delete", "files.download", "downloads.content", "files.versions",
    "users.me", "unknown",
})


@dataclass
class Stats:
    """Requests per endpoint and status, and request-body bytes received."""

    requests: dict[str, dict[str, int]] = field(default_factory=dict)
    bytes_received: dict[str, int] = field(default_factory=lambda: {"total": 0})
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, endpoint: str, status: int, body_bytes: int) -> None:
        with self._lock:
            by_status = self.requests.setdefault(endpoint, {})
            by_status[str(status)] = by_status.get(str(status), 0) + 1
            self.add_bytes(endpoint, body_bytes, locked=True)

    def add_bytes(self, endpoint: str, count: int, locked: bool = False) -> None:
        if not count:
            return
        if not locked:
            with self._lock:
                self.add_bytes(endpoint, count, locked=True)
            return
        self.bytes_received["total"] += count
        self.bytes_received[endpoint] = self.bytes_received.get(endpoint, 0) + count

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": {name: dict(counts) for name, counts in self.requests.items()},
                "bytes_received": dict(self.bytes_received),
            }

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.bytes_received.clear()
            self.bytes_received["total"] = 0


def knob_names() -> list[str]:
    return [f.name for f in fields(FaultSettings)]
