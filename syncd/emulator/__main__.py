"""`python -m syncd.emulator ...`: the emulator alone, same options as `syncd emulator`.

Test fixtures start it this way so that the emulator does not depend on every
other sub-command of the CLI importing cleanly.
"""

from __future__ import annotations

import argparse
import sys

from syncd.emulator import command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="syncd emulator", description=(command.__doc__ or "").strip(),
                                     epilog=command.EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    command.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return command.run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
