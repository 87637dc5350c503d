"""Emulator throughput benchmark (issue 2 quality bars). Reports figures, never asserts.

Run: ``python -m bench.emulator_throughput [--runs 5] [--stream-size BYTES]``

Measures, on a fresh emulator started for the purpose:

* **parts**: MB/s of 8 MiB parts sent from 4 parallel connections into chunked upload
  sessions (every part carries ``Digest: sha=``, which the emulator verifies). Target
  >= 300 MB/s. Every session is then committed with the whole-file digest; the figure
  *with commit* (session creation to committed file) is reported beside it, since the
  commit re-reads the whole file to check its digest.
* **direct**: direct uploads per second of 64 KiB files from 8 concurrent clients.
  Target >= 200/s.
* **stream**: one chunked upload of ``--stream-size`` bytes (default 2 GiB) with 4 parts
  in flight, streamed from a generator (never held in memory by the client), with the
  emulator's peak RSS sampled throughout. Target: RSS < 150 MiB.

Each figure is the median of ``--runs`` runs. A table is printed and the figures are
written to ``bench/results/emulator-<UTC date>.json``.

The load generators (:func:`stream_chunked_upload`, :class:`RssSampler`) are reused by
``tests/emulator/test_streaming_memory.py`` at a test-sized upload.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import hashlib
import json
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil
import requests

from bench.emulator import BenchError, EmulatorProcess
from bench.report import RESULTS_DIR

MIB = 1024 * 1024
PART_BENCH_PART_SIZE = 8 * MIB
DIRECT_FILE_SIZE = 64 * 1024
DEFAULT_STREAM_SIZE = 2 * 1024 * MIB


# --------------------------------------------------------------------------- RSS sampling


class RssSampler:
    """Samples the RSS of a process (and its children) in a thread; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self._process = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak_bytes = 0
        self.samples = 0

    def _rss(self) -> int:
        total = self._process.memory_info().rss
        for child in self._process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_bytes = max(self.peak_bytes, self._rss())
                self.samples += 1
            except psutil.NoSuchProcess:
                return
            self._stop.wait(self._interval)

    def __enter__(self) -> RssSampler:
        self.peak_bytes = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.peak_bytes = max(self.peak_bytes, self._rss())
        except psutil.NoSuchProcess:
            pass


# --------------------------------------------------------------------------- generated content


class PatternSource:
    """Deterministic file content generated on the fly, 1 MiB at a time.

    Every MiB is a shared random block stamped with its own offset, so no two MiB (and
    no two parts) are equal, yet nothing bigger than one block is ever materialised.
    """

    BLOCK = MIB

    def __init__(self, size: int, seed: bytes = b"syncd-bench") -> None:
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        self.size = size
        self._block = hashlib.shake_256(seed).digest(self.BLOCK)

    def chunks(self, start: int, length: int) -> Iterator[bytes]:
        """The bytes ``[start, start+length)`` in pieces of at most 1 MiB."""
        end = min(start + length, self.size)
        position = start
        while position < end:
            block_start = position - position % self.BLOCK
            block = block_start.to_bytes(8, "big") + self._block[8:]
            piece_end = min(block_start + self.BLOCK, end)
            yield block[position - block_start : piece_end - block_start]
            position = piece_end

    def digests(self, part_size: int) -> tuple[list[str], str]:
        """(base64 SHA-1 of each part, base64 SHA-1 of the whole file) in one pass."""
        whole = hashlib.sha1()
        parts = []
        for offset in range(0, self.size, part_size):
            part = hashlib.sha1()
            for piece in self.chunks(offset, part_size):
                part.update(piece)
                whole.update(piece)
            parts.append(base64.b64encode(part.digest()).decode())
        return parts, base64.b64encode(whole.digest()).decode()


class _SizedStream:
    """An iterable body with a length, so requests sends Content-Length, not chunked."""

    def __init__(self, pieces: Iterator[bytes], length: int) -> None:
        self._pieces = pieces
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        return self._pieces


# --------------------------------------------------------------------------- chunked uploads


@dataclass
class ChunkedUploadResult:
    """What one streamed chunked upload did."""

    size: int
    part_size: int
    parts: int
    seconds: float
    file_id: str
    sha1_hex: str

    @property
    def mb_per_s(self) -> float:
        return self.size / 1e6 / self.seconds if self.seconds else 0.0


def authorized_session(token: str) -> requests.Session:
    """A requests session that sends ``Authorization: Bearer token``."""
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"
    return http


def check_answer(response: requests.Response, expected: Sequence[int], what: str) -> dict[str, Any]:
    """The JSON body of an answer with an ``expected`` status; BenchError naming ``what`` otherwise."""
    if response.status_code not in expected:
        raise BenchError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")
    return response.json() if response.content else {}


def stream_chunked_upload(
    upload_url: str,
    token: str,
    size: int,
    *,
    parallel: int = 4,
    folder_id: str = "0",
    name: str | None = None,
) -> ChunkedUploadResult:
    """Create a session, stream ``size`` generated bytes as parts, ``parallel`` at a time, commit.

    Part digests and the whole-file digest are computed in a first pass over the
    generated content (so the client holds no more than 1 MiB per connection either).
    The timer covers session creation through the successful commit.
    """
    source = PatternSource(size)
    name = name or f"stream-{uuid.uuid4().hex}.bin"
    control = authorized_session(token)
    started = time.perf_counter()
    session = check_answer(
        control.post(f"{upload_url}/files/upload_sessions", json={"folder_id": folder_id, "file_size": size, "file_name": name}, timeout=60),
        (201,),
        "create session",
    )
    part_size = int(session["part_size"])
    hash_started = time.perf_counter()
    part_digests, file_digest = source.digests(part_size)
    hashing = time.perf_counter() - hash_started
    endpoints = session["session_endpoints"]
    local = threading.local()

    def send(index: int) -> dict[str, Any]:
        http = getattr(local, "http", None) or authorized_session(token)
        local.http = http
        offset = index * part_size
        length = min(part_size, size - offset)
        body = _SizedStream(source.chunks(offset, length), length)
        headers = {
            "Digest": f"sha={part_digests[index]}",
            "Content-Range": f"bytes {offset}-{offset + length - 1}/{size}",
            "Content-Type": "application/octet-stream",
        }
        answer = check_answer(http.put(endpoints["upload_part"], data=body, headers=headers, timeout=300), (200,), f"part {index}")
        return answer["part"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
        parts = list(pool.map(send, range(len(part_digests))))
    files = commit_session(control, endpoints["commit"], parts, file_digest)
    seconds = time.perf_counter() - started - hashing
    entry = files["entries"][0]
    return ChunkedUploadResult(size, part_size, len(parts), seconds, str(entry["id"]), str(entry["sha1"]))


def commit_session(http: requests.Session, url: str, parts: list[dict[str, Any]], file_digest: str) -> dict[str, Any]:
    """Commit an upload session (``file_digest``: base64 SHA-1 of the whole file), waiting out 202s."""
    for _ in range(30):
        response = http.post(url, json={"parts": parts}, headers={"Digest": f"sha={file_digest}"}, timeout=300)
        if response.status_code == 202:
            time.sleep(float(response.headers.get("Retry-After", "1")))
            continue
        return check_answer(response, (200, 201), "commit")
    raise BenchError("commit still answered 202 after 30 attempts")


# --------------------------------------------------------------------------- the three measurements


@dataclass(frozen=True)
class PartsFigures:
    """MB/s of the part uploads alone, and from session creation to committed file."""

    parts_mb_per_s: float
    with_commit_mb_per_s: float


def measure_parts(upload_url: str, token: str, total_bytes: int, parallel: int = 4) -> PartsFigures:
    """MB/s for 8 MiB parts from ``parallel`` connections, over sessions of 32 parts.

    Parts come from a pool of pre-generated buffers so the client does not spend its
    CPU generating data while the clock runs.
    """
    parts_per_session = 32  # 256 MiB: the default part-size table answers 8 MiB parts
    pool = [os.urandom(PART_BENCH_PART_SIZE) for _ in range(4)]
    pool_digests = [base64.b64encode(hashlib.sha1(block).digest()).decode() for block in pool]
    sessions = max(1, total_bytes // (parts_per_session * PART_BENCH_PART_SIZE))
    local = threading.local()
    sent = 0
    elapsed = 0.0
    parts_elapsed = 0.0
    for _ in range(sessions):
        size = parts_per_session * PART_BENCH_PART_SIZE
        whole = hashlib.sha1()
        for index in range(parts_per_session):
            whole.update(pool[index % len(pool)])
        control = authorized_session(token)
        started = time.perf_counter()
        session = check_answer(
            control.post(
                f"{upload_url}/files/upload_sessions",
                json={"folder_id": "0", "file_size": size, "file_name": f"parts-{uuid.uuid4().hex}.bin"},
                timeout=60,
            ),
            (201,),
            "create session",
        )
        if int(session["part_size"]) != PART_BENCH_PART_SIZE:
            raise BenchError(f"expected 8 MiB parts for a 256 MiB file, emulator chose {session['part_size']}")
        endpoint = session["session_endpoints"]["upload_part"]

        def send(index: int, endpoint: str = endpoint, size: int = size) -> dict[str, Any]:
            http = getattr(local, "http", None) or authorized_session(token)
            local.http = http
            offset = index * PART_BENCH_PART_SIZE
            headers = {
                "Digest": f"sha={pool_digests[index % len(pool)]}",
                "Content-Range": f"bytes {offset}-{offset + PART_BENCH_PART_SIZE - 1}/{size}",
                "Content-Type": "application/octet-stream",
            }
            response = http.put(endpoint, data=pool[index % len(pool)], headers=headers, timeout=300)
            return check_answer(response, (200,), f"part {index}")["part"]

        parts_started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as executor:
            parts = list(executor.map(send, range(parts_per_session)))
        parts_elapsed += time.perf_counter() - parts_started
        commit_session(control, session["session_endpoints"]["commit"], parts, base64.b64encode(whole.digest()).decode())
        elapsed += time.perf_counter() - started
        sent += size
    return PartsFigures(sent / 1e6 / parts_elapsed, sent / 1e6 / elapsed)


def measure_direct(upload_url: str, token: str, uploads: int, clients: int = 8) -> float:
    """Direct uploads per second of 64 KiB files from ``clients`` concurrent clients."""
    payload = os.urandom(DIRECT_FILE_SIZE)
    local = threading.local()
    run = uuid.uuid4().hex[:8]

    def upload(index: int) -> None:
        http = getattr(local, "http", None) or authorized_session(token)
        local.http = http
        attributes = json.dumps({"name": f"direct-{run}-{index}.bin", "parent": {"id": "0"}})
        response = http.post(
            f"{upload_url}/files/content",
            files=[("attributes", (None, attributes)), ("file", ("f", payload))],
            timeout=60,
        )
        check_answer(response, (201,), f"direct upload {index}")

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=clients) as executor:
        list(executor.map(upload, range(uploads)))
    return uploads / (time.perf_counter() - started)


class CpuMeter:
    """CPU seconds used by the emulator and by this (client) process over a block."""

    def __init__(self, pid: int) -> None:
        self._emulator = psutil.Process(pid)
        self._client = psutil.Process()
        self.emulator_seconds = self.client_seconds = self.wall_seconds = 0.0

    @staticmethod
    def _cpu(process: psutil.Process) -> float:
        times = process.cpu_times()
        return times.user + times.system

    def __enter__(self) -> CpuMeter:
        self._start = (self._cpu(self._emulator), self._cpu(self._client), time.perf_counter())
        return self

    def __exit__(self, *exc: object) -> None:
        self.emulator_seconds = self._cpu(self._emulator) - self._start[0]
        self.client_seconds = self._cpu(self._client) - self._start[1]
        self.wall_seconds = time.perf_counter() - self._start[2]


@dataclass
class BenchReport:
    """Medians over runs, plus every raw figure."""

    date: str
    host: dict[str, Any]
    runs: int
    parts_mb_per_s: float
    parts_with_commit_mb_per_s: float
    direct_uploads_per_s: float
    stream_size: int
    stream_mb_per_s: float
    peak_rss_mib: float
    targets: dict[str, float] = field(default_factory=lambda: {"parts_mb_per_s": 300.0, "direct_uploads_per_s": 200.0, "peak_rss_mib_below": 150.0})
    raw: dict[str, list[float]] = field(default_factory=dict)


def _record_cpu(raw: dict[str, list[float]], kind: str, cpu: CpuMeter) -> None:
    """CPU used per wall second (1.0 = one core busy): who was working, emulator or client."""
    raw[f"{kind}_emulator_cpu_share"].append(cpu.emulator_seconds / cpu.wall_seconds)
    raw[f"{kind}_client_cpu_share"].append(cpu.client_seconds / cpu.wall_seconds)


def run_bench(runs: int, stream_size: int, parts_bytes: int, direct_uploads: int) -> BenchReport:
    """Start a fresh emulator per measurement kind and collect medians over ``runs``."""
    raw: dict[str, list[float]] = {
        "parts_mb_per_s": [], "parts_with_commit_mb_per_s": [], "direct_uploads_per_s": [], "stream_mb_per_s": [], "peak_rss_mib": [],
        "parts_emulator_cpu_share": [], "parts_client_cpu_share": [],
        "direct_emulator_cpu_share": [], "direct_client_cpu_share": [], "load_average_1m": [],
    }
    workdir = Path(tempfile.mkdtemp(prefix="syncd-bench-"))
    try:
        for run in range(runs):
            data_dir = workdir / f"run-{run}"
            data_dir.mkdir()
            emulator = EmulatorProcess(data_dir).start()
            try:
                with RssSampler(emulator.pid) as sampler:
                    with CpuMeter(emulator.pid) as cpu:
                        figures = measure_parts(emulator.upload_url, emulator.token, parts_bytes)
                    raw["parts_mb_per_s"].append(figures.parts_mb_per_s)
                    raw["parts_with_commit_mb_per_s"].append(figures.with_commit_mb_per_s)
                    _record_cpu(raw, "parts", cpu)
                    with CpuMeter(emulator.pid) as cpu:
                        raw["direct_uploads_per_s"].append(measure_direct(emulator.upload_url, emulator.token, direct_uploads))
                    _record_cpu(raw, "direct", cpu)
                    result = stream_chunked_upload(emulator.upload_url, emulator.token, stream_size)
                raw["stream_mb_per_s"].append(result.mb_per_s)
                raw["load_average_1m"].append(os.getloadavg()[0])
                raw["peak_rss_mib"].append(sampler.peak_bytes / MIB)
            finally:
                emulator.stop()
                shutil.rmtree(data_dir, ignore_errors=True)
            print(
                f"run {run + 1}/{runs}: parts {raw['parts_mb_per_s'][-1]:.0f} MB/s "
                f"({raw['parts_with_commit_mb_per_s'][-1]:.0f} with commit), "
                f"direct {raw['direct_uploads_per_s'][-1]:.0f}/s, stream {raw['stream_mb_per_s'][-1]:.0f} MB/s, "
                f"peak RSS {raw['peak_rss_mib'][-1]:.0f} MiB",
                flush=True,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return BenchReport(
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        host={"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        runs=runs,
        parts_mb_per_s=statistics.median(raw["parts_mb_per_s"]),
        parts_with_commit_mb_per_s=statistics.median(raw["parts_with_commit_mb_per_s"]),
        direct_uploads_per_s=statistics.median(raw["direct_uploads_per_s"]),
        stream_size=stream_size,
        stream_mb_per_s=statistics.median(raw["stream_mb_per_s"]),
        peak_rss_mib=max(raw["peak_rss_mib"]),
        raw=raw,
    )


QUICK = {"runs": 3, "stream_size": 256 * MIB, "parts_bytes": 256 * MIB, "direct_uploads": 200}
FULL = {"runs": 5, "stream_size": DEFAULT_STREAM_SIZE, "parts_bytes": 512 * MIB, "direct_uploads": 800}


def run(*, quick: bool = False, runs: int | None = None) -> dict[str, Any]:
    """The suite's entry point: medians over ``runs`` fresh emulators, as a JSON-ready dict."""
    settings = dict(QUICK if quick else FULL)
    if runs is not None:
        settings["runs"] = runs
    report = run_bench(settings["runs"], settings["stream_size"], settings["parts_bytes"], settings["direct_uploads"])
    result = asdict(report)
    result["command"] = (f"python -m bench.emulator_throughput --runs {settings['runs']} --stream-size {settings['stream_size']} "
                         f"--parts-bytes {settings['parts_bytes']} --direct-uploads {settings['direct_uploads']}")
    return result


def format_table(report: BenchReport) -> str:
    """The human-readable summary printed at the end."""
    rows = [
        ("8 MiB parts, 4 connections (MB/s)", f"{report.parts_mb_per_s:.1f}", ">= 300"),
        ("  same, session create to committed file (MB/s)", f"{report.parts_with_commit_mb_per_s:.1f}", "-"),
        ("64 KiB direct uploads, 8 clients (/s)", f"{report.direct_uploads_per_s:.1f}", ">= 200"),
        (f"streamed {report.stream_size / MIB:.0f} MiB chunked, 4 parallel (MB/s)", f"{report.stream_mb_per_s:.1f}", "-"),
        ("peak emulator RSS (MiB)", f"{report.peak_rss_mib:.1f}", "< 150"),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'measurement':<{width}}  {'median':>9}  target", "-" * (width + 20)]
    lines += [f"{name:<{width}}  {value:>9}  {target}" for name, value, target in rows]
    raw = report.raw
    # CPU was metered over the whole parts measurement, commits included.
    for kind, figure, unit in (("parts", report.parts_with_commit_mb_per_s, "MB"), ("direct", report.direct_uploads_per_s, "uploads")):
        emulator_cores = statistics.median(raw[f"{kind}_emulator_cpu_share"])
        # Per emulator CPU-second: what one fully available core would sustain, which
        # separates "the emulator is slow" from "the machine was busy with other work".
        per_core = figure / emulator_cores if emulator_cores else float("nan")
        lines.append(
            f"{kind}: emulator used {emulator_cores:.2f} cores, client "
            f"{statistics.median(raw[f'{kind}_client_cpu_share']):.2f} cores (of {os.cpu_count()}); "
            f"{per_core:.0f} {unit} per emulator CPU-second"
        )
    lines.append(f"({report.runs} runs; peak RSS is the maximum over runs; 1-min load average "
                 f"{statistics.median(raw['load_average_1m']):.1f})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.emulator_throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement; the median is reported (default 3)")
    parser.add_argument("--stream-size", type=int, default=DEFAULT_STREAM_SIZE, help="bytes in the streamed chunked upload (default 2 GiB)")
    parser.add_argument("--parts-bytes", type=int, default=512 * MIB, help="bytes sent as 8 MiB parts per run (default 512 MiB)")
    parser.add_argument("--direct-uploads", type=int, default=800, help="64 KiB direct uploads per run (default 800)")
    parser.add_argument("--output", type=Path, default=None, help="JSON output path (default bench/results/emulator-<date>.json)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.stream_size < 1 or args.parts_bytes < 1 or args.direct_uploads < 1:
        parser.error("--runs, --stream-size, --parts-bytes and --direct-uploads must be positive")
    report = run_bench(args.runs, args.stream_size, args.parts_bytes, args.direct_uploads)
    output = args.output or RESULTS_DIR / f"emulator-{datetime.now(timezone.utc):%Y-%m-%d}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(asdict(report), indent=2) + "\n")
    print(format_table(report))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
