"""Faults: with the emulator answering 5% of requests with 5xx, cutting 2% of
connections mid-body, answering commits with 202 first, expiring every access
token mid-run and throwing a 429 storm, every file still arrives exactly once.

The daemon authenticates with client credentials (CCG) so it can get a new
token after the expiry; a developer token cannot be renewed.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import requests

from tests.daemon.daemon_process import (
    CHUNKED_MIN, Watch, assert_exactly_once, config_data, local_files, run_syncd, settled_counts, status_json,
    wait_until, write_config,
)
from tests.daemon.drops import Drop, cp_into, random_bytes, write_then_rename

CLIENT_ID = "syncd-emulator-client"
CLIENT_SECRET = "syncd-emulator-secret"
DEFAULT_USER = "11446498"
STORM = 20


def _ccg_token(emulator) -> str:
    """A fresh access token for the test's own reads (the developer token was expired too)."""
    response = requests.post(emulator.token_url, data={
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "box_subject_type": "user", "box_subject_id": DEFAULT_USER}, timeout=30)
    response.raise_for_status()
    return response.json()["access_token"]


def _answers(stats: dict, status: str) -> int:
    return sum(codes.get(status, 0) for codes in stats["requests"].values())


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_everything_arrives_exactly_once_through_5xx_drops_202s_token_expiry_and_a_429_storm(
        tmp_path: Path, emulator_factory, daemon_factory):
    rng = random.Random(11)
    emulator = emulator_factory("--fail-rate", "0.05", "--drop-rate", "0.02", "--commit-202", "1",
                                "--commit-retry-after", "1", "--part-sizes", "*=2MiB", "--seed", "11")
    inbox, staging = tmp_path / "inbox", tmp_path / "staging"
    inbox.mkdir()
    auth = {"type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "subject_type": "user", "subject_id": DEFAULT_USER}
    config = write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "var" / "journal.db", [Watch(inbox)], auth=auth, readiness={"settle": "300ms"},
        retry={"max_attempts": 20}))
    daemon = daemon_factory(config).start()

    cp_into(inbox, staging, [Drop(f"first/f{i}.csv", random_bytes(rng, rng.randint(0, 200_000))) for i in range(20)])
    write_then_rename(inbox, Drop("first/big.bin", random_bytes(rng, CHUNKED_MIN + 3_000_000)))

    def committed() -> set[str]:
        return {e["path"] for e in daemon.events("upload_committed")}

    wait_until(lambda: len(committed()) >= 8, timeout=60, message=lambda: daemon.tail())
    emulator.expire_tokens()
    emulator.faults(reject_next={"count": STORM, "status": 429, "retry_after": 1})
    cp_into(inbox, staging, [Drop(f"second/g{i}.csv", random_bytes(rng, rng.randint(0, 200_000)))
                             for i in range(20)])
    wait_until(lambda: len(committed()) >= 30, timeout=90, message=lambda: daemon.tail())
    # A burst of cut connections on top of the 2%: over a few dozen uploads 2% alone may cut none.
    emulator.faults(drop_rate=0.25)
    cp_into(inbox, staging, [Drop(f"third/h{i}.csv", random_bytes(rng, rng.randint(1, 200_000)))
                             for i in range(15)])
    wait_until(lambda: len(committed()) >= 45, timeout=90, message=lambda: daemon.tail())
    emulator.faults(drop_rate=0.02)

    expected = local_files(inbox)
    wait_until(lambda: committed() >= set(expected), timeout=150, interval=0.5,
               message=lambda: f"not committed: {sorted(set(expected) - committed())[:10]}\n{daemon.tail()}")

    # Faults off for the checks: the test's own reads must not be failed at random.
    emulator.faults(fail_rate=0, drop_rate=0)
    stats = emulator.stats()
    emulator.token = _ccg_token(emulator)
    assert_exactly_once(emulator, expected)
    wait_until(lambda: settled_counts(status_json(config)) == {"uploaded": len(expected)}, timeout=20,
               message=lambda: str(status_json(config)["counts"]))
    assert daemon.stop() == 0
    status_text = run_syncd("status", "--config", str(config)).stdout
    assert CLIENT_SECRET not in daemon.log_text() + status_text, "the client secret leaked"

    # Every fault really happened, so the run above proves something.
    assert emulator.faults()["reject_next"] is None, "the 429 storm was not used up"
    # A storm request whose body was also cut counts as a drop, not a 429.
    assert _answers(stats, "429") >= STORM // 2
    assert sum(_answers(stats, code) for code in ("500", "502", "503")) > 0
    assert _answers(stats, "0") > 0, "no connection was dropped"
    assert stats["requests"]["sessions.commit"].get("202", 0) >= 1
    assert stats["requests"]["oauth.token"].get("200", 0) >= 2, "no new token after the expiry"
    assert _answers(stats, "401") >= 1, "the expired token was never refused"
