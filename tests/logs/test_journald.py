"""journald output, read back from a real systemd-journald with ``journalctl -o json``.

The journald runs in a private mount namespace (``unshare --mount``, tmpfs over
/run) started by journald_probe.py, so it neither sees nor touches the machine's journal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from syncd import __version__

PROBE = Path(__file__).with_name("journald_probe.py")
REPO = PROBE.parents[2]
SECRET = "journald-secret-4f9c2b"


def probe(scenario: str, expected_entries: int) -> list[dict[str, str]]:
    """What journald holds after journald_probe.py ran `scenario` (see its docstring)."""
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, str(PROBE), scenario,
         str(expected_entries)],
        capture_output=True, text=True, timeout=60, cwd=REPO, env={**os.environ, "SYNCD_PROBE_SECRET": SECRET},
    )
    assert result.returncode == 0, f"probe failed (needs root for unshare/mount):\n{result.stderr}"
    assert SECRET not in result.stdout + result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def entries() -> list[dict[str, str]]:
    return probe("events", 3)


def test_each_event_is_one_entry_with_native_fields(entries: list[dict[str, str]]) -> None:
    assert [e["MESSAGE"].split(" ")[0] for e in entries] == ["upload", "upload", '"POST']
    committed = entries[0]
    assert committed["SYSLOG_IDENTIFIER"] == "syncd" and committed["PRIORITY"] == "6"
    assert committed["MESSAGE"].startswith('upload committed path="/srv/in/a b.pdf" size=1234 sha1=')
    assert committed["SYNCD_PATH"] == "/srv/in/a b.pdf"
    assert (committed["SYNCD_SIZE"], committed["SYNCD_FILE_ID"], committed["SYNCD_DURATION_MS"]) == ("1234", "42", "17.5")
    assert committed["SYNCD_SHA1"] == "ab" * 20 and committed["SYNCD_VERSION"] == __version__
    assert committed["CODE_FILE"] == str(PROBE) and committed["CODE_FUNC"] == "_log_events"
    assert committed["_TRANSPORT"] == "journal"


def test_secrets_are_redacted_in_fields_messages_and_tracebacks(entries: list[dict[str, str]]) -> None:
    assert json.loads(entries[0]["SYNCD_NESTED"]) == {"token": "***", "note": "has *** inside"}
    failed = entries[1]
    assert failed["PRIORITY"] == "3" and failed["SYNCD_ATTEMPT"] == "3" and failed["SYNCD_ERROR_CODE"] == "invalid_grant"
    assert failed["SYNCD_EXCEPTION"].endswith("RuntimeError: refresh failed with ***")
    assert "Traceback (most recent call last)" in failed["MESSAGE"]
    library = entries[2]
    assert library["SYNCD_LOGGER"] == "urllib3.connectionpool" and library["PRIORITY"] == "7"
    assert library["MESSAGE"] == '"POST /oauth2/token?refresh_token=*** HTTP/1.1" 200'
    assert all(SECRET not in value for entry in entries for value in entry.values() if isinstance(value, str))


def test_a_retried_box_request_carries_its_fields_in_journald() -> None:
    [retry] = probe("box_retry", 1)
    assert retry["MESSAGE"].startswith("box_request_retrying method=GET url=http://127.0.0.1:")
    assert (retry["SYNCD_LOGGER"], retry["PRIORITY"], retry["SYSLOG_IDENTIFIER"]) == ("syncd.box.transport", "6", "syncd")
    assert retry["SYNCD_METHOD"] == "GET" and retry["SYNCD_URL"].endswith("/2.0/users/me")
    assert (retry["SYNCD_ATTEMPT"], retry["SYNCD_STATUS"], retry["SYNCD_ERROR_CODE"]) == ("1", "429", "rate_limit_exceeded")
    assert 0.0 <= float(retry["SYNCD_WAIT_S"]) <= 0.05  # Retry-After 0 plus jitter
    assert retry["SYNCD_REQUEST_ID"] and f"request_id={retry['SYNCD_REQUEST_ID']}" in retry["MESSAGE"]
    assert all(SECRET not in value for value in retry.values() if isinstance(value, str))  # the emulator's token


def test_names_that_are_not_utf8_reach_journald_escaped() -> None:
    # A surrogate-escaped name made journald's sender raise: the whole line was lost.
    ready, warning = probe("undecodable", 2)
    assert ready["SYNCD_PATH"] == "caf\\xe9.txt"
    assert json.loads(ready["SYNCD_NESTED"]) == {"paths": ["caf\\xe9.txt"]}
    assert ready["MESSAGE"].startswith("file_ready path=caf\\xe9.txt nested=")
    assert warning["MESSAGE"] == "cannot read caf\\xe9.txt" and warning["PRIORITY"] == "4"
