"""Show the history of state changes, newest first: of every file, of one
watch, or of one file (a local path inside a watch, or WATCH:RELPATH; RELPATH as
`syncd status` and `history` show it, `\\xNN` for a byte that is not UTF-8).
"""

from __future__ import annotations

import argparse
from datetime import datetime

from syncd.commands.common import (
    EXIT_OK, add_config_argument, add_json_argument, iso_time, load, locate, open_journal, print_json,
)
from syncd.pipeline.names import display_path

EPILOG = """examples:
  syncd history -c /etc/syncd/syncd.yaml
  syncd history -c /etc/syncd/syncd.yaml /srv/drop/scans/2026/invoice-17.pdf
  syncd history -c /etc/syncd/syncd.yaml scans:2026/invoice-17.pdf --json

exit codes: 0 shown; 1 the journal cannot be read; 2 invalid configuration or path.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("path", nargs="?", help="a file (local path or WATCH:RELPATH); all files when omitted")
    parser.add_argument("--watch", help="only this watch")
    parser.add_argument("--limit", type=int, default=100, metavar="N", help="most entries to show (default 100)")
    add_json_argument(parser, "one JSON object per line (ts in ISO 8601, UTC)")


def run(args: argparse.Namespace) -> int:
    config = load(args, resolve_secrets=False)
    watch, relpath = locate(config, args.path) if args.path else (args.watch, None)
    with open_journal(config, "reader") as journal:
        entries = journal.history(watch=watch, relpath=relpath, limit=args.limit)
    for e in entries:
        if args.json:
            print_json({"ts": iso_time(e.ts), "watch": e.watch, "path": display_path(e.relpath), "event": str(e.event),
                        "from": e.from_state and str(e.from_state), "to": e.to_state and str(e.to_state),
                        "attempt": e.attempt, "detail": e.detail})
        else:
            when = datetime.fromtimestamp(e.ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")
            move = f"{e.from_state or '-'} -> {e.to_state or '-'}"
            detail = f"  {e.detail}" if e.detail else ""
            print(f"{when}  {e.watch}:{display_path(e.relpath)}  {e.event}  {move}  attempt {e.attempt}{detail}")
    if not entries and not args.json:
        print("no history" + (f" for {watch}:{display_path(relpath)}" if relpath else ""))
    return EXIT_OK
