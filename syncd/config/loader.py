"""`load_config`: YAML file -> validated `Config`, or `ConfigError` listing every problem."""

from __future__ import annotations

import difflib
import json
import os
import re
import socket
import stat
import string
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

from syncd.config import model
from syncd.config.model import (
    AlertsConfig,
    AuthConfig,
    BoxConfig,
    ClientCredentialsAuth,
    Config,
    DeveloperTokenAuth,
    JournalConfig,
    HealthConfig,
    JwtAuth,
    ListenAddress,
    LoggingConfig,
    MetricsConfig,
    OAuthAuth,
    PostgresJournalConfig,
    ReadinessConfig,
    RetentionConfig,
    RetryConfig,
    WatchConfig,
    is_loopback_host,
)
from syncd.config.problems import ConfigError, Problem
from syncd.config.secret import Secret
from syncd.config.units import DURATION_EXPECTED, SIZE_EXPECTED, parse_duration, parse_size
from syncd.config.yaml_source import join_key, parse_yaml

_MISSING: Any = object()
_DIGITS = re.compile(r"^[0-9]+$")
_CREDENTIAL_NAME = re.compile(r"^[A-Za-z0-9_.@-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
AUTH_TYPES = ("developer_token", "oauth", "client_credentials", "jwt")
_AUTH_KEYS: dict[str, tuple[str, ...]] = {
    "developer_token": ("token",),
    "oauth": ("client_id", "client_secret", "token_store"),
    "client_credentials": ("client_id", "client_secret", "subject_type", "subject_id"),
    "jwt": ("app_config", "private_key_passphrase", "subject_type", "subject_id"),
}
_SECRET_SOURCES = ("file", "env", "credential")
#: Where systemd's LoadCredential=NAME:RELATIVE looks for RELATIVE (systemd.exec(5), "credential store").
CREDSTORE_DIRS = (Path("/etc/credstore"), Path("/run/credstore"), Path("/usr/lib/credstore"))

# Every key the loader reads, by section ("watches[]" is each watch). The example
# config is tested against this, so the two cannot drift apart.
SCHEMA: dict[str, tuple[str, ...]] = {
    "": ("box", "journal", "workers", "small_file_workers", "shutdown_timeout", "scan_interval", "retry", "readiness", "watches",
         "logging", "metrics", "alerts", "health", "retention", "host_id"),
    "journal": ("dsn", "password", "lease"),
    "box": ("api_url", "upload_url", "token_url", "auth", "as_user", "connect_timeout", "read_timeout",
            "direct_upload_max", "part_concurrency", "uploads_per_minute", "calls_per_minute", "verify_tls"),
    "box.auth": ("type", *dict.fromkeys(k for keys in _AUTH_KEYS.values() for k in keys)),
    "retry": ("max_attempts", "initial_backoff", "max_backoff"),
    "readiness": ("settle", "closed_settle", "never_settles_after", "ready_by_ctime"),
    "watches[]": ("path", "folder_id", "recursive", "observer", "poll_interval", "include", "exclude",
                  "default_excludes", "mirror_subfolders", "conflict", "invalid_names", "name_collisions",
                  "after_upload", "archive_dir", "archive_template", "expect_files_every", "name"),
    "logging": ("format", "level"),
    "metrics": ("listen", "allow_remote"),
    "alerts": ("pending_older_than",),
    "health": ("stuck_after", "failure_window"),
    "retention": ("history", "uploaded_rows"),
}


def load_config(path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None,
                resolve_secrets: bool = True, read_journal_password: bool = False,
                credstore_dirs: Iterable[Path] = CREDSTORE_DIRS) -> Config:
    """Read and validate the YAML config at *path*.

    Relative paths inside are resolved against the file's directory; secrets
    given as ``{env: NAME}`` / ``{credential: NAME}`` are read from *environ*
    (default ``os.environ``; credentials from ``$CREDENTIALS_DIRECTORY``).
    Raises `ConfigError` whose ``problems`` lists every problem found.

    With ``resolve_secrets=False`` (commands that never talk to Box) no secret
    source is read: files and credentials are checked for presence and
    permissions where they can be found, and each secret comes back as
    `Secret.unresolved`, whose ``check`` says what was and was not verified.
    Outside systemd (no ``$CREDENTIALS_DIRECTORY``) a credential is looked for
    in *credstore_dirs* under the name the shipped units load it from.
    ``read_journal_password=True`` still reads the PostgreSQL journal's password: the
    commands that never talk to Box (status, history, retry, forget) do connect to the journal.
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, [Problem("", "file not found", "a YAML config file")]) from None
    except IsADirectoryError:
        raise ConfigError(source, [Problem("", "is a directory", "a YAML config file")]) from None
    except PermissionError:
        raise ConfigError(source, [Problem("", "cannot be read (permission denied)")]) from None
    except UnicodeDecodeError as error:
        raise ConfigError(source, [Problem("", f"is not UTF-8 text (byte {error.start})")]) from None
    try:
        document = parse_yaml(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        # Only the short reason: str(error) quotes the offending lines, which may hold a secret.
        reason = getattr(error, "problem", None) or type(error).__name__
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(source, [Problem("", f"is not valid YAML: {reason}", line=line)]) from None
    context = _Context(
        base_dir=source.resolve().parent,
        config_file=source.resolve(),
        environ=os.environ if environ is None else environ,
        lines=document.lines,
        resolve_secrets=resolve_secrets,
        read_journal_password=read_journal_password,
        credstore_dirs=tuple(credstore_dirs),
    )
    context.problems.extend(document.duplicates)
    if document.data is None:
        raise ConfigError(source, [Problem("", "is empty", "a mapping with at least box, journal and watches")])
    if not isinstance(document.data, dict):
        context.problem("", f"is {_kind(document.data)}", "a mapping with box, journal, watches, ...")
        raise ConfigError(source, context.problems)
    config = _read_config(_Section(context, "", document.data), context, source)
    if context.problems:
        raise ConfigError(source, sorted(context.problems, key=lambda p: (p.line or 0, p.key)))
    return config


class _Context:
    """State shared while reading one file: problems found so far, secrets, warnings."""

    def __init__(self, base_dir: Path, config_file: Path, environ: Mapping[str, str], lines: dict[str, int], *,
                 resolve_secrets: bool = True, read_journal_password: bool = False,
                 credstore_dirs: tuple[Path, ...] = CREDSTORE_DIRS):
        self.base_dir = base_dir
        self.config_file = config_file
        self.environ = environ
        self.lines = lines
        self.resolve_secrets = resolve_secrets
        self.read_journal_password = read_journal_password
        self.credstore_dirs = credstore_dirs
        self.problems: list[Problem] = []
        self.secrets: list[Secret] = []
        self.warnings: list[str] = []
        # Files that must never be uploaded (journal, secrets): checked against the watches.
        self.private_paths: list[tuple[str, Path]] = []
        # Inline secrets are only worth a warning when they can reach a real Box.
        self.remote_box = True

    def problem(self, key: str, message: str, expected: str | None = None, hint: str | None = None) -> None:
        self.problems.append(Problem(key, message, expected, hint, self.line_of(key)))

    def line_of(self, key: str) -> int | None:
        # The line of the key, else of its closest enclosing key present in the file.
        probe = key
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            parent = re.sub(r"(\.[^.\[\]]+|\[\d+\])$", "", probe)
            if parent == probe:
                return None
            probe = parent
        return None

    def resolve(self, raw: str) -> Path:
        return (self.base_dir / os.path.expanduser(raw)).resolve()

    def add_secret(self, value: str, source: str) -> Secret:
        secret = Secret(value, source)
        self.secrets.append(secret)
        return secret

    def credstore_names(self, name: str) -> list[str]:
        """The credential store file names the shipped units load credential *name* from:
        syncd.service for /etc/syncd/syncd.yaml, syncd@INSTANCE for /etc/syncd/INSTANCE.yaml."""
        stem = self.config_file.stem
        return [f"syncd.{name}"] if stem == "syncd" else [f"syncd-{stem}.{name}", f"syncd.{name}"]


class _Section:
    """One mapping of the YAML being read; remembers which keys were asked for."""

    def __init__(self, context: _Context, path: str, raw: dict[Any, Any]):
        self.context = context
        self.prefix = path
        self.raw = raw
        self.asked: list[str] = []

    def key(self, name: str) -> str:
        return join_key(self.prefix, name)

    def take(self, name: str) -> Any:
        section = re.sub(r"\[\d+\]", "[]", self.prefix)
        if name not in SCHEMA.get(section, ()):
            raise KeyError(f"loader bug: {join_key(section, name)} is read but missing from SCHEMA")
        self.asked.append(name)
        return self.raw.get(name, _MISSING)

    def fail(self, name: str, message: str, expected: str | None = None, hint: str | None = None) -> None:
        self.context.problem(self.key(name), message, expected, hint)

    def required(self, name: str, expected: str) -> None:
        self.fail(name, "is required but missing", expected)

    def section(self, name: str) -> _Section:
        value = self.take(name)
        if value is _MISSING or value is None:
            return _Section(self.context, self.key(name), {})
        if not isinstance(value, dict):
            self.fail(name, f"is {_kind(value)}", "a mapping of settings")
            return _Section(self.context, self.key(name), {})
        return _Section(self.context, self.key(name), value)

    def string(self, name: str, default: Any = _MISSING, *, expected: str = "a string") -> Any:
        value = self.take(name)
        if value is _MISSING or (value is None and default is None):
            if default is _MISSING:
                self.required(name, expected)
                return None
            return default
        if not isinstance(value, str) or not value.strip():
            self.fail(name, f"is {_kind(value)}", expected)
            return None if default is _MISSING else default
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.take(name)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            self.fail(name, f"is {_kind(value)}", "true or false")
            return default
        return value

    def integer(self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
        value = self.take(name)
        if value is _MISSING:
            return default
        expected = f"a whole number >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, f"is {_kind(value)}", expected)
            return default
        if value < minimum or (maximum is not None and value > maximum):
            self.fail(name, f"is {value}, out of range", expected)
            return default
        return value

    def size(self, name: str, default: int, *, minimum: int = 0) -> int:
        value = self.take(name)
        if value is _MISSING:
            return default
        try:
            size = parse_size(value)
        except ValueError as error:
            self.fail(name, str(error), SIZE_EXPECTED)
            return default
        if size < minimum:
            self.fail(name, f"is {size:,} bytes, too small", f"at least {minimum:,} bytes")
            return default
        return size

    def duration(self, name: str, default: float | None, *, positive: bool = True, nullable: bool = False) -> Any:
        value = self.take(name)
        if value is _MISSING:
            return default
        if value is None and nullable:
            return None
        expected = DURATION_EXPECTED + (" (or null to turn it off)" if nullable else "")
        try:
            seconds = parse_duration(value)
        except ValueError as error:
            self.fail(name, str(error), expected)
            return default
        if positive and seconds <= 0:
            self.fail(name, "is zero", "a duration above zero")
            return default
        return seconds

    def choice(self, name: str, default: Any, options: tuple[str, ...]) -> Any:
        value = self.take(name)
        expected = "one of " + ", ".join(options)
        if value is _MISSING:
            if default is _MISSING:
                self.required(name, expected)
                return None
            return default
        if not isinstance(value, str) or value not in options:
            self.fail(name, f"is {_kind(value)}, not allowed", expected, _did_you_mean(value, options))
            return None if default is _MISSING else default
        return value

    def path(self, name: str, default: Any = _MISSING) -> Any:
        text = self.string(name, default, expected="a file system path")
        return self.context.resolve(text) if isinstance(text, str) else text

    def box_id(self, name: str, default: Any = _MISSING, *, what: str = "Box id") -> Any:
        value = self.take(name)
        expected = f'a {what}: a quoted string of digits such as "123456"'
        if value is _MISSING or (value is None and default is None):
            if default is _MISSING:
                self.required(name, expected)
                return None
            return default
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            # YAML reads 0123 as octal and 0x1f as hex, so a bare number may not be what was typed.
            self.context.warnings.append(f'{self.key(name)}: {value} should be quoted ("{value}")')
            return str(value)
        if not isinstance(value, str) or not _DIGITS.match(value):
            self.fail(name, f"is {_kind(value)}", expected)
            return None
        return value

    def secret(self, name: str, *, required: bool = True) -> Secret | None:
        value = self.take(name)
        expected = "a string, {file: PATH}, {env: NAME} or {credential: NAME}"
        if value is _MISSING or value is None:
            if required:
                self.required(name, expected)
            return None
        if isinstance(value, str):
            if not value.strip():
                self.fail(name, "is empty", expected)
                return None
            self._warn_inline_secret(name)
            return self.context.add_secret(value, "inline")
        if not isinstance(value, dict) or len(value) != 1:
            self.fail(name, f"is {_kind_redacted(value)}", expected)
            return None
        ((kind, where),) = value.items()
        key = f"{self.key(name)}.{kind}"
        if kind not in _SECRET_SOURCES:
            self.context.problem(key, "is not a secret source", "file, env or credential",
                                 _did_you_mean(kind, _SECRET_SOURCES))
            return None
        if not isinstance(where, str) or not where.strip():
            self.context.problem(key, f"is {_kind(where)}", "a non-empty string")
            return None
        if kind == "file":
            return self._secret_from_file(key, self.context.resolve(where))
        if kind == "env":
            return self._secret_from_env(key, where)
        return self._secret_from_credential(key, where)

    def _warn_inline_secret(self, name: str) -> None:
        if not self.context.remote_box:
            return
        try:
            mode = self.context.config_file.stat().st_mode
        except OSError:
            return
        if mode & 0o077:
            self.context.warnings.append(
                f"{self.key(name)}: an inline secret in a config file readable by others "
                f"(mode {stat.S_IMODE(mode):04o}); prefer {{file: ...}}, {{env: ...}} or {{credential: ...}}"
            )

    def _secret_from_file(self, key: str, path: Path) -> Secret | None:
        if not self.context.resolve_secrets:
            info = _check_private_file(self.context, key, path, "secret file")
            if info is None:
                return None
            if info.st_size == 0:
                self.context.problem(key, f"secret file {path} is empty", "the secret on its first line")
                return None
            self.context.private_paths.append((key, path))
            return Secret.unresolved(f"file {path}", f"present, mode {stat.S_IMODE(info.st_mode):04o}, not read")
        text = _read_private_file(self.context, key, path, "secret file")
        if text is None:
            return None
        if not text.strip():
            self.context.problem(key, f"secret file {path} is empty", "the secret on its first line")
            return None
        self.context.private_paths.append((key, path))
        return self.context.add_secret(text.strip(), f"file {path}")

    def _secret_from_env(self, key: str, name: str) -> Secret | None:
        if not _ENV_NAME.match(name):
            self.context.problem(key, f"{name!r} is not an environment variable name", "letters, digits and _")
            return None
        value = self.context.environ.get(name)
        if not self.context.resolve_secrets:
            found = "set in this environment" if value and value.strip() else "not set in this environment"
            return Secret.unresolved(f"env {name}", f"{found}; not read (the service's own environment is what counts)")
        if value is None:
            self.context.problem(key, f"environment variable {name} is not set", f"{name} set in syncd's environment")
            return None
        if not value.strip():
            self.context.problem(key, f"environment variable {name} is empty", "the secret as its value")
            return None
        return self.context.add_secret(value.strip(), f"env {name}")

    def _secret_from_credential(self, key: str, name: str) -> Secret | None:
        if not _CREDENTIAL_NAME.match(name):
            self.context.problem(key, f"{name!r} is not a credential name", "letters, digits, '.', '_', '-', '@'")
            return None
        directory = self.context.environ.get("CREDENTIALS_DIRECTORY")
        if not self.context.resolve_secrets:
            return self._inspect_credential(key, name, directory)
        if not directory:
            self.context.problem(
                key,
                f"credential {name} is asked for but $CREDENTIALS_DIRECTORY is not set",
                f"syncd started by systemd with LoadCredential={name}:/path/to/secret",
            )
            return None
        path = Path(directory) / name
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self.context.problem(
                key, f"credential {name} is not in $CREDENTIALS_DIRECTORY ({directory})",
                f"LoadCredential={name}:/path/to/secret in the unit file",
            )
            return None
        except (OSError, UnicodeDecodeError) as error:
            self.context.problem(key, f"credential {name} cannot be read: {type(error).__name__}")
            return None
        if not text.strip():
            self.context.problem(key, f"credential {name} is empty", "the secret as its content")
            return None
        return self.context.add_secret(text.strip(), f"credential {name}")

    def _inspect_credential(self, key: str, name: str, directory: str | None) -> Secret | None:
        """Presence (and size) of a credential without reading it: in $CREDENTIALS_DIRECTORY when
        systemd set it, else in the credential store the shipped units load it from."""
        source = f"credential {name}"
        if directory:
            path = Path(directory) / name
            try:
                info = path.stat()
            except OSError:
                self.context.problem(
                    key, f"credential {name} is not in $CREDENTIALS_DIRECTORY ({directory})",
                    f"LoadCredential={name}:/path/to/secret in the unit file",
                )
                return None
            if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
                self.context.problem(key, f"credential {name} is empty or not a file", "the secret as its content")
                return None
            return Secret.unresolved(source, "present in $CREDENTIALS_DIRECTORY, not read")
        candidates = [d / f for d in self.context.credstore_dirs for f in self.context.credstore_names(name)]
        for path in candidates:
            try:
                info = path.stat()
            except PermissionError:
                return Secret.unresolved(source, f"not verified: {path.parent} cannot be searched by this user")
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
                self.context.problem(key, f"credential store file {path} is empty or not a file",
                                     "the secret as its content")
                return None
            if info.st_mode & 0o077:
                self.context.problem(
                    key,
                    f"credential store file {path} is open to group/others (mode {stat.S_IMODE(info.st_mode):04o})",
                    "a file only root can read", f"fix: chmod 600 {path}",
                )
                return None
            return Secret.unresolved(
                source, f"not verified outside systemd ($CREDENTIALS_DIRECTORY is not set); "
                f"{path} is present (mode {stat.S_IMODE(info.st_mode):04o}), not read")
        self.context.warnings.append(
            f"{key}: no credential store file for {name} ({', '.join(map(str, candidates))}); "
            f"the service will not start unless a drop-in loads {name} from elsewhere"
        )
        return Secret.unresolved(
            source, "not verified outside systemd ($CREDENTIALS_DIRECTORY is not set, no credential store file found)")

    def finish(self, also_known: Iterable[str] = (), hints: Mapping[str, str] | None = None) -> None:
        """Report every key present but never asked for (an unknown key is an error)."""
        known = list(dict.fromkeys([*self.asked, *also_known]))
        for raw_key in self.raw:
            if not isinstance(raw_key, str):
                self.context.problem(self.key(str(raw_key)), f"key {raw_key!r} is not a string", "a key name")
                continue
            if raw_key in self.asked:
                continue
            hint = (hints or {}).get(raw_key) or _did_you_mean(raw_key, known)
            # With a suggestion the full list is noise; without one it is the help.
            expected = "one of " + ", ".join(known) if known and hint is None else None
            self.context.problem(self.key(raw_key), "is not a known key", expected, hint)


def _read_private_file(context: _Context, key: str, path: Path, what: str) -> str | None:
    """Text of a file holding secrets, refusing one that group or others can read."""
    if _check_private_file(context, key, path, what) is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        context.problem(key, f"{what} {path} cannot be read: {type(error).__name__}")
        return None


def _check_private_file(context: _Context, key: str, path: Path, what: str) -> os.stat_result | None:
    """The stat of a regular file only its owner can read; None (with the problem recorded) otherwise."""
    try:
        info = path.stat()
    except FileNotFoundError:
        context.problem(key, f"{what} {path} does not exist", "an existing file")
        return None
    except OSError as error:
        context.problem(key, f"{what} {path} cannot be examined: {error.strerror}")
        return None
    if not stat.S_ISREG(info.st_mode):
        context.problem(key, f"{what} {path} is not a regular file", "a regular file")
        return None
    if info.st_mode & 0o077:
        context.problem(
            key,
            f"{what} {path} is open to group/others (mode {stat.S_IMODE(info.st_mode):04o})",
            "a file only its owner can read",
            f"fix: chmod 600 {path}",
        )
        return None
    return info


def _read_config(top: _Section, context: _Context, source: Path) -> Config:
    box = _read_box(top.section("box"), context)
    journal = _read_journal(top, context)
    host_id = _read_host_id(top, context)
    workers = top.integer("workers", 4, minimum=1, maximum=256)
    small_file_workers = top.integer("small_file_workers", 8, minimum=1, maximum=256)
    shutdown_timeout = top.duration("shutdown_timeout", 30.0, positive=False)
    scan_interval = top.duration("scan_interval", 600.0)
    retry = _read_retry(top.section("retry"))
    readiness = _read_readiness(top.section("readiness"))
    watches = _read_watches(top, context, readiness.settle)
    logging_config = _read_logging(top.section("logging"))
    metrics = _read_metrics(top.section("metrics"))
    alerts_section = top.section("alerts")
    alerts = AlertsConfig(alerts_section.duration("pending_older_than", 3600.0, nullable=True))
    alerts_section.finish()
    health = _read_health(top.section("health"))
    retention = _read_retention(top.section("retention"))
    top.finish()
    _check_private_paths(context, watches)
    if box.auth is None and not context.problems:
        # Every path that yields no auth records why; this is the backstop if one ever does not.
        context.problem("box.auth", "could not be read", "a complete auth mapping for its type")
    return Config(
        box=box,
        journal=journal,  # type: ignore[arg-type]
        watches=tuple(watches),
        host_id=host_id,
        workers=workers,
        small_file_workers=small_file_workers,
        shutdown_timeout=shutdown_timeout,
        scan_interval=scan_interval,
        retry=retry,
        readiness=readiness,
        logging=logging_config,
        metrics=metrics,
        alerts=alerts,
        health=health,
        retention=retention,
        source=source.resolve(),
        secrets=tuple(context.secrets),
        warnings=tuple(context.warnings),
    )


#: A URI scheme at the start of `journal:` (anything else is a path).
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_POSTGRES_SCHEMES = ("postgresql", "postgres")
_DSN_EXPECTED = "postgresql://USER@HOST[:PORT]/DATABASE, e.g. postgresql://syncd@db.example.com/syncd?sslmode=verify-full"
_PASSWORD_EXPECTED = "the password in journal.password as {file: PATH}, {env: NAME} or {credential: NAME}"
#: Connection parameters that carry or point at a secret: the password has one place, journal.password.
_SECRET_PARAMETERS = ("password", "passfile", "sslpassword")
#: sslmodes that never fall back to a connection in clear.
_TLS_MODES = ("require", "verify-ca", "verify-full")
#: A host id: also a metrics label and part of PostgreSQL's application_name (63 bytes at most).
_HOST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_HOST_ID_EXPECTED = "1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit, unique among the hosts"


def _read_journal(top: _Section, context: _Context) -> JournalConfig | None:
    """`journal:` is a SQLite file's path, a postgresql:// URI, or a mapping {dsn, password, lease}."""
    raw = top.take("journal")
    if isinstance(raw, dict):
        return _read_postgres_journal(top.section("journal"), context)
    if isinstance(raw, str) and _URI_SCHEME.match(raw.strip()):
        dsn = _check_postgres_dsn(context, "journal", raw.strip())
        return None if dsn is None else PostgresJournalConfig(dsn)
    path = top.path("journal")
    if path is not None:
        if path.is_dir():
            context.problem("journal", f"{path} is a directory", "the path of the SQLite journal file")
        context.private_paths.append(("journal", path))
    return path


def _read_postgres_journal(section: _Section, context: _Context) -> PostgresJournalConfig | None:
    raw_dsn = section.string("dsn", expected=_DSN_EXPECTED)
    resolving = context.resolve_secrets
    context.resolve_secrets = resolving or context.read_journal_password
    try:
        password = section.secret("password", required=False)
    finally:
        context.resolve_secrets = resolving
    lease = section.duration("lease", PostgresJournalConfig.lease)
    section.finish(hints={"path": "a SQLite journal is given as the path itself: journal: /var/lib/syncd/journal.db"})
    if lease < 2.0:
        section.fail("lease", f"is {lease:g}s, too short to be renewed in time", "at least 2s (default 60s)")
    dsn = None if raw_dsn is None else _check_postgres_dsn(context, section.key("dsn"), raw_dsn.strip())
    if dsn is None:
        return None
    return PostgresJournalConfig(dsn, password, lease)


def _check_postgres_dsn(context: _Context, key: str, dsn: str) -> str | None:
    """The DSN if libpq accepts it and it holds no secret; else None with the problem recorded.

    Messages never quote a DSN that holds a password: it would end up in logs and terminals.
    """
    parts = urlsplit(dsn)
    if parts.scheme not in _POSTGRES_SCHEMES:
        context.problem(key, f"is a {parts.scheme}:// URI, not a PostgreSQL one",
                        f"a SQLite journal's path, or {_DSN_EXPECTED}")
        return None
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    if ":" in userinfo:
        context.problem(key, "holds a password (USER:PASSWORD@), which would show wherever the DSN is shown",
                        _PASSWORD_EXPECTED, "remove it from the URI; syncd passes it to libpq on its own")
        return None
    names = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True)]
    for name in names:
        if name in _SECRET_PARAMETERS:
            context.problem(key, f"sets {name}=, a secret (or where one is kept) in the URI", _PASSWORD_EXPECTED)
            return None
    if "application_name" in names:
        context.problem(key, "sets application_name=, which syncd sets itself",
                        "a URI without application_name: each session is named after host_id, so that "
                        "pg_stat_activity and syncd status tell the hosts apart")
        return None
    try:
        from psycopg.conninfo import conninfo_to_dict  # libpq's own parser: what it accepts, we accept

        params = conninfo_to_dict(dsn)
    except ImportError as error:
        context.problem(key, f"needs psycopg and libpq, which cannot be loaded here ({error})",
                        "the libpq5 package installed (Debian: apt-get install libpq5)")
        return None
    except Exception as error:  # psycopg.ProgrammingError: libpq's reason, which names the bad part
        context.problem(key, f"is not a connection URI libpq accepts: {str(error).strip()}", _DSN_EXPECTED)
        return None
    if not params.get("dbname"):
        context.problem(key, "names no database", _DSN_EXPECTED,
                        "without one libpq would use the user's name as the database")
        return None
    hosts = [h for h in str(params.get("hostaddr") or params.get("host") or "").split(",") if h]
    remote = [h for h in hosts if not h.startswith("/") and not h.startswith("@") and not is_loopback_host(h)]
    if remote and params.get("sslmode") not in _TLS_MODES:
        context.warnings.append(
            f"{key}: connections to {', '.join(remote)} may go without TLS (sslmode "
            f"{params.get('sslmode', 'prefer (the default)')}): paths and file names would cross the network in "
            "clear; add ?sslmode=verify-full")
    return dsn


def _read_host_id(top: _Section, context: _Context) -> str:
    value = top.take("host_id")
    if value is _MISSING or value is None:
        hostname = socket.gethostname()
        if not _HOST_ID.match(hostname):
            context.problem("host_id", f"is not set, and this machine's hostname {hostname!r} cannot serve as one",
                            _HOST_ID_EXPECTED, "set host_id: explicitly")
        return hostname
    if not isinstance(value, str) or not _HOST_ID.match(value):
        context.problem("host_id", f"is {_kind(value)}, not a usable host id", _HOST_ID_EXPECTED)
        return ""
    return value


def _read_url(section: _Section, name: str, default: str) -> str:
    value = section.string(name, default, expected="an http(s) URL such as https://api.box.com/2.0")
    if value is None:
        return default
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        section.fail(name, f"{value!r} is not an http(s) URL", "an http(s) URL such as https://api.box.com/2.0")
        return default
    if parts.query or parts.fragment:
        section.fail(name, f"{value!r} has a query or fragment", "a base URL without ? or #")
        return default
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        section.fail(
            name, f"{value!r} is plain http to a non-loopback host, which would send tokens in clear",
            "https, or http only to 127.0.0.1/localhost",
        )
    return value.rstrip("/")


def _read_box(section: _Section, context: _Context) -> BoxConfig:
    if not section.raw and section.prefix not in context.lines:
        context.problem("box", "is required but missing", "a mapping with at least auth")
    api_url = _read_url(section, "api_url", model.DEFAULT_API_URL)
    upload_url = _read_url(section, "upload_url", model.DEFAULT_UPLOAD_URL)
    api_parts = urlsplit(api_url)
    derived_token_url = f"{api_parts.scheme}://{api_parts.netloc}/oauth2/token"
    token_url = _read_url(section, "token_url", derived_token_url)
    context.remote_box = not all(is_loopback_host(urlsplit(u).hostname or "") for u in (api_url, upload_url, token_url))
    auth = _read_auth(section.section("auth"), context)
    as_user = section.box_id("as_user", None, what="Box user id")
    connect_timeout = section.duration("connect_timeout", 10.0)
    read_timeout = section.duration("read_timeout", 60.0)
    direct_upload_max = section.size("direct_upload_max", 50 * 1024 * 1024, minimum=model.MIN_DIRECT_UPLOAD_MAX)
    part_concurrency = section.integer("part_concurrency", 4, minimum=1, maximum=64)
    uploads_per_minute = section.integer("uploads_per_minute", 230, minimum=1)
    calls_per_minute = section.integer("calls_per_minute", 950, minimum=1)
    verify_tls = section.boolean("verify_tls", True)
    if not verify_tls:
        for name, url in (("api_url", api_url), ("upload_url", upload_url), ("token_url", token_url)):
            host = urlsplit(url).hostname or ""
            if not is_loopback_host(host):
                context.problem(
                    section.key("verify_tls"),
                    f"is false while {name} points at {host}, a non-loopback host",
                    "true (turning TLS checks off is allowed only for 127.0.0.1/localhost)",
                )
                break
    section.finish()
    return BoxConfig(
        auth=auth,  # type: ignore[arg-type]
        api_url=api_url,
        upload_url=upload_url,
        token_url=token_url,
        as_user=as_user,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        direct_upload_max=direct_upload_max,
        part_concurrency=part_concurrency,
        uploads_per_minute=uploads_per_minute,
        calls_per_minute=calls_per_minute,
        verify_tls=verify_tls,
    )


def _read_auth(section: _Section, context: _Context) -> AuthConfig | None:
    auth_type = section.choice("type", _MISSING, AUTH_TYPES)
    if auth_type is None:
        section.finish(also_known=[k for keys in _AUTH_KEYS.values() for k in keys])
        return None
    # A key that belongs to another auth type gets a hint naming that type.
    hints = {
        key: f"{key} is used by auth type {', '.join(t for t, keys in _AUTH_KEYS.items() if key in keys)}"
        for keys in _AUTH_KEYS.values()
        for key in keys
        if key not in _AUTH_KEYS[auth_type]
    }
    auth: AuthConfig | None
    if auth_type == "developer_token":
        token = section.secret("token")
        auth = DeveloperTokenAuth(token) if token else None
    elif auth_type == "oauth":
        client_id = section.string("client_id")
        client_secret = section.secret("client_secret")
        token_store = section.path("token_store")
        if token_store is not None:
            _check_token_store(section, context, token_store)
        auth = OAuthAuth(client_id, client_secret, token_store) if client_id and client_secret and token_store else None
    elif auth_type == "client_credentials":
        client_id = section.string("client_id")
        client_secret = section.secret("client_secret")
        subject_type = section.choice("subject_type", _MISSING, ("enterprise", "user"))
        subject_id = section.box_id("subject_id", what="enterprise or user id")
        complete = client_id and client_secret and subject_type and subject_id
        auth = ClientCredentialsAuth(client_id, client_secret, subject_type, subject_id) if complete else None
    else:
        auth = _read_jwt(section, context)
    section.finish(hints=hints)
    return auth


def _check_token_store(section: _Section, context: _Context, token_store: Path) -> None:
    key = section.key("token_store")
    context.private_paths.append((key, token_store))
    try:
        info = token_store.stat()
    except FileNotFoundError:
        if not token_store.parent.is_dir():
            context.problem(key, f"folder {token_store.parent} does not exist", "an existing folder for the token store")
        else:
            context.warnings.append(f"{key}: {token_store} does not exist yet; run `syncd auth login` to create it")
        return
    if info.st_mode & 0o077:
        context.problem(
            key, f"token store {token_store} is open to group/others (mode {stat.S_IMODE(info.st_mode):04o})",
            "a file only its owner can read", f"fix: chmod 600 {token_store}",
        )


def _read_jwt(section: _Section, context: _Context) -> JwtAuth | None:
    app_config = section.path("app_config")
    passphrase_override = section.secret("private_key_passphrase", required=False)
    subject_type = section.choice("subject_type", "enterprise", ("enterprise", "user"))
    subject_id = section.box_id("subject_id", None, what="enterprise or user id")
    if app_config is None:
        return None
    key = section.key("app_config")
    if not context.resolve_secrets:
        # The app config holds the client secret and private key: check it, do not read it.
        if _check_private_file(context, key, app_config, "Box app config") is None:
            return None
        context.private_paths.append((key, app_config))
        unread = "present, not read (holds the client secret and private key)"
        return JwtAuth(app_config=app_config, client_id="",
                       client_secret=Secret.unresolved(f"file {app_config}", unread),
                       public_key_id="", private_key=Secret.unresolved(f"file {app_config}", unread),
                       private_key_passphrase=passphrase_override, subject_type=subject_type,
                       subject_id=subject_id or "")
    text = _read_private_file(context, key, app_config, "Box app config")
    if text is None:
        return None
    context.private_paths.append((key, app_config))
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        context.problem(key, f"{app_config} is not JSON (line {error.lineno})", "the JSON downloaded from the Box developer console")
        return None
    settings = _dig(document, "boxAppSettings")
    app_auth = _dig(settings, "appAuth")
    fields = {
        "boxAppSettings.clientID": _dig(settings, "clientID"),
        "boxAppSettings.clientSecret": _dig(settings, "clientSecret"),
        "boxAppSettings.appAuth.publicKeyID": _dig(app_auth, "publicKeyID"),
        "boxAppSettings.appAuth.privateKey": _dig(app_auth, "privateKey"),
    }
    missing = [name for name, value in fields.items() if not isinstance(value, str) or not value]
    if missing:
        context.problem(key, f"{app_config} lacks {', '.join(missing)}", "a Box app config JSON for JWT auth")
        return None
    client_secret = context.add_secret(fields["boxAppSettings.clientSecret"], f"file {app_config}")
    private_key = context.add_secret(fields["boxAppSettings.appAuth.privateKey"], f"file {app_config}")
    passphrase = passphrase_override
    if passphrase is None and isinstance(_dig(app_auth, "passphrase"), str) and _dig(app_auth, "passphrase"):
        passphrase = context.add_secret(_dig(app_auth, "passphrase"), f"file {app_config}")
    if subject_type == "enterprise" and subject_id is None:
        enterprise = _dig(document, "enterpriseID")
        subject_id = str(enterprise) if enterprise not in (None, "", "0", 0) else None
        if subject_id is None:
            context.problem(section.key("subject_id"), "is missing and the app config has no enterpriseID",
                            "the enterprise id to authenticate as")
    elif subject_id is None:
        context.problem(section.key("subject_id"), "is required when subject_type is user", "a Box user id")
    problem = _private_key_problem(private_key, passphrase)
    if problem:
        context.problem(key, problem, "a PEM private key that the passphrase decrypts")
        return None
    if subject_id is None:
        return None
    return JwtAuth(
        app_config=app_config,
        client_id=fields["boxAppSettings.clientID"],
        client_secret=client_secret,
        public_key_id=fields["boxAppSettings.appAuth.publicKeyID"],
        private_key=private_key,
        private_key_passphrase=passphrase,
        subject_type=subject_type,
        subject_id=subject_id,
    )


def _private_key_problem(private_key: Secret, passphrase: Secret | None) -> str | None:
    """Why the key cannot be loaded, in words that never contain the key or passphrase."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    password = passphrase.reveal().encode() if passphrase else None
    try:
        load_pem_private_key(private_key.reveal().encode(), password=password)
    except TypeError:
        if password is None:
            return "the private key is encrypted but no passphrase is given"
        return "the private key is not encrypted but a passphrase is given"
    except ValueError:
        return "the private key cannot be loaded (not PEM, or the passphrase is wrong)"
    except Exception as error:  # an unsupported key type must still be a config problem
        return f"the private key cannot be loaded ({type(error).__name__})"
    return None


def _dig(value: object, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


def _read_retry(section: _Section) -> RetryConfig:
    max_attempts = section.integer("max_attempts", 10, minimum=1)
    initial = section.duration("initial_backoff", 5.0)
    maximum = section.duration("max_backoff", 3600.0)
    if maximum < initial:
        section.fail("max_backoff", f"is shorter than initial_backoff ({maximum:g}s < {initial:g}s)",
                      "max_backoff >= initial_backoff")
    section.finish()
    return RetryConfig(max_attempts, initial, maximum)


def _read_readiness(section: _Section) -> ReadinessConfig:
    settle = section.duration("settle", 2.0, positive=False)
    closed_settle = section.duration("closed_settle", 0.3, positive=False)
    never = section.duration("never_settles_after", 3600.0)
    if never <= settle:
        section.fail("never_settles_after", f"is not longer than settle ({never:g}s <= {settle:g}s)",
                      "never_settles_after > settle")
    ready_by_ctime = section.boolean("ready_by_ctime", True)
    section.finish()
    return ReadinessConfig(settle, closed_settle, never, ready_by_ctime)


def _read_watches(top: _Section, context: _Context, settle: float) -> list[WatchConfig]:
    raw = top.take("watches")
    if raw is _MISSING or raw is None:
        context.problem("watches", "is required but missing", "a list of at least one watch (path, folder_id)")
        return []
    if not isinstance(raw, list) or not raw:
        context.problem("watches", f"is {_kind(raw)}", "a list of at least one watch (path, folder_id)")
        return []
    watches: list[tuple[int, WatchConfig]] = []
    for index, item in enumerate(raw):
        key = f"watches[{index}]"
        if not isinstance(item, dict):
            context.problem(key, f"is {_kind(item)}", "a mapping with at least path and folder_id")
            continue
        watch = _read_watch(_Section(context, key, item), context, settle)
        if watch is not None:
            watches.append((index, watch))
    _check_watch_set(context, watches)
    return [watch for _, watch in watches]


def _read_watch(section: _Section, context: _Context, settle: float) -> WatchConfig | None:
    path = section.path("path")
    folder_id = section.box_id("folder_id", what="Box folder id")
    recursive = section.boolean("recursive", True)
    observer = section.choice("observer", "native", ("native", "polling"))
    poll_interval = section.duration("poll_interval", 5.0)
    include = _read_patterns(section, "include", ("*",))
    exclude = _read_patterns(section, "exclude", ())
    default_excludes = section.boolean("default_excludes", True)
    mirror_subfolders = section.boolean("mirror_subfolders", True)
    conflict = section.choice("conflict", "version", ("version", "skip", "rename", "fail"))
    invalid_names = section.choice("invalid_names", "quarantine", ("quarantine", "sanitize"))
    name_collisions = section.choice("name_collisions", "quarantine", ("quarantine", "rename"))
    after_upload = section.choice("after_upload", "keep", ("keep", "delete", "move"))
    archive_dir = section.path("archive_dir", None)
    archive_template = section.string("archive_template", model.DEFAULT_ARCHIVE_TEMPLATE)
    expect_files_every = section.duration("expect_files_every", None, nullable=True)
    name = section.string("name", None)
    section.finish()
    if after_upload == "move" and archive_dir is None:
        section.fail("archive_dir", "is required when after_upload is move", "the folder to move uploaded files into")
    if after_upload != "move" and archive_dir is not None:
        section.fail("archive_dir", f"is set but after_upload is {after_upload}", "archive_dir only with after_upload: move")
    if archive_template is not None:
        _check_archive_template(section, archive_template)
    if observer == "polling" and settle < 2 * poll_interval:
        # A poll sees a change only once per interval: a shorter settle could call a file
        # finished between two polls of a writer that is still going.
        section.fail("poll_interval", f"is {poll_interval:g}s, but readiness.settle ({settle:g}s) is shorter than "
                     f"2 x poll_interval ({2 * poll_interval:g}s), so a file still being written could be "
                     "taken as finished between two polls",
                     f"poll_interval <= {settle / 2:g}s, or readiness.settle >= {2 * poll_interval:g}s")
    if path is not None:
        if path.exists() and not path.is_dir():
            section.fail("path", f"{path} is not a folder", "a folder to watch")
        elif not path.exists():
            context.warnings.append(f"{section.key('path')}: {path} does not exist (yet)")
    if name is None and path is not None:
        name = path.name or "root"
    if name is not None and (not name.strip() or "/" in name or any(ord(c) < 32 for c in name)):
        section.fail("name", f"{name!r} is not a usable watch name", "a non-empty name without '/' or control characters")
    if path is None:
        return None
    # Even with a bad folder_id or name the watch is kept, so that the checks
    # across watches (duplicates, nesting) still run; problems already recorded
    # make load_config raise anyway.
    return WatchConfig(
        path=path,
        folder_id=folder_id or "",
        name=name or path.name or "root",
        recursive=recursive,
        observer=observer,
        poll_interval=poll_interval,
        include=include,
        exclude=exclude,
        default_excludes=default_excludes,
        mirror_subfolders=mirror_subfolders,
        conflict=conflict,
        invalid_names=invalid_names,
        name_collisions=name_collisions,
        after_upload=after_upload,
        archive_dir=archive_dir,
        archive_template=archive_template or model.DEFAULT_ARCHIVE_TEMPLATE,
        expect_files_every=expect_files_every,
    )


def _read_patterns(section: _Section, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = section.take(name)
    if value is _MISSING:
        return default
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        section.fail(name, f"is {_kind(value)}", "a list of glob patterns such as ['*.pdf', 'scans/*']")
        return default
    return tuple(value)


def _check_archive_template(section: _Section, template: str) -> None:
    expected = "a relative path template using " + ", ".join("{" + f + "}" for f in model.ARCHIVE_TEMPLATE_FIELDS)
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as error:
        section.fail("archive_template", f"{template!r} is not a valid template: {error}", expected)
        return
    unknown = [field for field in fields if field not in model.ARCHIVE_TEMPLATE_FIELDS]
    if unknown:
        section.fail("archive_template", f"uses unknown field {{{unknown[0]}}}", expected,
                      _did_you_mean(unknown[0], model.ARCHIVE_TEMPLATE_FIELDS))
        return
    if not {"relpath", "name", "stem"} & set(fields):
        section.fail("archive_template", "would put every file at the same path", "a template containing {relpath} or {name}")
        return
    try:
        model.render_archive_template(template, "sub/file.txt", datetime(2024, 1, 2, 3, 4, 5), "watch")
    except (ValueError, TypeError, IndexError, KeyError) as error:
        section.fail("archive_template", str(error), expected)


def _check_watch_set(context: _Context, watches: list[tuple[int, WatchConfig]]) -> None:
    """Paths unique and not nested, names unique, archives outside every watch."""
    for position, (index, watch) in enumerate(watches):
        for other_index, other in watches[position + 1:]:
            key = f"watches[{other_index}].path"
            if watch.path == other.path:
                context.problem(key, f"{other.path} is already watched by watches[{index}]", "each folder watched once")
            elif watch.path in other.path.parents:
                context.problem(key, f"{other.path} is inside watches[{index}] ({watch.path})", "watches that do not contain each other")
            elif other.path in watch.path.parents:
                context.problem(f"watches[{index}].path", f"{watch.path} is inside watches[{other_index}] ({other.path})",
                                "watches that do not contain each other")
            if watch.name == other.name:
                context.problem(f"watches[{other_index}].name", f"{other.name!r} is also the name of watches[{index}]",
                                "unique watch names (set name: explicitly)")
    for index, watch in watches:
        if watch.archive_dir is None:
            continue
        for other_index, other in watches:
            if watch.archive_dir == other.path or other.path in watch.archive_dir.parents:
                context.problem(f"watches[{index}].archive_dir", f"{watch.archive_dir} is inside watches[{other_index}] "
                                f"({other.path}), so archived files would be uploaded again", "a folder outside every watch")


def _check_private_paths(context: _Context, watches: list[WatchConfig]) -> None:
    """The journal and secret files must never sit inside a drop folder (they would be uploaded)."""
    for key, path in context.private_paths:
        for index, watch in enumerate(watches):
            if watch.path in path.parents:
                context.problem(key, f"{path} is inside watches[{index}] ({watch.path}) and would be uploaded",
                                "a path outside every watched folder")


def _read_health(section: _Section) -> HealthConfig:
    default = HealthConfig()
    result = HealthConfig(stuck_after=section.duration("stuck_after", default.stuck_after),
                          failure_window=section.duration("failure_window", default.failure_window))
    section.finish()
    return result


def _read_retention(section: _Section) -> RetentionConfig:
    default = RetentionConfig()
    result = RetentionConfig(
        history=section.duration("history", default.history, nullable=True),
        uploaded_rows=section.duration("uploaded_rows", default.uploaded_rows, nullable=True),
    )
    section.finish()
    return result


def _read_logging(section: _Section) -> LoggingConfig:
    result = LoggingConfig(
        format=section.choice("format", "auto", ("auto", "console", "json", "journald")),
        level=section.choice("level", "info", ("debug", "info", "warning", "error", "critical")),
    )
    section.finish()
    return result


def _read_metrics(section: _Section) -> MetricsConfig:
    raw = section.string("listen", None, expected='"HOST:PORT" such as "127.0.0.1:9108", or null for off')
    allow_remote = section.boolean("allow_remote", False)
    section.finish()
    if raw is None:
        return MetricsConfig(None, allow_remote)
    listen = parse_listen_address(raw)
    if listen is None:
        section.fail("listen", f"{raw!r} is not HOST:PORT", '"HOST:PORT" such as "127.0.0.1:9108", or null for off')
        return MetricsConfig(None, allow_remote)
    if not listen.is_loopback and not allow_remote:
        section.fail("listen", f"{raw!r} is reachable from other machines", "a loopback address such as 127.0.0.1:9108",
                      "set metrics.allow_remote: true if that is intended")
    elif not listen.is_loopback:
        section.context.warnings.append(f"metrics.listen: {listen} serves metrics to other machines")
    return MetricsConfig(listen, allow_remote)


def parse_listen_address(text: str) -> ListenAddress | None:
    """``127.0.0.1:9108`` / ``[::1]:9108`` / ``localhost:9108`` -> `ListenAddress`; None if malformed."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^\s:\[\]]*):(\d{1,5})", text.strip())
    if match is None:
        return None
    host = match.group(1) if match.group(1) is not None else match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 1 <= port <= 65535:
        return None
    return ListenAddress(host or "0.0.0.0", port)


def _did_you_mean(value: object, options: Iterable[str]) -> str | None:
    if not isinstance(value, str):
        return None
    matches = difflib.get_close_matches(value, list(options), n=1, cutoff=0.6)
    if not matches:
        lowered = {option.lower(): option for option in options}
        if value.lower() in lowered:
            matches = [lowered[value.lower()]]
    return f"did you mean {matches[0]!r}?" if matches else None


def _kind(value: object) -> str:
    if value is _MISSING or value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"{value!r}" if value.strip() else "an empty string"
    return f"{type(value).__name__} {value!r}"


def _kind_redacted(value: object) -> str:
    """Like _kind, but never echoes a value that may be a secret."""
    if isinstance(value, dict):
        return "a mapping with keys " + ", ".join(map(str, value)) if value else "an empty mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"
