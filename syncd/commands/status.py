"""Show what the daemon is doing and what went wrong: files by state, uploads in
flight with progress, the oldest pending file, the last upload, recent failures
with their reasons, alerts, Box refusing us, the last reload, and whether a
daemon is running on this journal (on a PostgreSQL journal: every host, its heartbeat
and the uploads it holds).

Reads the journal without locking it, so it works while the daemon runs, and
never reads a secret, so it works from a root shell outside systemd.

With --check it is a monitoring check (Nagios plugin convention): one line, and
exit 0 OK, 1 WARNING (alerts: a file pending too long, a quiet watch; a lost host;
a rejected reload; settings waiting for a restart), 2 CRITICAL (failed files, Box
refusing us, no daemon running: on PostgreSQL, no host with a fresh heartbeat),
3 UNKNOWN (the configuration or journal cannot be read).
"""

from __future__ import annotations

import argparse

from syncd.commands.common import (
    EXIT_OK, CommandError, add_config_argument, add_json_argument, load, open_journal, print_json,
)

EPILOG = """examples:
  syncd status --config /etc/syncd/syncd.yaml
  syncd status -c /etc/syncd/syncd.yaml --json | jq .counts
  syncd status --check          # in a monitoring check: exit 0 ok, 1 warning, 2 critical, 3 unknown

exit codes: 0 shown; 1 the journal cannot be read; 2 invalid configuration.
With --check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    add_json_argument(parser, "print one JSON object instead of text (timestamps in ISO 8601, UTC)")
    parser.add_argument("--failures", type=int, default=10, metavar="N", help="recent failures to list (default 10)")
    parser.add_argument("--check", action="store_true",
                        help="monitoring check: one line (or --json), exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN")


def run(args: argparse.Namespace) -> int:
    from syncd.commands.status_report import CheckLevel, collect_status, render_status

    try:
        config = load(args, resolve_secrets=False)
        with open_journal(config, "reader") as journal:
            report = collect_status(journal, config, failures=args.failures)
    except CommandError as exc:
        if not args.check:
            raise
        # A check that cannot look is UNKNOWN, not CRITICAL: the monitoring system tells them apart.
        print(f"SYNCD UNKNOWN - {str(exc).splitlines()[0]}")
        return CheckLevel.UNKNOWN
    if args.json:
        print_json(report.to_json(), indent=2)
    elif args.check:
        print(report.check().line())
    else:
        print(render_status(report))
    return report.check().level if args.check else EXIT_OK
