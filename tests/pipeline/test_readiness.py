"""ReadinessTracker decision logic on real files, driven by an injected clock (no sleeping).

The integration with the real watchdog observer and a real tracker thread is in
test_watcher_intake.py.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from syncd.pipeline import readiness as readiness_module
from syncd.pipeline.identity import FileIdentity
from syncd.pipeline.readiness import ReadinessError, ReadinessTracker, ReadyCandidate, UnsettledFile
from syncd.pipeline.scanner import ProblemKind, RelativePathError, ScanProblem


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    tracker: ReadinessTracker
    clock: FakeClock
    root: Path
    ready: list[ReadyCandidate] = field(default_factory=list)
    ready_at: list[float] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)
    unsettled: list[UnsettledFile] = field(default_factory=list)

    def advance(self, seconds: float) -> None:
        """Move the clock forward, stopping at every deadline as the tracker thread would."""
        end = self.clock.now + seconds
        while True:
            wait = self.tracker.process_due()
            if self.clock.now >= end:
                return
            # max(): float rounding can leave a deadline a hair ahead of the clock.
            self.clock.now = end if wait is None else min(self.clock.now + max(wait, 1e-6), end)

    def elapsed_until_ready(self, start: float) -> float:
        assert self.ready_at, "nothing became ready"
        return self.ready_at[0] - start


def make_rig(root: Path, **settings: float) -> Rig:
    clock = FakeClock()
    rig: Rig

    def on_ready(candidate: ReadyCandidate) -> None:
        rig.ready.append(candidate)
        rig.ready_at.append(clock.now)

    tracker = ReadinessTracker(
        on_ready,
        on_gone=lambda watch, relpath: rig.gone.append(relpath),
        on_problem=lambda watch, problem: rig.problems.append(problem),
        on_unsettled=lambda report: rig.unsettled.append(report),
        clock=clock,
        **settings,
    )
    tracker.add_watch("inbox", root)
    rig = Rig(tracker, clock, root)
    return rig


def test_closed_file_is_ready_after_the_short_quiet_period(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    (tmp_path / "a.txt").write_bytes(b"hello")
    start = rig.clock.now
    rig.tracker.touch("inbox", "a.txt", closed=True)
    rig.advance(0.35)
    assert rig.ready == []
    rig.advance(0.1)
    st = os.stat(tmp_path / "a.txt")
    assert rig.ready == [ReadyCandidate("inbox", "a.txt", FileIdentity.from_stat(st))]
    assert rig.elapsed_until_ready(start) == pytest.approx(0.4, abs=0.001)
    assert not rig.tracker.is_tracking("inbox", "a.txt")


def test_without_a_close_event_the_full_settle_period_is_needed(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    (tmp_path / "a.txt").write_bytes(b"hello")
    start = rig.clock.now
    rig.tracker.touch("inbox", "a.txt")
    rig.advance(1.95)
    assert rig.ready == []
    rig.advance(0.1)
    assert rig.elapsed_until_ready(start) == pytest.approx(2.0, abs=0.001)


def test_a_write_after_the_close_restarts_the_full_wait(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    (tmp_path / "a.txt").write_bytes(b"v1")
    start = rig.clock.now
    rig.tracker.touch("inbox", "a.txt", closed=True)
    rig.advance(0.2)
    (tmp_path / "a.txt").write_bytes(b"v2 longer")
    rig.tracker.touch("inbox", "a.txt")  # modify event after the close
    rig.advance(1.9)
    assert rig.ready == []
    rig.advance(0.2)
    assert rig.elapsed_until_ready(start) == pytest.approx(2.2, abs=0.001)
    assert rig.ready[0].size == 9


def test_changes_without_events_are_never_ready_and_are_rechecked_with_backoff(tmp_path: Path) -> None:
    """A writer the observer cannot see (NFS, mmap): only the two-stat check notices it."""
    rig = make_rig(tmp_path, settle=2.0, recheck_max=8.0)
    path = tmp_path / "nfs.bin"
    path.write_bytes(b"")
    start = rig.clock.now
    rig.tracker.touch("inbox", "nfs.bin")
    grow_until = start + 30.0
    while rig.clock.now < grow_until:
        with path.open("ab") as f:  # 1 KiB every 0.5 s, no event reported
            f.write(b"z" * 1024)
        rig.advance(0.5)
        assert rig.ready == [], f"declared ready while still growing at t={rig.clock.now - start:.1f}"
    stopped = rig.clock.now
    rig.advance(20.0)
    assert len(rig.ready) == 1
    assert rig.ready[0].size == path.stat().st_size
    # Backed off: re-checks spaced settle, 2*settle, ... up to recheck_max, so the file is
    # seen settled within one recheck_max (+ the settle wait) after it stopped changing.
    assert rig.ready_at[0] - stopped <= 8.0 + 2.0 + 0.1


def test_mtime_from_the_past_does_not_shortcut_the_wait(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    path = tmp_path / "old.pdf"
    path.write_bytes(b"%PDF")
    os.utime(path, ns=(946684800 * 10**9, 946684800 * 10**9))  # like cp -p of a file from 2000
    rig.tracker.touch("inbox", "old.pdf")
    rig.advance(1.9)
    assert rig.ready == []
    rig.advance(0.2)
    assert rig.ready[0].mtime_ns == 946684800 * 10**9


def test_vanished_file_is_reported_gone_and_dropped(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    (tmp_path / "brief.txt").write_bytes(b"x")
    rig.tracker.touch("inbox", "brief.txt", closed=True)
    (tmp_path / "brief.txt").unlink()
    rig.advance(1.0)
    assert rig.ready == [] and rig.gone == ["brief.txt"]
    assert rig.tracker.tracked_count() == 0


def test_gone_cancels_one_file_or_a_whole_directory(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    for relpath in ("a.txt", "d/b.txt", "d/e/c.txt", "dx/keep.txt"):
        (tmp_path / relpath).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relpath).write_bytes(b"1")
        rig.tracker.touch("inbox", relpath)
    rig.tracker.gone("inbox", "a.txt")
    rig.tracker.gone("inbox", "d", is_directory=True)
    rig.tracker.gone("inbox", "never-seen.txt")
    assert rig.tracker.tracked_count() == 1
    rig.advance(2.5)
    assert [c.relpath for c in rig.ready] == ["dx/keep.txt"]


def test_symlinks_and_fifos_are_reported_and_dropped(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    (tmp_path / "target.txt").write_bytes(b"t")
    (tmp_path / "link.txt").symlink_to(tmp_path / "target.txt")
    os.mkfifo(tmp_path / "pipe")
    rig.tracker.touch("inbox", "link.txt", closed=True)
    rig.tracker.touch("inbox", "pipe", closed=True)
    rig.advance(1.0)
    assert rig.ready == []
    assert sorted((p.relpath, p.kind) for p in rig.problems) == [
        ("link.txt", ProblemKind.SYMLINK_SKIPPED),
        ("pipe", ProblemKind.NOT_REGULAR_FILE),
    ]
    assert rig.tracker.tracked_count() == 0


def test_a_file_that_never_settles_is_reported_after_the_cap_and_still_tracked(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, unsettled_after=3600.0)
    path = tmp_path / "app.log"
    path.write_bytes(b"")
    start = rig.clock.now
    for _ in range(3700):  # one append event per second for just over an hour
        with path.open("ab") as f:
            f.write(b"line\n")
        rig.tracker.touch("inbox", "app.log")
        rig.advance(1.0)
    assert rig.ready == []
    assert len(rig.unsettled) == 1
    report = rig.unsettled[0]
    assert report.relpath == "app.log" and report.tracked_seconds == pytest.approx(3600.0, abs=2.5)
    assert rig.tracker.is_tracking("inbox", "app.log")
    assert rig.clock.now - start > 3600
    rig.advance(2.5)
    assert [c.size for c in rig.ready] == [5 * 3700]


def test_many_files_become_ready_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stats: list[str] = []

    def counted_stat(root: Path, relpath: str, **kwargs: object) -> object:
        stats.append(relpath)
        return real_stat(root, relpath, **kwargs)

    real_stat = readiness_module.stat_identity
    monkeypatch.setattr(readiness_module, "stat_identity", counted_stat)
    rig = make_rig(tmp_path)
    for i in range(1000):
        (tmp_path / f"f{i}").write_bytes(b"x")
    for i in range(1000):
        rig.tracker.touch("inbox", f"f{i}")
    for _ in range(10_000):  # a busy file costs no extra heap entries or stats
        rig.tracker.touch("inbox", "f0")
    rig.advance(2.1)
    assert len(rig.ready) == 1000
    assert stats.count("f0") == stats.count("f1")  # 10,000 more events, not one more stat
    assert len(stats) == 1000 * stats.count("f1")


def test_a_failing_callback_does_not_stop_other_files(tmp_path: Path) -> None:
    seen: list[str] = []
    clock = FakeClock()

    def on_ready(candidate: ReadyCandidate) -> None:
        seen.append(candidate.relpath)
        if candidate.relpath == "bad":
            raise RuntimeError("consumer bug")

    tracker = ReadinessTracker(on_ready, clock=clock)
    tracker.add_watch("inbox", tmp_path)
    for name in ("bad", "good"):
        (tmp_path / name).write_bytes(b"x")
        tracker.touch("inbox", name, closed=True)
    clock.now += 0.1
    tracker.process_due()
    clock.now += 0.5
    tracker.process_due()
    assert sorted(seen) == ["bad", "good"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"settle": -1.0}, "settle"),
        ({"close_quiet": -0.1}, "close_quiet"),
        ({"stat_interval": 0.0}, "stat_interval"),
        ({"settle": float("nan")}, "finite"),
        ({"recheck_max": 0}, "recheck_max"),
        ({"unsettled_after": True}, "unsettled_after"),
        ({"settle": "2s"}, "settle"),
    ],
)
def test_bad_settings_are_rejected_clearly(settings: dict[str, float], message: str) -> None:
    with pytest.raises(ReadinessError, match=message):
        ReadinessTracker(lambda c: None, **settings)


def test_bad_nominations_are_rejected(tmp_path: Path) -> None:
    tracker = ReadinessTracker(lambda c: None)
    tracker.add_watch("inbox", tmp_path)
    with pytest.raises(ReadinessError, match="unknown watch 'other'"):
        tracker.touch("other", "a.txt")
    with pytest.raises(RelativePathError):
        tracker.touch("inbox", "../escape.txt")
    with pytest.raises(ReadinessError, match="root itself"):
        tracker.touch("inbox", "")


def test_tracker_thread_reports_in_real_time_and_stops(tmp_path: Path) -> None:
    done = threading.Event()
    got: list[tuple[ReadyCandidate, float]] = []
    # Settle longer than any test waits: only the close path (close_quiet) can report the file.
    tracker = ReadinessTracker(lambda c: (got.append((c, time.monotonic())), done.set()), settle=3600.0)
    tracker.add_watch("inbox", tmp_path)
    with tracker:
        assert tracker.is_alive()
        (tmp_path / "now.txt").write_bytes(b"abc")
        touched_at = time.monotonic()
        tracker.touch("inbox", "now.txt", closed=True)
        assert done.wait(30.0)
    assert not tracker.is_alive()
    candidate, reported_at = got[0]
    assert candidate.relpath == "now.txt" and candidate.size == 3
    # Not before its quiet period: the tracker's own deadline (a lower bound load cannot break).
    assert reported_at - touched_at >= tracker.close_quiet


def test_zero_settle_still_needs_two_agreeing_stats(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, settle=0.0, close_quiet=0.0)
    (tmp_path / "a.txt").write_bytes(b"a")
    start = rig.clock.now
    rig.tracker.touch("inbox", "a.txt")
    rig.advance(1.0)
    assert rig.elapsed_until_ready(start) == pytest.approx(rig.tracker.stat_interval, abs=0.001)


def test_a_close_never_makes_the_wait_longer_than_settle(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, settle=0.5, close_quiet=1.5)
    (tmp_path / "a.txt").write_bytes(b"a")
    start = rig.clock.now
    rig.tracker.touch("inbox", "a.txt", closed=True)
    rig.advance(2.0)
    assert rig.elapsed_until_ready(start) == pytest.approx(0.5, abs=0.001)


def test_reconfigure_validates_and_applies_to_waiting_files(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    (tmp_path / "a.txt").write_bytes(b"a")
    start = rig.clock.now
    rig.tracker.touch("inbox", "a.txt")
    with pytest.raises(ReadinessError, match="close_quiet"):
        rig.tracker.reconfigure(settle=0.3, close_quiet=-0.4)
    assert (rig.tracker.settle, rig.tracker.close_quiet) == (2.0, 0.4)  # nothing changed
    rig.tracker.reconfigure(settle=1.0)
    rig.advance(1.5)
    assert rig.elapsed_until_ready(start) == pytest.approx(1.0, abs=0.001)


def test_tracker_thread_under_concurrent_nominations_reports_every_file_once(tmp_path: Path) -> None:
    """Four producer threads touch, re-touch and cancel files while the tracker thread works."""
    got: list[str] = []
    lock = threading.Lock()

    def on_ready(candidate: ReadyCandidate) -> None:
        with lock:
            got.append(candidate.relpath)

    tracker = ReadinessTracker(on_ready, settle=0.1, close_quiet=0.03, stat_interval=0.02)
    tracker.add_watch("inbox", tmp_path)
    expected = set()
    for worker in range(4):
        for i in range(150):
            (tmp_path / f"w{worker}-{i}").write_bytes(b"x" * i)
            if i % 10 != 9:
                expected.add(f"w{worker}-{i}")

    def produce(worker: int) -> None:
        for i in range(150):
            name = f"w{worker}-{i}"
            tracker.touch("inbox", name)
            if i % 10 == 9:
                tracker.gone("inbox", name)
            else:
                tracker.touch("inbox", name, closed=True)
            if i % 25 == 0:
                time.sleep(0.01)  # let the tracker thread fall idle and be woken again

    with tracker:
        producers = [threading.Thread(target=produce, args=(w,)) for w in range(4)]
        for thread in producers:
            thread.start()
        for thread in producers:
            thread.join()
        deadline = time.monotonic() + 5.0
        while tracker.tracked_count() and time.monotonic() < deadline:
            time.sleep(0.02)
    assert sorted(got) == sorted(expected)  # each exactly once, none of the cancelled ones


class _SlowToSleep(ReadinessTracker):
    """Widens the gap between computing the next wait and starting to wait to 0.3 s."""

    def process_due(self) -> float | None:
        wait = super().process_due()
        time.sleep(0.3)
        return wait


def test_a_nomination_arriving_while_the_thread_is_about_to_sleep_is_not_lost(tmp_path: Path) -> None:
    done = threading.Event()
    tracker = _SlowToSleep(lambda c: done.set(), settle=0.2, close_quiet=0.05, stat_interval=0.02)
    tracker.add_watch("inbox", tmp_path)
    (tmp_path / "late.txt").write_bytes(b"x")
    with tracker:
        time.sleep(0.1)  # the idle thread has computed "nothing to wait for" and is in the gap
        tracker.touch("inbox", "late.txt", closed=True)
        assert done.wait(3.0), "the wake-up was lost: the tracker sleeps with a file due"


def test_a_file_requeued_by_a_worker_waits_longer_each_time(tmp_path: Path) -> None:
    """Issue 10 item 4: a file found changed after it was ready goes back through readiness, never
    straight to a worker, and each return costs a longer wait (settle, 2 x settle, ... recheck_max)."""
    rig = make_rig(tmp_path, settle=1.0, recheck_max=4.0)
    (tmp_path / "burst.log").write_bytes(b"first burst")
    holds = []
    for round_ in range(4):
        start = rig.clock.now
        holds.append(rig.tracker.requeue("inbox", "burst.log"))
        rig.advance(holds[-1] - 0.05)
        assert len(rig.ready) == round_, f"ready before its hold in round {round_ + 1}"
        rig.advance(0.1)
        assert len(rig.ready) == round_ + 1
        assert rig.ready_at[-1] - start == pytest.approx(holds[-1], abs=0.001)
    assert holds == [1.0, 2.0, 4.0, 4.0]
    # Quiet for long enough, the backoff starts afresh.
    rig.advance(17.0)
    assert rig.tracker.requeue("inbox", "burst.log") == 1.0


def test_a_requeued_file_that_keeps_changing_is_reported_from_its_first_requeue(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, settle=1.0, recheck_max=2.0, unsettled_after=10.0)
    path = tmp_path / "busy.dat"
    path.write_bytes(b"x")
    first = rig.clock.now
    rig.tracker.requeue("inbox", "busy.dat")
    rig.advance(1.5)
    assert len(rig.ready) == 1  # found ready, claimed, changed again: requeued
    while rig.clock.now - first < 11.0:
        with path.open("ab") as f:
            f.write(b"x")
        rig.tracker.requeue("inbox", "busy.dat")
        rig.advance(0.5)
    assert len(rig.unsettled) == 1
    assert rig.unsettled[0].tracked_seconds >= 10.0
