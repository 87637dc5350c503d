"""Writers seen through the real inotify observer: open/close counting and the paused writer.

WatchObserver feeds an OpenCounter from watchdog's emitter thread; the
ReadinessTracker asks a WriterDetector (a lease, else that count). Real
files, real child processes, real inotify.
"""

from __future__ import annotations

import hashlib
import queue
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.pipeline.filters import PathFilter
from syncd.pipeline.readiness import ReadinessTracker, ReadyCandidate
from syncd.pipeline.source import OpenedSource, open_source
from syncd.pipeline.watcher import Nomination, NominationKind, WatchObserver
from syncd.pipeline.writers import OpenCounter, WriterDetector, WriterEvidence, WriterState
from tests.support.holders import FileHolder
from tests.support.waiting import wait_until

SETTLE = 0.3


class Rig:
    """WatchObserver (with an OpenCounter) -> ReadinessTracker (with a WriterDetector)."""

    def __init__(self, root: Path, *, leases: bool = True) -> None:
        self.root = root
        self.counter = OpenCounter()
        self.nominations: queue.Queue[Nomination] = queue.Queue()
        self.ready: queue.Queue[ReadyCandidate] = queue.Queue()
        self.tracker = ReadinessTracker(self.ready.put, settle=SETTLE, close_quiet=0.1, stat_interval=0.05,
                                        recheck_max=SETTLE)
        self.tracker.add_watch("inbox", root, writers=WriterDetector(leases=leases, open_counter=self.counter))
        self.observer = WatchObserver("inbox", root, self._nominate, path_filter=PathFilter(),
                                      check_interval=0.2, open_counter=self.counter)
        self._marks = 0

    def _nominate(self, nomination: Nomination) -> None:
        self.nominations.put(nomination)
        if nomination.kind is NominationKind.TOUCH:
            self.tracker.touch(nomination.watch, nomination.relpath, closed=nomination.closed)

    def events_caught_up(self) -> None:
        """Return once every event made before this call has reached the counter.

        The counter is fed in the emitter thread in kernel order before the event is queued
        for nomination, so once a fresh marker file's nomination arrives, all earlier events
        were counted.
        """
        self._marks += 1
        marker = f"marker-{self._marks}.txt"
        (self.root / marker).write_bytes(b"m")
        wait_until(lambda: any(n.relpath == marker for n in drain(self.nominations)),
                   message="the marker's nomination")

    def ready_within(self, seconds: float, *, stop_at: int | None = None) -> list[ReadyCandidate]:
        """What becomes ready in the next ``seconds`` (markers left out; early once ``stop_at`` arrived)."""
        end = time.monotonic() + seconds
        out: list[ReadyCandidate] = []
        while (left := end - time.monotonic()) > 0 and (stop_at is None or len(out) < stop_at):
            try:
                candidate = self.ready.get(timeout=left)
            except queue.Empty:
                break
            if not candidate.relpath.startswith("marker-"):
                out.append(candidate)
        return out


def drain(items: queue.Queue[Nomination]) -> list[Nomination]:
    out = []
    while True:
        try:
            out.append(items.get_nowait())
        except queue.Empty:
            return out


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    root = tmp_path / "inbox"
    root.mkdir()
    rig = Rig(root)
    with rig.tracker, rig.observer:
        yield rig


def test_opens_by_other_processes_are_counted_until_closed(rig: Rig) -> None:
    path = rig.root / "a.bin.tmp"  # excluded: counted, never nominated, so only these two open it
    path.write_bytes(b"x")
    with FileHolder(path, "a") as first:
        wait_until(lambda: rig.counter.others_open("a.bin.tmp") == 1, message="the first open")
        # The second IN_OPEN equals the first with nothing between: watchdog's event queue drops
        # such a repeat, which is why the counter is fed before that queue.
        with FileHolder(path, "r") as second:
            wait_until(lambda: rig.counter.others_open("a.bin.tmp") == 2, message="the second open")
            first.release()
            wait_until(lambda: rig.counter.others_open("a.bin.tmp") == 1, message="the first close")
            second.release()
    rig.events_caught_up()
    assert rig.counter.others_open("a.bin.tmp") == 0


def test_syncds_own_opens_are_not_counted(rig: Rig) -> None:
    # An excluded name: counted, but not nominated, so readiness does not open it at the same
    # time (two of syncd's opens at once could be merged by inotify like any two; see OpenCounter).
    path = rig.root / "b.bin.tmp"
    path.write_bytes(b"x")
    with FileHolder(path, "a"):
        rig.events_caught_up()  # the holder's IN_OPEN read before ours is made (merging, as below)
        sources = []
        for _ in range(3):
            # One at a time: inotify merges identical events still unread, so opens in one burst
            # would reach the counter as one (see OpenCounter).
            sources.append(open_source(rig.root, "b.bin.tmp", own_opens=rig.counter))
            rig.events_caught_up()
            assert rig.counter.others_open("b.bin.tmp") == 1
        assert all(isinstance(s, OpenedSource) for s in sources)
        for source in sources:
            source.close()  # type: ignore[union-attr]
            rig.events_caught_up()
            assert rig.counter.others_open("b.bin.tmp") == 1
    rig.events_caught_up()
    assert rig.counter.others_open("b.bin.tmp") == 0


def test_an_editors_temporary_file_renamed_into_place_keeps_its_writer(rig: Rig) -> None:
    swap = rig.root / ".notes.txt.swp"  # excluded by the default filter, counted all the same
    swap.write_bytes(b"draft")
    with FileHolder(swap, "a"):
        swap.rename(rig.root / "notes.txt")
        rig.events_caught_up()
        assert rig.counter.others_open("notes.txt") == 1 and rig.counter.others_open(".notes.txt.swp") == 0
    rig.events_caught_up()
    assert rig.counter.others_open("notes.txt") == 0


@pytest.mark.parametrize("leases", [True, False], ids=["lease", "open-count"])
def test_a_writer_pausing_with_the_file_open_is_waited_for(tmp_path: Path, leases: bool) -> None:
    """Half a file, a pause of 3 x settle with the file open, the rest, close: one candidate, complete."""
    root = tmp_path / "inbox"
    root.mkdir()
    rig = Rig(root, leases=leases)
    half, rest = "A" * 5000, "B" * 5000
    path = root / "scan.pdf"
    # Made before the watch starts, so the writer's first write nominates it while it holds it open:
    # an empty file made under the watch could settle before a loaded machine lets the child open
    # it (a candidate of 0 bytes, rightly).
    path.touch()
    with rig.tracker, rig.observer:
        with FileHolder(path, "a", start_open=False, write=half) as writer:
            writer.open_now()
            writer.wait_opened()
            assert rig.ready_within(3 * SETTLE) == []  # quiet for three settle periods, still open
            writer.release(write_first=rest)
        (candidate,) = rig.ready_within(10.0, stop_at=1)
        assert rig.ready_within(2 * SETTLE) == []  # exactly once
    assert candidate.relpath == "scan.pdf" and candidate.size == len(half) + len(rest)
    expected = WriterEvidence.LEASE if leases else WriterEvidence.OPEN_EVENTS
    assert candidate.writer.evidence is expected and not candidate.writer.writer_seen
    with open_source(root, "scan.pdf", expect=candidate.identity) as source:
        assert source.sha1() == hashlib.sha1((half + rest).encode()).hexdigest()


def test_a_polled_watch_suspends_the_count(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    root.mkdir()
    counter = OpenCounter()
    observer = WatchObserver("inbox", root, lambda n: None, polling=True, poll_interval=0.2, open_counter=counter)
    with observer:
        observation = counter.observation("anything")
        assert observation.state is WriterState.UNKNOWN and "polled" in observation.detail
