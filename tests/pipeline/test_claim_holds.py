"""ClaimHolds: the local view of this host's claims that the lease keeper renews and enforces (pure logic)."""

from __future__ import annotations

import threading

from syncd.journal import FileRecord, FileState
from syncd.pipeline.claim_holds import AnyEvent, ClaimHolds
from syncd.pipeline.progress import JobProgress


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(file_id: int = 1, claim_seq: int = 3) -> FileRecord:
    return FileRecord(id=file_id, watch="w", relpath="a.bin", size=1, mtime_ns=1, inode=1, sha1=None,
                      state=FileState.UPLOADING, box_file_id=None, box_version_id=None, box_etag=None, attempts=1,
                      next_attempt_at=0.0, last_error=None, last_error_code=None, detected_at=0.0, ready_at=0.0,
                      updated_at=0.0, uploaded_at=None, claim_seq=claim_seq)


def test_a_hold_lasts_while_its_job_runs_and_its_deadline_runs_from_the_claim() -> None:
    clock = FakeClock()
    holds = ClaimHolds(lease=8.0, clock=clock)
    progress = JobProgress("a", clock=clock)
    with holds.hold(record(), progress, claimed_at=99.0) as held:
        assert held.key == (1, 3)
        assert held.valid_until == 107.0  # from before the claim was sent, never later
        assert held.in_hand(clock.now) == 7.0
        assert [h.key for h in holds.snapshot()] == [(1, 3)]
        assert len(holds) == 1
    assert holds.snapshot() == [] and len(holds) == 0


def test_progress_is_seen_only_after_the_moment_asked_about() -> None:
    clock = FakeClock()
    holds = ClaimHolds(lease=8.0, clock=clock)
    progress = JobProgress("a", clock=clock)
    with holds.hold(record(), progress, claimed_at=clock.now) as held:
        clock.now = 102.0
        assert not held.progressed_since(101.0, clock.now)  # silent since 100
        progress.advance(10)
        assert held.progressed_since(101.0, clock.now)


def test_a_lost_hold_sets_its_event_once_keeps_the_first_reason_and_stops_counting() -> None:
    holds = ClaimHolds(lease=8.0)
    with holds.hold(record(), JobProgress("a"), claimed_at=0.0) as held:
        assert ClaimHolds.lose(held, "taken over")
        assert not ClaimHolds.lose(held, "again")
        assert held.lost.is_set() and held.lost_reason == "taken over"
        assert len(holds) == 0 and len(holds.snapshot()) == 1  # still listed until its job ends


def test_any_event_is_set_by_itself_or_by_any_other() -> None:
    stopping, lost = threading.Event(), threading.Event()
    either = AnyEvent(stopping, None, lost)
    assert not either.is_set()
    lost.set()
    assert either.is_set()
    lost.clear()
    either.set()
    assert either.is_set()
