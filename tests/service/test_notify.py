"""The sd_notify protocol, checked on a real AF_UNIX datagram socket named by NOTIFY_SOCKET."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.service.health import HealthCheck
from syncd.service.notify import SystemdNotifier, WatchdogPinger, monotonic_usec, watchdog_settings

pytestmark = pytest.mark.timeout(30)


class NotifyListener:
    """The service manager's side: a bound SOCK_DGRAM socket collecting notifications."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def next(self, timeout_s: float = 5.0) -> str:
        """The next datagram, failing the test if none arrives in time."""
        self.sock.settimeout(timeout_s)
        try:
            return self.sock.recv(4096).decode()
        except TimeoutError:
            pytest.fail(f"no notification within {timeout_s}s")

    def quiet_for(self, seconds: float) -> list[str]:
        """Every datagram that arrives within `seconds` (normally none)."""
        got = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                got.append(self.sock.recv(4096).decode())
            except TimeoutError:
                break
        return got

    def until(self, wanted: str, timeout_s: float = 5.0) -> list[str]:
        """Datagrams up to and including the first one containing the line `wanted`."""
        seen = []
        deadline = time.monotonic() + timeout_s
        while True:
            message = self.next(max(0.01, deadline - time.monotonic()))
            seen.append(message)
            if wanted in message.split("\n"):
                return seen


@pytest.fixture
def listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyListener]:
    # sun_path is limited to 108 bytes; pytest's tmp_path is short enough under /tmp.
    notify = NotifyListener(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))
    try:
        yield notify
    finally:
        notify.sock.close()


def test_state_changes_arrive_as_datagrams(listener: NotifyListener) -> None:
    notifier = SystemdNotifier()
    assert notifier.enabled

    assert notifier.ready("watching 2 folders")
    assert listener.next() == "READY=1\nSTATUS=watching 2 folders"

    assert notifier.status("3 pending, 1 uploading")
    assert listener.next() == "STATUS=3 pending, 1 uploading"

    assert notifier.watchdog()
    assert listener.next() == "WATCHDOG=1"

    before = monotonic_usec()
    assert notifier.reloading("reloading configuration")
    lines = listener.next().split("\n")
    after = monotonic_usec()
    assert lines[0] == "RELOADING=1"
    key, value = lines[1].split("=")
    assert key == "MONOTONIC_USEC" and before <= int(value) <= after
    assert lines[2] == "STATUS=reloading configuration"
    assert notifier.ready()
    assert listener.next() == "READY=1"

    assert notifier.extend_timeout(12.5)
    assert listener.next() == "EXTEND_TIMEOUT_USEC=12500000"

    assert notifier.stopping("finishing 1 upload")
    assert listener.next() == "STOPPING=1\nSTATUS=finishing 1 upload"


def test_status_is_one_line_and_unchanged_lines_are_not_resent(listener: NotifyListener) -> None:
    notifier = SystemdNotifier()
    # A file name can contain a newline; it must not forge a READY=1 assignment.
    assert notifier.status("uploading evil\nREADY=1.txt")
    assert listener.next() == "STATUS=uploading evil READY=1.txt"
    assert not notifier.status("uploading evil\nREADY=1.txt")
    assert notifier.status("x" * 1000)
    status = listener.next()
    assert status.startswith("STATUS=xxx") and len(status) < 260
    assert listener.quiet_for(0.1) == []


def test_without_notify_socket_everything_is_a_silent_no_op(
    listener: NotifyListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET")
    notifier = SystemdNotifier()
    assert not notifier.enabled
    assert repr(notifier) == "SystemdNotifier(enabled=False)"
    assert not notifier.ready("x")
    assert not notifier.watchdog()
    assert not notifier.stopping()
    assert listener.quiet_for(0.1) == []
    assert WatchdogPinger.from_environment(notifier, HealthCheck().check, environ={"WATCHDOG_USEC": "1000000"}) is None


def test_a_vanished_socket_is_reported_not_raised(listener: NotifyListener) -> None:
    notifier = SystemdNotifier()
    listener.path.unlink()
    assert notifier.ready() is False


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 7.5),  # a quarter: well inside the interval
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 7.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "thirty"}, None),
    ],
)
def test_watchdog_settings_follow_sd_watchdog_enabled(environ: dict[str, str], expected: float | None) -> None:
    settings = watchdog_settings(environ, pid=4242)
    assert (settings.ping_interval_s if settings else None) == expected


def test_pinger_pings_only_while_healthy(listener: NotifyListener) -> None:
    healthy = [True]
    health = HealthCheck()
    health.register("workers", lambda: (healthy[0], "progressing" if healthy[0] else "stuck for 400s"))
    notifier = SystemdNotifier()
    pinger = WatchdogPinger.from_environment(
        notifier, health.check, status_line=lambda: "2 pending", environ={"WATCHDOG_USEC": "100000"}
    )
    assert pinger is not None and pinger.interval_s == 0.025

    assert pinger.tick() is True
    assert listener.next() == "WATCHDOG=1"
    assert listener.next() == "STATUS=2 pending"

    healthy[0] = False
    assert pinger.tick() is False
    assert not pinger.pinging
    # no ping, and the status line says why before systemd pulls the plug
    assert listener.next() == "STATUS=unhealthy: workers: stuck for 400s | 2 pending"
    assert listener.quiet_for(0.05) == []

    healthy[0] = True
    assert pinger.tick() is True
    assert listener.until("WATCHDOG=1") == ["WATCHDOG=1"]


def test_a_passing_failure_or_a_full_journal_disk_degrades_but_keeps_the_pings(listener: NotifyListener) -> None:
    health = HealthCheck(failures_to_fail=3, failure_window_s=30.0)
    health.register("journal", lambda: (False, "database or disk is full"), critical=False)
    health.register("workers", lambda: (False, "no progress for 700s"))
    pinger = WatchdogPinger(SystemdNotifier(), health.check, interval_s=1, status_line=lambda: "2 pending")
    assert pinger.tick() is True
    assert listener.next() == "WATCHDOG=1"
    assert listener.next() == ("STATUS=degraded: journal: database or disk is full; workers: no progress for 700s"
                               " | 2 pending")
    for _ in range(2):  # three failed runs in a row, but not over the failure window yet
        assert pinger.tick() is True
        assert listener.next() == "WATCHDOG=1"  # (the unchanged STATUS= is not sent again)
    assert pinger.pinging


def test_a_raising_health_check_stops_pings_without_killing_the_pinger(listener: NotifyListener) -> None:
    def broken():
        raise RuntimeError("boom")

    pinger = WatchdogPinger(SystemdNotifier(), broken, interval_s=1)
    assert pinger.tick() is False
    assert listener.next() == "STATUS=unhealthy: health check raised RuntimeError"


# A real daemon-like process: its pinger thread runs at a quarter of WATCHDOG_USEC, its health
# depends on a flag file the test controls, and SIGTERM makes it send STOPPING=1.
SERVICE_SCRIPT = textwrap.dedent(
    """
    import signal, sys, threading
    from pathlib import Path
    from syncd.logs import configure_logging
    from syncd.service.health import HealthCheck
    from syncd.service.notify import SystemdNotifier, WatchdogPinger

    configure_logging("json", "info")  # as the daemon does: its events on stderr
    flag = Path(sys.argv[1])
    health = HealthCheck()
    health.register("observer", lambda: (not flag.exists(), "inotify observer died" if flag.exists() else "alive"))
    notifier = SystemdNotifier()
    pinger = WatchdogPinger.from_environment(notifier, health.check)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    notifier.ready("watching 1 folder")
    pinger.start()
    stop.wait(20)
    notifier.stopping("shutting down")
    pinger.stop()
    """
)


def test_a_real_process_pings_stops_when_unhealthy_and_says_why(tmp_path: Path, listener: NotifyListener) -> None:
    flag = tmp_path / "observer-dead"
    env = dict(os.environ, WATCHDOG_USEC="200000", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVICE_SCRIPT, str(flag)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert listener.next(10) == "READY=1\nSTATUS=watching 1 folder"
        # pings every 0.05 s (a quarter of WATCHDOG_USEC)
        assert listener.next() == "WATCHDOG=1"
        assert listener.next() == "WATCHDOG=1"

        flag.touch()
        listener.until("STATUS=unhealthy: observer: inotify observer died")
        assert "WATCHDOG=1" not in listener.quiet_for(0.5)  # five intervals without a ping

        flag.unlink()
        listener.until("WATCHDOG=1", timeout_s=2)

        proc.send_signal(signal.SIGTERM)
        assert "STOPPING=1\nSTATUS=shutting down" in listener.until("STOPPING=1")
        output, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert "watchdog_pings_stopped" in output
    assert "inotify observer died" in output
    assert "watchdog_pings_resumed" in output
