"""syncd against rclone, head to head on this machine (issue 12). Reports, never asserts.

Run: ``python -m bench.versus_rclone [--quick] [--runs N]`` (as root: it binds port 443 and
adds Box's host names to /etc/hosts for the length of the run), or through the suite:
``python -m bench all --only versus_rclone``.

Both tools talk to the same emulator the way they would talk to Box: the emulator serves
HTTPS on 127.0.0.1:443 with its self-signed CA (``--tls-self-signed``), ``api.box.com``,
``upload.box.com``, ``app.box.com``, ``account.box.com`` and ``dl.boxcloud.com`` resolve to
127.0.0.1 through one marked line in /etc/hosts that is removed when the benchmark ends,
however it ends (``bench/box_hosts.py``), and each tool trusts the CA (rclone through
``SSL_CERT_FILE``, syncd through ``REQUESTS_CA_BUNDLE``). Every request gets the emulator's
``--latency-ms 40``. rclone runs ``rclone copy SRC box:bench`` with its defaults
(``bench/rclone_peer.py``); syncd runs ``syncd once`` with its defaults and a config that
only says where Box is (Box's own URLs), the credentials, the journal and the watch
(plus JSON logs, which the benchmark reads). Both upload into the same empty folder
``bench``, made before the clock starts.

Workloads (each run on a fresh emulator data directory and a fresh syncd journal; the
tools take turns within a run, in an order that rotates from run to run):

1. one large file (512 MiB; 128 MiB with --quick);
2. many 64 KiB files (400; 100 with --quick) with rate limits lifted on both sides: the
   emulator enforces none, syncd gets ``box.uploads_per_minute`` and
   ``box.calls_per_minute`` of 100,000 (rclone sets no limit unless told to, so it gets
   no flag);
3. many 64 KiB files (300; 260 with --quick) under Box's real limit: the emulator answers
   429 + Retry-After beyond 240 uploads in any 60 s (``--upload-rate-limit 240``); both
   tools keep their defaults. The 429 answers each tool received come from the
   emulator's own counters (``GET /_emulator/stats``).

Each workload is also run through ``syncd run``: the daemon is started on an empty
watched folder, then the files are moved into it (rename, the way a finished file is
dropped); the time runs from the first rename to the last ``upload_committed`` log event.

Floors, computed in the same run: for the large file, the upload itself (the same file
pushed through the same origin by ``bench/raw_upload.py``: session, parts with 4 in
flight, commit, one read pass); for the small files, ``ceil(files / connections) x
latency``, one round trip per file over as many connections as syncd uses for them; under
Box's limit, the window's own floor: the first 240 uploads go at once, the rest wait for
the 60 s window to free (:func:`rate_limit_floor`).

Also measured: ``syncd once`` (and ``rclone copy``) on an empty folder, the start-up cost;
and the close-to-commit latency of ``syncd run`` with default settings for small files
written one at a time at 2 a second (under Box's 4 a second), against its target
(p95 <= settle + 1 s).

Where syncd's time goes is read from its JSON log (``daemon_started``, ``file_ready``,
``upload_started``, ``upload_committed``, ``daemon_stopping``) and reported per phase.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from bench.box_hosts import box_hosts
from bench.daemon_latency import percentile
from bench.emulator import BenchError, EmulatorProcess, count_status
from bench.raw_upload import upload_file
from bench.rclone_peer import ensure_rclone, rclone_config, run_copy
from bench.report import save_result
from syncd.config.model import BoxConfig, Config, ReadinessConfig
from syncd.testing.daemon_process import DaemonProcess, event_time, syncd_command, write_config

MIB = 1024 * 1024
SMALL_FILE_SIZE = 64 * 1024
LATENCY_MS = 40
#: Box's per-user upload limit: 240 uploads in any 60 s window (the emulator's model of it).
BOX_UPLOADS_PER_MINUTE = 240
WINDOW_S = 60.0
#: syncd's per-minute limits when a workload lifts them: far above anything a run can reach.
LIFTED_PER_MINUTE = 100_000
#: Box's URLs, exactly as syncd's config defaults and rclone's Box backend have them.
BOX_API_URL = "https://api.box.com/2.0"
BOX_UPLOAD_URL = "https://upload.box.com/api/2.0"
BOX_TOKEN_URL = "https://api.box.com/oauth2/token"
FOLDER_NAME = "bench"
#: Connections syncd uploads small files over with default settings: the small-file lane's
#: workers, and the general lane's, which take small files too when no older file waits.
SMALL_FILE_CONNECTIONS: int = Config.small_file_workers + Config.workers
#: Parts syncd keeps in flight for a large file by default; the raw upload floor uses as many.
PART_CONCURRENCY = BoxConfig.part_concurrency
SETTLE_S = ReadinessConfig.settle
#: Close-to-commit target in run mode (issue 4, kept by issue 12).
CLOSE_TO_COMMIT_TARGET_S = SETTLE_S + 1.0
#: Files are this much older (ctime) than the settle time when a tool starts: a scan-found file
#: that old may be taken at once (issue 12), so no tool is measured on files just written.
QUIET_BEFORE_START_S = SETTLE_S + 1.0
TOOL_TIMEOUT_S = 900.0

TARGETS = {
    "large": {"rclone_ratio": 0.9, "floor_plus_s": 0.5},
    "small_lifted": {"rclone_ratio": 0.67, "floor_ratio": 1.5},
    "small_box_limit": {"rclone_ratio": 0.92, "max_429": 0},
}


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Workload:
    """One head-to-head workload."""

    key: str
    label: str
    files: int
    file_size: int
    runs: int
    box_limit: bool  # the emulator enforces Box's 240 uploads/min
    lift_limits: bool = False  # syncd's per-minute limits raised out of the way (rclone has none to lift)

    @property
    def emulator_args(self) -> tuple[str, ...]:
        limit = ("--upload-rate-limit", str(BOX_UPLOADS_PER_MINUTE)) if self.box_limit else ()
        return ("--latency-ms", str(LATENCY_MS), *limit)

    @property
    def syncd_box_settings(self) -> dict[str, int]:
        """What the workload sets in syncd's `box:` beyond where Box is and the credentials."""
        if not self.lift_limits:
            return {}
        return {"uploads_per_minute": LIFTED_PER_MINUTE, "calls_per_minute": LIFTED_PER_MINUTE}


@dataclass(frozen=True)
class Plan:
    """Sizes and run counts of one benchmark run."""

    workloads: tuple[Workload, ...]
    startup_runs: int
    trickle_files: int
    trickle_runs: int
    trickle_rate: float = 2.0


def plan_for(quick: bool, runs: int | None = None) -> Plan:
    """Full size: 3 runs of the long workloads, 5 of the short ones; --quick: one run each, smaller."""
    large = 128 * MIB if quick else 512 * MIB
    lifted, limited = (100, 260) if quick else (400, 300)
    long_runs, short_runs = (1, 1) if quick else (3, 5)
    if runs is not None:
        long_runs = short_runs = runs
    return Plan(
        workloads=(
            Workload("large", f"one {large // MIB} MiB file", 1, large, long_runs, box_limit=False),
            Workload("small_lifted", f"{lifted} x 64 KiB, rate limits lifted", lifted, SMALL_FILE_SIZE, short_runs,
                     box_limit=False, lift_limits=True),
            Workload("small_box_limit", f"{limited} x 64 KiB under Box's limit (240 uploads/min)", limited,
                     SMALL_FILE_SIZE, long_runs, box_limit=True),
        ),
        startup_runs=3 if quick else 5,
        trickle_files=10 if quick else 20,
        trickle_runs=1 if quick else 3,
    )


# --------------------------------------------------------------------------- floors and summaries


def small_files_floor(files: int, connections: int, latency_s: float) -> float:
    """One round trip per file over `connections` connections: ceil(files / connections) x latency."""
    if files < 0 or connections < 1 or latency_s < 0:
        raise ValueError(f"need files >= 0, connections >= 1, latency >= 0 (got {files}, {connections}, {latency_s})")
    return math.ceil(files / connections) * latency_s


def rate_limit_floor(files: int, per_window: int, connections: int, latency_s: float,
                     window_s: float = WINDOW_S) -> float:
    """The least time `files` uploads take under a sliding window of `per_window` uploads per `window_s`.

    The first `per_window` may go at once (the window allows that burst); upload k x per_window + j
    can start no earlier than k windows after upload j. So the last batch starts `full` windows
    in and takes its own round trips: full x window + ceil(last batch / connections) x latency.
    """
    if per_window < 1:
        raise ValueError(f"per_window must be at least 1, got {per_window}")
    if files == 0:
        return 0.0
    full = (files - 1) // per_window
    return full * window_s + small_files_floor(files - full * per_window, connections, latency_s)


def median(values: Sequence[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def median_phases(phases: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per phase, the median over the runs that have it (phases in first-seen order)."""
    names: list[str] = []
    for one in phases:
        names += [name for name in one if name not in names]
    return {name: round(statistics.median(one[name] for one in phases if name in one), 3) for name in names}


def _times(events: Sequence[Mapping[str, Any]], name: str) -> list[float]:
    return sorted(event_time(event) for event in events if event.get("event") == name)


def once_phases(events: Sequence[Mapping[str, Any]], spawned_at: float, exited_at: float) -> dict[str, float]:
    """Where a `syncd once` run's wall time went, from its log events (epoch seconds in, seconds out).

    start_up: process start to ``daemon_started``; until_first_ready: to the first ``file_ready``
    (the start-up scan, then the settle wait); ready_to_upload: to the first ``upload_started``;
    uploading: first ``upload_started`` to last ``upload_committed``; idle_before_exit: last commit
    (or ``daemon_started`` when nothing was uploaded) to ``daemon_stopping``; shutdown: to the exit.
    """
    started, ready = _times(events, "daemon_started"), _times(events, "file_ready")
    uploads, commits = _times(events, "upload_started"), _times(events, "upload_committed")
    stopping = _times(events, "daemon_stopping")
    if not started or not stopping:
        raise BenchError("syncd once logged no daemon_started or daemon_stopping")
    phases = {"start_up_s": started[0] - spawned_at}
    if ready:
        phases["until_first_ready_s"] = ready[0] - started[0]
    if ready and uploads:
        phases["ready_to_upload_s"] = uploads[0] - ready[0]
    if uploads and commits:
        phases["uploading_s"] = commits[-1] - uploads[0]
    phases["idle_before_exit_s"] = stopping[0] - (commits[-1] if commits else started[0])
    phases["shutdown_s"] = exited_at - stopping[0]
    return {name: round(value, 3) for name, value in phases.items()}


def run_phases(events: Sequence[Mapping[str, Any]], dropped_at: float) -> dict[str, float]:
    """Where a `syncd run` daemon's time went after the files were dropped at `dropped_at`.

    until_first_ready: drop to the first ``file_ready``; uploading: first ``upload_started`` to
    last ``upload_committed``; drop_to_last_commit: the measured figure.
    """
    ready, uploads, commits = (_times(events, name) for name in ("file_ready", "upload_started", "upload_committed"))
    if not ready or not uploads or not commits:
        raise BenchError("syncd run logged no file_ready, upload_started or upload_committed after the drop")
    return {"until_first_ready_s": round(ready[0] - dropped_at, 3), "uploading_s": round(commits[-1] - uploads[0], 3),
            "drop_to_last_commit_s": round(commits[-1] - dropped_at, 3)}


def requests_by_endpoint(stats: Mapping[str, Any]) -> dict[str, int]:
    """Answers per endpoint over every status, from an emulator stats snapshot."""
    return {endpoint: sum(by_status.values()) for endpoint, by_status in sorted(stats.get("requests", {}).items())}


# --------------------------------------------------------------------------- one emulator per run


@dataclass
class ToolRun:
    """One tool's run of one workload."""

    tool: str
    run: int
    seconds: float
    responses_429: int = 0
    requests: dict[str, int] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Dataset:
    """The files of a workload: where they are and the SHA-1 each must have in Box."""

    directory: Path
    sha1: dict[str, str]


@dataclass(frozen=True)
class BoxSide:
    """A fresh emulator on port 443 and the empty folder the tools upload into."""

    emulator: EmulatorProcess
    folder_id: str

    @property
    def ca_file(self) -> Path:
        assert self.emulator.ca_file is not None
        return self.emulator.ca_file


@contextmanager
def trusting(ca_file: Path) -> Iterator[None]:
    """While inside, this process and its children trust `ca_file` (REQUESTS_CA_BUNDLE, SSL_CERT_FILE).

    In the environment, not per session: requests lets a REQUESTS_CA_BUNDLE already set in the
    environment (as on this machine) override a Session's `verify`, which the emulator harness's
    helpers rely on; and syncd and rclone inherit it.
    """
    names = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: str(ca_file) for name in names})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def fresh_box(work: Path, tag: str, emulator_args: Sequence[str]) -> Iterator[BoxSide]:
    """An emulator on https://api.box.com (port 443) with a fresh data directory, removed afterwards."""
    data = work / f"box-{tag}"
    try:
        with EmulatorProcess(data, *emulator_args, tls=True, port=443) as emulator:
            assert emulator.ca_file is not None
            with trusting(emulator.ca_file):
                answer = requests.post(f"{BOX_API_URL}/folders", json={"name": FOLDER_NAME, "parent": {"id": "0"}},
                                       headers={"Authorization": f"Bearer {emulator.token}"}, timeout=30)
                if answer.status_code != 201:
                    raise BenchError(f"creating the folder {FOLDER_NAME}: HTTP {answer.status_code}: {answer.text[:300]}")
                emulator.reset_stats()  # the counters then hold the tool's requests alone
                yield BoxSide(emulator, str(answer.json()["id"]))
    finally:
        shutil.rmtree(data, ignore_errors=True)


def verify_box(side: BoxSide, dataset: Dataset, tool: str) -> None:
    """BenchError unless the folder holds exactly the dataset's files with their SHA-1s: a time
    measured for an incomplete or wrong upload is no figure."""
    held = {entry["name"]: entry.get("sha1") for entry in side.emulator.folder_items(side.folder_id)
            if entry["type"] == "file"}
    if held != dataset.sha1:
        missing = sorted(set(dataset.sha1) - set(held))
        wrong = sorted(name for name in held if name in dataset.sha1 and held[name] != dataset.sha1[name])
        extra = sorted(set(held) - set(dataset.sha1))
        raise BenchError(f"{tool}: Box does not hold the dataset: {len(missing)} missing {missing[:3]}, "
                         f"{len(wrong)} with another SHA-1 {wrong[:3]}, {len(extra)} extra {extra[:3]}")


def _with_stats(side: BoxSide, run: ToolRun) -> ToolRun:
    stats = side.emulator.stats()
    run.responses_429 = count_status(stats, "429")[0]
    run.requests = requests_by_endpoint(stats)
    return run


# --------------------------------------------------------------------------- the datasets


def make_dataset(directory: Path, workload: Workload) -> Dataset:
    """Write the workload's files (random content, each file distinct) and note their SHA-1s."""
    directory.mkdir(parents=True)
    sha1: dict[str, str] = {}
    if workload.files == 1:
        digest = hashlib.sha1()
        path = directory / f"large-{workload.file_size // MIB}MiB.bin"
        with open(path, "wb") as handle:
            for _ in range(workload.file_size // MIB):
                block = os.urandom(MIB)
                digest.update(block)
                handle.write(block)
        sha1[path.name] = digest.hexdigest()
        return Dataset(directory, sha1)
    payload = os.urandom(workload.file_size - 8)
    for index in range(workload.files):
        content = index.to_bytes(8, "big") + payload
        name = f"small-{index:05}.bin"
        (directory / name).write_bytes(content)
        sha1[name] = hashlib.sha1(content).hexdigest()
    return Dataset(directory, sha1)


def wait_until_quiet(directory: Path, seconds: float) -> None:
    """Sleep until every file in `directory` last changed (ctime) at least `seconds` ago."""
    newest = max((entry.stat().st_ctime for entry in directory.iterdir()), default=0.0)
    time.sleep(max(0.0, newest + seconds - time.time()))


# --------------------------------------------------------------------------- the tools


def _syncd_config(path: Path, side: BoxSide, watch: Path, journal: Path, box_settings: Mapping[str, Any]) -> Path:
    config = write_config(path, {
        "box": {"api_url": BOX_API_URL, "upload_url": BOX_UPLOAD_URL, "token_url": BOX_TOKEN_URL,
                "auth": {"type": "developer_token", "token": side.emulator.token}, **box_settings},
        "journal": str(journal),
        "watches": [{"path": str(watch), "folder_id": side.folder_id}],
        "logging": {"format": "json"},
    })
    config.chmod(0o600)  # it holds the token inline
    return config


def run_rclone(side: BoxSide, dataset: Dataset, work: Path, run: int) -> ToolRun:
    """`rclone copy DATASET box:bench`, timed as a process."""
    config = work / f"rclone-{run}.conf"
    config.write_text(rclone_config(side.emulator.mint_tokens(), datetime.now(UTC)))
    config.chmod(0o600)
    done = run_copy(dataset.directory, FOLDER_NAME, config=config, ca_file=side.ca_file, timeout=TOOL_TIMEOUT_S)
    notes = [f"whole-copy attempts that failed: {done.log.failed_attempts}"] if done.log.failed_attempts else []
    return ToolRun("rclone", run, round(done.seconds, 3), notes=notes + [f"rclone error: {e}" for e in done.log.errors[:5]])


def run_syncd_once(side: BoxSide, dataset: Dataset, work: Path, run: int, box_settings: Mapping[str, Any]) -> ToolRun:
    """`syncd once` on the dataset's folder (a fresh journal), timed as a process."""
    tag = f"once-{run}-{time.monotonic_ns()}"
    config = _syncd_config(work / f"{tag}.yaml", side, dataset.directory, work / f"{tag}.db", box_settings)
    log_path = work / f"{tag}.log"
    spawned, started = time.time(), time.perf_counter()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(syncd_command("once", "--config", str(config)), stdout=log, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, PYTHONUNBUFFERED="1"))
        try:
            code = process.wait(TOOL_TIMEOUT_S)
        except BaseException:
            process.kill()
            process.wait(10)
            raise
    seconds, exited = time.perf_counter() - started, time.time()
    reader = DaemonProcess(config, log_path)  # only its log reader: this process was `syncd once`
    if code != 0:
        raise BenchError(f"syncd once exited {code}\n{reader.tail()}")
    return ToolRun("syncd_once", run, round(seconds, 3), phases=once_phases(reader.events(), spawned, exited))


def run_syncd_daemon(side: BoxSide, dataset: Dataset, work: Path, run: int, box_settings: Mapping[str, Any]) -> ToolRun:
    """`syncd run` on an empty folder; the dataset's files are then moved in (and moved back after).
    The figure is the time from the first rename to the last `upload_committed`."""
    tag = f"run-{run}-{time.monotonic_ns()}"
    inbox = work / f"{tag}-inbox"
    inbox.mkdir()
    config = _syncd_config(work / f"{tag}.yaml", side, inbox, work / f"{tag}.db", box_settings)
    daemon = DaemonProcess(config, work / f"{tag}.log")
    names = sorted(dataset.sha1)
    try:
        daemon.start()
        dropped = time.time()
        for name in names:
            os.rename(dataset.directory / name, inbox / name)
        deadline = time.monotonic() + TOOL_TIMEOUT_S
        while len(daemon.events("upload_committed")) < len(names):
            if not daemon.running() or time.monotonic() > deadline:
                raise BenchError(f"syncd run committed {len(daemon.events('upload_committed'))} of {len(names)} files "
                                 f"({'exited' if not daemon.running() else 'timed out'})\n{daemon.tail()}")
            time.sleep(0.2)
        events = daemon.events()
        daemon.stop(timeout=60)
    finally:
        daemon.kill()
        for name in names:
            if (inbox / name).exists():
                os.rename(inbox / name, dataset.directory / name)
    phases = run_phases(events, dropped)
    return ToolRun("syncd_run", run, phases["drop_to_last_commit_s"], phases=phases)


def run_raw_upload(side: BoxSide, dataset: Dataset, run: int) -> ToolRun:
    """The large file pushed by the minimal client (the floor of workload 1)."""
    (name,) = dataset.sha1
    done = upload_file(BOX_UPLOAD_URL, side.emulator.token, dataset.directory / name, side.folder_id,
                       parallel=PART_CONCURRENCY)
    return ToolRun("raw_upload", run, round(done.seconds, 3), notes=[f"{done.parts} parts of {done.part_size // MIB} MiB"])


# --------------------------------------------------------------------------- the measurements


def _tool_order(tools: Sequence[str], run: int) -> list[str]:
    """The tools in turn, the first one rotating from run to run (no tool always runs first or after another)."""
    shift = run % len(tools)
    return [*tools[shift:], *tools[:shift]]


def measure_workload(workload: Workload, work: Path) -> dict[str, Any]:
    """Every tool on `workload`, `workload.runs` times, each on a fresh emulator; medians, floors and raw runs."""
    print(f"  {workload.label}: writing the files", flush=True)
    dataset = make_dataset(work / f"{workload.key}-data", workload)
    tools = ["raw_upload"] if workload.key == "large" else []
    tools += ["rclone", "syncd_once", "syncd_run"]
    runs: list[ToolRun] = []
    try:
        for run in range(workload.runs):
            for tool in _tool_order(tools, run):
                wait_until_quiet(dataset.directory, QUIET_BEFORE_START_S)
                with fresh_box(work, f"{workload.key}-{tool}-{run}", workload.emulator_args) as side:
                    if tool == "rclone":
                        measured = run_rclone(side, dataset, work, run)
                    elif tool == "syncd_once":
                        measured = run_syncd_once(side, dataset, work, run, workload.syncd_box_settings)
                    elif tool == "syncd_run":
                        measured = run_syncd_daemon(side, dataset, work, run, workload.syncd_box_settings)
                    else:
                        measured = run_raw_upload(side, dataset, run)
                    runs.append(_with_stats(side, measured))  # before the check's own listing adds a request
                    verify_box(side, dataset, tool)
                print(f"  {workload.label}, run {run + 1}/{workload.runs}: {tool} {measured.seconds:.2f} s, "
                      f"{measured.responses_429} x 429", flush=True)
    finally:
        shutil.rmtree(dataset.directory, ignore_errors=True)
    return summarize(workload, runs)


def summarize(workload: Workload, runs: Sequence[ToolRun]) -> dict[str, Any]:
    """The workload's result: per tool the median time, 429s, requests per file and phases; the floor."""
    latency_s = LATENCY_MS / 1000
    tools: dict[str, dict[str, Any]] = {}
    for tool in dict.fromkeys(run.tool for run in runs):
        mine = [run for run in runs if run.tool == tool]
        tools[tool] = {
            "seconds": median([run.seconds for run in mine]),
            "responses_429": median([run.responses_429 for run in mine]),
            "requests_per_file": round(statistics.median(sum(run.requests.values()) for run in mine) / workload.files, 2),
            "phases": median_phases([run.phases for run in mine]),
        }
    if workload.key == "large":
        floor_s, floor_label = tools["raw_upload"]["seconds"], "the upload itself (raw client)"
    elif workload.box_limit:
        floor_s = rate_limit_floor(workload.files, BOX_UPLOADS_PER_MINUTE, SMALL_FILE_CONNECTIONS, latency_s)
        floor_label = "rate-limit window floor"
    else:
        floor_s = small_files_floor(workload.files, SMALL_FILE_CONNECTIONS, latency_s)
        floor_label = "ceil(files / connections) x latency"
    return {
        **asdict(workload), "emulator_args": list(workload.emulator_args),
        "syncd_box_settings": workload.syncd_box_settings, "rclone_flags": [],
        "connections": SMALL_FILE_CONNECTIONS, "part_concurrency": PART_CONCURRENCY, "latency_ms": LATENCY_MS,
        "floor_s": round(floor_s, 3), "floor_label": floor_label, "targets": TARGETS[workload.key],
        "tools": tools, "raw": [asdict(run) for run in runs],
    }


def measure_startup(work: Path, runs: int) -> dict[str, Any]:
    """`syncd once` and `rclone copy` on an empty folder, each on a fresh emulator, `runs` times."""
    empty = Dataset(work / "empty", {})
    empty.directory.mkdir()
    measured: list[ToolRun] = []
    for run in range(runs):
        for tool in _tool_order(["rclone", "syncd_once"], run):
            with fresh_box(work, f"startup-{tool}-{run}", ("--latency-ms", str(LATENCY_MS))) as side:
                measured.append(_with_stats(side, run_rclone(side, empty, work, run) if tool == "rclone"
                                            else run_syncd_once(side, empty, work, run, {})))
    print(f"  start-up on an empty folder: syncd once "
          f"{median([r.seconds for r in measured if r.tool == 'syncd_once']):.2f} s, rclone "
          f"{median([r.seconds for r in measured if r.tool == 'rclone']):.2f} s", flush=True)
    return {
        "runs": runs,
        "syncd_once_s": median([run.seconds for run in measured if run.tool == "syncd_once"]),
        "rclone_s": median([run.seconds for run in measured if run.tool == "rclone"]),
        "phases": median_phases([run.phases for run in measured if run.tool == "syncd_once"]),
        "raw": [asdict(run) for run in measured],
    }


def measure_close_to_commit(work: Path, files: int, rate: float, runs: int) -> dict[str, Any]:
    """`syncd run` with default settings under Box's limit; small files written one at a time at
    `rate`/s; each file's time from its close to its `upload_committed`."""
    per_run = []
    for run in range(runs):
        with fresh_box(work, f"trickle-{run}", ("--latency-ms", str(LATENCY_MS), "--upload-rate-limit",
                                                  str(BOX_UPLOADS_PER_MINUTE))) as side:
            tag = f"trickle-{run}"
            inbox = work / f"{tag}-inbox"
            inbox.mkdir()
            daemon = DaemonProcess(_syncd_config(work / f"{tag}.yaml", side, inbox, work / f"{tag}.db", {}),
                                   work / f"{tag}.log")
            try:
                daemon.start()
                closed: dict[str, float] = {}
                payload = os.urandom(SMALL_FILE_SIZE - 8)
                begin = time.monotonic()
                for index in range(files):
                    name = f"trickle-{index:05}.bin"
                    with open(inbox / name, "wb") as handle:
                        handle.write(index.to_bytes(8, "big") + payload)
                    closed[name] = time.time()
                    time.sleep(max(0.0, begin + (index + 1) / rate - time.monotonic()))
                deadline = time.monotonic() + 120
                while len(daemon.events("upload_committed")) < files and time.monotonic() < deadline and daemon.running():
                    time.sleep(0.2)
                commits = {event["path"]: event_time(event) for event in daemon.events("upload_committed")}
                daemon.stop(timeout=60)
            finally:
                daemon.kill()
            if set(commits) != set(closed):
                raise BenchError(f"close-to-commit run {run + 1}: {len(commits)} of {files} files committed")
            latencies = sorted(commits[name] - closed[name] for name in closed)
            per_run.append({"p50_s": round(statistics.median(latencies), 3), "p95_s": round(percentile(latencies, 95), 3),
                            "max_s": round(latencies[-1], 3), "responses_429": count_status(side.emulator.stats(), "429")[0]})
        print(f"  close-to-commit run {run + 1}/{runs}: p50 {per_run[-1]['p50_s']} s, p95 {per_run[-1]['p95_s']} s",
              flush=True)
    return {"files": files, "rate_per_s": rate, "runs": runs, "settle_s": SETTLE_S,
            "target_p95_s": CLOSE_TO_COMMIT_TARGET_S,
            **{key: median([one[key] for one in per_run]) for key in ("p50_s", "p95_s", "max_s", "responses_429")},
            "raw": per_run}


def run(*, quick: bool = False, runs: int | None = None) -> dict[str, Any]:
    """The suite's entry point: every workload, the start-up and the close-to-commit latency, in one run."""
    plan = plan_for(quick, runs)
    rclone_version = ensure_rclone()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="syncd-vs-rclone-") as tmp, box_hosts():
        work = Path(tmp)
        workloads = [measure_workload(workload, work) for workload in plan.workloads]
        startup = measure_startup(work, plan.startup_runs)
        close_to_commit = measure_close_to_commit(work, plan.trickle_files, plan.trickle_rate, plan.trickle_runs)
    command = "python -m bench.versus_rclone" + (" --quick" if quick else "") + (f" --runs {runs}" if runs else "")
    return {
        "rclone_version": rclone_version, "latency_ms": LATENCY_MS, "quick": quick,
        "minutes": round((time.monotonic() - started) / 60, 1),
        "workloads": workloads, "startup": startup, "close_to_commit": close_to_commit,
        "command": command,
    }


# --------------------------------------------------------------------------- the command


def _ratio(value: float | None, baseline: float | None) -> str:
    return f"{value / baseline:.2f}" if value is not None and baseline else "-"


def print_table(result: Mapping[str, Any]) -> None:
    """The head-to-head table: times (s), 429s, floors and ratios."""
    print(f"\n{'workload':<48} {'rclone':>8} {'once':>8} {'run':>8} {'floor':>8} {'once/rcl':>9} {'once/flr':>9} "
          f"{'run/rcl':>8} {'429 r/o/r':>10}")
    for workload in result["workloads"]:
        tools = workload["tools"]
        rclone, once, daemon = (tools[name]["seconds"] for name in ("rclone", "syncd_once", "syncd_run"))
        n429 = "/".join(f"{tools[name]['responses_429']:g}" for name in ("rclone", "syncd_once", "syncd_run"))
        print(f"{workload['label']:<48} {rclone:>8.2f} {once:>8.2f} {daemon:>8.2f} {workload['floor_s']:>8.2f} "
              f"{_ratio(once, rclone):>9} {_ratio(once, workload['floor_s']):>9} {_ratio(daemon, rclone):>8} {n429:>10}")
    startup, trickle = result["startup"], result["close_to_commit"]
    print(f"start-up on an empty folder: syncd once {startup['syncd_once_s']:.2f} s, rclone {startup['rclone_s']:.2f} s")
    print(f"close-to-commit (syncd run, {trickle['rate_per_s']:g} files/s): p95 {trickle['p95_s']:.2f} s "
          f"(target <= {trickle['target_p95_s']:g} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller workloads, one run each (about 6 minutes)")
    parser.add_argument("--runs", type=int, help="runs per workload (default 3, or 5 for the 64 KiB files without limits)")
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be positive")
    try:
        result = run(quick=args.quick, runs=args.runs)
    except BenchError as error:  # RcloneError and HostsFileError among them
        print(f"versus_rclone: {error}")
        return 1
    print_table(result)
    print(f"  written to {save_result('versus-rclone', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
