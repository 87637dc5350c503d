"""Ingestion: files of every size dropped in every usual way arrive in Box once, whole.

A scaled-down version of issue 4's 500-file bar that keeps its variety: 0 bytes
to chunked sizes, bursts into nested folders by `cp` (and `cp -p`, which keeps
an old mtime), slow writers that keep the file open for seconds, write-then-rename
from `.tmp`, and whole directories moved in. `SYNCD_INGEST_FILES` scales it
(the suite uses 120; a bench run can use 500).
"""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

import pytest

from tests.daemon.daemon_process import (
    CHUNKED_MIN, Watch, assert_exactly_once, config_data, local_files, settled_counts, status_json,
    wait_for_box, write_config,
)
from tests.daemon.drops import Drop, cp_into, move_directory_in, random_bytes, write_slowly, write_then_rename

FILE_COUNT = int(os.environ.get("SYNCD_INGEST_FILES", "500"))
CHUNKED_FILES = int(os.environ.get("SYNCD_INGEST_CHUNKED", "3"))
LARGEST = 60 * 1024 * 1024  # the range: 0 bytes to 60 MiB
SEED = 4


def _sizes(rng: random.Random, count: int) -> list[int]:
    """Mostly small files, some medium, a few MiB-sized, and a handful of empty ones."""
    sizes = [0, 0, 1]
    while len(sizes) < count:
        roll = rng.random()
        if roll < 0.6:
            sizes.append(rng.randint(1, 8 * 1024))
        elif roll < 0.9:
            sizes.append(rng.randint(8 * 1024, 512 * 1024))
        else:
            sizes.append(rng.randint(512 * 1024, 3 * 1024 * 1024))
    rng.shuffle(sizes)
    return sizes[:count]


@pytest.mark.slow
def test_files_dropped_every_way_arrive_once_and_whole(tmp_path: Path, emulator_factory, daemon_factory):
    rng = random.Random(SEED)
    emulator = emulator_factory()
    inbox, staging = tmp_path / "inbox", tmp_path / "staging"
    inbox.mkdir()
    staging.mkdir()
    config = write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "var" / "journal.db", [Watch(inbox)], workers=4,
        readiness={"settle": "2s", "closed_settle": "300ms"}))  # the defaults: slow writers pause 0.35 s
    daemon = daemon_factory(config).start()

    small = _sizes(rng, FILE_COUNT - CHUNKED_FILES)
    quarter = len(small) // 4
    by_cp, slow, renamed, moved = small[:quarter], small[quarter:quarter + 12], small[quarter + 12:2 * quarter], \
        small[2 * quarter:]
    chunked = [CHUNKED_MIN + rng.randint(0, 3_000_000) for _ in range(CHUNKED_FILES - 1)] + [LARGEST]

    # `cp` in bursts of ten into nested folders; every other burst with `cp -p`.
    cp_drops = [Drop(f"cp/burst{i // 10}/level{i % 3}/file{i}.bin", random_bytes(rng, size))
                for i, size in enumerate(by_cp)]
    cp_drops += [Drop(f"cp/big/chunked{i}.bin", random_bytes(rng, size)) for i, size in enumerate(chunked[:1])]
    for burst in range(0, len(cp_drops), 10):
        cp_into(inbox, staging / "cp-src", cp_drops[burst:burst + 10], preserve=burst % 20 == 10)

    # Slow writers run while the rest arrives: each keeps its file open for about 3 s.
    slow_drops = [Drop(f"slow/writer{i}.log", random_bytes(rng, size)) for i, size in enumerate(slow)]
    writers = [threading.Thread(target=write_slowly, args=(inbox / d.relpath, d.data),
                                kwargs={"chunks": 8, "pause": 0.35}) for d in slow_drops]
    for writer in writers:
        writer.start()

    renamed_drops = [Drop(f"renamed/r{i % 4}/doc{i}.pdf", random_bytes(rng, size)) for i, size in enumerate(renamed)]
    renamed_drops += [Drop(f"renamed/chunked{i}.iso", random_bytes(rng, size))
                      for i, size in enumerate(chunked[1:])]
    for drop in renamed_drops:
        (inbox / drop.relpath).parent.mkdir(parents=True, exist_ok=True)
        write_then_rename(inbox, drop)

    moved_drops = [Drop(f"moved/d{i % 5}/e{i % 2}/scan{i}.tif", random_bytes(rng, size))
                   for i, size in enumerate(moved)]
    move_directory_in(inbox, staging, "moved", moved_drops)

    for writer in writers:
        writer.join()

    expected = local_files(inbox)
    assert len(expected) == FILE_COUNT
    wait_for_box(emulator, expected, timeout=120, daemon=daemon)
    # A file uploaded half-way would show as a second version or a wrong SHA-1.
    assert_exactly_once(emulator, expected)
    assert daemon.running()
    status = status_json(config)
    assert status["daemon_running"] is True
    assert settled_counts(status) == {"uploaded": FILE_COUNT}, status
    assert daemon.stop() == 0
