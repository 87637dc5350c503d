"""Box refusing us in the middle of an ingestion (issue 11): revoked-looking OAuth credentials (401,
every refresh refused) for 30 s. (A watch's folder refused, 403 or 404, pauses that watch only:
tests/service/test_box_breaker.py and tests/daemon/test_bad_inputs.py.)

With 4 attempts per file and a backoff of at most 2 s, every file would end `failed` within seconds
if each spent its attempts against the refusal. Instead the daemon pauses the refused scope (status,
/healthz "degraded", the metric say so), probes Box, and resumes by itself: no file fails, every file
is committed once, the daemon never stops.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest
import requests

from syncd.box import TokenStore
from tests.daemon.daemon_process import (
    Watch, assert_exactly_once, config_data, free_port, local_files, status_json, wait_for_box, wait_until,
    write_config,
)
from tests.daemon.drops import random_bytes, write_file

OUTAGE_401_S = 30



@pytest.mark.slow
@pytest.mark.timeout(240)
def test_box_refusing_pauses_and_resumes_without_failing_a_file(tmp_path: Path, emulator_factory, daemon_factory):
    rng = random.Random(3)
    emulator = emulator_factory("--latency-ms", "50")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    store = tmp_path / "state" / "box-token.json"
    TokenStore(store).save(emulator.mint_tokens()["refresh_token"])
    port = free_port()
    config = write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "var" / "journal.db", [Watch(inbox)], workers=2, readiness={"settle": "200ms"},
        auth={"type": "oauth", "client_id": "syncd-emulator-client", "client_secret": "syncd-emulator-secret",
              "token_store": str(store)},
        retry={"max_attempts": 4, "initial_backoff": "500ms", "max_backoff": "2s"},
        metrics={"listen": f"127.0.0.1:{port}"}))
    daemon = daemon_factory(config).start()

    def healthz() -> tuple[int, dict]:
        reply = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        return reply.status_code, reply.json()

    def refusing() -> list[str]:
        return [r["scope"] for r in status_json(config)["box_refusals"]]

    def drop(prefix: str, count: int) -> None:
        for i in range(count):
            write_file(inbox / f"{prefix}/doc{i}.bin", random_bytes(rng, rng.randint(1, 40_000)))

    drop("before", 8)
    daemon.wait_for_event("upload_committed")

    # The credentials look revoked: every request 401, every refresh refused.
    emulator.faults(refuse={"status": 401, "seconds": OUTAGE_401_S})
    drop("during-401", 8)
    wait_until(lambda: refusing() == ["credentials"], timeout=30, message=lambda: daemon.tail())
    status, health = healthz()
    # (Refused credentials refuse every watch too: the metric and /healthz list each scope.)
    assert status == 200 and health["status"] == "degraded" and "credentials" in health["box_refusing"]
    metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert f'syncd_box_refusing{{host="{socket.gethostname()}",scope="credentials"}} 1.0' in metrics
    wait_until(lambda: refusing() == [], timeout=OUTAGE_401_S + 30, interval=1.0, message=lambda: daemon.tail())
    assert status_json(config)["counts"]["failed"] == 0

    expected = local_files(inbox)
    wait_for_box(emulator, expected, timeout=60, daemon=daemon)
    wait_until(lambda: status_json(config)["counts"]["uploaded"] == len(expected), timeout=30,
               message=lambda: f"{status_json(config)}\n{daemon.tail()}")
    counts = status_json(config)["counts"]
    assert counts["failed"] == 0 and counts["pending"] == 0 and counts["uploading"] == 0, counts
    status, health = healthz()
    assert status == 200 and health["status"] == "ok" and health["box_refusing"] == []
    assert_exactly_once(emulator, expected)
    # Files kept their attempts: those the outage caught were given back, not retried against it.
    assert daemon.events("upload_paused_box_refusing") and not daemon.events("upload_failed")
    assert [e["scope"] for e in daemon.events("box_accepting_again")] == ["credentials"]
    assert daemon.running() and daemon.starts == 1
    assert daemon.stop() == 0
