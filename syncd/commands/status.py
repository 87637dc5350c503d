"""Show what the daemon is doing and what went wrong: files by state, uploads in
flight with progress, the oldest pending file, the last upload, recent failures
with their reasons, alerts, and whether a daemon is running on this journal.

Reads the journal without locking it, so it works while the daemon runs.
"""

from __future__ import annotations

import argparse
import json

from syncd.commands.common import EXIT_OK, add_config_argument, load, open_journal

EPILOG = """examples:
  syncd status --config /etc/syncd/syncd.yaml
  syncd status -c /etc/syncd/syncd.yaml --json | jq .counts

exit codes: 0 shown; 1 the journal cannot be read; 2 invalid configuration.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--failures", type=int, default=10, metavar="N", help="recent failures to list (default 10)")


def run(args: argparse.Namespace) -> int:
    config = load(args.config)
    from syncd.commands.status_report import collect_status, render_status

    with open_journal(config, "reader") as journal:
        report = collect_status(journal, config, failures=args.failures)
    print(json.dumps(report.to_json(), indent=2) if args.json else render_status(report))
    return EXIT_OK
