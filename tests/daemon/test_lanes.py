"""Small and large files in flight at once (issue 12): a chunked upload holding the only
general worker does not block small files, which go through their own lane. A real daemon
against the real emulator, the large upload slowed by the emulator's per-connection
bandwidth cap; asserted through the order of the log events."""

from __future__ import annotations

import random
from pathlib import Path

from tests.daemon.daemon_process import (
    CHUNKED_MIN, Watch, assert_exactly_once, config_data, local_files, wait_for_box, write_config,
)
from tests.daemon.drops import Drop, random_bytes, write_file, write_then_rename


def test_small_files_commit_while_a_large_chunked_upload_holds_the_general_lane(
        tmp_path: Path, emulator_factory, daemon_factory) -> None:
    # 1 MiB parts at 1.5 MB/s per connection: the large upload lasts seconds, a 1 kB file a round trip.
    emulator = emulator_factory("--part-sizes", "*=1MiB", "--bandwidth", "1500000")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "journal.db", [Watch(inbox)], workers=1, small_file_workers=2))
    daemon = daemon_factory(config).start()
    rng = random.Random(3)
    write_then_rename(inbox, Drop("large.bin", random_bytes(rng, CHUNKED_MIN + 1000)))
    daemon.wait_for_event("upload_started", where=lambda e: e["path"] == "large.bin", timeout=60)
    for index in range(6):
        write_file(inbox / f"small-{index}.txt", random_bytes(rng, 1000))

    wait_for_box(emulator, local_files(inbox), timeout=120, daemon=daemon)
    order = [(e["event"], e["path"]) for e in daemon.events() if e["event"] == "upload_committed"]
    assert daemon.stop() == 0
    assert order[-1] == ("upload_committed", "large.bin"), order  # every small file went past it
    assert len(order) == 7
    assert_exactly_once(emulator, local_files(inbox))
