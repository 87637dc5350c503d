"""Resume benchmark: bytes sent again after a SIGKILL half-way through a chunked upload. Reports, never asserts.

Run: ``python -m bench.resume [--quick] [--size 1GiB] [--part-concurrency 4]``

A fresh emulator (Box's default part-size table: 8 MiB parts up to 256 MiB, 32 MiB
up to 2 GiB) and a ``syncd run`` daemon. One file of ``--size`` bytes (default 1 GiB,
``--quick`` 256 MiB) is dropped; when the emulator's byte counter for part uploads
(``bytes_received["sessions.upload_part"]``, counted by the server, not the daemon)
passes half the size, the daemon is SIGKILLed and restarted, and the upload is let
finish. Bytes sent again = part bytes received in all - size; the bound is what
can be in flight when the kill lands: part_concurrency x part_size.

The figures are printed and written to ``bench/results/resume-<UTC date>.json``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.emulator import EmulatorProcess
from bench.report import save_result
from syncd.config import parse_size
from syncd.testing.daemon_process import (
    CHUNKED_MIN,
    DaemonProcess,
    Watch,
    config_data,
    write_config,
)
from syncd.emulator.context import PartSizeTable

MIB = 1024 * 1024
GIB = 1024 * MIB


class ResumeError(RuntimeError):
    """The benchmark could not run as designed (the upload never got half-way, or never finished)."""


def _write_random_file(path: Path, size: int, seed: int) -> None:
    """Incompressible content written in 8 MiB pieces (never the whole file in memory)."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        left = size
        while left:
            piece = min(left, 8 * MIB)
            handle.write(rng.randbytes(piece))
            left -= piece


def _part_bytes(emulator: EmulatorProcess) -> int:
    return int(emulator.stats()["bytes_received"].get("sessions.upload_part", 0))


def _wait(predicate: Any, timeout: float, interval: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise ResumeError(f"{what} within {timeout:.0f} s")
        time.sleep(interval)


def run_resume(*, size: int, work: Path, part_concurrency: int = 4, kill_fraction: float = 0.5,
               bandwidth: int = 0, timeout: float = 600.0) -> dict[str, Any]:
    """SIGKILL the daemon once `kill_fraction` of a `size`-byte chunked upload reached the emulator; measure the resend.

    `bandwidth` (bytes/s per connection, 0 = unthrottled loopback) makes parts take
    long enough that the kill surely lands with parts half-sent, as on a WAN link.
    """
    if size < CHUNKED_MIN:
        raise ValueError(f"size must be at least {CHUNKED_MIN} bytes (Box's smallest upload session), got {size}")
    work.mkdir(parents=True, exist_ok=True)
    inbox, staging = work / "inbox", work / "staging"
    inbox.mkdir(exist_ok=True)
    source = staging / "take-1.mov"
    _write_random_file(source, size, seed=size)
    part_size = PartSizeTable.parse(PartSizeTable.DEFAULT_TEXT).part_size(size)
    emulator = EmulatorProcess(work / "box", *(["--bandwidth", str(bandwidth)] if bandwidth else []))
    emulator.data_dir.mkdir(exist_ok=True)
    emulator.start()
    daemon: DaemonProcess | None = None
    try:
        config = write_config(work / "syncd.yaml", config_data(
            emulator, work / "journal.db", [Watch(inbox)], readiness={"settle": "300ms"},
            box={"part_concurrency": part_concurrency}))
        daemon = DaemonProcess(config, work / "daemon.log").start()
        started = time.monotonic()
        os.rename(source, inbox / source.name)  # arrives whole, as a mover's rename does
        _wait(lambda: _part_bytes(emulator) >= size * kill_fraction, timeout, 0.02,
              "the upload did not get half-way")
        daemon.kill()
        killed_at = _part_bytes(emulator)
        daemon.start()
        _wait(lambda: bool(daemon.events("upload_committed", since_start=True)), timeout, 0.2,
              "the upload did not finish after the restart")
        elapsed = time.monotonic() - started
        daemon.stop(timeout=30)
        stats = emulator.stats()
    finally:
        if daemon is not None:
            daemon.kill()
        emulator.stop()
    received = int(stats["bytes_received"].get("sessions.upload_part", 0))
    resent = received - size
    bound = part_concurrency * part_size
    return {
        "size": size, "part_size": part_size, "part_concurrency": part_concurrency,
        "bytes_resent": resent, "bound": bound, "ratio": round(resent / bound, 3),
        "killed_at_bytes": killed_at, "killed_at_fraction": round(killed_at / size, 3),
        "part_bytes_received": received,
        "sessions_created": sum(stats["requests"].get("sessions.create", {}).values()),
        "commits_201": stats["requests"].get("sessions.commit", {}).get("201", 0),
        "duration_s": round(elapsed, 1), "bandwidth_per_connection": bandwidth,
    }


def run(*, quick: bool = False) -> dict[str, Any]:
    """The suite's entry point: the median run (by bytes sent again) of 3 at 1 GiB, or 1 at 256 MiB."""
    size, runs = (256 * MIB, 1) if quick else (GIB, 3)
    measured = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="syncd-resume-") as tmp:
            measured.append(run_resume(size=size, work=Path(tmp) / "work"))
    middle = sorted(measured, key=lambda one: one["bytes_resent"])[len(measured) // 2]
    return {**middle, "runs": runs, "raw": measured, "command": f"python -m bench.resume --size {size}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="256 MiB instead of 1 GiB")
    parser.add_argument("--size", type=parse_size, default=None, help="file size, e.g. 1GiB (default)")
    parser.add_argument("--part-concurrency", type=int, default=4)
    parser.add_argument("--bandwidth", type=parse_size, default=0,
                        help="emulator bytes/s per connection, e.g. 20MB (default: unthrottled)")
    args = parser.parse_args(argv)
    size = args.size if args.size is not None else (256 * MIB if args.quick else GIB)
    work = Path(tempfile.mkdtemp(prefix="syncd-resume-"))
    try:
        result = run_resume(size=size, work=work, part_concurrency=args.part_concurrency,
                            bandwidth=args.bandwidth)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["command"] = "python -m bench.resume " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"resume after SIGKILL at {result['killed_at_fraction']:.0%} of a {size / MIB:.0f} MiB chunked upload "
          f"({result['duration_s']:.1f} s in all, {result['sessions_created']} session(s) created)")
    print(f"  {'bytes sent again':<22}{result['bytes_resent'] / MIB:>10.1f} MiB")
    print(f"  {'bound (conc. x part)':<22}{bound_text(result):>14}")
    print(f"  {'ratio to the bound':<22}{result['ratio']:>10.2f}     (target <= 1)")
    out = save_result("resume", result)
    print(f"  written to {out}")
    return 0


def bound_text(result: dict[str, Any]) -> str:
    return f"{result['part_concurrency']} x {result['part_size'] // MIB} MiB"


if __name__ == "__main__":
    raise SystemExit(main())
