"""Many small files through the daemon under Box's upload rate limit scaled up 10x.
Reports, never asserts.

Run: ``python -m bench.small_files [--files 2000] [--runs 3]``

A fresh emulator enforcing ``--upload-rate-limit 2400`` (Box's 240 uploads/min x 10)
and a ``syncd run`` daemon configured with ``box.uploads_per_minute`` just under it
(2,350). The benchmark drops ``--files`` files of 64 KiB into the watched folder at once
and times the daemon's ``upload_committed`` events. Reported per run:

* sustained files/s, as a fraction of the 40/s ceiling the rate limit allows (target
  >= 0.95): commits from ``BURST_SECONDS`` after the first one to the last, over their
  span (start-up left out; the daemon's sliding-window limiter lets a whole window's
  budget out at once, as Box's own 60 s window allows); the overall rate (first to last
  commit) is reported beside it;
* the emulator's 429 answers (from ``GET /_emulator/stats``) as a fraction of all
  requests (target < 1%).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.emulator import (
    SCALED_DAEMON_UPLOADS_PER_MINUTE,
    SCALED_UPLOADS_PER_MINUTE,
    BenchError,
    EmulatorProcess,
    count_status,
)
from bench.report import save_result
from syncd.testing.daemon_process import DaemonProcess, event_time, write_config

FILE_SIZE = 64 * 1024
CEILING_FILES_PER_S = SCALED_UPLOADS_PER_MINUTE / 60
TARGET_FRACTION = 0.95
TARGET_429_SHARE = 0.01
BURST_SECONDS = 2.0  # the first commits (start-up, the first burst) are left out of the sustained rate


@dataclass(frozen=True)
class SmallFilesRun:
    """What one run measured."""

    files: int
    committed: int
    seconds: float
    overall_files_per_s: float
    files_per_s: float
    fraction_of_ceiling: float
    requests: int
    responses_429: int
    share_429: float


def _commit_times(daemon: DaemonProcess) -> list[float]:
    return sorted(event_time(event) for event in daemon.events("upload_committed"))


def _write_config(work: Path, emulator: EmulatorProcess, inbox: Path) -> Path:
    return write_config(work / "syncd.yaml", {
        "box": {"api_url": emulator.api_url, "upload_url": emulator.upload_url,
                "auth": {"type": "developer_token", "token": emulator.token},
                "uploads_per_minute": SCALED_DAEMON_UPLOADS_PER_MINUTE,
                # The emulator enforces no API-call limit here; the daemon's default (950/min)
                # would otherwise cap preflights and hide the upload limit being measured.
                "calls_per_minute": 100_000},
        "journal": str(work / "journal.db"),
        "workers": 8,
        "watches": [{"path": str(inbox), "folder_id": "0"}],
        "readiness": {"settle": "1s"},
        "logging": {"format": "json"},
    })


def sustained_rate(commits: list[float], skip_seconds: float) -> float:
    """Commits per second from ``skip_seconds`` after the first commit to the last one."""
    after = [stamp for stamp in commits if stamp >= commits[0] + skip_seconds]
    if len(after) < 2 or after[-1] <= after[0]:
        raise BenchError(f"too few commits after the first {skip_seconds:.0f} s to measure a sustained rate "
                         f"({len(after)} of {len(commits)}); use more files")
    return (len(after) - 1) / (after[-1] - after[0])


def measure(files: int, work: Path, timeout: float = 600.0) -> SmallFilesRun:
    """One run: a fresh emulator and daemon, ``files`` files of 64 KiB dropped at once."""
    with EmulatorProcess(work / "box", "--upload-rate-limit", str(SCALED_UPLOADS_PER_MINUTE)) as emulator:
        inbox = work / "inbox"
        inbox.mkdir()
        daemon = DaemonProcess(_write_config(work, emulator, inbox), work / "daemon.log")
        try:
            daemon.start()
            payload = os.urandom(FILE_SIZE - 8)
            for index in range(files):
                (inbox / f"small-{index:05}.bin").write_bytes(index.to_bytes(8, "big") + payload)
            deadline = time.monotonic() + timeout
            commits = _commit_times(daemon)
            while len(commits) < files and time.monotonic() < deadline and daemon.running():
                time.sleep(0.5)
                commits = _commit_times(daemon)
            stats = emulator.stats()
            daemon.stop(timeout=60)
        finally:
            daemon.kill()
    if len(commits) < 2:
        raise BenchError(f"only {len(commits)} of {files} files committed")
    seconds = commits[-1] - commits[0]
    overall = (len(commits) - 1) / seconds if seconds > 0 else float("inf")
    rate = sustained_rate(commits, BURST_SECONDS)
    throttled, requests = count_status(stats, "429")
    return SmallFilesRun(files, len(commits), round(seconds, 2), overall, rate, rate / CEILING_FILES_PER_S,
                         requests, throttled, throttled / requests if requests else 0.0)


def run(*, quick: bool = False, runs: int | None = None, files: int | None = None) -> dict[str, Any]:
    """The suite's entry point: medians over ``runs`` of files/s, its fraction of the ceiling and the 429 share."""
    runs = runs or (2 if quick else 3)
    files = files or (1000 if quick else 2000)
    measured: list[SmallFilesRun] = []
    for index in range(runs):
        with tempfile.TemporaryDirectory(prefix="syncd-small-") as tmp:
            measured.append(measure(files, Path(tmp)))
        last = measured[-1]
        print(f"  small files run {index + 1}/{runs}: {last.committed}/{files} committed, {last.files_per_s:.1f} files/s "
              f"({last.fraction_of_ceiling:.3f} of {CEILING_FILES_PER_S:.0f}/s), {last.responses_429} x 429 "
              f"of {last.requests} requests", flush=True)
    return {
        "runs": runs, "files": files, "file_size": FILE_SIZE,
        "emulator_upload_rate_limit": SCALED_UPLOADS_PER_MINUTE, "daemon_uploads_per_minute": SCALED_DAEMON_UPLOADS_PER_MINUTE,
        "ceiling_files_per_s": CEILING_FILES_PER_S,
        "files_per_s": statistics.median(one.files_per_s for one in measured),
        "overall_files_per_s": statistics.median(one.overall_files_per_s for one in measured),
        "fraction_of_ceiling": statistics.median(one.fraction_of_ceiling for one in measured),
        "responses_429": statistics.median(one.responses_429 for one in measured),
        "share_429": statistics.median(one.share_429 for one in measured),
        "committed": sum(one.committed for one in measured),
        "target_fraction": TARGET_FRACTION, "target_share_429_below": TARGET_429_SHARE,
        "raw": [asdict(one) for one in measured],
        "command": f"python -m bench.small_files --files {files} --runs {runs}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    if args.files < 2 or args.runs < 1:
        parser.error("--files must be at least 2 and --runs positive")
    result = run(runs=args.runs, files=args.files)
    print(f"{result['files_per_s']:.1f} files/s = {result['fraction_of_ceiling']:.3f} of the "
          f"{CEILING_FILES_PER_S:.0f}/s ceiling (target >= {TARGET_FRACTION}); 429 share {result['share_429']:.4f} "
          f"(target < {TARGET_429_SHARE})")
    out = save_result("small-files", result)
    print(f"  written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
