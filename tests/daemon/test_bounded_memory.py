"""Bounded memory (invariant 5) on the real daemon: uploading a 2 GiB file keeps its RSS
under workers x parts in flight x part size plus a fixed allowance.

The file is sparse (`truncate`), so it costs no disk, and the emulator keeps zeros as
holes (docs/EMULATOR.md), so it costs none there either; every byte still goes through
the daemon's read, hash and send path and over HTTP. A client that buffered the file
would pass 2 GiB; one that kept every part it sent would too. The kernel's high-water
mark (VmHWM) is read, so no sampling interval can miss a peak.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import psutil
import pytest

from tests.daemon.daemon_process import Watch, assert_exactly_once, config_data, write_config

GiB = 1024 ** 3
MiB = 1024 ** 2
# Multi-GiB, yet the upload (CPU-bound: hashing on both sides) stays near half a minute here.
FILE_SIZE = 2 * GiB + 12345  # a short last part too
PART_SIZE = 8 * MiB  # the emulator's part size for every file (Box's for files under ~500 MB)
WORKERS = 2
PART_CONCURRENCY = 2
# Interpreter, libraries, journal, logging, HTTP pools: what the daemon holds with no upload
# (about 45 MiB here; 80 MiB at the peak of a 3 GiB run), with room for allocator slack.
FIXED_ALLOWANCE = 100 * MiB
# A part is held as the buffer it is read into and the bytes it is sent from.
COPIES_PER_PART = 2


def sha1_of_zeros(size: int) -> str:
    digest = hashlib.sha1()
    block = bytes(MiB)
    for _ in range(size // MiB):
        digest.update(block)
    digest.update(bytes(size % MiB))
    return digest.hexdigest()


def peak_rss(pid: int) -> int:
    """The process's RSS high-water mark so far, in bytes (Linux VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


@pytest.mark.timeout(180)
def test_rss_stays_bounded_while_uploading_a_2_gib_file(tmp_path: Path, emulator_factory, daemon_factory):
    emulator = emulator_factory("--part-sizes", f"*={PART_SIZE // MiB}MiB")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "var" / "journal.db", [Watch(inbox)], workers=WORKERS,
        box={"part_concurrency": PART_CONCURRENCY}, readiness={"settle": "300ms"}))
    daemon = daemon_factory(config).start()
    idle_rss = psutil.Process(daemon.pid).memory_info().rss

    staging = tmp_path / "staging"
    staging.mkdir()
    with open(staging / "disk.img", "wb") as f:
        f.truncate(FILE_SIZE)
    assert os.stat(staging / "disk.img").st_blocks == 0  # sparse: the test writes nothing
    os.rename(staging / "disk.img", inbox / "disk.img")

    committed = daemon.wait_for_event("upload_committed", timeout=150)
    peak = peak_rss(daemon.pid)
    assert committed["path"] == "disk.img", committed
    assert_exactly_once(emulator, {"disk.img": sha1_of_zeros(FILE_SIZE)})
    parts = emulator.stats()["requests"]["sessions.upload_part"]
    assert parts == {"200": -(-FILE_SIZE // PART_SIZE)}, parts  # every part really went over HTTP
    assert daemon.stop() == 0

    in_flight = WORKERS * PART_CONCURRENCY * PART_SIZE * COPIES_PER_PART
    assert idle_rss < FIXED_ALLOWANCE, f"idle RSS {idle_rss / MiB:.0f} MiB"
    assert peak <= FIXED_ALLOWANCE + in_flight, (
        f"peak RSS {peak / MiB:.0f} MiB > {FIXED_ALLOWANCE // MiB} MiB + {in_flight // MiB} MiB in flight "
        f"(idle {idle_rss / MiB:.0f} MiB) while uploading {FILE_SIZE / GiB:.1f} GiB")
