"""What `syncd once` relies on to exit the moment the pipeline is empty: every stage counts a
file in transit (readiness until its ready callback ran, intake from the put until the
journal holds the row) and reports its moves to the pipeline's activity."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.config import load_config
from syncd.journal import Journal
from syncd.pipeline.activity import PipelineActivity
from syncd.pipeline.intake import Intake
from syncd.pipeline.readiness import ReadinessTracker, ReadyCandidate
from syncd.testing.daemon_process import write_config
from tests.support.offline_config import offline_config
from tests.support.waiting import wait_until


def test_activity_wakes_a_waiter_on_a_move_after_the_generation_it_saw() -> None:
    activity = PipelineActivity()
    seen = activity.generation
    assert activity.wait(seen, 0.01) is False  # nothing moved
    threading.Timer(0.05, activity.moved).start()
    assert activity.wait(seen, 10) is True
    assert activity.generation == seen + 1
    assert activity.wait(seen, 0) is True  # a move before the wait began is not missed


def test_readiness_counts_a_ready_file_until_its_callback_has_run(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"a")
    now = [0.0]
    busy_in_callback: list[bool] = []
    tracker: ReadinessTracker

    def on_ready(candidate: ReadyCandidate) -> None:
        busy_in_callback.append(tracker.busy())

    tracker = ReadinessTracker(on_ready, settle=0.5, close_quiet=0.1, stat_interval=0.1, clock=lambda: now[0])
    tracker.add_watch("w", tmp_path)
    tracker.touch("w", "a.txt", closed=True)
    assert tracker.busy()
    for _ in range(100):
        wait = tracker.process_due()
        if busy_in_callback or wait is None:
            break
        now[0] += max(wait, 1e-6)
    assert busy_in_callback == [True]  # off the records, not yet delivered: still counted
    assert not tracker.busy() and tracker.tracked_count() == 0


@pytest.fixture
def intake_rig(tmp_path: Path) -> Iterator[tuple[Intake, Path, PipelineActivity, list[bool]]]:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = load_config(write_config(tmp_path / "syncd.yaml", offline_config(
        tmp_path / "journal.db", [{"path": str(inbox), "folder_id": "0", "name": "inbox"}],
        readiness={"settle": "300ms", "closed_settle": "100ms"})))
    journal = Journal.open(config.journal)
    activity = PipelineActivity()
    busy_when_work_announced: list[bool] = []
    intake: Intake

    def on_new_work() -> None:
        busy_when_work_announced.append(intake.busy())

    intake = Intake(config, journal, on_new_work=on_new_work, on_activity=activity.moved, observe_events=False)
    try:
        yield intake, inbox, activity, busy_when_work_announced
    finally:
        intake.stop()
        journal.close()


def test_intake_is_busy_from_the_scan_until_the_journal_holds_the_rows(intake_rig) -> None:
    intake, inbox, activity, busy_when_work_announced = intake_rig
    for index in range(3):
        (inbox / f"f{index}.txt").write_bytes(b"x" * index)
    before = activity.generation
    intake.start()  # queues the start-up scan
    assert intake.busy()
    wait_until(lambda: not intake.busy())
    assert {row.relpath for row in intake.journal.known_files("inbox")} == {"f0.txt", "f1.txt", "f2.txt"}
    # The rows were written and announced while intake still counted them as in hand.
    assert busy_when_work_announced and all(busy_when_work_announced)
    assert activity.generation > before  # the scan, the ready files and the idle intake were reported
