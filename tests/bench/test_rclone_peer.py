"""rclone as the benchmark's peer: the config it is given and what is read from its output.
(rclone itself runs only in the benchmark; CI installs no rclone.)"""

from __future__ import annotations

import configparser
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from bench.rclone_peer import REMOTE, SAFETY_FLAGS, copy_argv, parse_rclone_log, rclone_config

TOKENS = {"access_token": "A" * 32, "refresh_token": "R" * 64, "expires_in": 3600, "token_type": "bearer",
          "restricted_to": [], "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}


def test_config_holds_the_minted_pair_as_rclone_stores_a_token():
    now = datetime(2026, 11, 26, 6, 40, 0, 123456, tzinfo=UTC)
    parsed = configparser.ConfigParser(interpolation=None)
    parsed.read_string(rclone_config(TOKENS, now))
    assert parsed.sections() == [REMOTE] and parsed[REMOTE]["type"] == "box"
    token = json.loads(parsed[REMOTE]["token"])
    assert token == {"access_token": "A" * 32, "token_type": "bearer", "refresh_token": "R" * 64,
                     "expiry": "2026-11-26T07:40:00+00:00"}  # RFC 3339, as Go's time parses it
    # A time in another zone gives the same instant.
    again = configparser.ConfigParser(interpolation=None)
    again.read_string(rclone_config(TOKENS, now.astimezone(timezone(timedelta(hours=2)))))
    expiry = datetime.fromisoformat(json.loads(again[REMOTE]["token"])["expiry"])
    assert expiry == now.replace(microsecond=0) + timedelta(hours=1)


def test_config_needs_an_aware_time():
    with pytest.raises(ValueError, match="timezone-aware"):
        rclone_config(TOKENS, datetime(2026, 11, 26, 6, 40))


def test_copy_is_rclone_copy_with_only_the_safety_flags_added():
    argv = copy_argv(Path("/data/in"), "bench")
    assert argv == ["rclone", "copy", "/data/in", "box:bench", *SAFETY_FLAGS]
    assert SAFETY_FLAGS == ("--bind", "127.0.0.1")
    assert copy_argv(Path("/d"), "f", ["--tpslimit", "4"])[-2:] == ["--tpslimit", "4"]


def test_log_sorts_errors_counts_failed_whole_copy_attempts_and_keeps_the_rest():
    stderr = """\
2026/11/26 06:45:00 ERROR : small-00017.bin: Failed to copy: Error "rate_limit_exceeded" (429): Request rate limit exceeded
2026/11/26 06:45:00 ERROR : Attempt 1/3 failed with 1 errors and: Error "rate_limit_exceeded" (429)
2026/11/26 06:45:31.123 NOTICE: too many requests, backing off
2026/11/26 06:46:02 ERROR : Attempt 2/3 failed with 2 errors and: context deadline exceeded

Transferred: 300 / 300, 100%
"""
    log = parse_rclone_log(stderr)
    assert log.errors == (
        'small-00017.bin: Failed to copy: Error "rate_limit_exceeded" (429): Request rate limit exceeded',
        'Attempt 1/3 failed with 1 errors and: Error "rate_limit_exceeded" (429)',
        "Attempt 2/3 failed with 2 errors and: context deadline exceeded",
    )
    assert log.failed_attempts == 2
    assert log.other == ("2026/11/26 06:45:31.123 NOTICE: too many requests, backing off", "Transferred: 300 / 300, 100%")
    assert parse_rclone_log("") == parse_rclone_log("\n\n")  # a clean copy says nothing at the default level
    assert parse_rclone_log("").errors == () and parse_rclone_log("").failed_attempts == 0
