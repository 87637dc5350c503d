"""A large file that changes in place goes up as a new version that sends only its changed
parts (issue 13): a real daemon, the real emulator (8 MiB parts, its default below
256 MiB), a 200 MiB file, and the emulator's own part-byte counter as the judge.

Identical content (the file touched, its bytes the same) makes **no new version and
sends nothing**: the daemon hashes a file that already has a Box id and finds Box holds
that SHA-1 (``upload_reconciled``). The Box layer alone would send nothing either
(every part a plan hit, Box's 202 "unchanged"; tests/box/test_delta_versions.py).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import requests

from tests.daemon.daemon_process import (
    Watch, config_data, local_files, settled_counts, sha1_of, status_json, wait_for_box, wait_until, write_config,
)

MiB = 1024 * 1024
SIZE = 200 * MiB
PART = 8 * MiB  # the emulator's part size for files up to 256 MiB


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _reused_bytes_metric(port: int) -> float:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("syncd_reused_bytes_total"))


def test_a_large_file_changed_in_place_sends_only_its_changed_parts(tmp_path: Path, emulator_factory,
                                                                   daemon_factory) -> None:
    emulator = emulator_factory()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    port = _free_port()
    config = write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "var" / "journal.db", [Watch(inbox)], box={"part_concurrency": 4},
        metrics={"listen": f"127.0.0.1:{port}"}))
    # Sparse and quick to make: random bytes at the start and around the middle, holes elsewhere.
    staged = tmp_path / "dump.bin"
    with open(staged, "wb") as handle:
        handle.write(os.urandom(MiB))
        handle.seek(SIZE // 2 - MiB)
        handle.write(os.urandom(2 * MiB))
        handle.truncate(SIZE)
    daemon = daemon_factory(config).start()
    os.rename(staged, inbox / "dump.bin")
    path = inbox / "dump.bin"
    wait_for_box(emulator, local_files(inbox), timeout=120, daemon=daemon)
    first = daemon.wait_for_event("upload_committed")
    assert first["parts_reused"] == 0 and first["bytes_reused"] == 0

    def new_version(change, label: str) -> dict:
        committed = len(daemon.events("upload_committed"))
        emulator.reset_stats()
        change()
        wait_until(lambda: len(daemon.events("upload_committed")) > committed, timeout=120,
                   message=lambda: f"{label}: no new commit\n{daemon.tail()}")
        event = daemon.events("upload_committed")[-1]
        box_file = emulator.get_file(first["file_id"])
        assert event["file_id"] == first["file_id"] and box_file["sha1"] == sha1_of(path) == event["sha1"], label
        assert emulator.part_bytes_received() <= 2 * PART, f"{label}: {emulator.part_bytes_received()} part bytes"
        return event

    def rewrite_middle() -> None:
        with open(path, "r+b") as handle:
            handle.seek(SIZE // 2)
            handle.write(os.urandom(MiB))

    middle = new_version(rewrite_middle, "1 MiB rewritten in the middle")
    assert middle["version_id"] != first["version_id"]
    assert middle["parts_reused"] == SIZE // PART - 1 and middle["bytes_reused"] == SIZE - PART
    assert emulator.part_bytes_received() == PART

    def append() -> None:
        with open(path, "ab") as handle:
            handle.write(os.urandom(MiB))

    appended = new_version(append, "1 MiB appended")
    assert appended["parts_reused"] == SIZE // PART and emulator.part_bytes_received() == MiB
    assert appended["size"] == SIZE + MiB
    assert len(emulator.file_versions(first["file_id"])) == 2  # the two earlier versions

    # Identical content: touched, not changed. No new version, nothing sent.
    emulator.reset_stats()
    reconciled = len(daemon.events("upload_reconciled"))
    os.utime(path)
    wait_until(lambda: len(daemon.events("upload_reconciled")) > reconciled, timeout=60,
               message=lambda: f"the touched file was not reconciled\n{daemon.tail()}")
    stats = emulator.stats()
    assert emulator.part_bytes_received() == 0 and "sessions.create_version" not in stats["requests"]
    assert len(emulator.file_versions(first["file_id"])) == 2
    wait_until(lambda: settled_counts(status_json(config)) == {"uploaded": 1}, timeout=20,
               message=lambda: str(status_json(config)["counts"]))
    # The metric counts what was reused apart from what was sent.
    assert _reused_bytes_metric(port) == middle["bytes_reused"] + appended["bytes_reused"]
