"""Make failed files pending again, due now, with their attempts reset: one
file (a local path inside a watch, or WATCH:RELPATH, as `syncd status` shows
it), or every failed file
with --failed (add --all-parked to include quarantined and skipped ones).

Safe while the daemon runs: it picks the files up at its next claim.
"""

from __future__ import annotations

import argparse

from syncd.commands.common import (
    EXIT_FAILURE, EXIT_OK, add_config_argument, add_json_argument, load, locate, open_journal, print_json,
)

EPILOG = """examples:
  syncd retry -c /etc/syncd/syncd.yaml --failed
  syncd retry -c /etc/syncd/syncd.yaml /srv/drop/scans/invoice-17.pdf

exit codes: 0 done (the count is printed); 1 nothing matched or the journal
cannot be written; 2 invalid configuration or arguments.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("path", nargs="?", help="the file to retry (local path or WATCH:RELPATH)")
    target.add_argument("--failed", action="store_true", help="every failed file")
    parser.add_argument("--all-parked", action="store_true",
                        help="also quarantined and skipped files (e.g. after renaming in Box)")
    add_json_argument(parser)


def run(args: argparse.Namespace) -> int:
    config = load(args, resolve_secrets=False)
    watch, relpath = locate(config, args.path) if args.path else (None, None)
    with open_journal(config, "operator") as journal:
        count = journal.retry(watch, relpath, failed_only=not args.all_parked)
    if args.json:
        print_json({"retried": count})
    else:
        print(f"{count} file(s) made pending again")
    return EXIT_OK if count else EXIT_FAILURE
