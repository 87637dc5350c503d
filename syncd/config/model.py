"""The validated configuration: frozen dataclasses produced by `load_config`.

Durations are float seconds, sizes are int bytes, paths are absolute
(relative paths in the YAML are resolved against the config file's directory).
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal, Union

from syncd.config.secret import Secret

DEFAULT_API_URL = "https://api.box.com/2.0"
DEFAULT_UPLOAD_URL = "https://upload.box.com/api/2.0"
# Box refuses chunked upload sessions below this size, so files up to it must go direct.
MIN_DIRECT_UPLOAD_MAX = 20_000_000
# The temporary names editors, browsers and copy tools write before the final
# rename, plus dotfiles and dot-directories. syncd.pipeline.filters applies them
# before a watch's own excludes unless the watch says default_excludes: false.
DEFAULT_EXCLUDE: tuple[str, ...] = (
    "*.tmp",
    "*.part",
    "*.partial",
    "*.crdownload",
    ".~lock.*",
    "*.swp",
    "*~",
    ".*",
)
DEFAULT_ARCHIVE_TEMPLATE = "{date:%Y/%m/%d}/{relpath}"
ARCHIVE_TEMPLATE_FIELDS = ("date", "relpath", "name", "stem", "suffix", "watch")


@dataclass(frozen=True)
class DeveloperTokenAuth:
    """A 60-minute developer token (or the emulator's ``--token``)."""

    token: Secret
    type: Literal["developer_token"] = "developer_token"


@dataclass(frozen=True)
class OAuthAuth:
    """OAuth 2.0 authorization code grant; the refresh token lives in ``token_store`` (mode 0600)."""

    client_id: str
    client_secret: Secret
    token_store: Path
    type: Literal["oauth"] = "oauth"


@dataclass(frozen=True)
class ClientCredentialsAuth:
    """Client credentials grant (CCG) for an enterprise service account or a user."""

    client_id: str
    client_secret: Secret
    subject_type: Literal["enterprise", "user"]
    subject_id: str
    type: Literal["client_credentials"] = "client_credentials"


@dataclass(frozen=True)
class JwtAuth:
    """JWT bearer grant, from a Box app config JSON (``boxAppSettings``, ``enterpriseID``)."""

    app_config: Path
    client_id: str
    client_secret: Secret
    public_key_id: str
    private_key: Secret
    private_key_passphrase: Secret | None
    subject_type: Literal["enterprise", "user"]
    subject_id: str
    type: Literal["jwt"] = "jwt"


AuthConfig = Union[DeveloperTokenAuth, OAuthAuth, ClientCredentialsAuth, JwtAuth]


@dataclass(frozen=True)
class BoxConfig:
    """Where Box is, how to authenticate, and how hard to push it."""

    auth: AuthConfig
    api_url: str = DEFAULT_API_URL
    upload_url: str = DEFAULT_UPLOAD_URL
    token_url: str = "https://api.box.com/oauth2/token"
    as_user: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    direct_upload_max: int = 50 * 1024 * 1024
    part_concurrency: int = 4
    uploads_per_minute: int = 230
    calls_per_minute: int = 950
    verify_tls: bool = True


@dataclass(frozen=True)
class RetryConfig:
    """Exponential backoff for failed uploads (seconds)."""

    max_attempts: int = 10
    initial_backoff: float = 5.0
    max_backoff: float = 3600.0


@dataclass(frozen=True)
class ReadinessConfig:
    """When a file counts as finished being written (seconds).

    ``settle``: quiet period after the last event; ``closed_settle``: shorter
    quiet period after the writer closed the file (IN_CLOSE_WRITE);
    ``never_settles_after``: a file still changing after this long is reported;
    ``ready_by_ctime``: a file found by a scan whose ctime is older than ``settle``
    and that no process has open for writing (a read lease says so) is ready at once.
    """

    settle: float = 2.0
    closed_settle: float = 0.3
    never_settles_after: float = 3600.0
    ready_by_ctime: bool = True


@dataclass(frozen=True)
class WatchConfig:
    """One drop folder and the Box folder its files go to.

    ``exclude`` holds only the watch's own patterns; :data:`DEFAULT_EXCLUDE`
    applies before them unless ``default_excludes`` is False (gitignore order:
    a watch pattern ``!name`` can re-include a default-excluded name).
    ``invalid_names`` also decides for names that are not valid UTF-8;
    ``name_collisions`` for two local paths that are one name in Box.
    """

    path: Path
    folder_id: str
    name: str
    recursive: bool = True
    observer: Literal["native", "polling"] = "native"
    poll_interval: float = 5.0
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()  # the watch's own patterns, as given; see default_excludes
    default_excludes: bool = True  # DEFAULT_EXCLUDE applies before `exclude`
    mirror_subfolders: bool = True
    conflict: Literal["version", "skip", "rename", "fail"] = "version"
    invalid_names: Literal["quarantine", "sanitize"] = "quarantine"  # also names that are not UTF-8
    name_collisions: Literal["quarantine", "rename"] = "quarantine"  # two local names, one Box name
    after_upload: Literal["keep", "delete", "move"] = "keep"
    archive_dir: Path | None = None
    archive_template: str = DEFAULT_ARCHIVE_TEMPLATE
    expect_files_every: float | None = None

    def archive_path(self, relpath: str, when: _dt.datetime) -> Path:
        """Where ``after_upload: move`` puts the file at *relpath*, uploaded at *when*."""
        if self.archive_dir is None:
            raise ValueError(f"watch {self.name!r} has no archive_dir (after_upload is {self.after_upload})")
        return self.archive_dir / render_archive_template(self.archive_template, relpath, when, self.name)


def render_archive_template(template: str, relpath: str, when: _dt.datetime, watch: str) -> PurePosixPath:
    """Fill *template* and check that the result stays inside the archive folder."""
    pure = PurePosixPath(relpath)
    rendered = template.format(
        date=when, relpath=relpath, name=pure.name, stem=pure.stem, suffix=pure.suffix, watch=watch
    )
    result = PurePosixPath(rendered)
    if result.is_absolute() or ".." in result.parts or not result.parts:
        raise ValueError(f"archive_template {template!r} gives {rendered!r}, which leaves the archive folder")
    return result


@dataclass(frozen=True)
class LoggingConfig:
    """Log output: ``auto`` picks journald under systemd, console on a terminal, JSON otherwise."""

    format: Literal["auto", "console", "json", "journald"] = "auto"
    level: Literal["debug", "info", "warning", "error", "critical"] = "info"


@dataclass(frozen=True)
class ListenAddress:
    """A host and TCP port to listen on."""

    host: str
    port: int

    @property
    def is_loopback(self) -> bool:
        """True for localhost, 127.0.0.0/8 and ::1."""
        return is_loopback_host(self.host)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus endpoint; off when ``listen`` is None."""

    listen: ListenAddress | None = None
    allow_remote: bool = False


@dataclass(frozen=True)
class AlertsConfig:
    """Thresholds for alert-level warnings (seconds; None = off)."""

    pending_older_than: float | None = 3600.0


@dataclass(frozen=True)
class PostgresJournalConfig:
    """A journal in PostgreSQL, shared by several syncd hosts on one drop folder (docs/MULTI_HOST.md).

    ``dsn``: a libpq connection URI naming the database, never with a password (the
    loader refuses one, so the DSN may be shown and logged); ``password``: from a file,
    env or systemd credential like every other secret, or None when the server
    authenticates otherwise (peer, certificate); ``lease``: seconds a host's claim on a
    file holds without being renewed, after which another host takes the file over.
    """

    dsn: str
    password: Secret | None = None
    lease: float = 60.0

    def __str__(self) -> str:
        return self.dsn


#: Where the journal is: a SQLite file (one host), or a PostgreSQL database (several hosts).
JournalConfig = Union[Path, PostgresJournalConfig]


@dataclass(frozen=True)
class HealthConfig:
    """What the daemon's health check (``/healthz`` and the systemd watchdog) calls stuck (seconds).

    ``stuck_after``: a job (an upload, its hashing, its commit polls, an after-upload
    action) that made no progress for this long makes the daemon unhealthy.
    ``failure_window``: a critical probe is only held against the daemon once its
    failures in a row span this long (one slow check never costs a restart).
    """

    stuck_after: float = 600.0
    failure_window: float = 30.0


@dataclass(frozen=True)
class RetentionConfig:
    """How long the journal keeps what is done (seconds; None: for ever).

    ``history``: history lines older than this are deleted. ``uploaded_rows``: the row of
    a file uploaded longer ago than this is forgotten once its source is gone (deleted or
    archived after upload, or removed); a file dropped again under that name afterwards is
    uploaded as a new one (a new version, by the conflict policy).
    """

    history: float | None = 90 * 86400.0
    uploaded_rows: float | None = 90 * 86400.0


@dataclass(frozen=True)
class Config:
    """A whole validated config file.

    ``secrets`` lists every secret the file refers to, so the caller can hand
    them to the log redactor (``syncd.logs.register_secret``); ``warnings`` are
    things worth saying that do not stop syncd from running. Neither, nor
    ``source``, takes part in equality. ``host_id`` names this syncd among the hosts
    sharing a PostgreSQL journal (and in metrics and status).
    """

    box: BoxConfig
    journal: JournalConfig
    watches: tuple[WatchConfig, ...]
    host_id: str = "localhost"  # the loader's default is the hostname
    workers: int = 4  # the general lane: files of any size, oldest due first
    small_file_workers: int = 8  # the small-file lane: direct uploads only, smallest first
    shutdown_timeout: float = 30.0
    scan_interval: float = 600.0
    retry: RetryConfig = field(default_factory=RetryConfig)
    readiness: ReadinessConfig = field(default_factory=ReadinessConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    source: Path | None = field(default=None, compare=False)
    secrets: tuple[Secret, ...] = field(default=(), compare=False, repr=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def watch_named(self, name: str) -> WatchConfig:
        """The watch called *name*; KeyError naming the known ones otherwise."""
        for watch in self.watches:
            if watch.name == name:
                return watch
        raise KeyError(f"no watch named {name!r}; known: {', '.join(w.name for w in self.watches)}")


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` (and ``*.localhost``), 127.0.0.0/8 and ::1; no DNS lookups."""
    bare = host.strip("[]").lower()
    if bare == "localhost" or bare.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False
