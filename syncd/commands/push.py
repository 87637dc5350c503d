"""Upload files (or whole directories) to a Box folder once, from a terminal,
with progress bars: the daemon's client, resume and conflict policy, no journal.

Directories are walked and their sub-folders mirrored in Box. Interrupted
chunked uploads resume when the same push is run again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from syncd.commands.common import (
    EXIT_FAILURE, EXIT_OK, EXIT_USAGE, add_config_argument, add_json_argument, load, print_json,
)

EPILOG = """examples:
  syncd push -c /etc/syncd/syncd.yaml --folder 123456 scan-001.pdf scan-002.pdf
  syncd push -c /etc/syncd/syncd.yaml --folder 0 --conflict rename ./exports/

exit codes: 0 every file uploaded (or skipped by --conflict skip); 1 at least
one failed (listed at the end); 2 invalid configuration or arguments.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or directories to upload")
    parser.add_argument("--folder", required=True, metavar="ID", help='the Box folder id ("0" is All Files)')
    parser.add_argument("--conflict", choices=("version", "skip", "rename", "fail"), default="version",
                        help="when Box already has that name (default: upload a new version)")
    parser.add_argument("--state-file", type=Path, metavar="FILE",
                        help="where resume state is kept (default $XDG_STATE_HOME/syncd/push-sessions.json)")
    add_json_argument(parser, "one JSON object per file on stdout (progress goes to stderr)")


def run(args: argparse.Namespace) -> int:
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        print(f"syncd push: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    if not args.folder.isdigit():
        print(f"syncd push: --folder must be a Box folder id (digits), not {args.folder!r}", file=sys.stderr)
        return EXIT_USAGE
    config = load(args, resolve_secrets=True)
    from syncd.service.box_connection import connect_box
    from syncd.logs import configure_logging, register_secret
    from syncd.commands.push_progress import PushProgress
    from syncd.commands.push_files import PushSessions, default_state_file, expand, push, summary

    for secret in config.secrets:
        register_secret(secret)
    configure_logging("console" if sys.stderr.isatty() else "json", "warning", stream=sys.stderr)
    items = expand(args.paths)
    progress = PushProgress(sys.stderr if args.json else sys.stdout, sum(i.size for i in items), len(items))
    box = connect_box(config, workers=1)
    try:
        results = push(items, args.folder, box, conflict=args.conflict,
                       sessions=PushSessions(args.state_file or default_state_file()), progress=progress)
    finally:
        box.close()
    if args.json:
        for r in results:
            print_json({"path": str(r.item.path), "outcome": r.outcome, "detail": r.detail,
                        "file_id": r.uploaded.file_id if r.uploaded else None})
    for line in summary(results):
        print(line, file=sys.stderr)
    return EXIT_FAILURE if any(r.outcome == "failed" for r in results) else EXIT_OK
