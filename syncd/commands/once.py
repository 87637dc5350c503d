"""Scan every watched folder, upload all that is pending, then exit.

A file the scan finds with a ctime older than the settle time, and that no
process has open for writing, is taken at once; any other file must still
settle (stop changing) before it is uploaded. Exits the moment nothing is in
flight or due (the scans done, nothing settling, no upload or after-upload
action running or due), right after the last commit is journaled. Exits 0
only if nothing is left pending or failed; files whose retry is scheduled
more than 30 seconds ahead are left for the next run and make it exit 1.
"""

from __future__ import annotations

import argparse

from syncd.commands import run as run_command

EPILOG = """examples:
  syncd once --config /etc/syncd/syncd.yaml && echo "all ingested"

exit codes: 0 everything uploaded (or quarantined/skipped with a reason);
1 files left pending or failed, after-upload actions (delete, move) left undone,
or Box refused the credentials (see `syncd status`); 2 invalid configuration.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    run_command.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_command.run(args, once=True)
