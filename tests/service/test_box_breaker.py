"""The Box-side circuit breaker against the real emulator: Box is asked which scope refuses us,
that scope pauses (and shows in the Box-side state), and probes lift the pause by themselves."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from syncd.box import BoxAPIError
from syncd.config import load_config
from syncd.journal import Journal
from syncd.service.box_breaker import BoxBreaker
from syncd.service.box_connection import connect_box
from syncd.service.daemon_state import BoxSideState
from syncd.testing.daemon_process import Watch, config_data, write_config

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def parts(tmp_path: Path, emulator):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    config = load_config(write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "journal.db", [Watch(tmp_path / "a", name="a"),
                                            Watch(tmp_path / "b", name="b", folder_id="987654321")])))
    journal = Journal.open(config.journal)
    box = connect_box(config)
    state = BoxSideState()
    accepted = threading.Event()
    breaker = BoxBreaker(box.client, state, journal, watches=lambda: config.watches, retry_in=lambda probes: 0.2,
                         on_accept=accepted.set)
    yield config, journal, state, breaker, accepted
    breaker.stop()
    box.close()
    journal.close()


def refused(status: int, code: str) -> BoxAPIError:
    return BoxAPIError(status, code, "refused by Box")


def test_a_refusal_of_one_file_pauses_nothing(parts) -> None:
    config, journal, state, breaker, _ = parts
    assert breaker.confirm(config.watch_named("a"), refused(403, "forbidden")) is None
    assert breaker.confirm(config.watch_named("a"), refused(429, "rate_limit_exceeded")) is None  # not a refusal
    assert state.refusals() == () and breaker.paused("a") is None and breaker.paused(None) is None


def test_a_missing_watch_folder_pauses_that_watch_only(parts) -> None:
    config, journal, state, breaker, _ = parts
    journal.observe("b", "waiting.txt", 1, 1, 1, now=time.time())
    paused = breaker.confirm(config.watch_named("b"), refused(404, "not_found"))
    assert paused is not None and "Box folder 987654321 of watch b does not exist" in paused.reason
    assert [r.scope for r in state.refusals()] == ["watch:b"]
    assert breaker.paused("b") == paused and breaker.paused("a") is None and breaker.paused(None) is None
    # Its pending files are due no earlier than the next probe.
    assert journal.find("b", "waiting.txt").next_attempt_at == pytest.approx(paused.until)  # type: ignore[union-attr]


def test_refused_credentials_pause_everything_until_box_accepts_them(parts, emulator) -> None:
    config, journal, state, breaker, accepted = parts
    emulator.faults(refuse={"status": 401, "seconds": 1.5})
    paused = breaker.confirm(config.watch_named("a"), refused(401, "unauthorized"))
    assert paused is not None and paused.reason.startswith("Box refuses the credentials")
    assert breaker.paused(None) is not None and breaker.paused("b") is not None
    assert [r.scope for r in state.refusals()] == ["credentials"]
    breaker.start()
    assert accepted.wait(20)  # the window ended; a probe found Box accepting again
    assert state.refusals() == () and breaker.paused(None) is None


def test_start_up_check_says_whether_box_takes_the_credentials(parts, emulator) -> None:
    config, journal, state, breaker, _ = parts
    assert breaker.check_at_start() is True
    emulator.faults(refuse={"status": 401, "seconds": 30})
    assert breaker.check_at_start() is False
    assert [r.scope for r in state.refusals()] == ["credentials"]
    emulator.faults(refuse=None)


def test_a_forbidden_watch_folder_is_paused_until_box_allows_it_again(parts, emulator) -> None:
    config, journal, state, breaker, accepted = parts
    emulator.faults(refuse={"status": 403, "seconds": 1.5, "endpoints": ["folders.get", "files.upload"]})
    paused = breaker.confirm(config.watch_named("a"), refused(403, "access_denied_insufficient_permissions"))
    assert paused is not None and "Box folder 0 of watch a is forbidden" in paused.reason
    assert [r.scope for r in state.refusals()] == ["watch:a"] and breaker.paused(None) is None
    breaker.start()
    assert accepted.wait(20)
    assert state.refusals() == () and breaker.paused("a") is None
