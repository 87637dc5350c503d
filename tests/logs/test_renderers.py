"""Console and JSON output, journald field mapping, format auto-detection and levels."""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd import __version__, logs


def test_json_lines_have_fixed_leading_keys_and_fields() -> None:
    buffer = io.StringIO()
    assert logs.configure_logging("json", "info", stream=buffer) == "json"
    logs.get_logger("syncd.worker", watch="inbox").info("upload committed", path="/in/a.pdf", size=3, file_id="9")
    logging.getLogger("requests.adapters").warning("pool is full")
    first, second = (json.loads(line) for line in buffer.getvalue().splitlines())
    assert list(first)[:4] == ["timestamp", "level", "logger", "event"]
    assert first["event"] == "upload committed" and first["level"] == "info" and first["logger"] == "syncd.worker"
    assert (first["watch"], first["path"], first["size"], first["file_id"]) == ("inbox", "/in/a.pdf", 3, "9")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", first["timestamp"])
    assert (second["logger"], second["level"], second["event"]) == ("requests.adapters", "warning", "pool is full")


def test_library_records_keep_their_extra_fields_and_are_redacted() -> None:
    buffer = io.StringIO()
    logs.configure_logging("json", "info", stream=buffer)
    logs.register_secret("lib-secret-9d2f")
    logging.getLogger("somelib.pool").warning("pool %s is full", "api", extra={
        "pool_size": 4, "host": "upload.box.com", "access_token": "xyz", "note": "saw lib-secret-9d2f"})
    line = json.loads(buffer.getvalue())
    assert (line["logger"], line["event"], line["pool_size"], line["host"]) == (
        "somelib.pool", "pool api is full", 4, "upload.box.com")
    assert (line["access_token"], line["note"]) == ("***", "saw ***")


def test_console_output_is_plain_off_a_terminal() -> None:
    buffer = io.StringIO()
    assert logs.configure_logging("console", "info", stream=buffer) == "console"
    logs.get_logger("syncd.worker").info("file ready", path="/in/a.pdf", size=3)
    line = buffer.getvalue().rstrip("\n")
    assert "\x1b[" not in line
    assert re.fullmatch(r"\S+Z \[info\s*\] file ready\s+\[syncd\.worker\] path=/in/a\.pdf size=3", line), line


@pytest.fixture
def terminal() -> Iterator[tuple[io.TextIOWrapper, int]]:
    leader, follower = os.openpty()
    stream = open(follower, "w", buffering=1, closefd=True)
    yield stream, leader
    stream.close()
    os.close(leader)


def test_auto_is_console_with_colours_on_a_terminal(terminal: tuple[io.TextIOWrapper, int]) -> None:
    stream, leader = terminal
    assert logs.resolve_format("auto", stream, environ={}) == "console"
    assert logs.resolve_format("auto", io.StringIO(), environ={}) == "json"
    assert logs.configure_logging("auto", "info", stream=stream) == "console"
    logs.get_logger("syncd.t").info("file ready", path="/in/a")
    shown = os.read(leader, 4096).decode()
    assert "\x1b[" in shown and "file ready" in shown


def test_auto_detects_journald_from_journal_stream(tmp_path: Path) -> None:
    with open(tmp_path / "stderr", "w") as stream:
        info = os.fstat(stream.fileno())
        matching = {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        assert logs.running_under_journald(stream, matching)
        assert logs.resolve_format("auto", stream, environ=matching) == "journald"
        other = {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino + 1}", "INVOCATION_ID": "x"}
        assert not logs.running_under_journald(stream, other)
        assert logs.resolve_format("auto", stream, environ=other) == "json"
        assert not logs.running_under_journald(stream, {"JOURNAL_STREAM": "garbage"})
    # A unit whose stderr is not a file at all: INVOCATION_ID says we run under systemd,
    # but journald is only used if its socket is there.
    socket_path = tmp_path / "socket"
    socket_path.touch()
    assert logs.running_under_journald(io.StringIO(), {"INVOCATION_ID": "abc"}, str(socket_path))
    assert not logs.running_under_journald(io.StringIO(), {"INVOCATION_ID": "abc"}, str(tmp_path / "none"))
    assert not logs.running_under_journald(io.StringIO(), {}, str(socket_path))


def test_journald_fields_mapping() -> None:
    record = logging.LogRecord("syncd.worker", logging.WARNING, "/src/worker.py", 77, "m", None, None, func="run")
    fields = logs.journald_fields({
        "event": "upload retried", "level": "warning", "logger": "syncd.worker", "timestamp": "t",
        "path": "/in/a b.pdf", "attempt": 2, "session-id": "S1", "detail": {"k": [1]}, "_record": record,
        "_from_structlog": True,
    })
    assert fields == {
        "MESSAGE": 'upload retried path="/in/a b.pdf" attempt=2 session-id=S1 detail="{\\"k\\": [1]}"',
        "PRIORITY": "4",
        "SYSLOG_IDENTIFIER": "syncd",
        "SYNCD_VERSION": __version__,
        "CODE_FILE": "/src/worker.py",
        "CODE_LINE": "77",
        "CODE_FUNC": "run",
        "SYNCD_LEVEL": "warning",
        "SYNCD_LOGGER": "syncd.worker",
        "SYNCD_PATH": "/in/a b.pdf",
        "SYNCD_ATTEMPT": "2",
        "SYNCD_SESSION_ID": "S1",
        "SYNCD_DETAIL": '{"k": [1]}',
    }
    assert logs.journald_key("x" * 100) == ("SYNCD_" + "X" * 100)[:64]


def test_level_filters_and_reconfiguring_replaces_the_output() -> None:
    first, second = io.StringIO(), io.StringIO()
    logs.configure_logging("json", "warning", stream=first)
    log = logs.get_logger("syncd.t")
    log.info("hidden")
    log.warning("shown")
    logs.configure_logging("json", "debug", stream=second)
    log.debug("after reload")
    assert [json.loads(line)["event"] for line in first.getvalue().splitlines()] == ["shown"]
    assert [json.loads(line)["event"] for line in second.getvalue().splitlines()] == ["after reload"]
    assert sum(getattr(h, "_syncd_handler", False) for h in logging.getLogger().handlers) == 1


def test_bad_format_or_level_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown log format 'xml'; expected one of auto, console, json, journald"):
        logs.configure_logging("xml", "info")
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        logs.configure_logging("json", "loud")


def test_module_level_structlog_loggers_created_before_configuration_follow_it() -> None:
    import structlog

    early = structlog.get_logger("syncd.early")  # as modules do at import time
    buffer = io.StringIO()
    logs.configure_logging("json", "info", stream=buffer)
    early.info("part uploaded", part=3, session_id="S9")
    line = json.loads(buffer.getvalue())
    assert (line["logger"], line["event"], line["part"], line["session_id"]) == ("syncd.early", "part uploaded", 3, "S9")
