"""Box client upload benchmark (issue 3 quality bars). Reports figures, never asserts.

Run: ``python -m bench.client_upload [--size 1GiB] [--wan-size 1GiB] [--rss-size 4GiB] [--quick]``

Against fresh emulators started for the purpose:

* **loopback**: one chunked upload of ``--size`` bytes (4 parts in flight) on an
  unthrottled loopback, against the time ``sha1sum`` takes to read the same file
  twice (warm page cache). Target: upload <= 2x that time (reading, hashing and
  sending overlap).
* **wan**: the same upload of ``--wan-size`` bytes against an emulator with
  ``--latency-ms 40 --bandwidth 12000000`` (per connection), with 4 parallel parts
  and with 1. Target: 4 parts >= 3.5x faster.
* **rss**: peak RSS of a child process uploading a sparse ``--rss-size`` file with
  4 x 32 MiB parts. Target < 150 MiB + 4 x 32 MiB. Also the peak RSS of a direct
  (multipart) upload of a file just under 50 MiB, which must be streamed.

``--quick`` uses 256 MiB for every size. A table is printed and the figures are
written to ``bench/results/client-<UTC date>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from bench.emulator import EmulatorProcess
from bench.report import REPO_ROOT, RESULTS_DIR, machine
from syncd.config import parse_size

MIB = 1024 * 1024
WAN_LATENCY_MS = 40
WAN_BANDWIDTH = 12_000_000
BENCH_TOKEN = "bench-token"


def upload_once(api_url: str, upload_url: str, path: Path, name: str, concurrency: int,
                threshold: int = 20_000_000, on_bytes: Callable[[int], None] | None = None) -> float:
    """Upload of ``path`` (chunked from ``threshold`` bytes up); returns seconds."""
    from syncd.box import BoxClient, DeveloperTokenAuth, RateLimits, Uploader

    client = BoxClient(DeveloperTokenAuth(BENCH_TOKEN), api_url=api_url, upload_url=upload_url,
                       concurrency=concurrency, rate_limits=RateLimits(None, None), timeout=(10, 600))
    uploader = Uploader(client, chunked_threshold=threshold, concurrency=concurrency)
    started = time.perf_counter()
    result = uploader.upload(path, "0", name, on_bytes=on_bytes)
    elapsed = time.perf_counter() - started
    client.close()
    if result.size != path.stat().st_size:
        raise RuntimeError(f"uploaded size {result.size} != {path.stat().st_size}")
    return elapsed


def make_random_file(path: Path, size: int) -> None:
    with open(path, "wb") as handle:
        remaining = size
        block = os.urandom(16 * MIB)
        counter = 0
        while remaining:
            # Vary every block cheaply so that no two parts are alike.
            chunk = counter.to_bytes(8, "little") + block[8:]
            n = min(remaining, len(chunk))
            handle.write(chunk[:n])
            remaining -= n
            counter += 1


def sha1sum_seconds(path: Path) -> float:
    started = time.perf_counter()
    for _ in range(2):
        subprocess.run(["sha1sum", str(path)], check=True, capture_output=True)
    return time.perf_counter() - started


@dataclass
class Figures:
    size: int
    loopback_upload_s: float | None = None
    sha1sum_twice_s: float | None = None
    loopback_ratio: float | None = None
    wan_size: int | None = None
    wan_1_part_s: float | None = None
    wan_4_parts_s: float | None = None
    wan_speedup: float | None = None
    rss_size: int | None = None
    rss_part_size: int = 32 * MIB
    rss_peak_mib: float | None = None
    rss_limit_mib: float = 150 + 4 * 32
    direct_size: int = 50 * MIB - 1
    direct_rss_peak_mib: float | None = None


def bench_loopback(work: Path, size: int, figures: Figures) -> None:
    path = work / "loopback.bin"
    make_random_file(path, size)
    subprocess.run(["cat", str(path)], check=True, stdout=subprocess.DEVNULL)  # warm the page cache
    figures.sha1sum_twice_s = sha1sum_seconds(path)
    emulator = EmulatorProcess(work / "emu-loopback", token=BENCH_TOKEN).start()
    try:
        figures.loopback_upload_s = upload_once(emulator.api_url, emulator.upload_url, path, "loopback.bin", 4)
    finally:
        emulator.stop()
        shutil.rmtree(work / "emu-loopback", ignore_errors=True)
    figures.loopback_ratio = figures.loopback_upload_s / figures.sha1sum_twice_s
    path.unlink()


def bench_wan(work: Path, size: int, figures: Figures) -> None:
    path = work / "wan.bin"
    make_random_file(path, size)
    bench_wan_file(work, path, figures)
    path.unlink()


def bench_wan_file(work: Path, path: Path, figures: Figures) -> None:
    """Upload ``path`` over the simulated WAN link with 4 parallel parts, then with 1."""
    size = path.stat().st_size
    figures.wan_size = size
    times = {}
    for concurrency in (4, 1):
        data = work / f"emu-wan-{concurrency}"
        emulator = EmulatorProcess(data, "--latency-ms", str(WAN_LATENCY_MS), "--bandwidth", str(WAN_BANDWIDTH),
                               token=BENCH_TOKEN).start()
        try:
            times[concurrency] = upload_once(emulator.api_url, emulator.upload_url, path, "wan.bin", concurrency)
        finally:
            emulator.stop()
            shutil.rmtree(data, ignore_errors=True)
    figures.wan_4_parts_s, figures.wan_1_part_s = times[4], times[1]
    figures.wan_speedup = times[1] / times[4]


def _child_peak_rss(api_url: str, upload_url: str, path: Path, threshold: int) -> float:
    child = subprocess.run(
        [sys.executable, "-m", "bench.client_upload", "--child-upload", api_url, upload_url, str(path),
         str(threshold)],
        cwd=REPO_ROOT, check=True, capture_output=True, text=True,
    )
    return float(json.loads(child.stdout.strip().splitlines()[-1])["peak_rss_mib"])


def bench_rss(work: Path, size: int, figures: Figures) -> None:
    path = work / "sparse.bin"
    with open(path, "wb") as handle:
        handle.truncate(size)  # sparse: costs no disk, reads as zeros
    direct = work / "direct.bin"
    with open(direct, "wb") as handle:
        handle.truncate(figures.direct_size)
    figures.rss_size = size
    data = work / "emu-rss"
    emulator = EmulatorProcess(data, "--part-sizes", "*=32MiB", token=BENCH_TOKEN).start()
    try:
        figures.rss_peak_mib = _child_peak_rss(emulator.api_url, emulator.upload_url, path, 20_000_000)
        # Just under the default threshold: one streamed multipart POST.
        figures.direct_rss_peak_mib = _child_peak_rss(emulator.api_url, emulator.upload_url, direct, 50 * MIB)
    finally:
        emulator.stop()
        shutil.rmtree(data, ignore_errors=True)
    path.unlink()
    direct.unlink()


def child_upload(api_url: str, upload_url: str, path: str, threshold: str) -> None:
    """Runs in a child process so that its peak RSS is the client's alone."""
    upload_once(api_url, upload_url, Path(path), Path(path).name, 4, int(threshold))
    print(json.dumps({"peak_rss_mib": round(peak_rss_kib() / 1024, 1)}))


def peak_rss_kib() -> int:
    """This process's own RSS high-water mark (VmHWM). Not ru_maxrss: Linux carries
    that over from the parent across fork and exec."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.2f}{unit}"


def report(figures: Figures) -> str:
    rows = [
        ("loopback upload", fmt(figures.loopback_upload_s, " s"), f"{figures.size / MIB:.0f} MiB, 4 parts"),
        ("sha1sum x2", fmt(figures.sha1sum_twice_s, " s"), "warm cache"),
        ("loopback ratio", fmt(figures.loopback_ratio, "x"), "target <= 2x"),
        ("wan 1 part", fmt(figures.wan_1_part_s, " s"),
         f"{(figures.wan_size or 0) / MIB:.0f} MiB, {WAN_LATENCY_MS} ms, {WAN_BANDWIDTH / 1e6:.0f} MB/s/conn"),
        ("wan 4 parts", fmt(figures.wan_4_parts_s, " s"), ""),
        ("wan speed-up", fmt(figures.wan_speedup, "x"), "target >= 3.5x"),
        ("peak client RSS", fmt(figures.rss_peak_mib, " MiB"),
         f"{(figures.rss_size or 0) / MIB:.0f} MiB sparse, 4 x 32 MiB parts; target < {figures.rss_limit_mib:.0f} MiB"),
        ("direct upload RSS", fmt(figures.direct_rss_peak_mib, " MiB"),
         f"{figures.direct_size / MIB:.0f} MiB file, streamed multipart"),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value:>12}  {note}" for name, value, note in rows)


class ThroughputSampler:
    """Bytes the client has sent, sampled every ``interval`` seconds (fed by ``on_bytes``)."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.samples: list[tuple[float, int]] = []  # (seconds since start, bytes sent so far)
        self._sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = 0.0

    def on_bytes(self, count: int) -> None:
        with self._lock:
            self._sent += count

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        with self._lock:
            self.samples.append((round(time.perf_counter() - self._started, 3), self._sent))

    def __enter__(self) -> Self:
        self._started = time.perf_counter()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


QUICK_SETTINGS = {"runs": 3, "sizes": [1024 * MIB], "wan_sizes": [128 * MIB], "rss_size": 1024 * MIB}
FULL_SETTINGS = {"runs": 3, "sizes": [1024 * MIB, 4096 * MIB], "wan_sizes": [1024 * MIB, 4096 * MIB],
                 "rss_size": 4096 * MIB}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _loopback_runs(work: Path, size: int, runs: int, sampler: ThroughputSampler | None) -> dict[str, Any]:
    """``runs`` uploads of one ``size`` file, each against a fresh emulator, each beside its
    own sha1sum-twice timing (so the ratio is taken within one run)."""
    path = work / f"loopback-{size}.bin"
    make_random_file(path, size)
    subprocess.run(["cat", str(path)], check=True, stdout=subprocess.DEVNULL)  # warm the page cache
    raw: dict[str, list[float]] = {"upload_s": [], "sha1sum_twice_s": [], "ratio": [], "mb_per_s": []}
    try:
        for run_index in range(runs):
            floor = sha1sum_seconds(path)
            data = work / f"emu-loopback-{size}-{run_index}"
            emulator = EmulatorProcess(data, token=BENCH_TOKEN).start()
            try:
                if sampler is not None and run_index == 0:
                    with sampler:
                        seconds = upload_once(emulator.api_url, emulator.upload_url, path, path.name, 4,
                                              on_bytes=sampler.on_bytes)
                else:
                    seconds = upload_once(emulator.api_url, emulator.upload_url, path, path.name, 4)
            finally:
                emulator.stop()
                shutil.rmtree(data, ignore_errors=True)
            raw["upload_s"].append(seconds)
            raw["sha1sum_twice_s"].append(floor)
            raw["ratio"].append(seconds / floor)
            raw["mb_per_s"].append(size / 1e6 / seconds)
            print(f"  loopback {size / MIB:.0f} MiB run {run_index + 1}/{runs}: {size / 1e6 / seconds:.0f} MB/s, "
                  f"{seconds / floor:.2f}x sha1sum twice", flush=True)
    finally:
        path.unlink(missing_ok=True)
    return {"size": size, **{f"{key}_median": _median(values) for key, values in raw.items()}, "raw": raw}


def _wan_runs(work: Path, size: int, runs: int) -> dict[str, Any]:
    """4 parts vs 1 on the simulated WAN link, both within each run."""
    path = work / "wan.bin"
    make_random_file(path, size)
    raw: dict[str, list[float]] = {"four_parts_s": [], "one_part_s": [], "speedup": [], "four_parts_mb_per_s": []}
    try:
        for run_index in range(runs):
            figures = Figures(size=size)
            bench_wan_file(work, path, figures)
            raw["four_parts_s"].append(figures.wan_4_parts_s or 0.0)
            raw["one_part_s"].append(figures.wan_1_part_s or 0.0)
            raw["speedup"].append(figures.wan_speedup or 0.0)
            raw["four_parts_mb_per_s"].append(size / 1e6 / (figures.wan_4_parts_s or float("inf")))
            print(f"  wan {size / MIB:.0f} MiB run {run_index + 1}/{runs}: 4 parts {raw['speedup'][-1]:.2f}x faster than 1",
                  flush=True)
    finally:
        path.unlink(missing_ok=True)
    return {"size": size, "latency_ms": WAN_LATENCY_MS, "bandwidth_per_connection": WAN_BANDWIDTH,
            **{f"{key}_median": _median(values) for key, values in raw.items()}, "raw": raw}


def run(*, quick: bool = False, runs: int | None = None) -> dict[str, Any]:
    """The suite's entry point: loopback and WAN (every size) and client RSS figures, medians over runs.

    The first loopback run of the largest size is sampled every 0.2 s for the
    throughput-over-time plot (``throughput_samples``: [seconds, bytes sent]).
    """
    settings = dict(QUICK_SETTINGS if quick else FULL_SETTINGS)
    runs = runs or int(settings["runs"])
    sampler = ThroughputSampler()
    result: dict[str, Any] = {"runs": runs, "loopback": [], "command": "python -m bench all --only large" + (" --quick" if quick else "")}
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        work = Path(tmp)
        largest = max(settings["sizes"])
        for size in settings["sizes"]:
            result["loopback"].append(_loopback_runs(work, size, runs, sampler if size == largest else None))
        result["throughput_size"] = largest
        result["throughput_samples"] = sampler.samples
        result["wan"] = [_wan_runs(work, size, runs) for size in settings["wan_sizes"]]
        peaks: list[float] = []
        for _ in range(runs):
            figures = Figures(size=0)
            bench_rss(work, int(settings["rss_size"]), figures)
            peaks.append(figures.rss_peak_mib or 0.0)
        result["rss"] = {"size": settings["rss_size"], "part_size": 32 * MIB, "peak_mib_median": _median(peaks),
                         "limit_mib": Figures(size=0).rss_limit_mib, "raw": peaks}
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.client_upload", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=parse_size, default=1024 * MIB, help="loopback upload size (default 1GiB)")
    parser.add_argument("--wan-size", type=parse_size, default=None, help="WAN upload size (default: --size)")
    parser.add_argument("--rss-size", type=parse_size, default=4 * 1024 * MIB, help="sparse file for RSS (4GiB)")
    parser.add_argument("--quick", action="store_true", help="256 MiB everywhere")
    parser.add_argument("--skip", action="append", default=[], choices=["loopback", "wan", "rss"])
    parser.add_argument("--child-upload", nargs=4, metavar=("API", "UPLOAD", "PATH", "THRESHOLD"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_upload:
        child_upload(*args.child_upload)
        return 0
    if args.quick:
        args.size = args.rss_size = 256 * MIB
        args.wan_size = args.wan_size or 256 * MIB
    figures = Figures(size=args.size)
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        work = Path(tmp)
        if "loopback" not in args.skip:
            bench_loopback(work, args.size, figures)
        if "wan" not in args.skip:
            bench_wan(work, args.wan_size or args.size, figures)
        if "rss" not in args.skip:
            bench_rss(work, args.rss_size, figures)
    print(report(figures))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"client-{datetime.now(UTC):%Y-%m-%d}.json"
    now = datetime.now(UTC).isoformat(timespec="seconds")
    record = {"figures": {}, "runs": []}
    if out.exists():  # keep figures of sections skipped in this run (--skip)
        record = json.loads(out.read_text())
    measured = {k: v for k, v in asdict(figures).items() if v is not None}
    record["figures"].update(measured)
    record["runs"] = record.get("runs", []) + [{"at": now, "argv": list(argv or sys.argv[1:]),
                                                 "measured": sorted(measured)}]
    record["machine"] = machine()
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written {out.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
