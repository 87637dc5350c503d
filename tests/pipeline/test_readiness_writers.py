"""Readiness with writer detection: real files, real child processes holding them, an injected clock.

A file is ready only when quiet AND no writer is seen: a lease where the
kernel grants one, the open/close count where it does not, quiet time alone
where nothing can tell. Also the ctime rule for files found by a scan.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from syncd.pipeline.identity import FileIdentity
from syncd.pipeline.readiness import ReadinessTracker, ReadyCandidate, UnsettledFile, ready_by_ctime
from syncd.pipeline.scanner import ProblemKind, ScanProblem
from syncd.pipeline.writers import (
    QUIET_TIME_ONLY,
    OpenCounter,
    WriterDetector,
    WriterEvidence,
    WriterObservation,
    WriterState,
)
from tests.support.holders import FileHolder


@dataclass
class Rig:
    tracker: ReadinessTracker
    root: Path
    now: float = 1000.0
    wall_ns: int = field(default_factory=time.time_ns)
    ready: list[ReadyCandidate] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)
    unsettled: list[UnsettledFile] = field(default_factory=list)

    def advance(self, seconds: float) -> None:
        """Move the clocks forward, stopping at every deadline as the tracker thread would."""
        end = self.now + seconds
        while True:
            wait = self.tracker.process_due()
            if self.now >= end:
                return
            step = end - self.now if wait is None else min(max(wait, 1e-6), end - self.now)
            self.now += step
            self.wall_ns += int(step * 1e9)


def make_rig(root: Path, writers: WriterDetector | None, **settings: object) -> Rig:
    rig: Rig

    tracker = ReadinessTracker(
        lambda candidate: rig.ready.append(candidate),
        on_problem=lambda watch, problem: rig.problems.append(problem),
        on_unsettled=lambda report: rig.unsettled.append(report),
        clock=lambda: rig.now,
        wall_clock_ns=lambda: rig.wall_ns,
        **settings,  # type: ignore[arg-type]
    )
    tracker.add_watch("inbox", root, writers=writers)
    rig = Rig(tracker, root)
    return rig


def test_a_file_held_open_by_a_writer_waits_however_long_it_is_quiet(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    path.write_bytes(b"first half")
    rig = make_rig(tmp_path, WriterDetector(), settle=2.0, recheck_max=8.0, unsettled_after=30.0)
    with FileHolder(path, "a") as writer:  # a paused writer: open for writing, writing nothing
        rig.tracker.touch("inbox", "scan.pdf")
        rig.advance(60.0)
        assert rig.ready == [] and rig.tracker.is_tracking("inbox", "scan.pdf")
        assert rig.unsettled and "held open by a writer" in rig.unsettled[0].reason
        assert "read lease refused" in rig.unsettled[0].reason
        writer.release()
    rig.tracker.touch("inbox", "scan.pdf", closed=True)  # its IN_CLOSE_WRITE
    rig.advance(1.0)
    (candidate,) = rig.ready
    assert candidate.identity == FileIdentity.from_stat(os.stat(path))
    assert (candidate.writer.state, candidate.writer.evidence) == (WriterState.NO_WRITER, WriterEvidence.LEASE)


def test_a_reader_holding_the_file_does_not_keep_it_waiting(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    path.write_bytes(b"lines\n")
    rig = make_rig(tmp_path, WriterDetector(open_counter=OpenCounter()))
    with FileHolder(path, "r"):  # tail -f
        rig.tracker.touch("inbox", "log.txt", closed=True)
        rig.advance(1.0)
        (candidate,) = rig.ready
        assert candidate.writer.state is WriterState.NO_WRITER


def test_without_a_lease_the_open_count_decides(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"data")
    counter = OpenCounter()
    rig = make_rig(tmp_path, WriterDetector(leases=False, open_counter=counter), settle=2.0, recheck_max=4.0)
    counter.opened("a.bin")  # the watcher saw a process open it
    rig.tracker.touch("inbox", "a.bin")
    rig.advance(30.0)
    assert rig.ready == []
    counter.closed("a.bin", wrote=True)
    rig.tracker.touch("inbox", "a.bin", closed=True)
    rig.advance(1.0)
    (candidate,) = rig.ready
    assert (candidate.writer.state, candidate.writer.evidence) == (WriterState.NONE_SEEN, WriterEvidence.OPEN_EVENTS)
    assert counter.tracked_paths() == 0  # readiness's own open and close were discounted


def test_without_a_detector_quiet_time_alone_decides(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"data")
    rig = make_rig(tmp_path, None)
    with FileHolder(path, "a"):
        rig.tracker.touch("inbox", "a.bin")
        rig.advance(2.1)
        (candidate,) = rig.ready  # the documented limit of polling watches: a paused writer is not seen
    assert candidate.writer == QUIET_TIME_ONLY


@pytest.mark.parametrize("swap", ["symlink", "fifo"])
def test_an_entry_swapped_before_the_second_look_is_refused(tmp_path: Path, swap: str) -> None:
    (tmp_path / "outside-secret").write_bytes(b"secret")
    root = tmp_path / "root"
    root.mkdir()
    path = root / "a.txt"
    path.write_bytes(b"ordinary")
    rig = make_rig(root, WriterDetector())
    rig.tracker.touch("inbox", "a.txt")
    rig.advance(0.5)  # first stat taken: a regular file
    path.unlink()
    if swap == "symlink":
        os.symlink(tmp_path / "outside-secret", path)
    else:
        os.mkfifo(path)
    rig.advance(2.0)
    assert rig.ready == []
    (problem,) = rig.problems
    expected = ProblemKind.SYMLINK_SKIPPED if swap == "symlink" else ProblemKind.NOT_REGULAR_FILE
    assert problem.kind is expected and not rig.tracker.is_tracking("inbox", "a.txt")


# --------------------------------------------------------------- ctime rule


def test_a_scan_found_file_with_an_old_ctime_and_no_writer_is_ready_at_once(tmp_path: Path) -> None:
    (tmp_path / "old.pdf").write_bytes(b"dropped while syncd was down")
    rig = make_rig(tmp_path, WriterDetector(), settle=2.0, ready_by_ctime=True)
    rig.wall_ns += 5 * 10**9  # the file's ctime is now 5 s in the past
    rig.tracker.touch("inbox", "old.pdf", found_by_scan=True)
    rig.advance(0.0)
    (candidate,) = rig.ready
    assert candidate.writer.authoritative and candidate.writer.state is WriterState.NO_WRITER


def test_a_fresh_ctime_settles_as_usual_even_with_an_old_mtime(tmp_path: Path) -> None:
    source = tmp_path / "src.pdf"
    source.write_bytes(b"copied with cp -p")
    os.utime(source, (0, 0))
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy2(source, root / "copy.pdf")  # mtime from 1970, ctime now: cp -p cannot set ctime back
    rig = make_rig(root, WriterDetector(), settle=2.0, ready_by_ctime=True)
    rig.tracker.touch("inbox", "copy.pdf", found_by_scan=True)
    rig.advance(1.9)
    assert rig.ready == []
    rig.advance(0.2)
    assert len(rig.ready) == 1


def test_a_scan_found_file_held_by_a_writer_is_not_ready_by_its_ctime(tmp_path: Path) -> None:
    path = tmp_path / "old.pdf"
    path.write_bytes(b"old but open")
    rig = make_rig(tmp_path, WriterDetector(), settle=2.0, recheck_max=4.0, ready_by_ctime=True)
    rig.wall_ns += 60 * 10**9
    with FileHolder(path, "a"):
        rig.tracker.touch("inbox", "old.pdf", found_by_scan=True)
        rig.advance(20.0)
        assert rig.ready == []


@pytest.mark.parametrize("variant", ["rule_off", "event_after_scan", "no_lease"])
def test_the_ctime_shortcut_needs_the_rule_a_scan_nomination_and_a_lease(tmp_path: Path, variant: str) -> None:
    (tmp_path / "old.pdf").write_bytes(b"old")
    detector = WriterDetector(leases=variant != "no_lease", open_counter=OpenCounter())
    rig = make_rig(tmp_path, detector, settle=2.0, ready_by_ctime=variant != "rule_off")
    rig.wall_ns += 60 * 10**9
    rig.tracker.touch("inbox", "old.pdf", found_by_scan=True)
    if variant == "event_after_scan":
        rig.tracker.touch("inbox", "old.pdf")  # a write event: it settles
    rig.advance(1.9)
    assert rig.ready == []
    rig.advance(0.2)
    assert len(rig.ready) == 1


def test_ready_by_ctime_rule() -> None:
    identity = FileIdentity(1, 2, 3, mtime_ns=0, ctime_ns=10 * 10**9)
    lease = WriterObservation(WriterState.NO_WRITER, WriterEvidence.LEASE, "lease granted")
    counted = WriterObservation(WriterState.NONE_SEEN, WriterEvidence.OPEN_EVENTS, "no opener seen")
    assert ready_by_ctime(identity, lease, now_ns=12 * 10**9, settle=2.0)
    assert not ready_by_ctime(identity, lease, now_ns=11 * 10**9, settle=2.0)  # ctime only 1 s old
    assert not ready_by_ctime(identity, lease, now_ns=5 * 10**9, settle=2.0)  # ctime in the future
    assert not ready_by_ctime(identity, counted, now_ns=60 * 10**9, settle=2.0)  # events are not proof
    assert not ready_by_ctime(identity, QUIET_TIME_ONLY, now_ns=60 * 10**9, settle=2.0)
