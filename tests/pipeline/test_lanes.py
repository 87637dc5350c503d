"""The worker pool's two lanes (pure logic, real threads): the small-file lane has its own
concurrency, large files never hold it up, the general lane helps with small files when it
has nothing older, and the pool says when it is busy from before a claim to after its job."""

from __future__ import annotations

import threading
from collections import deque

from syncd.pipeline.worker import WorkerPool
from tests.support.waiting import wait_until

SMALL_MAX = 10
LARGE = 1000


class Jobs:
    """A claim callback over sizes, oldest first (max_size=None) or smallest first (the small lane)."""

    def __init__(self, sizes: list[int]) -> None:
        self.items: deque[int] = deque(sizes)
        self.lock = threading.Lock()
        self.claimed_by: list[tuple[str, int]] = []

    def claim(self, max_size: int | None) -> int | None:
        with self.lock:
            fitting = [s for s in self.items if max_size is None or s <= max_size]
            if not fitting:
                return None
            size = fitting[0] if max_size is None else min(fitting)
            self.items.remove(size)
            self.claimed_by.append((threading.current_thread().name, size))
            return size


def test_small_lane_runs_its_own_concurrency_while_large_files_hold_every_general_worker() -> None:
    jobs = Jobs([LARGE, LARGE] + [1] * 9)
    release_large = threading.Event()
    together = threading.Barrier(3, timeout=10)  # passes only with 3 small files in flight at once
    done: list[int] = []

    def process(size: int, stopping: threading.Event, progress: object) -> None:
        if size == LARGE:
            release_large.wait(10)
        else:
            together.wait()
        done.append(size)

    pool = WorkerPool(jobs.claim, process, workers=2, small_file_workers=3, small_file_max=SMALL_MAX)
    pool.start()
    try:
        wait_until(lambda: done.count(1) == 9)
        assert LARGE not in done  # both large files still hold the general lane
        assert {name for name, size in jobs.claimed_by if size == 1} == {"small-0", "small-1", "small-2"}
        release_large.set()
        wait_until(lambda: len(done) == 11)
    finally:
        release_large.set()
        assert pool.stop(5)


def test_general_lane_takes_small_files_when_nothing_older_waits() -> None:
    jobs = Jobs([1, 1, 1])
    together = threading.Barrier(3, timeout=10)  # one small-lane worker alone could never pass it

    def process(size: int, stopping: threading.Event, progress: object) -> None:
        together.wait()

    pool = WorkerPool(jobs.claim, process, workers=2, small_file_workers=1, small_file_max=SMALL_MAX)
    pool.start()
    try:
        wait_until(lambda: len(jobs.claimed_by) == 3)
    finally:
        assert pool.stop(5)
    assert {name for name, _ in jobs.claimed_by} == {"worker-0", "worker-1", "small-0"}


def test_a_large_file_is_never_claimed_by_the_small_lane() -> None:
    jobs = Jobs([LARGE])
    pool = WorkerPool(jobs.claim, lambda *a: None, workers=1, small_file_workers=4, small_file_max=SMALL_MAX)
    pool.start()
    try:
        wait_until(lambda: len(jobs.claimed_by) == 1)
    finally:
        assert pool.stop(5)
    assert jobs.claimed_by == [("worker-0", LARGE)]


def test_busy_from_before_the_claim_until_the_job_is_done_and_activity_is_reported() -> None:
    claiming = threading.Event()
    let_claim = threading.Event()
    finish = threading.Event()
    handed_out = []
    moves: list[bool] = []

    def claim(max_size: int | None) -> int | None:
        if handed_out:
            return None
        claiming.set()
        let_claim.wait(10)
        handed_out.append(1)
        return 1

    pool: WorkerPool[int] = WorkerPool(claim, lambda job, stopping, progress: finish.wait(10), workers=1,
                                       small_file_workers=0, small_file_max=SMALL_MAX,
                                       on_activity=lambda: moves.append(pool.busy()))
    pool.start()
    try:
        assert claiming.wait(10)
        assert pool.busy()  # the claim has not returned: the job it may hand out is counted already
        let_claim.set()
        wait_until(lambda: bool(handed_out))
        assert pool.busy()
        finish.set()
        wait_until(lambda: not pool.busy())
    finally:
        let_claim.set()
        finish.set()
        assert pool.stop(5)
    assert moves[0] is True  # reported as the claim began
    assert False in moves  # and again when the worker went idle
