"""Validate a configuration file and print a summary of what it configures.

Every problem is reported at once, with its key path, what is wrong and what is
expected. Secrets are checked for presence and file permissions, never printed.
"""

from __future__ import annotations

import argparse

from syncd.commands.common import EXIT_OK, add_config_argument, load

EPILOG = """examples:
  syncd check-config --config /etc/syncd/syncd.yaml

exit codes: 0 valid; 2 invalid (every problem is listed on stderr).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)


def run(args: argparse.Namespace) -> int:
    config = load(args.config)
    from syncd.config import summarize_config

    print(f"{args.config}: valid")
    print("\n".join(summarize_config(config)))
    for warning in config.warnings:
        print(f"warning: {warning}")
    return EXIT_OK
