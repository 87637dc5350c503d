"""Bad inputs: each one ends with a clear reason in the journal (as `syncd status`
and `syncd history` show it) and the daemon keeps running and keeps ingesting.

The tests run as root here, and root reads a `chmod 000` file anyway. The daemon
is therefore started under `setpriv` without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH:
it stays uid 0 (it owns every test file, so everything else works as before)
but file permission bits now apply to it, as they do to the unprivileged
`syncd` user of the systemd unit.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from tests.daemon.daemon_process import (
    CHUNKED_MIN, Watch, assert_exactly_once, box_sha1s, config_data, history_json, local_files, run_syncd,
    settled_counts, status_json, wait_for_box, wait_until, write_config,
)
from tests.daemon.drops import Drop, random_bytes, write_file, write_then_rename

# Only root needs it (and only root may drop from the bounding set); anyone else is already bound by chmod.
WITHOUT_DAC_OVERRIDE = ("setpriv", "--bounding-set=-dac_override,-dac_read_search") if os.geteuid() == 0 else ()
MAX_FILE_SIZE = 2_000_000
MISSING_FOLDER = "987654321"


def _failure(status: dict, path: str) -> dict:
    found = [f for f in status["recent_failures"] if f["path"] == path]
    assert found, f"{path} not among the failures: {status['recent_failures']}"
    return found[0]


def _wait_for_failure(config: Path, path: str, daemon, timeout: float = 30) -> dict:
    wait_until(lambda: any(f["path"] == path for f in status_json(config)["recent_failures"]), timeout=timeout,
               interval=0.5, message=lambda: f"{path} never parked\n{daemon.tail()}")
    return _failure(status_json(config), path)


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_bad_inputs_are_parked_with_a_reason_and_the_daemon_keeps_going(tmp_path: Path, emulator_factory,
                                                                          daemon_factory):
    rng = random.Random(5)
    emulator = emulator_factory("--max-file-size", str(MAX_FILE_SIZE))
    inbox, ghost, again, outside = (tmp_path / n for n in ("inbox", "ghost", "again", "outside"))
    for folder in (inbox, ghost, again, outside):
        folder.mkdir()
    watches = [Watch(inbox), Watch(ghost, folder_id=MISSING_FOLDER), Watch(again, options={"recursive": False})]
    config = write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "var" / "journal.db", watches, workers=1, small_file_workers=1, readiness={"settle": "300ms"},
        retry={"max_attempts": 3, "initial_backoff": "200ms", "max_backoff": "500ms"}))
    daemon = daemon_factory(config, prefix=WITHOUT_DAC_OVERRIDE).start()

    # Unreadable: stat works (so it is seen and settles), reading does not.
    locked = inbox / "locked.pdf"
    write_file(locked, b"payroll")
    locked.chmod(0)
    # Names Box refuses: quarantined before anything is sent.
    write_file(inbox / "trailing space.txt ", b"a")
    write_file(inbox / "back\\slash.txt", b"b")
    # Over Box's size limit for this account.
    write_file(inbox / "huge.bin", random_bytes(rng, MAX_FILE_SIZE + 1))
    # Symlinks out of the root, to a file and to a directory: never followed.
    write_file(outside / "secret.txt", b"not for Box")
    (inbox / "link-to-secret.txt").symlink_to(outside / "secret.txt")
    (inbox / "link-to-outside").symlink_to(outside, target_is_directory=True)
    # A watch whose Box folder does not exist: the breaker pauses that watch, not the others.
    write_file(ghost / "lost.txt", b"nowhere to go")
    # And good files, which must not be held up by any of the above.
    write_file(inbox / "fine/ok.txt", b"ok")

    assert _wait_for_failure(config, "locked.pdf", daemon)["reason"].endswith("permission denied")
    status = status_json(config)
    space = _failure(status, "trailing space.txt ")
    assert space["state"] == "quarantined" and "ends with a space" in space["reason"]
    slash = _failure(status, "back\\\\slash.txt")  # as syncd shows it: the backslash escaped
    assert slash["state"] == "quarantined" and "'\\\\'" in slash["reason"]
    huge = _wait_for_failure(config, "huge.bin", daemon)
    assert huge["state"] == "quarantined" and "file_size_limit_exceeded" in huge["reason"]
    # The missing Box folder pauses its watch (it may come back), costs the file no attempt, and says so.
    wait_until(lambda: any(r["scope"] == "watch:ghost" for r in status_json(config)["box_refusals"]), timeout=30,
               interval=0.5, message=lambda: f"the ghost watch was not paused\n{daemon.tail()}")
    [refusal] = status_json(config)["box_refusals"]
    assert f"Box folder {MISSING_FOLDER} of watch ghost does not exist" in refusal["reason"], refusal
    assert not any(f["path"] == "lost.txt" for f in status_json(config)["recent_failures"])
    assert "deferred" in [h["event"] for h in history_json(config, "ghost:lost.txt")]
    assert [f["state"] for f in status_json(config)["recent_failures"] if f["path"] == "locked.pdf"] == ["failed"]
    symlink_problems = {e["path"] for e in daemon.events("path_problem") if e["kind"] == "symlink_skipped"}
    assert {"link-to-secret.txt", "link-to-outside"} <= symlink_problems
    # Parked with the reason, so status accounts for them too.
    for link in ("link-to-secret.txt", "link-to-outside"):
        parked = _wait_for_failure(config, link, daemon)
        assert parked["state"] == "quarantined" and "symbolic links are not followed" in parked["reason"], parked

    # Deleted while waiting for a worker: a slow Box keeps both workers (one per lane) busy meanwhile.
    emulator.faults(latency_ms=1500)
    for blocker in ("blocker.txt", "blocker-2.txt"):
        write_file(inbox / blocker, b"slow")
    for blocker in ("blocker.txt", "blocker-2.txt"):
        daemon.wait_for_event("upload_started", where=lambda e, name=blocker: e["path"] == name)
    write_file(inbox / "doomed.txt", b"short-lived")
    daemon.wait_for_event("file_ready", where=lambda e: e["path"] == "doomed.txt")
    (inbox / "doomed.txt").unlink()
    wait_until(lambda: any(h["event"] == "removed" for h in history_json(config, "inbox:doomed.txt")), timeout=10,
               message=lambda: str(history_json(config, "inbox:doomed.txt")))
    removed = [h for h in history_json(config, "inbox:doomed.txt") if h["event"] == "removed"][0]
    assert "deleted" in removed["detail"]
    emulator.faults(latency_ms=0)

    # The watched folder deleted and recreated: files in the new folder still arrive.
    write_file(again / "before.txt", b"before")
    wait_for_box(emulator, {"before.txt": local_files(again)["before.txt"]}, timeout=30, daemon=daemon)
    shutil.rmtree(again)
    # Recreate it only once the daemon noticed it gone (a quick recreate is the easier case).
    wait_until(lambda: "waiting for it to come back" in daemon.log_text(), timeout=15,
               message=lambda: f"the daemon never noticed the watched folder gone\n{daemon.tail()}")
    again.mkdir()
    write_file(again / "after.txt", b"after the folder came back")
    # In Box before the quota fault below, which would otherwise park it too.
    wait_for_box(emulator, {"after.txt": local_files(again)["after.txt"]}, timeout=30, daemon=daemon)

    # Quota exceeded: retried with Box's reason, then parked; `syncd retry` after room is made.
    emulator.faults(storage_quota=1)
    write_file(inbox / "quota.bin", random_bytes(rng, 50_000))
    over_quota = _wait_for_failure(config, "quota.bin", daemon)
    assert over_quota["state"] == "failed" and "storage_limit_exceeded" in over_quota["reason"]
    emulator.faults(storage_quota=0)
    retried = run_syncd("retry", "--config", str(config), "inbox:quota.bin")
    assert retried.returncode == 0, retried.stderr

    expected = {"fine/ok.txt", "blocker.txt", "blocker-2.txt", "before.txt", "after.txt", "quota.bin"}
    wait_until(lambda: set(box_sha1s(emulator)) == expected, timeout=40, interval=0.5,
               message=lambda: f"Box holds {sorted(box_sha1s(emulator))}\n{daemon.tail()}")
    assert box_sha1s(emulator)["quota.bin"] == local_files(inbox)["quota.bin"]
    assert daemon.running(), daemon.tail()
    assert daemon.stop() == 0
    counts = status_json(config)["counts"]
    # The parked ones stay visible (the two links too); nothing is left half-done.
    assert (counts["failed"], counts["quarantined"], counts["pending"], counts["uploading"]) == (1, 5, 1, 0), counts


@pytest.mark.slow
def test_file_truncated_during_a_chunked_upload_goes_up_as_its_new_content(tmp_path: Path, emulator_factory,
                                                                            daemon_factory):
    emulator = emulator_factory("--part-sizes", "*=1MiB", "--bandwidth", "2000000")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "var" / "journal.db", [Watch(inbox)], readiness={"settle": "300ms"}))
    daemon = daemon_factory(config).start()
    path = inbox / "export.csv"
    write_then_rename(inbox, Drop("export.csv", random_bytes(random.Random(3), CHUNKED_MIN + 1_000_000)))

    wait_until(lambda: emulator.stats()["bytes_received"].get("sessions.upload_part", 0) >= 4_000_000,
               timeout=60, interval=0.05, message=lambda: daemon.tail())
    with open(path, "r+b") as f:
        f.truncate(1000)
    expected = local_files(inbox)

    wait_for_box(emulator, expected, timeout=60, daemon=daemon)
    assert_exactly_once(emulator, expected)
    wait_until(lambda: settled_counts(status_json(config)) == {"uploaded": 1}, timeout=15,
               message=lambda: str(status_json(config)["counts"]))
    assert emulator.stats()["requests"].get("sessions.commit", {}).get("201", 0) == 0, "the cut file was committed"
    # Whoever notices first, the uploader (short read) or intake (the file changed), discards the upload,
    # possibly after the new content is already in Box; the log says so once.
    def discarded() -> list[str]:
        return [e["path"] for e in daemon.events("upload_discarded_file_changed") + daemon.events("upload_superseded")]

    wait_until(lambda: discarded() != [], timeout=15, message=lambda: daemon.tail())
    assert daemon.running()
    assert daemon.stop() == 0
    assert discarded() == ["export.csv"], daemon.tail()
