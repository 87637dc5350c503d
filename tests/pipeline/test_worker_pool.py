import threading
import time
from collections import deque

from syncd.pipeline import worker as worker_module
from syncd.pipeline.worker import WorkerPool


class Queue:
    def __init__(self, sizes):
        self.items = deque(sizes)
        self.lock = threading.Lock()
        self.claims = []
        self.attempts = 0

    def claim(self, max_size):
        with self.lock:
            self.attempts += 1
            for size in list(self.items):
                if max_size is None or size <= max_size:
                    self.items.remove(size)
                    self.claims.append((threading.current_thread().name, size))
                    return size
        return None


def test_small_files_lane_is_not_starved_by_large_ones():
    queue = Queue([1000, 1000, 1000] + [1] * 20)
    done = []
    release_large = threading.Event()

    def process(size, stopping, progress):
        if size == 1000:
            release_large.wait(5)
        done.append(size)

    pool = WorkerPool(queue.claim, process, workers=2, small_file_max=10)
    pool.start()
    deadline = time.monotonic() + 5
    while done.count(1) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert done.count(1) == 20  # all small files went through while a large one blocked a worker
    release_large.set()
    deadline = time.monotonic() + 5
    while len(done) < 23 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(done) == [1] * 20 + [1000] * 3
    assert pool.stop(2)


def test_wake_starts_new_work_before_the_idle_poll(monkeypatch):
    # An idle poll no test outwaits: the job can only start because wake() woke the worker.
    monkeypatch.setattr(worker_module, "IDLE_POLL_SECONDS", 3600.0)
    queue = Queue([])
    done = threading.Event()
    pool = WorkerPool(queue.claim, lambda job, stopping, progress: done.set(), workers=1, small_file_max=10,
                      small_file_workers=1)
    pool.start()
    deadline = time.monotonic() + 10
    while queue.attempts < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # a third look would come only from the idle poll, which no test outwaits
    assert queue.attempts == 2  # each lane's worker found nothing and went idle
    with queue.lock:
        queue.items.append(5)
    pool.wake()
    assert done.wait(30)
    assert [size for _, size in queue.claims] == [5]
    assert pool.stop(5)


def test_stop_waits_for_in_flight_job_and_stuck_detection():
    queue = Queue([1])
    entered = threading.Event()

    def process(job, stopping, progress):
        entered.set()
        stopping.wait(5)  # a real upload stops at its next part boundary

    pool = WorkerPool(queue.claim, process, workers=1, small_file_max=10)
    pool.start()
    assert entered.wait(2)
    time.sleep(0.05)
    assert [s.name for s in pool.stuck(0.01)] == ["worker-0"]
    assert pool.stuck(60) == []
    assert pool.stop(2)
    assert not pool.alive()


def test_a_crashing_job_does_not_kill_the_worker():
    queue = Queue([1, 2])
    seen = []

    def process(job, stopping, progress):
        seen.append(job)
        if job == 1:
            raise RuntimeError("boom")

    pool = WorkerPool(queue.claim, process, workers=1, small_file_max=10)
    pool.start()
    deadline = time.monotonic() + 3
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == [1, 2]
    assert pool.alive()
    assert pool.stop(2)


def test_progress_from_any_thread_counts_for_its_job():
    """A chunked upload sends its parts from box-part_N threads: their progress is the job's."""
    queue = Queue([1, 2])
    handles = {}
    moved, finish = threading.Event(), threading.Event()

    def process(job, stopping, progress):
        handles[job] = progress
        if job == 1:
            time.sleep(0.2)  # silent: hashing, say, before the first part
            part = threading.Thread(target=lambda: (progress.advance(8 << 20), moved.set()), name="box-part_0")
            part.start()
            part.join()
            finish.wait(5)

    pool = WorkerPool(queue.claim, process, workers=1, small_file_max=10)
    pool.start()
    deadline = time.monotonic() + 5
    while 1 not in handles and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.15)
    assert [s.current for s in pool.stuck(0.1)] == ["1"]  # silent for longer than the threshold
    assert moved.wait(5)
    assert pool.stuck(0.1) == []  # the part thread's bytes count for job 1, not for "box-part_0"
    assert handles[1].bytes == 8 << 20
    finish.set()
    deadline = time.monotonic() + 5
    while 2 not in handles and time.monotonic() < deadline:
        time.sleep(0.01)
    assert handles[2] is not handles[1] and handles[2].bytes == 0  # each job its own handle
    assert pool.stop(2)
