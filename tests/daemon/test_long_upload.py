"""A healthy upload that takes long never stops the watchdog (issue 11).

The daemon runs under a real notify socket with WATCHDOG_USEC, `health.stuck_after: 5s`,
and uploads one chunked file through an emulator whose bandwidth makes it last over
30 s. Its parts are sent from the upload's own threads: they count for the job, so the
health check never calls it stuck, the pings never stop (no gap systemd would kill it
for), and the file is committed once, by the one process that started it.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
import requests

from tests.daemon.daemon_process import (
    CHUNKED_MIN, Watch, assert_exactly_once, config_data, free_port, local_files, wait_until, write_config,
)
from tests.daemon.drops import random_bytes, write_then_rename, Drop
from tests.support.notify import NotifySocket

WATCHDOG_S = 3.0  # pings every 0.75 s
STUCK_AFTER_S = 5.0
# Two parts in flight (part_concurrency 2), 1 MiB each, 300 kB/s per connection: a part takes
# about 3.5 s (under stuck_after), the 20 MB file over 30 s.
BANDWIDTH = 300_000


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_long_chunked_upload_never_stops_the_watchdog(tmp_path: Path, emulator_factory, daemon_factory):
    emulator = emulator_factory("--part-sizes", "*=1MiB", "--bandwidth", str(BANDWIDTH))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    port = free_port()
    config = write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "var" / "journal.db", [Watch(inbox)], workers=2, readiness={"settle": "300ms"},
        health={"stuck_after": f"{STUCK_AFTER_S:g}s"}, metrics={"listen": f"127.0.0.1:{port}"}))
    notify = NotifySocket(tmp_path / "notify.sock")
    try:
        daemon = daemon_factory(config, env={"NOTIFY_SOCKET": str(notify.path),
                                             "WATCHDOG_USEC": str(int(WATCHDOG_S * 1_000_000))}).start()
        pid = daemon.pid
        write_then_rename(inbox, Drop("scans/big.tiff", random_bytes(random.Random(11), CHUNKED_MIN + 1)))
        started = daemon.wait_for_event("upload_session_created", timeout=60)
        watched_from = time.monotonic()
        verdicts: list[dict] = []
        while not daemon.events("upload_committed"):
            assert daemon.running(), daemon.tail()
            assert time.monotonic() - watched_from < 180, daemon.tail()
            health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
            verdicts.append(health.json() | {"http": health.status_code})
            time.sleep(0.5)
        watched_for = time.monotonic() - watched_from

        # It really was long, in the sense that matters here: many times stuck_after.
        assert watched_for > 5 * STUCK_AFTER_S, f"the upload took only {watched_for:.1f}s"
        # Never stuck, never unhealthy: every answer of the health check during the upload.
        assert verdicts and all(v["http"] == 200 and v["probes"]["workers"]["ok"] for v in verdicts), [
            (v["http"], v["probes"]["workers"]["detail"]) for v in verdicts if not v["probes"]["workers"]["ok"]]
        # The pings never stopped: no gap during the upload that systemd would have killed the daemon for.
        pings = notify.pings(since=watched_from - WATCHDOG_S)
        gaps = [later - earlier for earlier, later in zip(pings, pings[1:])]
        assert len(pings) > watched_for / WATCHDOG_S and max(gaps) < WATCHDOG_S, (len(pings), max(gaps))
        assert not daemon.events("watchdog_pings_stopped")

        # Committed once, by the process that started it: no restart, no second upload.
        expected = {"scans/big.tiff": local_files(inbox)["scans/big.tiff"]}
        wait_until(lambda: emulator.stats()["requests"].get("sessions.commit", {}).get("201") == 1, timeout=30,
                   message=lambda: str(emulator.stats()["requests"].get("sessions.commit")))
        emulator.faults(bandwidth=0)
        assert_exactly_once(emulator, expected)
        assert emulator.stats()["requests"]["sessions.create"] == {"201": 1}
        assert daemon.pid == pid and daemon.running() and len(daemon.events("daemon_started")) == 1
        assert started["session_id"]
        assert daemon.stop() == 0
    finally:
        notify.close()
