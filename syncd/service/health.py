"""Health of the running daemon, as one answer built from named probes.

The daemon registers probes ("observer alive", "workers making progress",
"journal writable", ...). The same `HealthCheck` answers `/healthz` and decides
whether the systemd watchdog gets pinged, so the two can never disagree: a
service that systemd considers alive is one that `/healthz` calls healthy.

A probe is any callable returning ``(ok, detail)``. A probe that raises, or
that takes longer than its timeout, counts as failed with a detail saying so:
a health check must never hang or crash the thing asking.

This module is a leaf: it knows nothing of Box, the pipeline or the journal.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from collections.abc import Callable
from dataclasses import dataclass, field

ProbeResult = tuple[bool, str]
Probe = Callable[[], ProbeResult]

DEFAULT_PROBE_TIMEOUT_S = 2.0


class ProbeRegistrationError(ValueError):
    """A probe was registered with a bad name or a duplicate name."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"cannot register health probe {name!r}: {reason}")
        self.name = name
        self.reason = reason


@dataclass(frozen=True)
class ProbeOutcome:
    """What one probe said, and how long it took to say it."""

    name: str
    ok: bool
    detail: str
    duration_s: float


@dataclass(frozen=True)
class HealthReport:
    """The outcome of all probes at one moment."""

    healthy: bool
    probes: tuple[ProbeOutcome, ...]
    checked_at: float  # wall-clock seconds since the epoch

    @property
    def failures(self) -> tuple[ProbeOutcome, ...]:
        """The probes that failed, in registration order."""
        return tuple(p for p in self.probes if not p.ok)

    def summary(self) -> str:
        """One line: "ok" or the failing probes and why (for logs and STATUS=)."""
        if self.healthy:
            return "ok"
        return "; ".join(f"{p.name}: {p.detail}" for p in self.failures)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view, served by /healthz."""
        return {
            "status": "ok" if self.healthy else "unhealthy",
            "checked_at": self.checked_at,
            "probes": {
                p.name: {"ok": p.ok, "detail": p.detail, "duration_s": round(p.duration_s, 6)}
                for p in self.probes
            },
        }


@dataclass
class _RegisteredProbe:
    name: str
    probe: Probe
    timeout_s: float
    # The run that timed out and is still going, with when it started: a hung probe
    # is not started again until it returns, so hung threads cannot pile up.
    hung: threading.Thread | None = None
    hung_since: float = 0.0


@dataclass
class HealthCheck:
    """Named probes aggregated into one verdict: healthy only if every probe is.

    Thread-safe: probes may be registered or removed (e.g. on config reload)
    while the watchdog thread and the HTTP server are checking.
    """

    default_timeout_s: float = DEFAULT_PROBE_TIMEOUT_S
    _probes: dict[str, _RegisteredProbe] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def register(self, name: str, probe: Probe, *, timeout_s: float | None = None) -> None:
        """Add a probe under a unique, non-empty name."""
        if not name or not name.strip():
            raise ProbeRegistrationError(name, "the name must not be empty")
        if not callable(probe):
            raise ProbeRegistrationError(name, f"the probe must be callable, got {type(probe).__name__}")
        timeout = self.default_timeout_s if timeout_s is None else timeout_s
        if timeout <= 0:
            raise ProbeRegistrationError(name, f"timeout_s must be positive, got {timeout}")
        with self._lock:
            if name in self._probes:
                raise ProbeRegistrationError(name, "a probe with this name is already registered")
            self._probes[name] = _RegisteredProbe(name, probe, timeout)

    def unregister(self, name: str) -> None:
        """Remove a probe (e.g. a watch removed on reload); unknown names are ignored."""
        with self._lock:
            self._probes.pop(name, None)

    def names(self) -> tuple[str, ...]:
        """Registered probe names, in registration order."""
        with self._lock:
            return tuple(self._probes)

    def check(self) -> HealthReport:
        """Run every probe now and aggregate. No probes registered counts as healthy."""
        with self._lock:
            probes = list(self._probes.values())
        outcomes = tuple(_run_probe(p) for p in probes)
        return HealthReport(
            healthy=all(o.ok for o in outcomes),
            probes=outcomes,
            checked_at=time.time(),
        )


def _run_probe(registered: _RegisteredProbe) -> ProbeOutcome:
    """Run one probe in a helper thread so that a hung probe cannot hang the caller."""
    hung = registered.hung
    if hung is not None:
        if hung.is_alive():
            stuck_for = time.monotonic() - registered.hung_since
            return ProbeOutcome(registered.name, False, f"probe still running after {stuck_for:.0f}s", 0.0)
        registered.hung = None
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["result"] = registered.probe()
        except Exception as exc:  # a probe's bug is reported as a failed probe
            box["error"] = exc

    started = time.monotonic()
    thread = threading.Thread(target=target, name=f"health-probe:{registered.name}", daemon=True)
    thread.start()
    thread.join(registered.timeout_s)
    duration = time.monotonic() - started
    if thread.is_alive():
        registered.hung, registered.hung_since = thread, started
        return ProbeOutcome(
            registered.name, False, f"probe did not answer within {registered.timeout_s:g}s", duration
        )
    if "error" in box:
        exc = box["error"]
        return ProbeOutcome(registered.name, False, f"probe raised {type(exc).__name__}: {exc}", duration)
    return _outcome_from_result(registered.name, box.get("result"), duration)


def _outcome_from_result(name: str, result: object, duration: float) -> ProbeOutcome:
    if (
        isinstance(result, tuple)
        and len(result) == 2
        and isinstance(result[0], bool)
        and isinstance(result[1], str)
    ):
        return ProbeOutcome(name, result[0], result[1], duration)
    return ProbeOutcome(
        name, False, f"probe returned {type(result).__name__}, expected (bool, str)", duration
    )


# --- Probes the daemon can build from plain values ------------------------------------
# They take callables returning plain numbers/booleans so that this module stays a leaf.


def thread_alive_probe(is_alive: Callable[[], bool], what: str) -> Probe:
    """A probe that fails when `is_alive()` is false (e.g. a watchdog Observer thread)."""

    def probe() -> ProbeResult:
        if is_alive():
            return True, f"{what} alive"
        return False, f"{what} is not running"

    return probe


@dataclass
class ProgressTracker:
    """Records when workers last made progress, to detect a stuck pipeline.

    Workers call `beat()` whenever they make progress (a part sent, a file
    committed). The daemon calls `set_busy(n)` with the number of uploads in
    flight. The pipeline is stuck when there is work in flight and no beat
    arrived for longer than `stuck_after_s`; an idle pipeline is never stuck.
    """

    stuck_after_s: float
    clock: Callable[[], float] = time.monotonic
    _last_beat: float = field(default=0.0, init=False)
    _busy: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.stuck_after_s <= 0:
            raise ValueError(f"stuck_after_s must be positive, got {self.stuck_after_s}")
        self._last_beat = self.clock()

    def beat(self) -> None:
        """Note that a worker just made progress."""
        with self._lock:
            self._last_beat = self.clock()

    def set_busy(self, in_flight: int) -> None:
        """Record how many uploads are in flight; going from idle to busy restarts the clock."""
        with self._lock:
            if self._busy == 0 and in_flight > 0:
                self._last_beat = self.clock()
            self._busy = max(0, in_flight)

    def probe(self) -> ProbeResult:
        """(ok, detail) for HealthCheck.register."""
        with self._lock:
            busy = self._busy
            silent_for = self.clock() - self._last_beat
        if busy == 0:
            return True, "idle"
        if silent_for > self.stuck_after_s:
            return False, (
                f"{busy} upload(s) in flight and no progress for {silent_for:.0f}s "
                f"(limit {self.stuck_after_s:g}s)"
            )
        return True, f"{busy} upload(s) in flight, last progress {silent_for:.0f}s ago"


def directory_writable_probe(directory: Path) -> Probe:
    """A probe that fails unless a file can really be created in `directory`.

    Used for the journal's directory: a read-only remount or a full disk shows
    up here rather than as a stuck worker. `os.access` alone is not enough, as it
    ignores read-only mounts and quotas, so the probe creates and removes a file.
    """

    def probe() -> ProbeResult:
        try:
            fd, name = tempfile.mkstemp(prefix=".syncd-health-", dir=directory)
        except OSError as exc:
            return False, f"cannot create a file in {directory}: {exc.strerror or exc}"
        os.close(fd)
        os.unlink(name)
        return True, f"{directory} writable"

    return probe
