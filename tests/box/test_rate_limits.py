"""The sliding-window rate limiter: pure logic on a fake clock (nothing sleeps), and
against the emulator's own window (``--upload-rate-limit``).

The property every test comes back to: whatever the latency of each request, no
window of Box's (which counts a request when it arrives, somewhere between its
send and its answer) ever holds more than the limit.
"""

from __future__ import annotations

import heapq
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from syncd.box import MemoryWindows, RateLimiter, RateLimits, Uploader
from syncd.box.heartbeat import Heartbeat, beating

from .conftest import count, make_client


class FakeClock:
    """Monotonic time that moves only when someone sleeps; sleeping first settles due requests."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []
        self.due: list[tuple[float, int, object]] = []  # (end time, seq, callback) of requests in flight
        self._seq = 0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance_to(self.now + seconds)

    def advance_to(self, when: float) -> None:
        # Requests whose answer arrives while we sleep are settled at that moment.
        while self.due and self.due[0][0] <= when:
            end, _, settle = heapq.heappop(self.due)
            self.now = max(self.now, end)
            settle()  # type: ignore[operator]
        self.now = max(self.now, when)

    def answer_at(self, when: float, settle) -> None:
        self._seq += 1
        heapq.heappush(self.due, (when, self._seq, settle))


def limiter(clock: FakeClock, **limits) -> RateLimiter:
    return RateLimiter(RateLimits(**limits), clock=clock, sleep=clock.sleep)


def test_a_burst_spends_the_whole_window_at_once_then_waits_for_the_window_to_free() -> None:
    clock = FakeClock()
    rl = limiter(clock, api_calls_per_minute=None, uploads_per_minute=240)
    permits = [rl.acquire("alice", upload=True) for _ in range(240)]
    assert clock.now == 0.0 and all(p.waited == 0 for p in permits)  # no pacing within the budget
    for p in permits[:10]:
        rl.release(p)  # answered at t=0: they leave the window at t=60
    clock.now = 5.0
    for p in permits[10:]:
        rl.release(p)  # answered at t=5
    nxt = rl.acquire("alice", upload=True)
    assert clock.now == pytest.approx(60.0)  # the first slot to free: answered at 0, window 60 s
    assert [rl.acquire("alice", upload=True).waited for _ in range(9)] == [0.0] * 9
    rl.release(nxt)
    rl.acquire("alice", upload=True)
    assert clock.now == pytest.approx(65.0)  # the next ones were answered at t=5


def test_slots_are_held_until_the_answer_came_back() -> None:
    """A slow request keeps its slot while in flight: a window never forgets what Box may count later."""
    clock = FakeClock()
    rl = limiter(clock, api_calls_per_minute=None, uploads_per_minute=2)
    slow = rl.acquire("u", upload=True)
    fast = rl.acquire("u", upload=True)
    rl.release(fast)  # answered at t=0
    clock.answer_at(100.0, lambda: rl.release(slow))  # answered at t=100
    rl.acquire("u", upload=True)
    assert clock.now == pytest.approx(60.0)  # `fast` left the window; `slow` is still in flight
    rl.acquire("u", upload=True)
    assert clock.now == pytest.approx(160.0)  # `slow` leaves one window after its answer


def test_windows_are_per_user_and_uploads_count_in_both() -> None:
    clock = FakeClock()
    rl = limiter(clock, api_calls_per_minute=3, uploads_per_minute=2)
    for permit in [rl.acquire("alice", upload=True), rl.acquire("alice", upload=True), rl.acquire("alice")]:
        rl.release(permit)
    assert clock.now == 0.0
    rl.release(rl.acquire("bob", upload=True))  # bob's windows are his own
    assert clock.now == 0.0
    rl.acquire("alice")  # alice's api window holds 3 (two uploads and a call)
    assert clock.now == pytest.approx(60.0)
    unlimited = limiter(clock, api_calls_per_minute=None, uploads_per_minute=None)
    assert all(unlimited.acquire("x", upload=True).grants == () for _ in range(1000))


def test_a_shorter_window_keeps_the_rate_with_a_smaller_budget() -> None:
    limits = RateLimits(api_calls_per_minute=1000, uploads_per_minute=240, window_seconds=2.0)
    assert (limits.per_window("upload"), limits.per_window("api")) == (8, 33)
    assert RateLimits(uploads_per_minute=1, window_seconds=1.0).per_window("upload") == 1  # never 0
    with pytest.raises(ValueError):
        RateLimits(window_seconds=0)
    with pytest.raises(ValueError):
        RateLimits(uploads_per_minute=0)


@settings(max_examples=60, deadline=None)
@given(
    limit=st.integers(1, 12),
    requests=st.lists(st.tuples(st.floats(0.0, 30.0), st.floats(0.0, 1.0), st.floats(0.0, 5.0)),
                      min_size=1, max_size=80),
)
def test_no_window_of_box_ever_holds_more_than_the_limit(limit: int, requests) -> None:
    """Requests of random durations from many senders: Box counts each at a random moment between
    its send and its answer; every 60 s window of those moments holds at most ``limit``."""
    clock = FakeClock()
    rl = RateLimiter(RateLimits(api_calls_per_minute=None, uploads_per_minute=limit), clock=clock, sleep=clock.sleep)
    arrivals: list[float] = []
    for duration, where, gap in requests:
        permit = rl.acquire("u", upload=True)
        sent = clock.now
        arrivals.append(sent + where * duration)
        clock.answer_at(sent + duration, lambda permit=permit: rl.release(permit))
        clock.advance_to(clock.now + gap)
    arrivals.sort()
    for i, start in enumerate(arrivals):
        in_window = sum(1 for t in arrivals[i:] if t < start + 60.0)
        assert in_window <= limit


def test_two_limiters_sharing_one_store_share_one_budget() -> None:
    """The WindowStore seam: two processes (or hosts) over one store never exceed the limit together."""
    clock = FakeClock()
    shared = MemoryWindows()
    hosts = [RateLimiter(RateLimits(api_calls_per_minute=None, uploads_per_minute=5), store=shared,
                         clock=clock, sleep=clock.sleep) for _ in range(2)]
    for i in range(5):
        hosts[i % 2].release(hosts[i % 2].acquire("u", upload=True))
    assert clock.now == 0.0
    hosts[1].acquire("u", upload=True)
    assert clock.now == pytest.approx(60.0)


def test_a_429_holds_back_shrinks_the_burst_once_per_episode_and_is_logged() -> None:
    clock = FakeClock()
    rl = limiter(clock, api_calls_per_minute=None, uploads_per_minute=100)
    permits = [rl.acquire("alice", upload=True) for _ in range(60)]
    with capture_logs() as logs:
        rl.release(permits[0], rate_limited=True, retry_after=5.0)
        for p in permits[1:10]:  # answers to requests sent before the shrink: no second shrink
            rl.release(p, rate_limited=True, retry_after=5.0)
    learned = [e for e in logs if e["event"] == "box_rate_limit_learned"]
    assert len(learned) == 1
    assert learned[0]["limit"] == 54 and learned[0]["was"] == 100 and learned[0]["reason"] == "429"
    assert learned[0]["held"] == 60 and learned[0]["retry_after_s"] == 5.0
    assert rl.learned_limits() == {("alice", "upload"): 54}
    assert rl.limit_for("alice", "upload") == 54 and rl.limit_for("bob", "upload") == 100
    for p in permits[10:]:
        rl.release(p)  # 50 answered at t=0; the ten refused ones gave their slots back
    after = [rl.acquire("alice", upload=True) for _ in range(4)]
    assert [p.waited for p in after] == [5.0, 0.0, 0.0, 0.0]  # Retry-After, then room for 54 - 50
    # Refused again before anything sent since the shrink was answered: the same episode.
    rl.release(after[0], rate_limited=True, retry_after=None)
    assert rl.learned_limits()[("alice", "upload")] == 54
    rl.release(after[1])  # answered under the learned limit: that episode is over
    rl.release(after[2], rate_limited=True, retry_after=None)
    assert rl.learned_limits()[("alice", "upload")] == 47  # 90 % of the 53 held
    fifth = rl.acquire("alice", upload=True)
    assert fifth.waited == pytest.approx(55.0) and clock.now == pytest.approx(60.0)  # the window was full


def test_a_storm_of_refusals_halves_the_limit_at_most() -> None:
    """Box refusing everything for a while (nothing to do with our window): one shrink, by half at
    most, however many requests it refuses in a row."""
    clock = FakeClock()
    rl = limiter(clock, api_calls_per_minute=None, uploads_per_minute=100)
    for _ in range(20):
        rl.release(rl.acquire("u", upload=True), rate_limited=True, retry_after=1.0)
    assert rl.learned_limits() == {("u", "upload"): 50}
    assert clock.now == pytest.approx(19.0)  # each retry waited its Retry-After


def test_the_learned_limit_grows_back_after_quiet_windows() -> None:
    clock = FakeClock()
    rl = limiter(clock, api_calls_per_minute=None, uploads_per_minute=100)
    permits = [rl.acquire("u", upload=True) for _ in range(20)]
    rl.release(permits[0], rate_limited=True, retry_after=1.0)
    assert rl.limit_for("u", "upload") == 50  # 90 % of 19 held would be 17: never below half
    clock.now = 59.0
    assert rl.limit_for("u", "upload") == 50  # not a full quiet window yet
    with capture_logs() as logs:
        clock.now = 60.0
        assert rl.limit_for("u", "upload") == 75  # half the gap back
        clock.now = 120.0
        assert rl.limit_for("u", "upload") == 87
    assert [e["reason"] for e in logs if e["event"] == "box_rate_limit_learned"] == ["quiet_window"] * 2
    for minute in range(3, 12):
        clock.now = 60.0 * minute
        rl.limit_for("u", "upload")
    assert rl.limit_for("u", "upload") == 100  # all the way back, never beyond


def test_waits_beat_the_current_uploads_heartbeat() -> None:
    """A rate-limit wait of 7 s inside an upload sends heartbeats (on_bytes(0)) every slice."""
    clock = FakeClock()
    rl = limiter(clock, api_calls_per_minute=None, uploads_per_minute=1)
    rl.release(rl.acquire("u", upload=True))
    calls: list[int] = []
    with beating(Heartbeat(calls.append, clock=clock)):
        clock.now = 53.0
        rl.acquire("u", upload=True)
    assert clock.now == pytest.approx(60.0)
    assert calls and set(calls) == {0} and len(calls) >= 3  # 7 s in slices of at most 2 s


# ------------------------------------------------------------------ against the emulator


def test_an_upload_429_from_box_is_learned(emulator) -> None:
    with make_client(emulator, rate_limits=RateLimits(api_calls_per_minute=None, uploads_per_minute=50)) as client:
        emulator.faults(reject_next={"count": 1, "status": 429, "retry_after": 1, "endpoint": "files.upload"})
        path = Path(emulator.data_dir).parent / "tiny.bin"
        path.write_bytes(b"tiny")
        with capture_logs() as logs:
            Uploader(client).upload(path, "0", "tiny.bin")
        # It held one slot when Box refused: the limit halves (at most), it does not collapse.
        assert client.transport.rate_limiter.learned_limits() == {("DeveloperTokenAuth", "upload"): 25}
    assert [e["reason"] for e in logs if e["event"] == "box_rate_limit_learned"] == ["429"]
    assert count(emulator.stats(), "files.upload", "429") == 1


def test_300_uploads_at_240_a_minute_get_no_429(emulator_factory, tmp_path) -> None:
    """Box's real limit, enforced by the emulator's own 60 s window: the limiter spends the
    first 240 at once, sends the other 60 as the window frees, and Box never refuses one.
    (Lasts a little over a minute: the window has to turn over once.)"""
    emulator = emulator_factory("--upload-rate-limit", "240")
    files = []
    for i in range(300):
        path = tmp_path / f"f{i:03}.bin"
        path.write_bytes(i.to_bytes(2, "big") + os.urandom(62))  # 64 bytes, all different
        files.append(path)
    limits = RateLimits(api_calls_per_minute=None, uploads_per_minute=240)
    with make_client(emulator, rate_limits=limits, concurrency=16) as client:
        uploader = Uploader(client)
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(lambda p: uploader.upload(p, "0", p.name), files))
        assert client.transport.rate_limiter.learned_limits() == {}
    stats = emulator.stats()
    assert count(stats, "files.upload", "429") == 0
    assert count(stats, "files.upload", "201") == 300 and len({r.file_id for r in results}) == 300
