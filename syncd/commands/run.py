"""Run the daemon in the foreground: watch the configured drop folders and
upload every file that lands there into Box, until SIGTERM or SIGINT.

SIGHUP reloads the configuration (an invalid one is rejected and the running
one kept). A second SIGTERM/SIGINT stops at once; the journal stays
consistent and interrupted uploads resume at the next start.
"""

from __future__ import annotations

import argparse
import sys

from syncd.commands.common import EXIT_FAILURE, add_config_argument, add_json_argument, load

EPILOG = """examples:
  syncd run --config /etc/syncd/syncd.yaml
  syncd run -c config/demo.yaml

exit codes: 0 stopped cleanly; 1 the journal is held by another daemon or
unreadable (on a PostgreSQL journal: another live process has this host_id, or a
watch of the same name goes to another Box folder on another host); 2 invalid
configuration. Box refusing the credentials (at start or
later) does not stop `syncd run`: uploads pause, `syncd status` and /healthz say
so, and Box is asked again until it accepts them (`syncd once` exits 1 instead).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    add_json_argument(parser, "log as JSON lines on stderr, whatever logging.format says")


def run(args: argparse.Namespace, *, once: bool = False) -> int:
    config = load(args, resolve_secrets=True)
    from syncd.service.daemon import run_daemon
    from syncd.journal import JournalError

    try:
        return run_daemon(config, once=once, log_format="json" if args.json else None)
    except JournalError as exc:
        print(f"syncd: {exc}", file=sys.stderr)
        return EXIT_FAILURE
