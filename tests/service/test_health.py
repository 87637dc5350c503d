"""HealthCheck aggregation, probe failure modes, and the ready-made probes."""

from __future__ import annotations

import threading

import pytest

from syncd.service.health import HealthCheck, ProbeRegistrationError, thread_alive_probe
from tests.support.waiting import wait_until

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
    entered = threading.Event()

    def stuck() -> tuple[bool, str]:
        entered.set()
        release.wait(60)  # outlives the test's timeout: a check that waited for it would fail the test
        return True, "never"

    health.register("stuck", stuck, timeout_s=0.1)
    report = health.check()
    try:
        # The check came back while the probe was still inside its call.
        assert entered.is_set() and not release.is_set()
        assert any(t.name == "health-probe:stuck" and t.is_alive() for t in threading.enumerate())
        assert not report.healthy
        assert "did not answer within 0.1s" in report.probes[0].detail
    finally:
        release.set()


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
    wait_until(lambda: not any(t.name == "health-probe:stuck" for t in threading.enumerate()),
               message="the stuck probe's thread did not end")
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


def test_one_failed_run_is_not_a_verdict_a_lasting_failure_is() -> None:
    clock = FakeClock()
    health = HealthCheck(failures_to_fail=3, failure_window_s=30.0, clock=clock)
    answers = iter([False, True, False, False, False, False, True])
    health.register("journal_readable", lambda: (next(answers), "waited 2s behind an fsync"))

    first = health.check()
    assert first.healthy and first.degraded and first.to_dict()["status"] == "degraded"
    assert (first.probes[0].failures, first.probes[0].lasting) == (1, False)
    clock.now += 10
    assert health.check().to_dict()["status"] == "ok"  # a success ends the run of failures
    for step in (0, 10, 10):  # three failures in a row, but over 20 s only
        clock.now += step
        assert health.check().healthy
    clock.now += 10
    lasting = health.check()  # four in a row over 30 s
    assert not lasting.healthy and lasting.to_dict()["status"] == "unhealthy"
    assert (lasting.probes[0].failures, lasting.probes[0].failing_for_s) == (4, 30.0)
    assert health.check().healthy  # and it recovers at the next success


def test_a_failing_probe_that_is_not_critical_only_degrades() -> None:
    health = HealthCheck(failures_to_fail=1, failure_window_s=0.0)
    health.register("journal", lambda: (False, "database or disk is full"), critical=False)
    health.register("intake", lambda: (True, "running"))
    for _ in range(5):
        report = health.check()
        assert report.healthy and report.degraded
    data = report.to_dict()
    assert data["status"] == "degraded" and data["probes"]["journal"]["critical"] is False
    assert data["probes"]["journal"]["failures"] == 5
    assert report.summary() == "journal: database or disk is full"


def test_probes_run_at_once_so_a_slow_one_does_not_delay_the_others() -> None:
    # Each probe waits for the other: run one after the other, both would time out.
    both = threading.Barrier(2)

    def meets() -> tuple[bool, str]:
        both.wait(timeout=1)
        return True, "met"

    health = HealthCheck()
    health.register("a", meets, timeout_s=2)
    health.register("b", meets, timeout_s=2)
    assert health.check().healthy
