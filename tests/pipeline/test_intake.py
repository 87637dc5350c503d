"""Intake as the daemon runs it (real observer, tracker thread, scanner and journal, real files):
every entry accounted for in the journal, files sent back by workers, writes during an upload."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.config import load_config
from syncd.journal import FileState, HistoryEvent, Journal
from syncd.pipeline.intake import Intake
from syncd.testing.daemon_process import write_config
from tests.support.offline_config import offline_config
from tests.support.waiting import wait_until

LATIN1 = os.fsdecode(b"caf\xe9.txt")


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


@pytest.fixture
def intake(tmp_path: Path, inbox: Path) -> Iterator[Intake]:
    config = load_config(write_config(tmp_path / "syncd.yaml", offline_config(
        tmp_path / "journal.db", [{"path": str(inbox), "folder_id": "0", "name": "inbox"}],
        readiness={"settle": "300ms", "closed_settle": "100ms"})))
    journal = Journal.open(config.journal)
    running = Intake(config, journal, on_new_work=lambda: None)
    running.start()
    try:
        yield running
    finally:
        running.stop()
        journal.close()


def rows(intake: Intake) -> dict[str, tuple[FileState, str | None]]:
    found = {}
    for known in intake.journal.known_files("inbox"):
        record = intake.journal.find("inbox", known.relpath)
        if record is not None:  # else removed between the two reads, by a scan running alongside
            found[known.relpath] = (known.state, record.last_error)
    return found


def test_links_and_special_files_are_parked_with_their_reason_and_scans_do_not_churn(
        intake: Intake, inbox: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(b"outside")
    (inbox / "ok.txt").write_bytes(b"ok")
    (inbox / LATIN1).write_bytes(b"latin-1")
    (inbox / "link").symlink_to(tmp_path / "secret")
    (inbox / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(inbox / "fifo")
    server = socket.socket(socket.AF_UNIX)
    server.bind(os.fspath(inbox / "sock"))
    expected = {
        "ok.txt": (FileState.PENDING, None),
        LATIN1: (FileState.PENDING, None),
        "link": (FileState.QUARANTINED, "symbolic links are not followed"),
        "dangling": (FileState.QUARANTINED, "symbolic links are not followed"),
        "fifo": (FileState.QUARANTINED, "is a FIFO (named pipe)"),
        "sock": (FileState.QUARANTINED, "is a UNIX socket"),
    }
    wait_until(lambda: rows(intake) == expected, message=f"journal holds {rows(intake)}")
    history = len(intake.journal.history("inbox", limit=1000))
    for _ in range(2):  # backstop scans find the same entries: nothing is written again
        intake.request_scan("inbox", reason="backstop")
    wait_until(lambda: not intake.busy())
    time.sleep(0.3)
    assert rows(intake) == expected
    assert len(intake.journal.history("inbox", limit=1000)) == history
    server.close()


def test_a_scan_removes_rows_of_files_gone_and_looks_again_at_changed_ones(intake: Intake, inbox: Path) -> None:
    for name in ("keep.txt", "gone.txt", "sub/also-gone.txt"):
        (inbox / name).parent.mkdir(exist_ok=True)
        (inbox / name).write_bytes(b"v1")
    wait_until(lambda: len(rows(intake)) == 3)
    intake.stop()  # no events from here: only the scan can tell
    (inbox / "gone.txt").unlink()
    (inbox / "sub" / "also-gone.txt").unlink()
    (inbox / "keep.txt").write_bytes(b"version 2")
    restarted = Intake(intake._config, intake.journal, on_new_work=lambda: None, observe_events=False)
    restarted.start()
    try:
        wait_until(lambda: set(rows(restarted)) == {"keep.txt"}, message=str(rows(restarted)))
        wait_until(lambda: restarted.journal.find("inbox", "keep.txt").size == 9)  # type: ignore[union-attr]
    finally:
        restarted.stop()
    events = [h.event for h in intake.journal.history("inbox", "gone.txt")]
    assert events[0] is HistoryEvent.REMOVED


def test_a_file_sent_back_waits_in_readiness_then_becomes_due(intake: Intake, inbox: Path) -> None:
    (inbox / "a.txt").write_bytes(b"v1")
    wait_until(lambda: "a.txt" in rows(intake))
    claimed = intake.journal.claim_next(time.time())
    assert claimed is not None
    intake.journal.claimed(claimed).back_to_readiness("changed since it was found ready")
    assert intake.journal.find("inbox", "a.txt").waiting_for_readiness  # type: ignore[union-attr]
    intake.back_to_readiness("inbox", "a.txt")
    wait_until(lambda: not intake.journal.find("inbox", "a.txt").waiting_for_readiness)  # type: ignore[union-attr]
    assert intake.journal.history("inbox", "a.txt")[0].event is HistoryEvent.SETTLED


def test_a_write_during_an_upload_calls_the_guard_once(intake: Intake, inbox: Path) -> None:
    (inbox / "big.bin").write_bytes(b"v1")
    wait_until(lambda: "big.bin" in rows(intake))
    written = threading.Event()
    calls: list[int] = []

    def on_write() -> None:
        calls.append(1)
        written.set()

    with intake.guard_upload("inbox", "big.bin", on_write):
        with open(inbox / "big.bin", "r") as reader:  # a reader is no writer
            reader.read()
        time.sleep(0.3)
        assert calls == []
        with open(inbox / "big.bin", "ab") as writer:
            writer.write(b"more")
        assert written.wait(10)
        with open(inbox / "big.bin", "ab") as writer:
            writer.write(b"again")
        time.sleep(0.3)
    assert calls == [1]


def test_a_link_replaced_by_a_regular_file_before_it_is_parked_is_not_parked(tmp_path: Path) -> None:
    # Readiness saw a link; by the time intake parks it, a regular file was renamed over it. Parking
    # now would put the regular file's identity on a parked row: once ready, the file would look
    # unchanged and never go up (the symlink-swap daemon test lost final contents this way).
    from syncd.pipeline.intake import _parked_entry
    from syncd.pipeline.scanner import ProblemKind, ScanProblem

    problem = ScanProblem("swap.txt", ProblemKind.SYMLINK_SKIPPED, "symbolic links are not followed")
    (tmp_path / "swap.txt").symlink_to(tmp_path / "elsewhere")
    parked = _parked_entry(tmp_path, problem)
    assert parked is not None and parked.relpath == "swap.txt"
    (tmp_path / "swap.txt").unlink()
    (tmp_path / "swap.txt").write_bytes(b"regular again")
    assert _parked_entry(tmp_path, problem) is None
    (tmp_path / "swap.txt").unlink()
    os.mkfifo(tmp_path / "swap.txt")
    assert _parked_entry(tmp_path, ScanProblem("swap.txt", ProblemKind.NOT_REGULAR_FILE, "a FIFO")) is not None
