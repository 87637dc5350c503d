"""HealthCheck aggregation, probe failure modes, and the ready-made probes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from syncd.service.health import (
    HealthCheck,
    ProbeRegistrationError,
    ProgressTracker,
    directory_writable_probe,
    thread_alive_probe,
)

pytestmark = pytest.mark.timeout(30)


def test_healthy_only_when_every_probe_is() -> None:
    health = HealthCheck()
    assert health.check().healthy  # nothing registered yet: nothing is wrong
    state = {"journal": True}
    health.register("observer", lambda: (True, "alive"))
    health.register("journal", lambda: (state["journal"], "writable" if state["journal"] else "read-only"))

    report = health.check()
    assert report.healthy
    assert [p.name for p in report.probes] == ["observer", "journal"]
    assert report.summary() == "ok"

    state["journal"] = False
    report = health.check()
    assert not report.healthy
    assert [p.name for p in report.failures] == ["journal"]
    assert report.summary() == "journal: read-only"
    assert report.to_dict()["status"] == "unhealthy"
    assert report.to_dict()["probes"]["observer"]["ok"] is True

    health.unregister("journal")
    assert health.check().healthy
    assert health.names() == ("observer",)


def test_a_raising_probe_is_a_failed_probe_with_the_reason() -> None:
    health = HealthCheck()

    def broken() -> tuple[bool, str]:
        raise ConnectionError("no route")

    health.register("box", broken)
    report = health.check()
    assert not report.healthy
    assert report.probes[0].detail == "probe raised ConnectionError: no route"


def test_a_hung_probe_fails_after_its_timeout_instead_of_hanging_the_check() -> None:
    release = threading.Event()
    health = HealthCheck()
    health.register("stuck", lambda: (release.wait(10), "never"), timeout_s=0.1)
    started = time.monotonic()
    report = health.check()
    elapsed = time.monotonic() - started
    release.set()
    assert not report.healthy
    assert "did not answer within 0.1s" in report.probes[0].detail
    assert elapsed < 2


def test_a_hung_probe_is_not_started_again_until_it_returns() -> None:
    release = threading.Event()
    calls = []

    def stuck() -> tuple[bool, str]:
        calls.append(1)
        release.wait(10)
        return True, "answered at last"

    health = HealthCheck()
    health.register("stuck", stuck, timeout_s=0.05)
    assert not health.check().healthy
    report = health.check()
    assert report.probes[0].detail.startswith("probe still running after")
    assert len(calls) == 1  # no second thread piled up behind the first
    release.set()
    deadline = time.monotonic() + 5
    while any(t.name == "health-probe:stuck" for t in threading.enumerate()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    report = health.check()
    assert report.healthy, report.summary()
    assert len(calls) == 2


def test_a_probe_returning_the_wrong_shape_fails() -> None:
    health = HealthCheck()
    health.register("sloppy", lambda: True)  # type: ignore[arg-type, return-value]
    report = health.check()
    assert not report.healthy
    assert report.probes[0].detail == "probe returned bool, expected (bool, str)"


@pytest.mark.parametrize(
    ("name", "probe", "timeout", "message"),
    [
        ("", lambda: (True, ""), None, "must not be empty"),
        ("x", "not callable", None, "must be callable"),
        ("x", lambda: (True, ""), 0, "timeout_s must be positive"),
    ],
)
def test_bad_registrations_are_refused(name, probe, timeout, message) -> None:
    with pytest.raises(ProbeRegistrationError, match=message):
        HealthCheck().register(name, probe, timeout_s=timeout)


def test_duplicate_names_are_refused() -> None:
    health = HealthCheck()
    health.register("observer", lambda: (True, ""))
    with pytest.raises(ProbeRegistrationError, match="already registered"):
        health.register("observer", lambda: (True, ""))


def test_thread_alive_probe_follows_a_real_thread() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    probe = thread_alive_probe(thread.is_alive, "inotify observer for /srv/drop")
    assert probe() == (False, "inotify observer for /srv/drop is not running")
    thread.start()
    assert probe() == (True, "inotify observer for /srv/drop alive")
    stop.set()
    thread.join()
    assert probe()[0] is False


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_progress_tracker_is_stuck_only_when_busy_and_silent() -> None:
    clock = FakeClock()
    tracker = ProgressTracker(stuck_after_s=60, clock=clock)
    clock.now += 3600
    assert tracker.probe() == (True, "idle")  # an idle pipeline is never stuck

    tracker.set_busy(2)  # becoming busy restarts the clock
    clock.now += 59
    assert tracker.probe()[0] is True
    clock.now += 2
    ok, detail = tracker.probe()
    assert not ok
    assert detail == "2 upload(s) in flight and no progress for 61s (limit 60s)"

    tracker.beat()
    assert tracker.probe()[0] is True
    tracker.set_busy(0)
    clock.now += 1000
    assert tracker.probe() == (True, "idle")


def test_progress_tracker_rejects_a_non_positive_limit() -> None:
    with pytest.raises(ValueError, match="stuck_after_s must be positive"):
        ProgressTracker(stuck_after_s=0)


def test_directory_writable_probe_creates_and_removes_a_real_file(tmp_path: Path) -> None:
    probe = directory_writable_probe(tmp_path)
    assert probe() == (True, f"{tmp_path} writable")
    assert list(tmp_path.iterdir()) == []

    gone = tmp_path / "journal-dir"
    ok, detail = directory_writable_probe(gone)()
    assert not ok
    assert detail.startswith(f"cannot create a file in {gone}: ")
