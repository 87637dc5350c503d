"""What several commands share: --config (and $SYNCD_CONFIG), --json, loading the config
with a clear error, ISO 8601 timestamps for machine-readable output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from syncd.config import Config, ConfigError, PostgresJournalConfig, load_config
from syncd.pipeline.names import parse_display_path

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
#: A process whose stdout was closed by its reader (`syncd history | head -1`) exits as if
#: killed by SIGPIPE would make a shell report it: 128 + 13.
EXIT_BROKEN_PIPE = 141

DEFAULT_CONFIG = "/etc/syncd/syncd.yaml"
#: The configuration file when -c/--config is not given.
CONFIG_ENV = "SYNCD_CONFIG"


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """-c/--config FILE. Given to the top-level parser and to each sub-command, so it may come
    before or after the command; SUPPRESS keeps a sub-command's absent option from erasing
    a top-level one (see `config_path`)."""
    parser.add_argument("--config", "-c", type=Path, default=argparse.SUPPRESS, metavar="FILE",
                        help=f"configuration file (default ${CONFIG_ENV}, else {DEFAULT_CONFIG})")


def add_json_argument(parser: argparse.ArgumentParser, text: str = "machine-readable JSON output") -> None:
    """--json, with its help `text`."""
    parser.add_argument("--json", action="store_true", help=text)


def config_path(args: argparse.Namespace) -> Path:
    """The config file: -c/--config (before or after the command), else $SYNCD_CONFIG, else the default."""
    given = getattr(args, "config", None)
    if given is not None:
        return Path(given)
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


class CommandError(Exception):
    """A command cannot go on: `syncd` prints `message` on stderr and exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def load(args: argparse.Namespace, *, resolve_secrets: bool) -> Config:
    """The config named by `args` (see `config_path`); CommandError (exit 2) listing every problem otherwise.

    Only commands that talk to Box (run, once, push, auth) pass ``resolve_secrets=True``;
    the others read no Box secret, so they work from a root shell without systemd's
    $CREDENTIALS_DIRECTORY. They do read a PostgreSQL journal's password: they connect to it.
    """
    try:
        return load_config(config_path(args), resolve_secrets=resolve_secrets, read_journal_password=True)
    except ConfigError as exc:
        raise CommandError(f"invalid configuration: {exc}", EXIT_USAGE) from None


def iso_time(timestamp: float | None) -> str | None:
    """Unix seconds as ISO 8601 in UTC with its offset (``2026-01-02T03:04:05.250000+00:00``)."""
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat()


def print_json(data: Any, *, indent: int | None = None) -> None:
    """One JSON document on stdout; ASCII-escaped, so a file name that is not UTF-8 still prints."""
    print(json.dumps(data, indent=indent))


def locate(config: Config, given: str) -> tuple[str, str]:
    """(watch name, relpath) for a local path inside a watch, or `WATCH:RELPATH`.

    RELPATH may be written as syncd shows it (`display_path`: ``caf\\xe9.txt`` for
    a name whose byte 0xE9 is not UTF-8, ``a\\\\b`` for a backslash); text that
    is not such an escape is taken as it is. A local path is taken as it is when
    it exists, else read as syncd shows it. CommandError (exit 2) naming the
    watches when it is neither.
    """
    names = {w.name for w in config.watches}
    watch_name, sep, rel = given.partition(":")
    if sep and watch_name in names and rel:
        return watch_name, _shown_path(rel).strip("/")
    path = Path(given if os.path.lexists(given) else _shown_path(given)).absolute()
    for watch in config.watches:
        try:
            relpath = path.relative_to(watch.path)
        except ValueError:
            continue
        if relpath.parts:
            return watch.name, relpath.as_posix()
    roots = ", ".join(f"{w.name} ({w.path})" for w in config.watches)
    raise CommandError(f"{given} is not inside a watched folder; watches: {roots}", EXIT_USAGE)


def _shown_path(text: str) -> str:
    """A path as syncd shows it, read back (`parse_display_path`), or `text` itself when it holds
    no escape syncd writes (a name typed with a lone backslash)."""
    try:
        return parse_display_path(text)
    except ValueError:
        return text


def open_journal(config: Config, role: str):
    """The journal in `role` (a SQLite file or a PostgreSQL database, as this host `config.host_id`);
    CommandError (exit 1) saying why it cannot be opened."""
    from syncd.journal import Journal, JournalError

    where = config.journal
    if not isinstance(where, PostgresJournalConfig) and role != "daemon" and not where.exists():
        raise CommandError(f"no journal at {where} yet: the daemon has not run with this configuration")
    try:
        return Journal.open(where, role=role, host_id=config.host_id)  # type: ignore[arg-type]
    except JournalError as exc:
        raise CommandError(str(exc)) from None


def stdout_closed() -> int:
    """After a BrokenPipeError on stdout: point stdout at /dev/null so that the interpreter's
    final flush cannot raise again, and return the exit code of a process stopped by SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE
