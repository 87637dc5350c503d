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

Standard event fields (use these names so logs, journald fields and dashboards agree):

=============  ==================================================================
``watch``      name of the watch the file belongs to
``relpath``    path of the file relative to its watch ('/'-separated)
``path``       absolute local path of the file
``size``       size in bytes
``sha1``       hex SHA-1 of the content
``file_id``    Box file id
``folder_id``  Box folder id
``session_id`` Box upload session id
``part``       part number (0-based) within an upload session
``attempt``    1-based attempt number
``error_code`` Box error code (``rate_limit_exceeded``) or a local reason
``status``     HTTP status code
``request_id`` Box request id (from the error body or the ``box-request-id`` header)
``method``     HTTP method of a request to Box
``url``        URL of a request to Box, without query string
``wait_s``     seconds waited before the next try (``Retry-After`` or backoff)
``cause``      why a request got no answer (``ConnectionError``, ``ReadTimeout``)
``duration_ms`` how long the step took, in milliseconds
``reason``     a human-readable why (failures, quarantine, skips)
=============  ==================================================================

Events are snake_case names of the state change, e.g. ``file_detected``,
``file_ready``, ``upload_started``, ``part_uploaded``, ``upload_committed``,
``upload_retry_scheduled``, ``upload_failed``, ``file_quarantined``,
``source_deleted``, ``source_moved``, ``source_action_deferred`` (reason, error_code,
retry_in_s), ``source_action_refused``, ``post_actions_resumed``, ``box_refusing`` (scope,
reason) and ``box_accepting_again``, ``upload_paused_box_refusing``, ``journal_write_failed``
and ``upload_requeued_after_journal_error``, ``journal_pruned``; from the Box client ``box_request_retrying``
(method, url, attempt, wait_s, and status, error_code, request_id or cause),
``box_token_rejected``, ``box_token_request_retrying``, ``upload_session_abort_failed``.

Under journald each event becomes one entry with ``MESSAGE`` (the event and its
fields as ``key=value``), ``PRIORITY``, ``SYSLOG_IDENTIFIER=syncd``, the code
location and every field as ``SYNCD_<KEY>`` (``path`` -> ``SYNCD_PATH``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import traceback
from collections.abc import Mapping
from typing import Any, Protocol, TextIO

import structlog

from syncd import __version__

FORMATS = ("auto", "console", "json", "journald")
LEVELS = ("debug", "info", "warning", "error", "critical")
MASK = "***"
SYSLOG_IDENTIFIER = "syncd"
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


def journald_fields(event_dict: Mapping[str, Any]) -> dict[str, str]:
    """The journald entry for a redacted event: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, SYNCD_*."""
    level = str(event_dict.get("level", "info")).lower()
    record = event_dict.get("_record")
    fields: dict[str, str] = {
        "PRIORITY": str(_PRIORITIES.get(level, 6)),
        "SYSLOG_IDENTIFIER": SYSLOG_IDENTIFIER,
        "SYNCD_VERSION": __version__,
    }
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


def _render_journald(logger: object, method_name: str, event_dict: dict[str, Any]) -> str:
    # ProcessorFormatter wants a string; the handler turns it back into fields.
    return json.dumps(journald_fields(event_dict), ensure_ascii=False)


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
        final = [_render_journald]
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
    log = get_logger("syncd.uncaught")

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
    """A structlog logger named *name* (``syncd.pipeline.worker``) with *initial_fields* bound."""
    return structlog.stdlib.get_logger(name, **initial_fields)
