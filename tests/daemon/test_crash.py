"""Crash: SIGKILL the daemon at random moments while it ingests; in the end every file
is in Box exactly once, SHA-1 equal, and nothing is left pending.

Kills land everywhere: during start-up and recovery, between a direct upload's
commit and the journal write, in the middle of chunked uploads (1 MiB parts, a
bandwidth cap so a chunked file takes seconds), while new files arrive, and after
two files were replaced (they may have two versions; no file may have more).
`SYNCD_CRASH_KILLS` and `SYNCD_CRASH_SEED` scale and vary it (bench/ runs more).
It runs on both journals: SQLite, and PostgreSQL on a durable cluster of its own that
is itself crashed (immediate shutdown) and restarted once in the middle of the kills.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from tests.daemon.daemon_process import (
    CHUNKED_MIN, Watch, assert_exactly_once, config_data, local_files, settled_counts, status_json,
    wait_for_box, wait_until, write_config,
)
from tests.daemon.drops import Drop, cp_into, random_bytes, write_file, write_then_rename
from tests.support.postgres import PgDatabase

KILLS = int(os.environ.get("SYNCD_CRASH_KILLS", "30"))
SEED = int(os.environ.get("SYNCD_CRASH_SEED", "30"))


@pytest.mark.slow
@pytest.mark.timeout(280)
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sigkill_at_random_moments_loses_nothing_and_duplicates_nothing(tmp_path: Path, emulator_factory,
                                                                        daemon_factory, request, backend: str):
    rng = random.Random(SEED)
    cluster = request.getfixturevalue("pg_cluster_factory")(durable=True) if backend == "postgres" else None
    # Latency keeps the workers busy for most of the run, so most kills interrupt uploads.
    emulator = emulator_factory("--part-sizes", "*=1MiB", "--bandwidth", "6000000", "--latency-ms", "150",
                                "--seed", str(SEED))
    inbox, staging = tmp_path / "inbox", tmp_path / "staging"
    inbox.mkdir()
    data = config_data(emulator, tmp_path / "var" / "journal.db", [Watch(inbox)], workers=3,
                       readiness={"settle": "300ms"})
    if cluster is not None:
        data["journal"] = PgDatabase(cluster, cluster.create_database()).journal_config(
            tmp_path / "secrets" / "pg-password", lease="3s")
    config = write_config(tmp_path / "syncd.yaml", data)
    daemon = daemon_factory(config)

    # The initial mix: small files in nested folders and two chunked ones.
    for i in range(60):
        write_file(inbox / f"batch0/d{i % 4}/f{i}.dat", random_bytes(rng, rng.choice([0, 10, 4096, 150_000])))
    for i in range(2):
        write_then_rename(inbox, Drop(f"big/chunked{i}.bin", random_bytes(rng, CHUNKED_MIN + i * 1_500_000)))

    changed = ["batch0/d0/f0.dat", "batch0/d1/f1.dat"]
    for kill in range(KILLS):
        # Half the time kill blind (often during start-up or recovery), half once it is running.
        daemon.start(wait_ready=kill % 2 == 1)
        if kill % 3 == 2:
            cp_into(inbox, staging, [Drop(f"batch{kill}/n{j}.txt", random_bytes(rng, rng.randint(0, 60_000)))
                                     for j in range(3)])
        if kill == KILLS // 2:
            write_then_rename(inbox, Drop("big/late-chunked.bin", random_bytes(rng, CHUNKED_MIN + 700_000)))
        if kill == KILLS // 3:
            # Changed files: a new version if the first one was already up, else just the new bytes.
            for name in changed:
                write_then_rename(inbox, Drop(name, random_bytes(rng, 5000)))
        if cluster is not None and kill == KILLS // 4:
            # PostgreSQL itself goes down under the running daemon, and comes back (WAL replay).
            time.sleep(rng.uniform(0.2, 0.8))
            cluster.crash()
            time.sleep(rng.uniform(0.5, 1.5))
            cluster.restart()
        time.sleep(rng.uniform(0.2, 1.6))
        daemon.kill()

    expected = local_files(inbox)
    emulator.faults(latency_ms=0)  # the checks below read every file's versions
    daemon.start()
    wait_for_box(emulator, expected, timeout=120, daemon=daemon)

    def settled() -> bool:
        counts = settled_counts(status_json(config))
        return counts == {"uploaded": len(expected)}

    wait_until(settled, timeout=30, interval=1.0,
               message=lambda: f"journal not settled (seed {SEED}): {status_json(config)['counts']}\n{daemon.tail()}")
    assert_exactly_once(emulator, expected, versions={name: {1, 2} for name in changed})
    assert daemon.stop() == 0
    assert settled_counts(status_json(config)) == {"uploaded": len(expected)}
    assert daemon.starts == KILLS + 1
    # The kills really interrupted work: some restarts found uploads to reconcile or resume.
    interrupted = daemon.events("reconciling_interrupted_uploads")
    assert len(interrupted) >= KILLS // 6, f"only {len(interrupted)} kills interrupted uploads (seed {SEED})"


def _kill_when_box_answered(daemon, emulator, endpoint: str, status: str = "201", timeout: float = 60.0) -> None:
    """SIGKILL the daemon as soon as the emulator has answered `endpoint` (its reply still on the wire)."""
    wait_until(lambda: emulator.stats()["requests"].get(endpoint, {}).get(status, 0) >= 1, timeout=timeout,
               interval=0.02, message=lambda: f"no {status} answer to {endpoint}\n{daemon.tail()}")
    daemon.kill()


@pytest.mark.parametrize("size", [10, CHUNKED_MIN + 5], ids=["direct", "chunked"])
def test_kill_after_box_committed_but_before_the_journal_knew(tmp_path: Path, emulator_factory, daemon_factory,
                                                               size: int):
    """The narrowest crash window: Box committed the file, the daemon never saw the answer.

    A trickle of bandwidth keeps Box's reply on the wire for seconds, so the kill
    lands deterministically in that window. After the restart the daemon must find
    the file in Box (same name, same SHA-1) instead of uploading a second version.
    """
    emulator = emulator_factory("--part-sizes", "*=8MiB")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = write_config(tmp_path / "syncd.yaml", config_data(emulator, tmp_path / "var" / "journal.db",
                                                               [Watch(inbox)], readiness={"settle": "300ms"}))
    daemon = daemon_factory(config).start()
    endpoint = "files.upload" if size < CHUNKED_MIN else "sessions.commit"
    if size < CHUNKED_MIN:
        emulator.faults(bandwidth=300)
    write_file(inbox / "report.pdf", random_bytes(random.Random(size), size))
    if size >= CHUNKED_MIN:
        # Parts go at full speed; only the commit's reply is slowed down.
        wait_until(lambda: emulator.stats()["requests"].get("sessions.upload_part", {}).get("200", 0) >= 3,
                   timeout=60, interval=0.05, message=lambda: daemon.tail())
        emulator.faults(bandwidth=300)
    _kill_when_box_answered(daemon, emulator, endpoint)
    emulator.faults(bandwidth=0)

    daemon.start()
    expected = local_files(inbox)
    wait_until(lambda: settled_counts(status_json(config)) == {"uploaded": 1}, timeout=60, interval=0.5,
               message=lambda: f"{status_json(config)['counts']}\n{daemon.tail()}")
    assert_exactly_once(emulator, expected)
    assert emulator.stats()["requests"][endpoint].get("201") == 1, "the file was committed twice"
    assert daemon.stop() == 0
