"""Resume: SIGKILL half-way through a chunked upload; after the restart the daemon
resumes the same upload session and sends again at most part_concurrency x
part_size bytes, measured by the emulator's byte counter (not by the daemon)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.daemon.daemon_process import (
    CHUNKED_MIN, Watch, assert_exactly_once, config_data, local_files, settled_counts, status_json,
    wait_for_box, wait_until, write_config,
)
from tests.daemon.drops import Drop, random_bytes, write_then_rename

PART_SIZE = 1024 * 1024
PART_CONCURRENCY = 3
FILE_SIZE = CHUNKED_MIN + 4 * PART_SIZE + 12345  # the last part is a short one


def _part_bytes(emulator) -> int:
    return emulator.stats()["bytes_received"].get("sessions.upload_part", 0)


@pytest.mark.slow
def test_sigkill_half_way_through_a_chunked_upload_resends_at_most_the_parts_in_flight(
        tmp_path: Path, emulator_factory, daemon_factory):
    # A per-connection cap makes the upload last seconds, so "half-way" is a wide target.
    emulator = emulator_factory("--part-sizes", f"*={PART_SIZE}", "--bandwidth", "2500000")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "var" / "journal.db", [Watch(inbox)], readiness={"settle": "300ms"},
        box={"part_concurrency": PART_CONCURRENCY}))
    daemon = daemon_factory(config).start()
    write_then_rename(inbox, Drop("video/take-1.mov", random_bytes(random.Random(7), FILE_SIZE)))

    wait_until(lambda: _part_bytes(emulator) >= FILE_SIZE // 2, timeout=60, interval=0.05,
               message=lambda: f"the chunked upload did not get half-way\n{daemon.tail()}")
    daemon.kill()
    sent_before_kill = _part_bytes(emulator)
    assert sent_before_kill < FILE_SIZE, "the upload finished before the kill; the test proves nothing"
    in_flight = status_json(config)["in_flight"]
    assert [u["path"] for u in in_flight] == ["video/take-1.mov"] and in_flight[0]["session_id"]

    daemon.start()
    expected = local_files(inbox)
    wait_for_box(emulator, expected, timeout=60, daemon=daemon)
    assert_exactly_once(emulator, expected)

    stats = emulator.stats()
    resent = stats["bytes_received"]["sessions.upload_part"] - FILE_SIZE
    assert 0 <= resent <= PART_CONCURRENCY * PART_SIZE, (
        f"{resent} bytes sent again after the restart (killed at {sent_before_kill} of {FILE_SIZE})")
    assert stats["requests"]["sessions.create"] == {"201": 1}, "the restart opened a new session instead of resuming"
    assert stats["requests"]["sessions.commit"].get("201") == 1
    wait_until(lambda: settled_counts(status_json(config)) == {"uploaded": 1}, timeout=10,
               message=lambda: str(status_json(config)["counts"]))
    assert daemon.stop() == 0
