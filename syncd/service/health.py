"""Health of the running daemon, as one answer built from named probes.

The daemon registers probes ("observer alive", "workers making progress",
"journal writable", ...). The same `HealthCheck` answers `/healthz` and decides
whether the systemd watchdog gets pinged, so the two can never disagree: a
service that systemd considers alive is one that `/healthz` calls healthy.

A probe is any callable returning ``(ok, detail)``. A probe that raises, or
that takes longer than its timeout, counts as failed with a detail saying so:
a health check must never hang or crash the thing asking. Every probe of a
check runs at once, each in its own thread, so a check takes as long as the
slowest probe's timeout at most, never their sum.

**A verdict needs a failure that lasts.** One failed run (a probe waiting
behind a slow fsync, a scheduler hiccup) must not cost a restart: a probe makes
the report unhealthy only once it has failed `failures_to_fail` runs in a row
spanning at least `failure_window_s` seconds (the daemon uses 3 runs over 30 s;
a new `HealthCheck` answers at the first failure). Until then, and for probes
registered with ``critical=False`` (a full or read-only journal disk: a restart
cannot fix it, and five restarts in ten minutes would leave the unit failed for
good), the report is *degraded*: ``/healthz`` answers 200 with the failing
probes, and the watchdog keeps pinging.

This module is a leaf: it knows nothing of Box, the pipeline or the journal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

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
    """What one probe said, how long it took to say it, and how long it has been failing."""

    name: str
    ok: bool
    detail: str
    duration_s: float
    critical: bool = True  # a lasting failure makes the daemon unhealthy (else: degraded only)
    failures: int = 0  # consecutive failed runs, this one included
    failing_for_s: float = 0.0  # since the first of them
    lasting: bool = False  # failed long enough to count (see HealthCheck)


@dataclass(frozen=True)
class HealthReport:
    """The outcome of all probes at one moment.

    `healthy` is the verdict (the watchdog pings and /healthz answers 200 only while it
    holds): no critical probe has failed long enough. `degraded`: a probe fails, but
    not (yet) in a way a restart could fix.
    """

    healthy: bool
    probes: tuple[ProbeOutcome, ...]
    checked_at: float  # wall-clock seconds since the epoch

    @property
    def failures(self) -> tuple[ProbeOutcome, ...]:
        """The probes that failed this time, in registration order."""
        return tuple(p for p in self.probes if not p.ok)

    @property
    def degraded(self) -> bool:
        """Healthy, but some probe fails (not long enough, or not critical)."""
        return self.healthy and bool(self.failures)

    def summary(self) -> str:
        """One line: "ok" or the failing probes and why (for logs and STATUS=)."""
        if not self.failures:
            return "ok"
        return "; ".join(f"{p.name}: {p.detail}" for p in self.failures)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view, served by /healthz."""
        return {
            "status": "unhealthy" if not self.healthy else "degraded" if self.degraded else "ok",
            "checked_at": self.checked_at,
            "probes": {
                p.name: {"ok": p.ok, "detail": p.detail, "duration_s": round(p.duration_s, 6),
                         "critical": p.critical, "failures": p.failures,
                         "failing_for_s": round(p.failing_for_s, 3)}
                for p in self.probes
            },
        }


@dataclass
class _RegisteredProbe:
    name: str
    probe: Probe
    timeout_s: float
    critical: bool = True
    # The run that timed out and is still going, with when it started: a hung probe
    # is not started again until it returns, so hung threads cannot pile up.
    hung: threading.Thread | None = None
    hung_since: float = 0.0
    # The current run of failures: how many, since when (monotonic).
    failures: int = 0
    failing_since: float = 0.0


@dataclass
class HealthCheck:
    """Named probes aggregated into one verdict: healthy unless a critical probe failed
    `failures_to_fail` runs in a row over at least `failure_window_s` seconds.

    Thread-safe: probes may be registered or removed (e.g. on config reload)
    while the watchdog thread and the HTTP server are checking.
    """

    default_timeout_s: float = DEFAULT_PROBE_TIMEOUT_S
    failures_to_fail: int = 1
    failure_window_s: float = 0.0
    clock: Callable[[], float] = time.monotonic
    _probes: dict[str, _RegisteredProbe] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def register(self, name: str, probe: Probe, *, timeout_s: float | None = None, critical: bool = True) -> None:
        """Add a probe under a unique, non-empty name; a failing non-`critical` probe only degrades."""
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
            self._probes[name] = _RegisteredProbe(name, probe, timeout, critical)

    def unregister(self, name: str) -> None:
        """Remove a probe (e.g. a watch removed on reload); unknown names are ignored."""
        with self._lock:
            self._probes.pop(name, None)

    def names(self) -> tuple[str, ...]:
        """Registered probe names, in registration order."""
        with self._lock:
            return tuple(self._probes)

    def check(self) -> HealthReport:
        """Run every probe now (at once) and aggregate. No probes registered counts as healthy."""
        with self._lock:
            probes = list(self._probes.values())
        runs = [_ProbeRun(p) for p in probes]
        outcomes = tuple(self._judged(run.registered, run.outcome()) for run in runs)
        return HealthReport(
            healthy=not any(o.lasting for o in outcomes),
            probes=outcomes,
            checked_at=time.time(),
        )

    def _judged(self, registered: _RegisteredProbe, outcome: ProbeOutcome) -> ProbeOutcome:
        """Count this run into the probe's run of failures and say whether it lasted long enough."""
        now = self.clock()
        with self._lock:
            if outcome.ok:
                registered.failures = 0
                return replace(outcome, critical=registered.critical)
            if registered.failures == 0:
                registered.failing_since = now
            registered.failures += 1
            failures, failing_for = registered.failures, now - registered.failing_since
        lasting = registered.critical and failures >= self.failures_to_fail and failing_for >= self.failure_window_s
        return replace(outcome, critical=registered.critical, failures=failures, failing_for_s=failing_for,
                       lasting=lasting)


class _ProbeRun:
    """One probe running in a helper thread, so that a hung probe cannot hang the caller."""

    def __init__(self, registered: _RegisteredProbe) -> None:
        self.registered = registered
        self._result: dict[str, object] = {}
        self._started = time.monotonic()
        self._thread: threading.Thread | None = None
        hung = registered.hung
        if hung is not None:
            if hung.is_alive():
                return
            registered.hung = None
        self._thread = threading.Thread(target=self._run, name=f"health-probe:{registered.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result["result"] = self.registered.probe()
        except Exception as exc:  # a probe's bug is reported as a failed probe
            self._result["error"] = exc

    def outcome(self) -> ProbeOutcome:
        """Wait for the probe up to its timeout (counted from its start) and say what it answered."""
        registered = self.registered
        if self._thread is None:
            stuck_for = time.monotonic() - registered.hung_since
            return ProbeOutcome(registered.name, False, f"probe still running after {stuck_for:.0f}s", 0.0)
        self._thread.join(max(0.0, registered.timeout_s - (time.monotonic() - self._started)))
        duration = time.monotonic() - self._started
        if self._thread.is_alive():
            registered.hung, registered.hung_since = self._thread, self._started
            return ProbeOutcome(registered.name, False, f"probe did not answer within {registered.timeout_s:g}s",
                                duration)
        if "error" in self._result:
            exc = self._result["error"]
            return ProbeOutcome(registered.name, False, f"probe raised {type(exc).__name__}: {exc}", duration)
        return _outcome_from_result(registered.name, self._result.get("result"), duration)


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
