"""``python -m bench``: the benchmark suite, one command, one table.

    python -m bench all [--quick] [--only NAME ...]

runs the benchmarks (each against its own fresh emulator), writes
``bench/results/<UTC date>.json`` (``<date>-quick.json`` with --quick) and regenerates
``docs/BENCHMARKS.md`` with the plots it links. With --only, the named benchmarks
replace theirs in the newest results file of the kind (today's, or the last day's) and the
rest of its table is kept, each benchmark with the date it ran; the merged table is written
as today's. ``python -m bench list`` names the benchmarks; ``python -m bench render
RESULTS.json`` redraws the table and plots from a results file without running anything.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.suite import (
    BENCHMARKS,
    ResultsFileError,
    latest_results_path,
    load_report,
    merge_reports,
    run_suite,
    shell_command,
    write_outputs,
)


def build_parser() -> argparse.ArgumentParser:
    """The command line: ``all`` (with --quick/--only) and ``list``."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                     epilog=f"benchmarks: {', '.join(BENCHMARKS)}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("all", help="run the benchmarks, write the results JSON and docs/BENCHMARKS.md")
    run.add_argument("--quick", action="store_true", help="smaller sizes and fewer runs: about 5 minutes on 2 cores")
    run.add_argument("--only", nargs="+", metavar="NAME", choices=list(BENCHMARKS),
                     help=f"run only these benchmarks (of: {', '.join(BENCHMARKS)})")
    commands.add_parser("list", help="name the benchmarks")
    render = commands.add_parser("render", help="regenerate docs/BENCHMARKS.md and the plots from a results JSON")
    render.add_argument("results", type=Path, help="a bench/results/<date>.json written by `all`")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(arguments)
    if args.command == "list":
        print("\n".join(BENCHMARKS))
        return 0
    if args.command == "render":
        try:
            report = load_report(args.results)
        except ResultsFileError as error:
            print(f"cannot render: {error}", file=sys.stderr)
            return 2
        json_path, markdown_path = write_outputs(report, results_dir=args.results.parent)
        print(f"wrote {json_path} and {markdown_path}")
        return 0
    earlier = None
    if args.only:
        # Read the file the rerun merges into before running anything: a long run must not be
        # thrown away at the end because that file cannot be read.
        path = latest_results_path(quick=args.quick)
        try:
            earlier = load_report(path) if path is not None else None
        except ResultsFileError as error:
            print(f"cannot merge --only into {path.name}: {error}", file=sys.stderr)
            return 2
    report = run_suite(args.only or list(BENCHMARKS), quick=args.quick, command=shell_command(arguments))
    if earlier is not None:
        report = merge_reports(earlier, report)
    json_path, markdown_path = write_outputs(report)
    failed = [outcome.name for outcome in report.outcomes if outcome.error]
    print(f"wrote {json_path} and {markdown_path}" + (f"; did not run: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
