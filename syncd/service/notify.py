"""systemd service notifications (sd_notify) and the health-gated watchdog pinger.

`SystemdNotifier` sends READY=1, STATUS=..., WATCHDOG=1, RELOADING=1 and
STOPPING=1 through systemd-python's `sd_notify`; when the daemon does not run
under systemd (NOTIFY_SOCKET unset) every call is a cheap no-op, so the daemon
never needs to ask "am I under systemd?".

`WatchdogPinger` pings WATCHDOG=1 at a quarter of the interval systemd asked
for (WATCHDOG_USEC), well inside it: a check that takes a probe's timeout, or
one missed tick, still leaves the next ping in time. It pings only while the
health check says healthy: a lasting failure (a dead observer, a stuck job; see
`syncd.service.health` for what "lasting" means) stops the pings, and systemd
then restarts the service (`Restart=on-failure` treats a watchdog timeout as a
failure). It logs why it stopped pinging, so the journal explains the restart
before it happens; a degraded report (a failure not lasting, or one a restart
cannot fix) keeps the pings going and says so in STATUS=.

This module is a leaf: it knows nothing of Box, the pipeline or the journal.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from systemd import daemon as sd_daemon

from syncd.logs import get_logger
from syncd.service.health import HealthReport

log = get_logger(__name__)

# Longest STATUS= line sent: systemctl shows one line, and a notification
# datagram should stay far below the socket's buffer size.
MAX_STATUS_CHARS = 240


def _one_line(text: str) -> str:
    """Make `text` safe as a single assignment in a notification.

    A newline would start a new assignment: a file named "x\\nREADY=1" must not
    be able to forge a state change, so control characters become spaces.
    """
    cleaned = "".join(" " if (ch < " " or ch == "\x7f") else ch for ch in text).strip()
    if len(cleaned) > MAX_STATUS_CHARS:
        cleaned = cleaned[: MAX_STATUS_CHARS - 1] + "…"
    return cleaned


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock systemd's MONOTONIC_USEC= is read against."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


@dataclass(frozen=True)
class WatchdogSettings:
    """What systemd asked for: ping at least every `timeout_s` seconds."""

    timeout_s: float

    @property
    def ping_interval_s(self) -> float:
        """A quarter of the timeout: sd_watchdog_enabled(3) asks for at least every half, and a
        check slowed by a probe's timeout must still leave the next ping well in time."""
        return self.timeout_s / 4


def watchdog_settings(environ: Mapping[str, str] | None = None, pid: int | None = None) -> WatchdogSettings | None:
    """The watchdog systemd enabled for this process, or None (sd_watchdog_enabled(3) semantics).

    systemd-python does not wrap sd_watchdog_enabled, so this reads the same
    variables: WATCHDOG_USEC (a positive integer) and, when set, WATCHDOG_PID,
    which must be this process (a child that inherited the variables must not ping).
    """
    env = os.environ if environ is None else environ
    raw_usec = env.get("WATCHDOG_USEC", "").strip()
    if not raw_usec:
        return None
    try:
        usec = int(raw_usec)
    except ValueError:
        log.warning("watchdog_usec_invalid", value=raw_usec)
        return None
    if usec <= 0:
        return None
    raw_pid = env.get("WATCHDOG_PID", "").strip()
    if raw_pid:
        own_pid = os.getpid() if pid is None else pid
        if raw_pid != str(own_pid):
            return None
    return WatchdogSettings(timeout_s=usec / 1_000_000)


class SystemdNotifier:
    """Sends service state changes to systemd; a no-op when NOTIFY_SOCKET is unset.

    Failures to send are logged and reported as False, never raised: losing a
    STATUS= update must not take the daemon down.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._socket = env.get("NOTIFY_SOCKET") or None
        self._last_status: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SystemdNotifier(enabled={self.enabled})"

    @property
    def enabled(self) -> bool:
        """True when a service manager is listening (NOTIFY_SOCKET was set at construction)."""
        return self._socket is not None

    def _send(self, *assignments: str) -> bool:
        if not self.enabled:
            return False
        message = "\n".join(assignments)
        try:
            return bool(sd_daemon.notify(message))
        except OSError as exc:
            log.warning("sd_notify_failed", notification=message, reason=str(exc))
            return False

    def ready(self, status: str | None = None) -> bool:
        """READY=1: start-up finished (watches active, start-up scan queued) or a reload finished."""
        if status is None:
            return self._send("READY=1")
        return self._send("READY=1", self._status_assignment(status))

    def status(self, text: str) -> bool:
        """STATUS=<one line>; an unchanged line is not re-sent."""
        line = _one_line(text)
        with self._lock:
            if line == self._last_status:
                return False
        return self._send(self._status_assignment(line))

    def watchdog(self) -> bool:
        """WATCHDOG=1: the service is alive and healthy."""
        return self._send("WATCHDOG=1")

    def reloading(self, status: str | None = None) -> bool:
        """RELOADING=1 with MONOTONIC_USEC= (required by systemd >= 253, ignored before).

        Call `ready()` once the new configuration is in force (or was rejected).
        """
        parts = ["RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}"]
        if status is not None:
            parts.append(self._status_assignment(status))
        return self._send(*parts)

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1: shutdown began (in-flight work is being finished or parked)."""
        if status is None:
            return self._send("STOPPING=1")
        return self._send("STOPPING=1", self._status_assignment(status))

    def extend_timeout(self, seconds: float) -> bool:
        """EXTEND_TIMEOUT_USEC=: ask for more time during a long start-up or shutdown."""
        return self._send(f"EXTEND_TIMEOUT_USEC={max(1, int(seconds * 1_000_000))}")

    def _status_assignment(self, text: str) -> str:
        line = _one_line(text)
        with self._lock:
            self._last_status = line
        return f"STATUS={line}"


HealthSource = Callable[[], HealthReport]


class WatchdogPinger:
    """A daemon thread that sends WATCHDOG=1 every `interval_s` while `health()` is healthy.

    When a check fails it stops pinging and logs a warning naming the failing
    probes; when health returns it logs that and resumes. If `status_line` is
    given, STATUS= is refreshed from it on every tick (and, while unhealthy,
    prefixed with the reason) so `systemctl status` says what is wrong.
    """

    def __init__(
        self,
        notifier: SystemdNotifier,
        health: HealthSource,
        interval_s: float,
        status_line: Callable[[], str] | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"watchdog ping interval must be positive, got {interval_s}")
        self._notifier = notifier
        self._health = health
        self._interval_s = interval_s
        self._status_line = status_line
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="systemd-watchdog", daemon=True)
        self._pinging = True  # assume healthy until told otherwise, so the first failure is logged
        self.pings_sent = 0

    @classmethod
    def from_environment(
        cls,
        notifier: SystemdNotifier,
        health: HealthSource,
        status_line: Callable[[], str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> WatchdogPinger | None:
        """A pinger at a quarter of WATCHDOG_USEC, or None when systemd enabled no watchdog."""
        settings = watchdog_settings(environ)
        if settings is None or not notifier.enabled:
            return None
        return cls(notifier, health, settings.ping_interval_s, status_line)

    @property
    def interval_s(self) -> float:
        """Seconds between health checks (and pings, while healthy)."""
        return self._interval_s

    @property
    def pinging(self) -> bool:
        """Whether the last check was healthy (and so a ping was sent)."""
        return self._pinging

    def start(self) -> None:
        """Start the thread; the first check and ping happen at once."""
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop pinging and wait for the thread to end."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def tick(self) -> bool:
        """One check-and-maybe-ping; returns whether a ping was sent."""
        try:
            report = self._health()
        except Exception as exc:  # a broken health check must stop pings, not the thread
            self._set_pinging(False, f"health check raised {type(exc).__name__}: {exc}")
            self._refresh_status(f"unhealthy: health check raised {type(exc).__name__}")
            return False
        self._set_pinging(report.healthy, report.summary())
        if report.healthy:
            self._notifier.watchdog()
            self.pings_sent += 1
            self._refresh_status(f"degraded: {report.summary()}" if report.degraded else None)
            return True
        self._refresh_status(f"unhealthy: {report.summary()}")
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.tick()
            # Probes take time too; keep the period at interval_s, not interval_s + check time.
            self._stop.wait(max(0.0, self._interval_s - (time.monotonic() - started)))

    def _set_pinging(self, healthy: bool, reason: str) -> None:
        if healthy and not self._pinging:
            log.info("watchdog_pings_resumed")
        elif not healthy and self._pinging:
            log.warning("watchdog_pings_stopped", reason=reason)
        self._pinging = healthy

    def _refresh_status(self, prefix: str | None) -> None:
        if self._status_line is None and prefix is None:
            return
        line = ""
        if self._status_line is not None:
            try:
                line = self._status_line()
            except Exception as exc:  # the status line is cosmetic; never let it stop the watchdog
                line = f"(status unavailable: {type(exc).__name__})"
        self._notifier.status(f"{prefix} | {line}" if prefix and line else (prefix or line))
