"""Readiness of files found by a scan (issue 12), with real daemons, real files and real writers:

- a file whose ctime is older than the settle time and that no process has open for writing
  (a read lease says so) is ready at once (``file_ready`` says ``ready_by: ctime``);
- a file whose ctime is fresh settles as before (``ready_by: quiet_time``);
- a file a writer holds open is not ready, however old its ctime, until the writer closes it;
  then its whole content is uploaded.

Asserted through log events and what Box holds, never through durations.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.daemon.daemon_process import (
    DaemonProcess, Watch, assert_exactly_once, config_data, local_files, wait_for_box, wait_until, write_config,
)
from tests.daemon.test_once_exit import run_once

SETTLE_S = 1.0


def wait_until_ctime_older_than(paths: list[Path], seconds: float) -> None:
    """Wait (a condition, not a duration asserted) until every path last changed `seconds` ago."""
    wait_until(lambda: all(time.time() - p.stat().st_ctime > seconds for p in paths), timeout=30, interval=0.05)


def ready_by(events: list[dict[str, Any]]) -> dict[str, str]:
    return {event["path"]: event["ready_by"] for event in events if event["event"] == "file_ready"}


def _config(tmp_path: Path, emulator, inbox: Path, **readiness: str) -> Path:
    return write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "journal.db", [Watch(inbox)],
        readiness={"settle": f"{SETTLE_S}s", "closed_settle": "200ms", **readiness}))


def test_scan_found_files_with_an_old_ctime_and_no_writer_are_ready_at_once(tmp_path: Path, emulator) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    files = [inbox / f"old-{index}.txt" for index in range(4)]
    for index, path in enumerate(files):
        path.write_bytes(b"settled long ago %d" % index)
    wait_until_ctime_older_than(files, SETTLE_S + 0.2)

    code, events = run_once(_config(tmp_path, emulator, inbox), tmp_path / "once.log")

    assert code == 0
    assert ready_by(events) == {path.name: "ctime" for path in files}
    assert_exactly_once(emulator, local_files(inbox))


def test_the_rule_can_be_turned_off(tmp_path: Path, emulator) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    old = inbox / "old.txt"
    old.write_bytes(b"settled long ago")
    wait_until_ctime_older_than([old], SETTLE_S + 0.2)

    code, events = run_once(_config(tmp_path, emulator, inbox, ready_by_ctime=False), tmp_path / "once.log")

    assert code == 0
    assert ready_by(events) == {"old.txt": "quiet_time"}


def test_a_scan_found_file_with_a_fresh_ctime_settles(tmp_path: Path, emulator) -> None:
    """`once` has no observer, so only the scan finds these; the fresh one's ctime is kept fresh
    (chmod: no content change) until the scan has been logged, so its first look sees it fresh."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    old, fresh = inbox / "old.txt", inbox / "fresh.txt"
    old.write_bytes(b"old")
    settle = 3.0  # far longer than the fresh file's ctime can age between the last chmod and its first look
    wait_until_ctime_older_than([old], settle + 0.2)
    fresh.write_bytes(b"fresh")
    log_path = tmp_path / "once.log"
    scanned = threading.Event()

    def keep_fresh() -> None:
        mode = 0o644
        while not scanned.is_set():
            mode ^= 0o004
            os.chmod(fresh, mode)  # changes the ctime only
            if log_path.exists() and b'"scan_finished"' in log_path.read_bytes():
                scanned.set()
            time.sleep(0.02)

    toucher = threading.Thread(target=keep_fresh, daemon=True)
    toucher.start()
    try:
        code, events = run_once(_config(tmp_path, emulator, inbox, settle=f"{settle}s"), log_path)
    finally:
        scanned.set()
        toucher.join(5)

    assert code == 0
    assert ready_by(events) == {"old.txt": "ctime", "fresh.txt": "quiet_time"}
    assert_exactly_once(emulator, local_files(inbox))


WRITER = """
import sys
with open(sys.argv[1], "ab") as handle:
    handle.write(b"first half " * 100)
    handle.flush()
    print("open", flush=True)
    sys.stdin.readline()
    handle.write(b"second half " * 100)
print("closed", flush=True)
"""


def test_a_file_a_writer_holds_open_waits_for_its_close_however_old_its_ctime(
        tmp_path: Path, emulator, daemon_factory) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    held, free = inbox / "held.bin", inbox / "free.txt"
    free.write_bytes(b"nobody writes me")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(held)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline().strip() == "open"
        wait_until_ctime_older_than([held, free], SETTLE_S + 0.2)
        # never_settles_after just above settle: the held file is reported, with its reason, while it waits.
        daemon: DaemonProcess = daemon_factory(_config(tmp_path, emulator, inbox, never_settles_after="2s")).start()
        daemon.wait_for_event("upload_committed", where=lambda e: e["path"] == "free.txt", timeout=60)
        report = daemon.wait_for_event("file_never_settles", where=lambda e: e["path"] == "held.bin", timeout=60)
        assert "writer" in report["reason"]
        assert "held.bin" not in ready_by(daemon.events())  # not ready while open for writing
        assert not daemon.events("upload_started", since_start=True) or all(
            e["path"] != "held.bin" for e in daemon.events("upload_started"))

        writer.stdin.write("close\n")
        writer.stdin.flush()
        assert writer.stdout.readline().strip() == "closed"
        assert writer.wait(10) == 0
        wait_for_box(emulator, local_files(inbox), timeout=60, daemon=daemon)
        assert ready_by(daemon.events()) == {"free.txt": "ctime", "held.bin": "quiet_time"}
        assert held.stat().st_size == len(b"first half " * 100) + len(b"second half " * 100)
        assert daemon.stop() == 0
    finally:
        writer.kill()
        writer.wait(10)
    assert_exactly_once(emulator, local_files(inbox))
