"""The intake chain with real files, the real watchdog observer and a real tracker thread.

Each test wires WatchObserver -> ReadinessTracker (+ Scanner for directory and
rescan nominations) the way the daemon does, drops files the way users and
tools do, and checks which ready candidates come out, and when.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from syncd.pipeline.readiness import ReadinessTracker, ReadyCandidate
from syncd.pipeline.scanner import Scanner
from syncd.pipeline.watcher import Nomination, NominationKind, WatchObserver


@dataclass(frozen=True)
class Ready:
    candidate: ReadyCandidate
    at: float  # time.monotonic() when reported


class Intake:
    """WatchObserver -> ReadinessTracker, with the Scanner serving directory and rescan nominations."""

    def __init__(self, root: Path, *, polling: bool = False, **tracker_settings: float) -> None:
        self.root = root
        self.nominations: list[Nomination] = []
        self.ready: queue.Queue[Ready] = queue.Queue()
        self.gone = threading.Event()
        self.tracker = ReadinessTracker(lambda c: self.ready.put(Ready(c, time.monotonic())), **tracker_settings)
        self.tracker.add_watch("inbox", root)
        self.scanner = Scanner(root)
        self.observer = WatchObserver("inbox", root, self._nominate, polling=polling,
                                      poll_interval=0.2, check_interval=0.2)

    def _nominate(self, nomination: Nomination) -> None:
        self.nominations.append(nomination)
        if nomination.kind is NominationKind.TOUCH:
            self.tracker.touch(nomination.watch, nomination.relpath, closed=nomination.closed)
        elif nomination.kind is NominationKind.GONE:
            self.tracker.gone(nomination.watch, nomination.relpath, is_directory=nomination.is_directory)
            self.gone.set()
        else:
            subdir = nomination.relpath if nomination.kind is NominationKind.SCAN_DIRECTORY else ""
            for entry in self.scanner.scan(subdir):
                self.tracker.touch(nomination.watch, entry.relpath)

    def next_ready(self, timeout: float) -> Ready:
        return self.ready.get(timeout=timeout)

    def ready_within(self, seconds: float, *, stop_at: int | None = None) -> list[Ready]:
        """What becomes ready in the next ``seconds`` (returns early once ``stop_at`` arrived)."""
        end = time.monotonic() + seconds
        out: list[Ready] = []
        while (left := end - time.monotonic()) > 0 and (stop_at is None or len(out) < stop_at):
            try:
                out.append(self.ready.get(timeout=left))
            except queue.Empty:
                break
        return out


@pytest.fixture
def intake(tmp_path: Path) -> Iterator[Intake]:
    root = tmp_path / "inbox"
    root.mkdir()
    rig = Intake(root, settle=1.0)
    with rig.tracker, rig.observer:
        yield rig


# Settle long enough that no test could outwait it: a file that comes out at all came out
# through the close (or rename) path, whatever the load on the machine.
NEVER_SETTLES = 3600.0


def test_small_file_closed_in_one_go_is_ready_on_close_without_waiting_to_settle(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    root.mkdir()
    rig = Intake(root, settle=NEVER_SETTLES)  # default close_quiet
    with rig.tracker, rig.observer:
        with open(root / "invoice.pdf", "wb") as f:
            f.write(b"%PDF-1.7 small")
        got = rig.next_ready(timeout=30)
    assert got.candidate.relpath == "invoice.pdf" and got.candidate.size == 14
    assert any(n.closed for n in rig.nominations if n.relpath == "invoice.pdf")


def test_write_then_rename_is_picked_up_under_the_final_name_only_without_waiting_to_settle(
        tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    root.mkdir()
    rig = Intake(root, settle=NEVER_SETTLES)  # only the rename's short quiet period can make it ready
    with rig.tracker, rig.observer:
        tmp_name = root / "scan-001.pdf.tmp"
        with open(tmp_name, "wb") as f:
            for _ in range(5):
                f.write(os.urandom(4096))
                f.flush()
                time.sleep(0.02)
        os.rename(tmp_name, root / "scan-001.pdf")
        got = rig.next_ready(timeout=30)
        assert got.candidate.relpath == "scan-001.pdf"
        assert got.candidate.size == 5 * 4096
        assert rig.ready_within(1.2) == []
    assert not any(n.relpath.endswith(".tmp") for n in rig.nominations)


def test_directory_moved_in_is_scanned(intake: Intake, tmp_path: Path) -> None:
    staging = tmp_path / "staging" / "batch"
    expected = set()
    for d in ("", "a", "a/b", "c"):
        (staging / d).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            (staging / d / f"doc{i}.txt").write_bytes(b"d" * (i + 1))
            expected.add(f"batch/{d}/doc{i}.txt".replace("//", "/"))
    (staging / "ignored.tmp").write_bytes(b"temp")
    os.rename(staging, intake.root / "batch")  # same file system: one IN_MOVED_TO for the directory
    got = [r.candidate.relpath for r in intake.ready_within(5.0, stop_at=len(expected))]
    assert sorted(got) == sorted(expected)
    assert Nomination(NominationKind.SCAN_DIRECTORY, "inbox", "batch") in intake.nominations


def test_slow_writer_is_never_ready_before_it_finishes(intake: Intake) -> None:
    chunk = b"s" * 65536
    with open(intake.root / "video.mp4", "wb") as f:
        for _ in range(30):  # 64 KiB every 100 ms for ~3 s, file kept open
            f.write(chunk)
            f.flush()
            time.sleep(0.1)
            assert intake.ready.empty(), "declared ready while still being written"
    finished_at = time.monotonic()
    got = intake.next_ready(timeout=5)
    assert got.candidate.relpath == "video.mp4"
    assert got.candidate.size == 30 * 65536
    assert got.at >= finished_at
    assert intake.ready_within(1.2) == []  # exactly once


def test_cp_preserving_an_old_mtime_is_detected(intake: Intake, tmp_path: Path) -> None:
    source = tmp_path / "old-report.xlsx"
    source.write_bytes(b"PK" + b"x" * 10_000)
    old_ns = 1_262_304_000 * 10**9  # 2010-01-01
    os.utime(source, ns=(old_ns, old_ns))
    subprocess.run(["cp", "-p", str(source), str(intake.root / "report.xlsx")], check=True, timeout=10)
    got = intake.next_ready(timeout=5)
    assert got.candidate.relpath == "report.xlsx"
    assert got.candidate.mtime_ns == old_ns
    assert got.candidate.size == 10_002


def test_deleted_file_is_nominated_gone_and_never_becomes_ready(intake: Intake) -> None:
    path = intake.root / "oops.txt"
    path.write_bytes(b"wrong file")
    path.unlink()
    assert intake.gone.wait(3)
    assert Nomination(NominationKind.GONE, "inbox", "oops.txt") in intake.nominations
    assert intake.ready_within(1.2) == []  # settle is 1 s in these tests
    assert not intake.tracker.is_tracking("inbox", "oops.txt")


def test_file_moved_out_is_gone_and_reading_a_file_nominates_nothing(intake: Intake, tmp_path: Path) -> None:
    (intake.root / "keep.txt").write_bytes(b"keep")
    assert intake.next_ready(timeout=5).candidate.relpath == "keep.txt"
    count = len(intake.nominations)
    (intake.root / "keep.txt").read_bytes()  # the uploader reading it: open + close-nowrite only
    time.sleep(0.3)
    assert intake.nominations[count:] == []
    os.rename(intake.root / "keep.txt", tmp_path / "archived.txt")
    assert intake.gone.wait(3)
    assert intake.nominations[-1] == Nomination(NominationKind.GONE, "inbox", "keep.txt")


def test_polling_observer_nominates_new_and_renamed_files(tmp_path: Path) -> None:
    root = tmp_path / "nfs-inbox"
    root.mkdir()
    rig = Intake(root, polling=True, settle=1.0)
    with rig.tracker, rig.observer:
        assert rig.observer.health().mode == "polling"
        (root / "a.csv").write_bytes(b"1,2,3")
        (root / "b.csv.part").write_bytes(b"4,5")
        time.sleep(0.3)
        os.rename(root / "b.csv.part", root / "b.csv")
        got = {r.candidate.relpath: r.candidate.size for r in rig.ready_within(5.0, stop_at=2)}
    assert got == {"a.csv": 5, "b.csv": 3}
