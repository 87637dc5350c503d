"""Drop one file from the journal, whatever its state (its history stays).

The next scan sees it as a new file: use it to upload again a file that was
deleted in Box, or to stop tracking one. PATH is a local path inside a watch,
or WATCH:RELPATH (RELPATH as `syncd status` shows it: `\\xNN` for a byte that is
not UTF-8, `\\\\` for a backslash).
"""

from __future__ import annotations

import argparse

from syncd.commands.common import (
    EXIT_FAILURE, EXIT_OK, add_config_argument, add_json_argument, load, locate, open_journal, print_json,
)
from syncd.pipeline.names import display_path

EPILOG = """examples:
  syncd forget -c /etc/syncd/syncd.yaml /srv/drop/scans/invoice-17.pdf
  syncd forget scans:invoice-17.pdf --json      # {"watch": ..., "path": ..., "forgotten": true}

exit codes: 0 forgotten; 1 the journal did not know the file or cannot be
written; 2 invalid configuration or path.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("path", help="the file (local path or WATCH:RELPATH)")
    add_json_argument(parser)


def run(args: argparse.Namespace) -> int:
    config = load(args, resolve_secrets=False)
    watch, relpath = locate(config, args.path)
    with open_journal(config, "operator") as journal:
        forgotten = journal.forget(watch, relpath)
    if args.json:
        print_json({"watch": watch, "path": display_path(relpath), "forgotten": forgotten})
    else:
        print(f"{watch}:{display_path(relpath)} {'forgotten' if forgotten else 'was not in the journal'}")
    return EXIT_OK if forgotten else EXIT_FAILURE
