"""What several commands share: the --config option and loading it with a clear error."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from syncd.config import Config, ConfigError, load_config

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

DEFAULT_CONFIG = "/etc/syncd/syncd.yaml"


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", type=Path, default=Path(DEFAULT_CONFIG), metavar="FILE",
                        help=f"configuration file (default {DEFAULT_CONFIG})")


def load_or_explain(path: Path) -> Config | None:
    """The config at `path`, or None after printing every problem to stderr."""
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"syncd: invalid configuration: {exc}", file=sys.stderr)
        return None


def locate(config: Config, given: str) -> tuple[str, str]:
    """(watch name, relpath) for a local path inside a watch, or `WATCH:RELPATH`.

    Raises ValueError with a message naming the watches when it is neither.
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
    raise ValueError(f"{given} is not inside a watched folder; watches: {roots}")


def open_journal_or_explain(config: Config, role: str):
    """The journal in `role`, or None after saying why on stderr."""
    from syncd.journal import Journal, JournalError

    try:
        return Journal.open(config.journal, role=role)  # type: ignore[arg-type]
    except JournalError as exc:
        print(f"syncd: {exc}", file=sys.stderr)
        return None
