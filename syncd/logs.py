"""Structured logging for syncd: structlog over stdlib logging, with secrets redacted.

``configure_logging(format, level)`` sends every log event -- syncd's own
structlog events and records from libraries such as requests/urllib3 that use
stdlib logging, with the fields they pass as ``extra={...}`` -- through one chain:

    redact_event_dict  ->  escape_undecodable  ->  console | JSON lines | journald

The redactor runs on every event before anything is rendered. It masks the
values of keys named like credentials (token, secret, password, authorization,
assertion, passphrase, private_key, refresh_token, access_token, ...), replaces
every value registered with ``register_secret`` wherever it appears in a string
(the message, nested dicts and lists, exception text and tracebacks), and masks
``Bearer ...`` and ``access_token=...`` patterns as a second line of defence.
Then text holding bytes that are not UTF-8 (file names, as ``os.fsdecode`` gives
them) is shown as ``\\xNN`` (``escape_undecodable``), so no renderer, journald's
included, ever fails to encode a line.

One vocabulary: syncd's own lines are events named in snake_case after the state
change (``upload_committed``), with fields from one table. ``EVENTS`` (below) lists
every event with the fields it may carry and ``FIELDS`` what each field means
(``path`` is always the file's path relative to its watch, in display form);
docs/LOGS.md is rendered from them, and tests hold every log call in syncd/ and
every line of a real ingestion to them. Records of libraries (urllib3, watchdog)
keep their own messages and pass through the same processors.

Under journald each event becomes one entry with ``MESSAGE`` (the event and its
fields as ``key=value``), ``PRIORITY``, ``MESSAGE_ID`` (for events in ``EVENTS``:
uuid5 of the name in a fixed namespace, the same in every release), the code
location, every field as ``SYNCD_<KEY>`` (``path`` -> ``SYNCD_PATH``) and
``SYSLOG_IDENTIFIER``: ``$SYNCD_SYSLOG_IDENTIFIER``, else ``syncd``. A unit's
``SyslogIdentifier=`` only names what systemd captures from stdout and stderr, not
entries sent through the journal API, so the shipped units set both
(``syncd@NAME`` logs as ``syncd-NAME``; deploy/README.md).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

import structlog

from syncd import __version__

FORMATS = ("auto", "console", "json", "journald")
LEVELS = ("debug", "info", "warning", "error", "critical")
MASK = "***"
SYSLOG_IDENTIFIER = "syncd"
#: Environment variable naming the journald SYSLOG_IDENTIFIER (the units set it as their SyslogIdentifier=).
SYSLOG_IDENTIFIER_ENV = "SYNCD_SYSLOG_IDENTIFIER"
JOURNAL_SOCKET = "/run/systemd/journal/socket"
# Shorter registered values are ignored: replacing "ab" everywhere would wreck every line.
MIN_SECRET_LENGTH = 4

_SENSITIVE_KEY = re.compile(
    r"(^|[_-])(token|secret|password|passwd|authorization|assertion|passphrase|private[_-]?key|"
    r"refresh[_-]?token|access[_-]?token|api[_-]?key|cookie|credentials?)($|[_-])",
    re.IGNORECASE,
)
# Keys that contain a sensitive word but name something harmless about it.
_HARMLESS_KEY_SUFFIX = re.compile(r"[_-](url|type|count|ttl|expires_in|expires_at|source|store|id|name)$", re.I)
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
_ASSIGNMENT = re.compile(
    r"(?i)\b(access_token|refresh_token|client_secret|assertion|password|token|code)=([^&\s\"']+)"
)
_JSON_SECRET = re.compile(r'(?i)("(?:access_token|refresh_token|client_secret|assertion|password)"\s*:\s*")[^"]*(")')
_PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "exception": 3, "critical": 2}
_META_KEYS = ("_record", "_from_structlog")


class SupportsReveal(Protocol):
    """Anything that holds a secret behind ``reveal()`` (such as ``syncd.config.Secret``)."""

    def reveal(self) -> str: ...


class _SecretRegistry:
    """Values to scrub from every log line; one compiled pattern, rebuilt on registration."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        from urllib.parse import quote, quote_plus

        forms = {value, quote(value, safe=""), quote_plus(value)}
        with self._lock:
            self._values.update(form for form in forms if len(form) >= MIN_SECRET_LENGTH)
            self._compile()

    def remove(self, value: str) -> None:
        from urllib.parse import quote, quote_plus

        with self._lock:
            self._values.difference_update({value, quote(value, safe=""), quote_plus(value)})
            self._compile()

    def _compile(self) -> None:
        # Longest first, so a secret containing another is masked whole (caller holds the lock).
        ordered = sorted(self._values, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._pattern = None

    def scrub(self, text: str) -> str:
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        text = _BEARER.sub(rf"\1 {MASK}", text)
        text = _ASSIGNMENT.sub(rf"\1={MASK}", text)
        return _JSON_SECRET.sub(rf"\1{MASK}\2", text)


_registry = _SecretRegistry()


def register_secret(value: str | SupportsReveal) -> None:
    """Have every later log line scrub *value* (a string or an object with ``reveal()``).

    The daemon registers each ``Config.secrets`` entry after loading the
    config; the Box auth code registers access and refresh tokens as it gets them.
    """
    text = value if isinstance(value, str) else value.reveal()
    if text:
        _registry.add(text)


def forget_secret(value: str) -> None:
    """Stop scrubbing *value* (a run-time token long expired: the set of values must not grow for ever)."""
    _registry.remove(value)


def forget_secrets() -> None:
    """Drop every registered secret (for tests)."""
    _registry.clear()


def scrub_text(text: str) -> str:
    """*text* with registered secrets and credential patterns masked."""
    return _registry.scrub(text)


def is_sensitive_key(key: str) -> bool:
    """Whether a field called *key* holds a credential (its value is masked whatever it is)."""
    return bool(_SENSITIVE_KEY.search(key)) and not _HARMLESS_KEY_SUFFIX.search(key)


def redact_event_dict(logger: object, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: mask credential keys and registered secrets everywhere in the event.

    ``exc_info`` is rendered to text here (and scrubbed) into ``exception``, so
    no later processor formats a traceback that has not been through the redactor.
    """
    exc_info = event_dict.pop("exc_info", None)
    result: dict[str, Any] = {}
    for key, value in event_dict.items():
        if key in _META_KEYS:
            result[key] = value
        elif key != "event" and is_sensitive_key(str(key)):
            result[key] = MASK
        else:
            result[key] = _redact_value(value)
    exception_text = _format_exc_info(exc_info)
    if exception_text:
        result["exception"] = scrub_text(exception_text)
    elif "exception" in result and not isinstance(result["exception"], str):
        result["exception"] = scrub_text(str(result["exception"]))
    return result


def _redact_value(value: Any, depth: int = 0) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, bytes):
        return scrub_text(value.decode("utf-8", "replace"))
    if depth > 8:
        return "..."
    if isinstance(value, Mapping):
        return {
            str(k): MASK if is_sensitive_key(str(k)) else _redact_value(v, depth + 1) for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_redact_value(item, depth + 1) for item in value]
    if isinstance(value, BaseException):
        return scrub_text(f"{type(value).__name__}: {value}")
    # Anything else is rendered now, so that its text goes through the scrubber.
    return scrub_text(str(value))


_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_surrogate(match: re.Match[str]) -> str:
    code = ord(match.group())
    # os.fsdecode turns a byte that is not UTF-8 into U+DC80..U+DCFF: show the byte, as display_path does.
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def _without_surrogates(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub(_escape_surrogate, value) if _SURROGATE.search(value) else value
    if depth > 8:
        return value
    if isinstance(value, Mapping):
        return {_without_surrogates(k): _without_surrogates(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_without_surrogates(item, depth + 1) for item in value]
    return value


def escape_undecodable(logger: object, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: text holding bytes that are not UTF-8 rendered as ``\\xNN``.

    A file name that is not UTF-8 is a ``str`` with lone surrogates (``os.fsdecode``);
    no renderer can encode one (journald's sender raises, so the whole line was
    lost). Every string of the event, keys, nested values and exception text
    included, gets its surrogate escapes shown as the bytes they stand for
    (``caf\\xe9.txt``), once for every log line, whoever logged it. Runs after the
    redactor, which has turned every value into text, numbers, lists or dicts.
    """
    result: dict[str, Any] = {}
    for key, value in event_dict.items():
        if key in _META_KEYS:
            result[key] = value
        else:
            result[_without_surrogates(key)] = _without_surrogates(value)
    return result


def _format_exc_info(exc_info: Any) -> str | None:
    if not exc_info:
        return None
    if exc_info is True:
        exc_info = sys.exc_info()
    elif isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if not isinstance(exc_info, tuple) or exc_info[0] is None:
        return None
    return "".join(traceback.format_exception(*exc_info)).rstrip()


def _drop_meta(logger: object, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key in _META_KEYS:
        event_dict.pop(key, None)
    return event_dict


def render_json(logger: object, method_name: str, event_dict: dict[str, Any]) -> str:
    """Final processor: one JSON object per line, ``timestamp``, ``level``, ``logger``, ``event`` first."""
    event_dict = _drop_meta(logger, method_name, event_dict)
    ordered = {key: event_dict.pop(key) for key in ("timestamp", "level", "logger", "event") if key in event_dict}
    ordered.update(event_dict)
    return json.dumps(ordered, ensure_ascii=False, default=str)


def journald_key(key: str) -> str:
    """journald field name for event field *key*: ``SYNCD_`` + upper case, [A-Z0-9_] only, <= 64 chars."""
    cleaned = re.sub(r"[^A-Z0-9_]", "_", key.upper())
    return f"SYNCD_{cleaned}"[:64]


def journald_fields(event_dict: Mapping[str, Any], identifier: str = SYSLOG_IDENTIFIER) -> dict[str, str]:
    """The journald entry for a redacted event: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER (*identifier*),
    MESSAGE_ID (events in EVENTS), SYNCD_*."""
    level = str(event_dict.get("level", "info")).lower()
    record = event_dict.get("_record")
    fields: dict[str, str] = {
        "PRIORITY": str(_PRIORITIES.get(level, 6)),
        "SYSLOG_IDENTIFIER": identifier,
        "SYNCD_VERSION": __version__,
    }
    kind_id = message_id(str(event_dict.get("event", "")))
    if kind_id is not None:
        fields["MESSAGE_ID"] = kind_id
    if isinstance(record, logging.LogRecord):
        fields.update(CODE_FILE=record.pathname, CODE_LINE=str(record.lineno), CODE_FUNC=record.funcName)
    extras: list[str] = []
    for key, value in event_dict.items():
        if key in _META_KEYS or key in ("event", "timestamp"):
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        fields[journald_key(str(key))] = text
        if key not in ("level", "logger", "exception"):
            extras.append(f"{key}={_logfmt(text)}")
    message = " ".join([str(event_dict.get("event", "")), *extras]).strip()
    if "exception" in event_dict:
        message = f"{message}\n{event_dict['exception']}"
    fields["MESSAGE"] = message
    return fields


def _logfmt(text: str) -> str:
    return json.dumps(text, ensure_ascii=False) if (not text or re.search(r'[\s"=]', text)) else text


def syslog_identifier(environ: Mapping[str, str] | None = None) -> str:
    """The journald SYSLOG_IDENTIFIER: ``$SYNCD_SYSLOG_IDENTIFIER`` when set and not blank, else ``syncd``."""
    env = os.environ if environ is None else environ
    return env.get(SYSLOG_IDENTIFIER_ENV, "").strip() or SYSLOG_IDENTIFIER


def _journald_renderer(identifier: str) -> Callable[[object, str, dict[str, Any]], str]:
    def render(logger: object, method_name: str, event_dict: dict[str, Any]) -> str:
        # ProcessorFormatter wants a string; the handler turns it back into fields.
        return json.dumps(journald_fields(event_dict, identifier), ensure_ascii=False)

    return render


class _QuietFailure:
    """handleError that names the failure but never prints the record.

    logging.Handler.handleError prints the record's message and arguments to
    stderr, unredacted, which would leak a secret logged as a %-argument.
    """

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (stdlib name)
        if not logging.raiseExceptions:
            return
        error = sys.exc_info()[1]
        try:
            sys.stderr.write(f"syncd.logs: could not emit a {record.levelname} record from {record.name} "
                             f"({type(error).__name__})\n")
        except Exception:
            pass


class SafeStreamHandler(_QuietFailure, logging.StreamHandler):
    """StreamHandler whose failures never echo the (unredacted) record."""


class JournaldHandler(_QuietFailure, logging.Handler):
    """Sends each formatted record to journald as native fields (via systemd-python)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from systemd import journal

            fields = json.loads(self.format(record))
            message = fields.pop("MESSAGE")
            if "CODE_LINE" in fields:
                fields["CODE_LINE"] = int(fields["CODE_LINE"])
            journal.send(message, **fields)
        except Exception:
            self.handleError(record)


def running_under_journald(stream: TextIO | None = None, environ: Mapping[str, str] | None = None,
                           journal_socket: str = JOURNAL_SOCKET) -> bool:
    """Whether *stream* (default stderr) is connected to journald.

    True when ``$JOURNAL_STREAM`` names the device:inode of *stream* (what
    systemd sets for StandardError=journal), or, when *stream* has no file
    descriptor to compare, when ``$INVOCATION_ID`` says we run as a systemd unit
    and journald's socket exists (so that events are not sent into the void).
    """
    env = os.environ if environ is None else environ
    stream = sys.stderr if stream is None else stream
    journal_stream = env.get("JOURNAL_STREAM", "")
    fd = _fileno(stream)
    if journal_stream and fd is not None:
        try:
            info = os.fstat(fd)
            device, inode = (int(part) for part in journal_stream.split(":"))
            return (info.st_dev, info.st_ino) == (device, inode)
        except (OSError, ValueError):
            return False
    return bool(env.get("INVOCATION_ID")) and fd is None and os.path.exists(journal_socket)


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def resolve_format(format: str, stream: TextIO | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The concrete renderer for *format*: ``auto`` -> journald, console (a TTY) or json."""
    if format not in FORMATS:
        raise ValueError(f"unknown log format {format!r}; expected one of {', '.join(FORMATS)}")
    if format != "auto":
        return format
    stream = sys.stderr if stream is None else stream
    if running_under_journald(stream, environ):
        return "journald"
    return "console" if _isatty(stream) else "json"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def configure_logging(format: str = "auto", level: str = "info", *, stream: TextIO | None = None) -> str:
    """Route structlog and stdlib logging through the redactor to one renderer; returns its name.

    *format* is one of auto, console, json, journald; *level* one of debug,
    info, warning, error, critical; *stream* (default stderr) receives console
    and JSON output. Calling it again replaces the previous set-up (SIGHUP reload).
    """
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
    stream = sys.stderr if stream is None else stream
    chosen = resolve_format(format, stream)
    pre_chain = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Records of libraries logging through stdlib keep the fields they pass as extra={...}.
    foreign_pre_chain = [*pre_chain, structlog.stdlib.ExtraAdder()]
    if chosen == "journald":
        # Fail now, not on the first event, if systemd-python is missing.
        from systemd import journal  # noqa: F401

        handler: logging.Handler = JournaldHandler()
        final = [_journald_renderer(syslog_identifier())]
    elif chosen == "console":
        handler = SafeStreamHandler(stream)
        final = [_drop_meta, structlog.dev.ConsoleRenderer(colors=_isatty(stream))]
    else:
        handler = SafeStreamHandler(stream)
        final = [render_json]
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=foreign_pre_chain,
                                            processors=[redact_event_dict, escape_undecodable, *final])
    )
    handler._syncd_handler = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_syncd_handler", False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *pre_chain,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached, so that a reload that changes the format reaches existing loggers.
        cache_logger_on_first_use=False,
    )
    return chosen


def route_uncaught_exceptions() -> None:
    """Send uncaught exceptions (main thread and other threads) through the redacting log chain.

    Python's default hooks print tracebacks straight to stderr, where a token in
    an exception message would escape the redactor. Call after configure_logging.
    """
    log = get_logger(__name__)

    def main_hook(kind: type[BaseException], error: BaseException, trace: Any) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, error, trace)
            return
        log.critical("uncaught_exception", exc_info=(kind, error, trace))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        thread = args.thread.name if args.thread is not None else "?"
        log.critical("uncaught_exception_in_thread", thread=thread,
                     exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    sys.excepthook = main_hook
    threading.excepthook = thread_hook


def get_logger(name: str = "syncd", **initial_fields: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger named *name* (pass ``__name__``) with *initial_fields* bound.

    Every syncd module gets its logger here, so that this module's default routing
    (``route_to_stdlib_until_configured``) is in place before the first event.
    """
    route_to_stdlib_until_configured()
    return structlog.stdlib.get_logger(name, **initial_fields)


def route_to_stdlib_until_configured() -> None:
    """Until ``configure_logging`` runs, events go to stdlib logging as redacted ``key=value`` text.

    structlog's own default prints every event on stdout, where it would corrupt what a
    command or a child process writes there (``syncd status --json``, a JSON protocol). Through
    stdlib, a process that set no logging up shows warnings and errors on stderr only
    (``logging.lastResort``), and one that did (pytest's caplog, an embedding program) gets records.
    """
    if structlog.is_configured():
        return
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, redact_event_dict, escape_undecodable,
                    structlog.processors.KeyValueRenderer(key_order=["event"])],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # Not stdlib's BoundLogger: its `exception` would have stdlib print the traceback
        # again, unredacted; this one logs it as an error whose text already holds it.
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=False,
    )


route_to_stdlib_until_configured()


# ------------------------------------------------------------------ vocabulary
#
# The one list of what syncd logs: every event name with the fields it may carry, and what
# each field means. tests/logs/test_vocabulary.py holds every log call in syncd/ to it, and
# tests/daemon/test_log_fields.py every line of a real ingestion; docs/LOGS.md is rendered
# from it (`vocabulary_markdown`). Add an event here before logging it.

#: Keys every line has (``exception`` only with a traceback): not repeated in EVENTS.
ENVELOPE: dict[str, str] = {
    "timestamp": "ISO 8601 time, UTC",
    "level": "debug, info, warning, error or critical",
    "logger": "the module that logged it (``syncd.pipeline.ingest``)",
    "event": "the event name (snake_case), or a library's message",
    "exception": "the traceback, secrets masked (``log.exception``)",
}

FIELDS: dict[str, str] = {
    # the file and its place
    "watch": "name of the watch the file belongs to",
    "path": "path of the file relative to its watch, '/'-separated, in display form "
            "(``syncd.pipeline.names.display_path``: undecodable bytes as ``\\xNN``)",
    "file_row": "journal row id of the file",
    "root": "absolute local path of a watch's root folder",
    "subdir": "relative folder a scan was limited to (display form)",
    "directory": "an absolute local directory",
    "archive": "absolute local path a source file was moved to",
    "size": "size in bytes",
    "sha1": "hex SHA-1 of the content",
    "change": "what the journal made of a file seen ready (new, changed, unchanged, ...)",
    "previous_state": "journal state of the file before this observation",
    "closed": "the writer closed the file (an inotify close-after-write was seen)",
    "by": "what found the file (``scan``)",
    "ready_by": "how a file became ready: ``ctime`` (found by a scan, ctime older than the settle "
                "time, no writer by a read lease: taken at once) or ``quiet_time`` (settled)",
    "hold_s": "seconds a file is held back before readiness looks at it again",
    "tracked_s": "seconds readiness has been watching a file",
    "parked": "the entry was parked in the journal (not retried)",
    "kind": "what sort of thing: a path problem's kind, a rate limit's kind, a nomination's kind",
    "mode": "how a watch observes its folder (inotify or polling)",
    # Box
    "file_id": "Box file id",
    "version_id": "Box file version id",
    "folder_id": "Box folder id",
    "old_folder_id": "Box folder id that no longer exists",
    "folder_path": "path of a Box folder below the watch's folder",
    "box_path": "the name a file gets in Box, below the watch's folder",
    "new_version_of": "Box file id the upload adds a version to (none: a new file)",
    "session_id": "Box upload session id",
    "part_size": "size of an upload session's parts, bytes",
    "total_parts": "number of parts of an upload session",
    "part_id": "Box id of an uploaded part",
    "offset": "byte offset of a part within the file",
    "parts_reused": "parts of an earlier session or version Box already had",
    "bytes_reused": "bytes not sent again thanks to reused parts",
    "after_upload": "the source action planned after the upload (keep, delete, move)",
    "decision": "what a name conflict's policy decided",
    "method": "HTTP method of a request to Box",
    "url": "URL of a request, without query string",
    "status": "HTTP status code",
    "error_code": "Box error code (``rate_limit_exceeded``) or a local reason code",
    "request_id": "Box request id (from the error body or the ``box-request-id`` header)",
    "cause": "why a request got no answer (``ConnectionError``, ``ReadTimeout``)",
    "user": "the Box user a rate limit is kept for",
    "window_key": "a shared rate window's key: ``upload:<user>`` or ``api:<user>``",
    "user_id": "Box user id",
    "login": "Box login of the user",
    "limit": "requests per minute now allowed",
    "was": "the limit before",
    "configured": "the limit the configuration asks for",
    "held": "requests waiting when the limit was learned",
    "scope": "what Box refuses: ``credentials`` or ``watch:NAME``",
    "probes": "requests made to find out whether Box accepts again",
    # attempts and timing
    "attempt": "1-based attempt number",
    "wait_s": "seconds waited before the next try (``Retry-After`` or backoff)",
    "retry_in_s": "seconds until the next attempt",
    "retry_after_s": "the ``Retry-After`` Box sent, seconds",
    "duration_ms": "how long the step took, milliseconds",
    "timeout_s": "seconds allowed",
    # why
    "reason": "a human-readable why (failures, quarantine, skips, refusals)",
    "detail": "what follows from it, for a person",
    # after-upload actions
    "action": "the after-upload action (delete or move)",
    "actions": "number of after-upload actions",
    "set_aside_removed": "left-overs of an interrupted action that were removed",
    # scans and intake
    "files": "number of files",
    "nominated": "files a scan handed to readiness",
    "removed": "journal rows of files no longer on disk",
    "unlisted": "folders a scan could not list",
    "entries": "number of entries",
    "item": "the intake queue item that failed",
    # the daemon
    "version": "syncd's version",
    "watches": "names of the configured watches",
    "workers": "number of upload workers of the general lane (any size)",
    "small_file_workers": "number of upload workers of the small-file lane (direct uploads only)",
    "worker": "name of an upload worker",
    "job": "what a job is working on",
    "pid": "process id",
    "once": "``syncd once``: stop when the work is done",
    "thread": "name of a thread",
    "changes": "settings a reload changed",
    "keys": "settings that need a restart",
    "problems": "number of problems found in a config",
    "post_actions_pending": "after-upload actions still to do",
    "pending": "files pending", "uploading": "files uploading", "uploaded": "files uploaded",
    "failed": "files failed", "quarantined": "files quarantined", "skipped": "files skipped",
    "history_deleted": "history rows pruned",
    "rows_forgotten": "file rows pruned",
    "pending_s": "seconds a file has been pending",
    "threshold_s": "the alert's threshold, seconds",
    "window_s": "seconds within which a file is expected",
    "last_arrival": "Unix time of the last file to arrive (none: never)",
    "metric": "name of a metric",
    "client": "address of an HTTP client",
    "request": "an HTTP request line",
    "value": "the value that was refused",
    "notification": "an sd_notify message (``WATCHDOG=1``)",
    "host_id": "this syncd's id among the hosts of a shared journal (``host_id:``)",
    "from_host": "the host whose lapsed lease a takeover ended (None: a row without a holder)",
    "expired_s": "seconds since the lease lapsed, by the database's clock",
    "in_hand_s": "seconds of lease left by this host's own deadline",
    "lease_s": "the claims' lease time (``journal.lease``)",
    "outage_s": "how long the journal was out of reach",
    "claims": "how many claims one journal statement was about",
}


@dataclass(frozen=True)
class EventKind:
    """One kind of event: what it says (for people) and the fields it may carry."""

    summary: str
    fields: tuple[str, ...] = ()


# Fields bound to the logger of one upload attempt (syncd.pipeline.ingest) or one after-upload action.
_ATTEMPT = ("watch", "path", "file_row", "attempt")
_ACTION = ("watch", "path", "file_row", "action")
_DAEMON_COUNTS = ("pending", "uploading", "uploaded", "failed", "quarantined", "skipped")

EVENTS: dict[str, EventKind] = {
    # the daemon
    "daemon_started": EventKind("started: watches active, start-up scan queued",
                                ("version", "watches", "workers", "small_file_workers", "pid", "once", "host_id")),
    "once_finished": EventKind("`syncd once`: nothing in flight or due in any stage; the daemon stops",
                               ("detail",)),
    "daemon_stopping": EventKind("stop asked (SIGTERM, or `once` done)", ("timeout_s",)),
    "daemon_stopped": EventKind("stopped; files by state", ("post_actions_pending", *_DAEMON_COUNTS, "reason")),
    "shutdown_timeout": EventKind("uploads still running at stop were left to resume", ("detail",)),
    "reconciling_interrupted_uploads": EventKind("uploads a crash interrupted are checked with Box first",
                                                 ("files",)),
    "config_warning": EventKind("the config has something worth a look", ("detail",)),
    "config_reloaded": EventKind("SIGHUP: the new config applies", ("changes",)),
    "reload_rejected": EventKind("SIGHUP: the new config is invalid; the old one stays", ("reason", "problems")),
    "reload_needs_restart": EventKind("SIGHUP: these settings apply at the next restart", ("keys", "detail")),
    "daemon_state_not_published": EventKind("the state file for `syncd status` could not be written",
                                            ("reason", "directory")),
    "alert_pending_too_long": EventKind("a file has been pending longer than alerts.pending_older_than",
                                        ("watch", "path", "pending_s", "threshold_s", "detail")),
    "alert_no_files_arrived": EventKind("no file arrived within the watch's expect_files_every",
                                        ("watch", "window_s", "last_arrival", "detail")),
    "uncaught_exception": EventKind("a bug reached the top of the main thread"),
    "uncaught_exception_in_thread": EventKind("a bug ended a thread", ("thread",)),
    "metrics_listening": EventKind("/metrics is served", ("url",)),
    "metrics_server_started": EventKind("the metrics HTTP server is up", ("url",)),
    "metrics_http_request": EventKind("a request to the metrics server", ("client", "request")),
    "metrics_read_failed": EventKind("a metric could not be read; it is left out of this scrape",
                                     ("metric", "reason")),
    "watchdog_usec_invalid": EventKind("$WATCHDOG_USEC is not a number; no watchdog pings", ("value",)),
    "watchdog_pings_stopped": EventKind("a health check failed: systemd's watchdog is no longer pinged",
                                        ("reason",)),
    "watchdog_pings_resumed": EventKind("healthy again: watchdog pings resume"),
    "sd_notify_failed": EventKind("a message to systemd could not be sent", ("notification", "reason")),
    "journal_pruned": EventKind("old history and forgotten rows removed (retention)",
                                ("history_deleted", "rows_forgotten", "duration_ms")),
    "journal_prune_failed": EventKind("retention could not prune now; tried again later", ("reason",)),
    # watches and intake
    "watch_started": EventKind("a watch observes its folder", ("watch", "root", "folder_id", "mode")),
    "watch_stopped": EventKind("a watch was removed from the config", ("watch",)),
    "watch_root_missing": EventKind("a watch's folder does not exist (any more); waiting for it",
                                    ("watch", "reason", "detail")),
    "watch_root_gone": EventKind("the watch's folder went away; its files are kept in the journal", ("watch",)),
    "observer_start_failed": EventKind("the folder could not be observed; tried again with backoff",
                                       ("watch", "reason")),
    "observer_stop_failed": EventKind("an observer failed while stopping (a fresh one is started)", ("watch",)),
    "observer_restarting": EventKind("the observer is replaced and the watch rescanned", ("watch", "reason")),
    "watch_check_crashed": EventKind("a bug in the watch supervisor's check (it goes on)", ("watch",)),
    "inotify_queue_overflowed": EventKind("inotify lost events; the watch is rescanned", ("watch", "detail")),
    "inotify_limit_reached": EventKind("an inotify limit was hit (see the sysctl named)", ("watch", "reason")),
    "fs_event_not_handled": EventKind("a bug while handling a file-system event; the watch is rescanned",
                                      ("watch", "detail")),
    "open_close_count_failed": EventKind("a bug while counting a file's writers; the counts are reset",
                                         ("watch", "detail")),
    "nomination_callback_failed": EventKind("a bug while handing a file to intake", ("watch", "kind")),
    "scan_finished": EventKind("a scan compared a watch (or folder) with the journal",
                               ("watch", "subdir", "reason", "files", "nominated", "removed", "unlisted",
                                "duration_ms")),
    "file_detected": EventKind("a new file is watched until it is ready", ("watch", "path", "closed", "by")),
    "file_ready": EventKind("a file stopped changing and is journaled for upload",
                            ("watch", "path", "size", "change", "previous_state", "ready_by")),
    "file_never_settles": EventKind("a file keeps changing; still watched", ("watch", "path", "tracked_s", "reason")),
    "file_back_to_readiness": EventKind("a file changed while waiting: readiness looks at it again",
                                        ("watch", "path", "hold_s")),
    "file_removed": EventKind("a file left the folder before upload; its row is removed", ("watch", "path")),
    "path_problem": EventKind("a path cannot be used (link, special file, unreadable, bad name)",
                              ("watch", "path", "kind", "detail", "parked")),
    "intake_entry_refused": EventKind("the journal refused an entry; the next scan offers it again",
                                      ("watch", "path", "reason")),
    "upload_cancelled_file_written": EventKind("a file was written during its upload: the upload is cancelled",
                                               ("watch", "path")),
    "intake_error": EventKind("a bug while handling an intake item", ("item",)),
    "intake_observe_failed": EventKind("ready files could not be journaled; offered again", ("files",)),
    "intake_park_failed": EventKind("parked entries could not be journaled; offered again", ("entries",)),
    "readiness_callback_failed": EventKind("a bug in a readiness consumer (readiness goes on)"),
    "readiness_pass_crashed": EventKind("a bug in a readiness pass (the tracker goes on)"),
    "lease_break_hook_failed": EventKind("a bug in the hook that cancels a job when a writer opens its file",
                                         ("job",)),
    # workers and uploads
    "claim_failed": EventKind("a worker could not claim work; it tries again", ("worker",)),
    "job_crashed": EventKind("a bug ended a job; the worker goes on", ("worker", "job")),
    "upload_started": EventKind("an upload begins", (*_ATTEMPT, "size", "folder_id", "new_version_of")),
    "box_name_mapped": EventKind("the name is changed for Box (characters Box refuses)", (*_ATTEMPT, "box_path")),
    "box_folder_recreated": EventKind("the Box folder was deleted and is made again",
                                      (*_ATTEMPT, "folder_path", "old_folder_id", "folder_id", "reason")),
    "name_conflict_resolved": EventKind("Box had an item by that name: the policy decided",
                                        (*_ATTEMPT, "decision", "reason")),
    "upload_session_created": EventKind("a chunked upload session was opened",
                                        (*_ATTEMPT, "session_id", "part_size", "total_parts")),
    "part_uploaded": EventKind("Box acknowledged a part", (*_ATTEMPT, "offset", "size", "part_id")),
    "upload_plan_skipped": EventKind("Box's delta plan is not used; remaining parts go in full",
                                     ("session_id", "reason", "status", "error_code", "request_id", "detail")),
    "upload_session_url_refused": EventKind("a saved session's URL is not Box's; a new session is made",
                                            ("session_id", "url", "reason", "detail")),
    "upload_session_abort_failed": EventKind("an abandoned session could not be aborted (it expires)",
                                             ("session_id", "status", "error_code", "request_id", "detail")),
    "upload_committed": EventKind("the file is in Box, SHA-1 verified",
                                  (*_ATTEMPT, "size", "sha1", "file_id", "version_id", "duration_ms",
                                   "parts_reused", "bytes_reused", "after_upload")),
    "upload_reconciled": EventKind("after a crash: Box already had the upload", (*_ATTEMPT, "file_id", "sha1")),
    "superseded_commit_remembered": EventKind("a commit Box took for a claim that was taken over",
                                              (*_ATTEMPT, "file_id", "version_id")),
    "upload_superseded": EventKind("another claim took the file over", (*_ATTEMPT, "reason")),
    "upload_retry_scheduled": EventKind("the upload failed and is tried again later",
                                        (*_ATTEMPT, "reason", "error_code", "request_id", "retry_in_s")),
    "upload_failed": EventKind("the upload failed for good (`syncd retry` revives it)",
                               (*_ATTEMPT, "reason", "error_code", "request_id", "status")),
    "file_quarantined": EventKind("Box can never take the file as it is", (*_ATTEMPT, "reason", "error_code",
                                                                            "request_id")),
    "file_skipped": EventKind("the conflict policy skipped the file", (*_ATTEMPT, "reason")),
    "file_gone_before_upload": EventKind("the file went away before its upload", (*_ATTEMPT, "reason")),
    "upload_discarded_file_changed": EventKind("the file changed during its upload; it waits to settle again",
                                               (*_ATTEMPT, "reason", "error_code")),
    "upload_paused_for_shutdown": EventKind("a chunked upload stopped at a part boundary; resumed at start",
                                            _ATTEMPT),
    "upload_paused_box_refusing": EventKind("Box refuses this scope; the file waits without losing attempts",
                                            (*_ATTEMPT, "reason", "error_code")),
    "journal_write_failed": EventKind("the journal refused to record an outcome", (*_ATTEMPT, "reason", "detail")),
    "upload_requeued_after_journal_error": EventKind("a claim the journal could not record went back to pending",
                                                     _ATTEMPT),
    "ingest_crashed": EventKind("a bug in an upload attempt; it is retried with backoff", _ATTEMPT),
    # after-upload actions
    "source_deleted": EventKind("the verified source was deleted", (*_ACTION, "sha1")),
    "source_moved": EventKind("the verified source was moved to the archive", (*_ACTION, "archive", "sha1")),
    "source_already_gone": EventKind("the source was gone already", (*_ACTION, "set_aside_removed")),
    "source_action_deferred": EventKind("the action is tried again later",
                                        (*_ACTION, "reason", "error_code", "attempt", "retry_in_s")),
    "source_action_refused": EventKind("the source no longer matches the upload: it is kept",
                                       (*_ACTION, "reason", "sha1")),
    "source_action_crashed": EventKind("a bug in an after-upload action; tried again with backoff", _ACTION),
    "post_action_not_recorded": EventKind("the journal refused an action's outcome; tried again",
                                          ("reason", "detail")),
    "post_actions_unreadable": EventKind("the journal could not list due actions", ("reason",)),
    "post_actions_pass_failed": EventKind("a bug in a pass over due actions"),
    "post_actions_resumed": EventKind("actions journaled before a stop or crash are carried out",
                                      ("actions", "detail")),
    # Box
    "box_connected": EventKind("Box accepted the credentials at start", ("user_id", "login")),
    "box_check_failed": EventKind("the credentials could not be checked at start", ("reason",)),
    "box_unreachable": EventKind("Box did not answer the start-up check", ("reason", "detail")),
    "box_credentials_refused": EventKind("Box refused the credentials: uploads pause", ("reason", "detail")),
    "box_refusing": EventKind("Box refuses a scope: its uploads pause and Box is probed",
                              ("scope", "reason", "retry_in_s", "detail")),
    "box_refusing_defer_failed": EventKind("pending files of a refused watch could not be deferred",
                                           ("watch", "reason")),
    "box_probe_unanswered": EventKind("a probe got no answer", ("scope", "reason")),
    "box_probe_crashed": EventKind("a bug while probing Box", ("scope",)),
    "box_accepting_again": EventKind("Box accepts the scope again: uploads resume", ("scope", "probes")),
    "box_request_retrying": EventKind("a request to Box is sent again",
                                      ("method", "url", "attempt", "wait_s", "status", "error_code", "request_id",
                                       "cause")),
    "box_token_rejected": EventKind("Box rejected the access token: it is refreshed and the request sent again",
                                    ("method", "url", "status", "request_id")),
    "box_token_request_retrying": EventKind("a token request is sent again",
                                            ("url", "attempt", "wait_s", "status", "error_code")),
    # several hosts on one journal (PostgreSQL; docs/MULTI_HOST.md)
    "host_registered": EventKind("this host joined the hosts of the shared journal",
                                 ("host_id", "version", "lease_s", "watches")),
    "host_lock_refused": EventKind("another live syncd process holds this host id: this one stops",
                                   ("host_id", "reason", "detail")),
    "watch_mismatch": EventKind("a watch of the same name goes to another Box folder on another host: not started",
                                ("host_id", "reason")),
    "journal_schema_too_new": EventKind("the shared journal was migrated by a newer syncd: this one stops",
                                        ("reason", "detail")),
    "journal_unavailable": EventKind("the shared journal is out of reach: nothing is claimed, uploads stop "
                                     "before their leases run short", ("reason", "detail")),
    "journal_available": EventKind("the shared journal answers again: claims resume", ("outage_s",)),
    "lease_renewal_failed": EventKind("the claims' leases could not be renewed (once per episode)",
                                      ("claims", "reason")),
    "claim_lease_expiring": EventKind("a claim has less than half a lease in hand: its upload stops",
                                      ("watch", "path", "file_row", "in_hand_s", "reason")),
    "claim_lost": EventKind("a claim was lost: its upload stops before its next Box write and records nothing",
                            ("watch", "path", "file_row", "reason")),
    "claim_taken_over": EventKind("a row whose lease lapsed was taken over: reconciled with Box first",
                                  ("watch", "path", "file_row", "from_host", "expired_s")),
    "claim_outcome_refused": EventKind("an outcome held while the journal was away belongs to another holder now",
                                       ("watch", "path", "file_row", "detail")),
    "takeover_failed": EventKind("lapsed leases could not be looked for", ("reason",)),
    "lease_keeper_failed": EventKind("a bug in the lease keeper's round; the next one runs"),
    "leases_not_given_back": EventKind("at a clean stop the leases could not be given back: they lapse instead",
                                       ("reason", "detail")),
    "box_rate_limit_learned": EventKind("Box's rate limit for a user was learned (429) or relaxed",
                                        ("user", "kind", "limit", "was", "configured", "reason", "held",
                                         "retry_after_s")),
    "box_rate_windows_unavailable": EventKind("the shared rate windows (PostgreSQL) cannot be reached: no request "
                                              "to Box goes out until they answer", ("reason", "detail")),
    "box_rate_windows_reachable": EventKind("the shared rate windows answer again"),
    "box_rate_slot_dropped": EventKind("a rate slot could not be settled (PostgreSQL out of reach): it frees "
                                       "after its stale time", ("window_key", "reason", "detail")),
}

# MESSAGE_ID namespace: never change it, or every MESSAGE_ID changes (journalctl MESSAGE_ID=...,
# catalog entries and alerting rules depend on them staying the same across releases).
MESSAGE_ID_NAMESPACE = uuid.UUID("d6970821-bd05-4559-b0bc-a1011676848b")


def message_id(event: str) -> str | None:
    """journald ``MESSAGE_ID`` of *event*: uuid5 of its name, 32 hex digits; None for names not in EVENTS.

    Derived from the name alone, so it is the same in every release and on every host
    (docs/LOGS.md lists them: ``journalctl MESSAGE_ID=<id>`` finds every event of a kind).
    """
    return uuid.uuid5(MESSAGE_ID_NAMESPACE, event).hex if event in EVENTS else None


def vocabulary_markdown() -> str:
    """docs/LOGS.md's tables of events and fields, rendered from EVENTS and FIELDS."""
    lines = ["| event | fields | MESSAGE_ID | what it says |", "|---|---|---|---|"]
    for name in sorted(EVENTS):
        kind = EVENTS[name]
        fields = ", ".join(f"`{field}`" for field in kind.fields)
        lines.append(f"| `{name}` | {fields} | `{message_id(name)}` | {kind.summary} |")
    lines += ["", "| field | meaning |", "|---|---|"]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in {**ENVELOPE, **FIELDS}.items()]
    return "\n".join(lines) + "\n"
