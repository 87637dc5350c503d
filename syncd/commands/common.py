"""What several commands share: the --config option and loading it with a clear error."""

from __future__ import annotations

import argparse
from pathlib import Path

from syncd.config import Config, ConfigError, load_config

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

DEFAULT_CONFIG = "/etc/syncd/syncd.yaml"


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", type=Path, default=Path(DEFAULT_CONFIG), metavar="FILE",
                        help=f"configuration file (default {DEFAULT_CONFIG})")


class CommandError(Exception):
    """A command cannot go on: `syncd` prints `message` on stderr and exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def load(path: Path) -> Config:
    """The config at `path`; CommandError (exit 2) listing every problem otherwise."""
    try:
        return load_config(path)
    except ConfigError as exc:
        raise CommandError(f"invalid configuration: {exc}", EXIT_USAGE) from None


def locate(config: Config, given: str) -> tuple[str, str]:
    """(watch name, relpath) for a local path inside a watch, or `WATCH:RELPATH`.

    CommandError (exit 2) naming the watches when it is neither.
    """
    names = {w.name for w in config.watches}
    watch_name, sep, rel = given.partition(":")
    if sep and watch_name in names and rel:
        return watch_name, rel.strip("/")
    path = Path(given).absolute()
    for watch in config.watches:
        try:
            relpath = path.relative_to(watch.path)
        except ValueError:
            continue
        if relpath.parts:
            return watch.name, relpath.as_posix()
    roots = ", ".join(f"{w.name} ({w.path})" for w in config.watches)
    raise CommandError(f"{given} is not inside a watched folder; watches: {roots}", EXIT_USAGE)


def open_journal(config: Config, role: str):
    """The journal in `role`; CommandError (exit 1) saying why it cannot be opened."""
    from syncd.journal import Journal, JournalError

    if role != "daemon" and not config.journal.exists():
        raise CommandError(f"no journal at {config.journal} yet: the daemon has not run with this configuration")
    try:
        return Journal.open(config.journal, role=role)  # type: ignore[arg-type]
    except JournalError as exc:
        raise CommandError(str(exc)) from None
