"""The real daemon stops its systemd watchdog pings when its pipeline is unhealthy.

A real notify socket with WATCHDOG_USEC, the real daemon, the real emulator. Box stops
answering mid-upload (the emulator holds every request), so the upload makes no
progress: past `health.stuck_after` the `workers` probe fails, and once that has
lasted `health.failure_window` the daemon, still running, stops sending WATCHDOG=1 (so
systemd would kill and restart it), says why on its STATUS= line and in its log, and
/healthz answers 503 naming the stuck job. (tests/daemon/test_long_upload.py shows the
other side: a long upload that keeps moving never stops the pings.)
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import requests

from tests.daemon.daemon_process import Watch, config_data, free_port, wait_until, write_config
from tests.daemon.drops import Drop, random_bytes, write_then_rename
from tests.support.notify import NotifySocket

WATCHDOG_S = 2.0  # a check (and, while healthy, a ping) every 0.5 s


@pytest.mark.timeout(120)
def test_a_stuck_upload_stops_the_watchdog_pings_of_the_running_daemon(
        tmp_path: Path, emulator_factory, daemon_factory):
    emulator = emulator_factory()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    port = free_port()
    config = write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "var" / "journal.db", [Watch(inbox)], readiness={"settle": "300ms"},
        health={"stuck_after": "1s", "failure_window": "2s"}, metrics={"listen": f"127.0.0.1:{port}"}))
    notify = NotifySocket(tmp_path / "notify.sock")
    try:
        daemon = daemon_factory(config, env={"NOTIFY_SOCKET": str(notify.path),
                                             "WATCHDOG_USEC": str(int(WATCHDOG_S * 1_000_000))}).start()
        wait_until(lambda: len(notify.pings()) >= 3, timeout=30, message=lambda: str(notify.messages))

        emulator.faults(latency_ms=600_000)  # Box takes every request and never answers
        write_then_rename(inbox, Drop("scan.pdf", random_bytes(random.Random(3), 5000)))
        stopped = daemon.wait_for_event("watchdog_pings_stopped", timeout=60)
        assert "workers" in stopped["reason"] and "no progress for over 1s" in stopped["reason"], stopped
        assert daemon.events("upload_started") and not daemon.events("upload_committed"), daemon.tail()

        # Unhealthy, and it stays so: /healthz says so, naming the job, while the daemon runs on.
        verdicts: list[requests.Response] = []

        def unhealthy_for_a_while() -> bool:
            verdicts.append(requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10))
            return len(verdicts) >= 8

        wait_until(unhealthy_for_a_while, timeout=60, interval=0.5)
        assert all(v.status_code == 503 for v in verdicts), [v.status_code for v in verdicts]
        workers = verdicts[-1].json()["probes"]["workers"]
        assert not workers["ok"] and "scan.pdf" in workers["detail"], workers
        assert daemon.running(), daemon.tail()

        # systemd's view, in the order it got them: pings while healthy, then STATUS=unhealthy
        # naming the probe, and not one WATCHDOG=1 after it, over the 8 checks /healthz saw.
        messages = notify.messages
        unhealthy = [i for i, m in enumerate(messages) if "STATUS=unhealthy: workers" in m]
        assert unhealthy, messages
        assert any("WATCHDOG=1" in m.split("\n") for m in messages[:unhealthy[0]])
        assert not any("WATCHDOG=1" in m.split("\n") for m in messages[unhealthy[0]:]), messages[unhealthy[0]:]
        assert daemon.events("watchdog_pings_resumed") == []
    finally:
        notify.close()
