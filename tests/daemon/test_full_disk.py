"""The journal's disk fills up in the middle of an ingestion (issue 11).

The journal lives on a small tmpfs; while uploads are in flight a filler takes every free byte,
so the journal refuses writes (SQLITE_FULL) and outcomes of finished uploads cannot be recorded.
The daemon keeps running, degraded (its durable heartbeat write fails: /healthz says so with 200,
no restart); the claims it could not finish go back to pending as soon as space returns, no row
stays `uploading`, and every file ends in Box once.
"""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import pytest
import requests

from tests.daemon.daemon_process import (
    Watch, assert_exactly_once, config_data, free_port, local_files, status_json, wait_for_box, wait_until,
    write_config,
)
from tests.daemon.drops import random_bytes, write_file
from tests.support.mounts import tmpfs



def fill(path: Path) -> None:
    """Write `path` until the file system is full."""
    block = os.urandom(64 * 1024)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                os.write(fd, block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                block = block[: len(block) // 2]
                if not block:
                    return
    finally:
        os.close(fd)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_full_journal_disk_strands_nothing(tmp_path: Path, emulator_factory, daemon_factory):
    rng = random.Random(21)
    emulator = emulator_factory("--latency-ms", "400")  # uploads stay in flight while the disk fills
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    port = free_port()
    with tmpfs(tmp_path / "var", "6m") as mount:
        config = write_config(tmp_path / "syncd.yaml", config_data(
            emulator, mount.path / "journal.db", [Watch(inbox)], workers=3, scan_interval="3s",
            readiness={"settle": "200ms"}, metrics={"listen": f"127.0.0.1:{port}"}))
        daemon = daemon_factory(config).start()
        for i in range(6):
            write_file(inbox / f"first/f{i}.bin", random_bytes(rng, 20_000))
        daemon.wait_for_event("upload_started")

        fill(mount.path / "filler")
        # More files keep the journal writing: it soon needs room it does not have.
        for i in range(30):
            write_file(inbox / f"during/f{i:03}.txt", random_bytes(rng, 200))
        healthz = []
        wait_until(lambda: daemon.events("journal_write_failed") != [] or (
            healthz.append(requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)) and False),
            timeout=90, interval=0.5, message=lambda: daemon.tail())
        degraded = [h for h in healthz if h.json()["probes"]["journal"]["ok"] is False]
        assert degraded and all(h.status_code == 200 and h.json()["status"] == "degraded" for h in degraded)
        assert daemon.running()

        emulator.faults(latency_ms=0)
        (mount.path / "filler").unlink()
        expected = local_files(inbox)
        wait_for_box(emulator, expected, timeout=120, daemon=daemon)
        wait_until(lambda: status_json(config)["counts"]["uploaded"] == len(expected), timeout=60, interval=1.0,
                   message=lambda: f"{status_json(config)['counts']}\n{daemon.tail()}")
        counts = status_json(config)["counts"]
        assert counts["uploading"] == 0 and counts["pending"] == 0 and counts["failed"] == 0, counts
        assert daemon.events("upload_requeued_after_journal_error"), daemon.tail()
        assert_exactly_once(emulator, expected)
        assert daemon.running() and daemon.starts == 1
        assert daemon.stop() == 0
