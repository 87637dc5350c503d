"""Validate a configuration file and print a summary of what it configures.

Every problem is reported at once, with its key path, what is wrong and what is
expected. Secrets are never read: files and systemd credentials are checked for
presence and permissions where they can be found, and the output says what could
not be verified from here (a credential outside systemd, an environment variable
only the service has).

The units run it as the first step of `systemctl reload` (ExecReload=), so a
config that would be rejected fails the reload instead of being signalled.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from syncd.commands.common import (
    EXIT_OK, EXIT_USAGE, add_config_argument, add_json_argument, config_path, print_json,
)

EPILOG = """examples:
  syncd check-config --config /etc/syncd/syncd.yaml
  syncd check-config --json | jq .unverified

exit codes: 0 valid; 2 invalid (every problem is listed on stderr, or in "problems" with --json).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    add_json_argument(parser)


def run(args: argparse.Namespace) -> int:
    from syncd.config import ConfigError, load_config, summarize_config, unverified_secrets

    path = config_path(args)
    try:
        config = load_config(path, resolve_secrets=False)
    except ConfigError as exc:
        if args.json:
            print_json({"config": str(path), "valid": False,
                        "problems": [dataclasses.asdict(p) for p in exc.problems]}, indent=2)
        else:
            print(f"syncd: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    unverified = unverified_secrets(config)
    if args.json:
        print_json({"config": str(path), "valid": True, "summary": summarize_config(config),
                    "warnings": list(config.warnings), "unverified": unverified}, indent=2)
        return EXIT_OK
    print(f"{path}: valid")
    print("\n".join(summarize_config(config)))
    for warning in config.warnings:
        print(f"warning: {warning}")
    if unverified:
        print("secrets (not read by check-config):")
        print("\n".join(f"  {line}" for line in unverified))
    return EXIT_OK
