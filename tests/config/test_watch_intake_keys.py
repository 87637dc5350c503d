"""Watch keys of the intake: default_excludes, name_collisions, invalid_names, polling settle rule."""

from __future__ import annotations

import pytest

from syncd.config import DEFAULT_EXCLUDE
from syncd.pipeline.filters import watch_filter
from tests.config.conftest import MINIMAL, load_ok, load_problems


def _with_watch_keys(keys: str, top: str = "") -> str:
    return MINIMAL + "".join(f"    {line}\n" for line in keys.strip().splitlines()) + top


def test_user_excludes_add_to_the_defaults(write_config) -> None:
    (watch,) = load_ok(write_config(_with_watch_keys('exclude: ["*.log", "!.keep-me"]'))).watches
    assert watch.exclude == ("*.log", "!.keep-me") and watch.default_excludes
    path_filter = watch_filter(watch)
    assert path_filter.exclude == (*DEFAULT_EXCLUDE, "*.log", "!.keep-me")
    assert not path_filter.accepts_file("x.log")
    assert not path_filter.accepts_file("download.part")  # a default still applies beside the user's list
    assert path_filter.accepts_file(".keep-me")  # re-included after the default ".*"


def test_default_excludes_false_keeps_only_the_given_patterns(write_config) -> None:
    (watch,) = load_ok(write_config(_with_watch_keys('default_excludes: false\nexclude: ["*.log"]'))).watches
    assert not watch.default_excludes
    path_filter = watch_filter(watch)
    assert path_filter.exclude == ("*.log",)
    assert path_filter.accepts_file("download.part") and path_filter.accepts_file(".profile")
    assert not path_filter.accepts_file(".report.pdf.syncd-12-345")  # syncd's own set-aside name, always


def test_default_excludes_must_be_a_boolean(write_config) -> None:
    error = load_problems(write_config(_with_watch_keys("default_excludes: nope")))
    (problem,) = error.problems
    assert problem.key == "watches[0].default_excludes" and problem.expected == "true or false"


@pytest.mark.parametrize("value", ["quarantine", "rename"])
def test_name_collisions_policy(write_config, value: str) -> None:
    (watch,) = load_ok(write_config(_with_watch_keys(f"name_collisions: {value}"))).watches
    assert watch.name_collisions == value


def test_name_collisions_unknown_value_is_named_with_the_choices(write_config) -> None:
    error = load_problems(write_config(_with_watch_keys("name_collisions: version")))
    (problem,) = error.problems
    assert problem.key == "watches[0].name_collisions"
    assert problem.expected == "one of quarantine, rename"


def test_invalid_names_policy_is_read(write_config) -> None:
    (watch,) = load_ok(write_config(_with_watch_keys("invalid_names: sanitize"))).watches
    assert watch.invalid_names == "sanitize"


def test_polling_watch_needs_settle_of_twice_the_poll_interval(write_config) -> None:
    error = load_problems(write_config(_with_watch_keys("observer: polling\npoll_interval: 5s")))
    (problem,) = error.problems
    assert problem.key == "watches[0].poll_interval"
    assert "readiness.settle (2s)" in problem.message and "2 x poll_interval (10s)" in problem.message
    assert problem.expected == "poll_interval <= 1s, or readiness.settle >= 10s"
    assert problem.line is not None


def test_polling_defaults_need_a_longer_settle_and_say_so(write_config) -> None:
    # poll_interval's default (5s) with settle's default (2s) is the case most people will hit.
    error = load_problems(write_config(_with_watch_keys("observer: polling")))
    (problem,) = error.problems
    assert problem.key == "watches[0].poll_interval" and "is 5s" in problem.message


@pytest.mark.parametrize(("settle", "poll"), [("10s", "5s"), ("2s", "1s"), ("1m", "30s")])
def test_polling_watch_with_enough_settle_loads(write_config, settle: str, poll: str) -> None:
    config = load_ok(write_config(_with_watch_keys(f"observer: polling\npoll_interval: {poll}",
                                                   top=f"readiness: {{settle: {settle}}}\n")))
    assert config.watches[0].observer == "polling"


def test_native_watch_ignores_the_polling_rule(write_config) -> None:
    # poll_interval only matters to polling watches: an inotify watch keeps loading with any value.
    config = load_ok(write_config(_with_watch_keys("poll_interval: 1h")))
    assert config.watches[0].observer == "native"

