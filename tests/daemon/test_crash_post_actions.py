"""Crash with after-upload actions: SIGKILL the daemon at random moments while it uploads files of a
watch that deletes them afterwards and of one that archives them (two of them to one archive path).

After every kill: no source is gone unless Box holds its content, and no content is neither at its
source nor in the archive. At the end: every file is in Box once with its SHA-1, every source is
deleted or archived (both of the files that map to one archive path kept), nothing set aside is left,
and the journal has no action left. `SYNCD_CRASH_KILLS` and `SYNCD_CRASH_SEED` scale and vary it.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.daemon.daemon_process import (
    DaemonProcessError, Watch, assert_exactly_once, box_sha1s, config_data, local_files, settled_counts,
    status_json, wait_until, write_config,
)
from tests.daemon.drops import Drop, cp_into, random_bytes, write_file
from tests.emulator.wire import create_folder

KILLS = int(os.environ.get("SYNCD_CRASH_KILLS", "30"))
SEED = int(os.environ.get("SYNCD_CRASH_SEED", "11"))


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_with_delete_and_move_loses_nothing_and_leaves_nothing(tmp_path: Path, emulator_factory,
                                                                        daemon_factory):
    rng = random.Random(SEED)
    # Latency keeps uploads and actions in flight for most of the run, so kills land inside them.
    emulator = emulator_factory("--latency-ms", "60", "--seed", str(SEED))
    drop, scans, archive, staging = (tmp_path / n for n in ("drop", "scans", "archive", "staging"))
    for folder in (drop, scans):
        folder.mkdir()
    drop_box, scans_box = (create_folder(emulator, name).json()["id"] for name in ("drop", "scans"))
    config = write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "var" / "journal.db",
        [Watch(drop, folder_id=drop_box, options={"after_upload": "delete"}),
         Watch(scans, folder_id=scans_box, options={"after_upload": "move", "archive_dir": str(archive),
                                                    "archive_template": "{name}"})],
        workers=3, readiness={"settle": "200ms", "closed_settle": "100ms"}))
    daemon = daemon_factory(config)

    expected: dict[str, dict[str, str]] = {"drop": {}, "scans": {}}

    def put(watch: Path, relpath: str, data: bytes) -> None:
        write_file(watch / relpath, data)
        expected[watch.name][relpath] = sha1(data)

    for i in range(24):
        put(drop, f"d{i % 3}/f{i}.dat", random_bytes(rng, rng.choice([0, 10, 4096, 60_000])))
        put(scans, f"s{i % 3}/scan{i}.pdf", random_bytes(rng, rng.choice([1, 2048, 90_000])))
    # Two files that the template sends to one archive path: both must survive, neither overwritten.
    put(scans, "a/report.pdf", b"report from a")
    put(scans, "b/report.pdf", b"report from b")

    def check_nothing_lost() -> None:
        in_box = {"drop": box_sha1s(emulator, drop_box), "scans": box_sha1s(emulator, scans_box)}
        archived = Counter(local_files(archive).values()) if archive.exists() else Counter()
        for name, root in (("drop", drop), ("scans", scans)):
            here = local_files(root)
            for relpath, digest in expected[name].items():
                if here.get(relpath) == digest:
                    continue
                # Gone from its drop folder: only once Box holds exactly these bytes.
                assert in_box[name].get(relpath) == digest, f"{name}:{relpath} removed before Box had it (seed {SEED})"
                if name == "scans":
                    assert archived[digest] > 0, f"scans:{relpath} neither at its source nor archived (seed {SEED})"

    for kill in range(KILLS):
        daemon.start(wait_ready=kill % 2 == 1)
        if kill % 5 == 4:  # more arrive while it runs
            for j in range(2):
                data = random_bytes(rng, rng.randint(0, 30_000))
                cp_into(drop, staging, [Drop(f"late{kill}/n{j}.txt", data)])
                expected["drop"][f"late{kill}/n{j}.txt"] = sha1(data)
        if kill % 3 == 0:
            # Aimed: right after a commit, when its after-upload action is being carried out.
            try:
                daemon.wait_for_event("upload_committed", timeout=1.5, interval=0.005)
            except DaemonProcessError:
                pass
        else:
            time.sleep(rng.uniform(0.1, 0.6))
        daemon.kill()
        check_nothing_lost()

    emulator.faults(latency_ms=0)
    daemon.start()
    total = len(expected["drop"]) + len(expected["scans"])

    def finished() -> bool:
        status = status_json(config)
        return (settled_counts(status) == {"uploaded": total} and status["post_actions_pending"] == 0
                and not any(p.is_file() for root in (drop, scans) for p in root.rglob("*")))

    wait_until(finished, timeout=90, interval=1.0,
               message=lambda: f"not finished (seed {SEED}): {status_json(config)}\n{daemon.tail()}")
    check_nothing_lost()
    assert_exactly_once(emulator, expected["drop"], folder_id=drop_box)
    assert_exactly_once(emulator, expected["scans"], folder_id=scans_box)
    # Every archived file is one of the scans, each exactly once; the two reports side by side.
    archived = local_files(archive)
    assert Counter(archived.values()) == Counter(expected["scans"].values())
    assert {archived["report.pdf"], archived["report (1).pdf"]} == {sha1(b"report from a"), sha1(b"report from b")}
    # Nothing set aside or half-copied is left anywhere.
    leftovers = [p for root in (drop, scans, archive) for p in root.rglob("*") if ".syncd-" in p.name]
    assert leftovers == []
    assert daemon.stop() == 0
    assert daemon.starts == KILLS + 1
    # The kills really interrupted after-upload actions: some restarts found actions left to do.
    # The kills really interrupted after-upload actions: restarts found actions left to carry out.
    resumed = daemon.events("post_actions_resumed")
    assert len(resumed) >= 2, f"only {len(resumed)} restarts resumed actions (seed {SEED})"
