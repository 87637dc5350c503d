"""syncd configuration: YAML file -> validated, frozen `Config`.

    from syncd.config import load_config, ConfigError
    try:
        config = load_config("/etc/syncd/syncd.yaml")
    except ConfigError as error:
        print(error)            # every problem, one per line, with key path and line
        error.problems          # tuple[Problem, ...]

A leaf module: it imports nothing else from syncd. The caller hands
``config.secrets`` to ``syncd.logs.register_secret`` so the log redactor knows them.
"""

from syncd.config.changes import (
    APPLIED_ON_RELOAD, RESTART_REQUIRED, ConfigChanges, FieldChange, WatchChange, diff_configs,
)
from syncd.config.loader import AUTH_TYPES, SCHEMA, load_config, parse_listen_address
from syncd.config.model import (
    DEFAULT_EXCLUDE,
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
from syncd.config.secret import Secret, SecretNotResolved
from syncd.config.summary import summarize_config, unverified_secrets
from syncd.config.units import format_duration, format_size, parse_duration, parse_size

__all__ = [
    "APPLIED_ON_RELOAD",
    "AUTH_TYPES",
    "RESTART_REQUIRED",
    "SCHEMA",
    "DEFAULT_EXCLUDE",
    "AlertsConfig",
    "AuthConfig",
    "BoxConfig",
    "ClientCredentialsAuth",
    "Config",
    "ConfigChanges",
    "ConfigError",
    "DeveloperTokenAuth",
    "HealthConfig",
    "FieldChange",
    "JournalConfig",
    "JwtAuth",
    "ListenAddress",
    "LoggingConfig",
    "MetricsConfig",
    "OAuthAuth",
    "PostgresJournalConfig",
    "Problem",
    "ReadinessConfig",
    "RetentionConfig",
    "RetryConfig",
    "Secret",
    "SecretNotResolved",
    "WatchChange",
    "WatchConfig",
    "diff_configs",
    "format_duration",
    "format_size",
    "is_loopback_host",
    "load_config",
    "parse_duration",
    "parse_listen_address",
    "parse_size",
    "summarize_config",
    "unverified_secrets",
]
