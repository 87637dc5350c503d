"""One logging vocabulary: every log call in syncd/ names an event of `syncd.logs.EVENTS` with
fields that event documents, loggers are named after their modules, docs/LOGS.md is the
table rendered from the data, and MESSAGE_IDs stay what they were.

The calls are found in the source (ast), so events a test run would rarely reach (crashes,
refusals) are held to the table too; tests/daemon/test_log_fields.py checks what a real
ingestion emits, bound fields included.
"""

from __future__ import annotations

import ast
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from syncd import logs
from syncd.journal import FileState

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "syncd"
LEVELS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical", "msg", "log"})
# Receivers that are loggers: module loggers (`log`), bound ones (`bound`, `log_`, `self._log`, `attempt.log`).
LOGGER_NAMES = frozenset({"log", "log_", "_log", "logger", "bound"})
# Keyword arguments that are not fields: structlog's own.
NOT_FIELDS = frozenset({"exc_info", "stack_info"})


@dataclass(frozen=True)
class LogCall:
    where: str
    event: str | None  # None: not a literal
    fields: tuple[str, ...]
    spread: bool  # has **fields


def _is_logger(node: ast.expr) -> bool:
    name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
    return name in LOGGER_NAMES


def log_calls(source: str, where: str) -> list[LogCall]:
    """Every `<logger>.<level>(event, **fields)` call in `source`."""
    calls = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in LEVELS or not _is_logger(node.func.value):
            continue
        first = node.args[0] if node.args else None
        event = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
        fields = tuple(k.arg for k in node.keywords if k.arg is not None and k.arg not in NOT_FIELDS)
        calls.append(LogCall(f"{where}:{node.lineno}", event, fields, any(k.arg is None for k in node.keywords)))
    return calls


def syncd_sources() -> dict[str, str]:
    """syncd's modules but the emulator (a separate program that shares nothing with the client)."""
    return {str(path.relative_to(REPO)): path.read_text() for path in sorted(PACKAGE.rglob("*.py"))
            if "emulator" not in path.relative_to(PACKAGE).parts}


def problems_in(calls: list[LogCall]) -> list[str]:
    found = []
    for call in calls:
        if call.event is None:
            found.append(f"{call.where}: the event is not a literal name")
        elif call.event not in logs.EVENTS:
            found.append(f"{call.where}: {call.event!r} is not in syncd.logs.EVENTS")
        else:
            extra = sorted(set(call.fields) - set(logs.EVENTS[call.event].fields))
            if extra:
                found.append(f"{call.where}: {call.event} logs undocumented fields {extra}")
    return found


# The one call whose event is not a literal: the daemon logs the alerts of syncd.service.alerts.
DYNAMIC_EVENTS = {("syncd/service/daemon.py", "alert.event")}


def test_every_log_call_in_syncd_is_a_documented_event_with_documented_fields() -> None:
    calls = [call for where, source in syncd_sources().items() for call in log_calls(source, where)]
    assert len(calls) > 100  # the scan finds the calls (a rename of `log` would hide them all)
    literal = [call for call in calls if call.event is not None]
    assert problems_in(literal) == []
    dynamic = [call for call in calls if call.event is None]
    assert {(c.where.rsplit(":", 1)[0], "alert.event") for c in dynamic} == DYNAMIC_EVENTS
    assert len(dynamic) == len(DYNAMIC_EVENTS)


def test_the_alerts_the_daemon_logs_are_documented_events() -> None:
    # Alert(key, event, message, fields): logged as `event` with detail=message and **fields.
    source = (PACKAGE / "service" / "alerts.py").read_text()
    alerts = [node for node in ast.walk(ast.parse(source))
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Alert"]
    assert len(alerts) == 2
    for alert in alerts:
        event, fields = alert.args[1], alert.args[3]
        assert isinstance(event, ast.Constant) and isinstance(fields, ast.Dict)
        keys = {key.value for key in fields.keys if isinstance(key, ast.Constant)}
        assert event.value in logs.EVENTS
        assert keys | {"detail"} <= set(logs.EVENTS[event.value].fields), event.value


def test_daemon_stopped_documents_every_file_state_it_counts() -> None:
    # daemon_stopped logs the journal's count of each state, as **{state: count}.
    assert {str(state) for state in FileState} <= set(logs.EVENTS["daemon_stopped"].fields)


def test_bound_fields_are_documented() -> None:
    for where, source in syncd_sources().items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "bind" \
                    and _is_logger(node.func.value):
                assert {k.arg for k in node.keywords} <= set(logs.FIELDS), f"{where}:{node.lineno}"


def test_syncd_logs_through_structlog_loggers_named_after_their_modules() -> None:
    for where, source in syncd_sources().items():
        assert "logging.getLogger(" not in source or where == "syncd/logs.py", f"{where} logs through stdlib"
        # syncd.logs.get_logger, not structlog's: it puts the default routing in place first.
        assert "structlog.get_logger(" not in source, f"{where} takes its logger from structlog"
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "get_logger" and node.args:
                named = ast.unparse(node.args[0])
                # syncd.logs.get_logger passes its caller's name on.
                assert named == "__name__" or (where, named) == ("syncd/logs.py", "name"), \
                    f"{where}:{node.lineno} names its logger {named}"


def test_the_scan_flags_what_it_should() -> None:
    source = (
        "log.info('upload_committed', size=1, sha1='x')\n"
        "log.info('upload_part', offset=0)\n"
        "attempt.log.warning('upload_committed', colour='blue')\n"
        "self._log.info(name)\n"
        "print('not a log call')\n"
    )
    calls = log_calls(source, "x.py")
    assert [c.event for c in calls] == ["upload_committed", "upload_part", "upload_committed", None]
    assert problems_in(calls) == [
        "x.py:2: 'upload_part' is not in syncd.logs.EVENTS",
        "x.py:3: upload_committed logs undocumented fields ['colour']",
        "x.py:4: the event is not a literal name",
    ]


def test_the_table_is_consistent() -> None:
    assert all(name == name.lower() and name.replace("_", "").isalnum() for name in logs.EVENTS)
    assert not set(logs.FIELDS) & set(logs.ENVELOPE)
    used = {field for kind in logs.EVENTS.values() for field in kind.fields}
    assert used <= set(logs.FIELDS), used - set(logs.FIELDS)
    assert set(logs.FIELDS) <= used, f"fields no event carries: {set(logs.FIELDS) - used}"


def test_docs_logs_md_shows_the_table() -> None:
    doc = (REPO / "docs" / "LOGS.md").read_text()
    assert logs.vocabulary_markdown() in doc, "docs/LOGS.md is stale: paste syncd.logs.vocabulary_markdown()"


@pytest.mark.parametrize(("event", "expected"), [
    # Pinned: a MESSAGE_ID must never change between releases (saved journalctl queries, catalogs).
    ("upload_committed", uuid.uuid5(uuid.UUID("d6970821-bd05-4559-b0bc-a1011676848b"), "upload_committed").hex),
    ("upload_committed", "9df5a897dada552eb66be2b8cc3e5fdb"),
    ("box_request_retrying", "710348ac14825c22a608d8130d3896ff"),
])
def test_message_ids_are_stable(event: str, expected: str) -> None:
    assert logs.message_id(event) == expected


def test_message_ids_are_128_bit_unique_and_only_for_events() -> None:
    ids = {logs.message_id(name) for name in logs.EVENTS}
    assert len(ids) == len(logs.EVENTS)
    assert all(isinstance(i, str) and len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert logs.message_id("pool is full") is None  # a library's message is not an event kind
