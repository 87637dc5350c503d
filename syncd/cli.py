"""The `syncd` command line: argument parsing and dispatch only.

Every sub-command lives in the layer that owns it; this module only wires
argparse to those entry points, importing each lazily so that, for example,
`syncd emulator` never loads the daemon's dependencies.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from syncd import __version__
from syncd.commands.common import (
    CONFIG_ENV, EXIT_BROKEN_PIPE, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CommandError, add_config_argument,
    stdout_closed,
)


@dataclass(frozen=True)
class Command:
    """A sub-command: where its arguments and its entry point live."""

    name: str
    module: str
    help: str

    def load(self):
        return importlib.import_module(self.module)


# Each module exposes `add_arguments(parser)` and `run(args) -> int`, and may
# set EPILOG (examples shown by --help).
COMMANDS: tuple[Command, ...] = (
    Command("run", "syncd.commands.run", "run the daemon in the foreground until SIGTERM/SIGINT"),
    Command("once", "syncd.commands.once", "scan, upload everything pending, then exit"),
    Command("status", "syncd.commands.status", "what the daemon is doing and what went wrong"),
    Command("history", "syncd.commands.history", "the state changes of all files or of one file"),
    Command("retry", "syncd.commands.retry", "make failed files pending again"),
    Command("forget", "syncd.commands.forget", "drop a file from the journal"),
    Command("push", "syncd.commands.push", "upload files to a Box folder once, with progress bars"),
    Command("auth", "syncd.commands.auth", "OAuth login bootstrap and credential check"),
    Command("check-config", "syncd.commands.check_config", "validate a configuration file"),
    Command("emulator", "syncd.commands.emulator", "serve a local Box API emulator"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncd",
        description="Watch drop folders and ingest every file into Box exactly once.",
        epilog=(
            f"-c/--config may come before or after the command; without it ${CONFIG_ENV} names the file. "
            "Every command but `emulator` takes --json (timestamps in ISO 8601, UTC). "
            f"Exit codes: {EXIT_OK} success; {EXIT_FAILURE} failure (e.g. `once` left files pending or failed, "
            f"the journal is locked by another daemon or unreadable); {EXIT_USAGE} usage or configuration error; "
            f"{EXIT_BROKEN_PIPE} the reader closed the output (`syncd history | head -1`); "
            "`syncd status --check` has monitoring exit codes of its own. "
            "Run `syncd COMMAND --help` for each command's options and examples."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    add_config_argument(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        module = command.load()
        sub = subparsers.add_parser(
            command.name,
            help=command.help,
            description=(module.__doc__ or command.help).strip(),
            epilog=getattr(module, "EPILOG", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` and run the chosen sub-command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args._run
    try:
        code = run(args)
        sys.stdout.flush()  # inside the try: a closed pipe must surface here, not at exit
        return code
    except BrokenPipeError:
        return stdout_closed()
    except CommandError as exc:
        print(f"syncd: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
