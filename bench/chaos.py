"""Chaos run: a mixed ingestion under SIGKILLs and injected faults, then a check of Box. Reports, never asserts.

Run: ``python -m bench.chaos [--quick] [--files 1000] [--kills 200] [--seed N] [--restart-emulator]``

A fresh emulator (a subprocess serving its own data directory) injects faults:
random 5xx (``fail_rate`` 0.03), connections cut mid-body (``drop_rate`` 0.01), commits
answered 202 first, periodic 429 storms (``reject_next``) and expiry of every access
token (the daemon authenticates with client credentials, so it can get a new one).
Files of mixed sizes (mostly small, some medium, a few chunked >= 20,000,000 bytes)
keep arriving in nested folders while ``syncd run`` is SIGKILLed at random moments
``--kills`` times and restarted each time; a few files are rewritten mid-run (each
rewrite justifies one more Box version). With ``--restart-emulator`` the emulator
itself is SIGKILLed and restarted (same data, same port) a few times. Then the
daemon is let finish and :mod:`bench.verifier` compares every local file with Box
through the API: lost / duplicated / corrupted / still pending / extra must all be 0.

The table is printed and the figures written to ``bench/results/chaos-<UTC date>.json``.
The work directory (daemon log, journal, emulator data) is kept when a defect is found.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.emulator import EmulatorProcess
from bench.report import save_result
from bench.verifier import BoxReader, pending_from_status, verify
from syncd.testing.daemon_process import (
    CHUNKED_MIN,
    DaemonProcess,
    Watch,
    config_data,
    status_json,
    write_config,
)

CLIENT_ID = "syncd-emulator-client"
CLIENT_SECRET = "syncd-emulator-secret"  # the emulator's built-in default, not a real credential
DEFAULT_USER = "11446498"
STORM_REQUESTS = 15
#: Storms aimed at the upload calls (None: whatever comes next, often the token endpoint after a start).
STORM_ENDPOINTS: tuple[str | None, ...] = ("files.upload", "files.preflight", None)


class ChaosError(RuntimeError):
    """The chaos run could not be carried out (emulator or daemon would not start)."""


@dataclass(frozen=True)
class PlannedFile:
    """One file the run drops: where, how big, how it is written, and whether it is rewritten later."""

    relpath: str
    size: int
    way: str  # "write" (open/write/close), "rename" (NAME.tmp then rename), "slow" (written in pieces)
    rewrite: bool = False


@dataclass
class ChaosPlan:
    """Everything random about a run, drawn up front from the seed so a run can be repeated."""

    files: list[PlannedFile]
    kill_gaps: list[float]  # seconds the daemon runs before each SIGKILL
    emulator_kills_at: set[int] = field(default_factory=set)  # kill numbers after which the emulator dies too
    storms_at: set[int] = field(default_factory=set)
    token_expiry_at: set[int] = field(default_factory=set)


def plan_run(*, files: int, kills: int, seed: int, restart_emulator: bool, faults: bool,
             chunked: int | None = None) -> ChaosPlan:
    """Draw the file mix and the kill schedule from `seed`."""
    if files < 1 or kills < 0:
        raise ValueError(f"files must be >= 1 and kills >= 0 (got files={files}, kills={kills})")
    rng = random.Random(seed)
    big = chunked if chunked is not None else max(3, min(10, files // 100))
    planned: list[PlannedFile] = []
    for index in range(files):
        folder = f"d{rng.randrange(6)}" + (f"/s{rng.randrange(3)}" if rng.random() < 0.5 else "")
        if index % max(1, files // big) == 1 and sum(p.size >= CHUNKED_MIN for p in planned) < big:
            size, way, ext = CHUNKED_MIN + rng.randrange(0, 6_000_000), "slow", "bin"
        elif rng.random() < 0.12:
            size, way, ext = rng.randrange(256 * 1024, 4 * 1024 * 1024), rng.choice(("write", "rename")), "tif"
        else:
            size, way, ext = rng.randrange(0, 64 * 1024), rng.choice(("write", "write", "rename")), "pdf"
        rewrite = size < CHUNKED_MIN and rng.random() < 0.03
        planned.append(PlannedFile(f"{folder}/f{index:05}.{ext}", size, way, rewrite))
    gaps = [rng.uniform(0.3, 4.0) for _ in range(kills)]
    emulator_kills = set(rng.sample(range(1, kills), min(3, max(0, kills - 1)))) if restart_emulator else set()
    storms = set(range(3, kills, 7)) if faults else set()
    expiries = set(range(5, kills, 11)) if faults else set()
    return ChaosPlan(planned, gaps, emulator_kills, storms, expiries)


class Dropper:
    """Writes the planned files into the inbox in a thread, spread over `spread_s` seconds."""

    def __init__(self, inbox: Path, plan: list[PlannedFile], *, seed: int, spread_s: float) -> None:
        self.inbox = inbox
        self.plan = plan
        self.spread_s = spread_s
        self.rewrites: dict[str, int] = {}
        self.written = 0
        self.error: OSError | None = None
        self._rng = random.Random(seed + 1)
        self._thread = threading.Thread(target=self._run, name="chaos-dropper", daemon=True)

    def start(self) -> Dropper:
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
        if self.error is not None:
            raise ChaosError(f"dropping files failed: {self.error!r}") from self.error

    def _run(self) -> None:
        try:
            start = time.monotonic()
            pending_rewrites: list[tuple[float, PlannedFile]] = []
            for index, planned in enumerate(self.plan):
                self._write(planned, self._rng.randbytes(planned.size))
                self.written += 1
                if planned.rewrite:
                    pending_rewrites.append((time.monotonic() + self._rng.uniform(2.0, 8.0), planned))
                pending_rewrites = self._due_rewrites(pending_rewrites)
                time.sleep(max(0.0, start + (index + 1) * self.spread_s / len(self.plan) - time.monotonic()))
            while pending_rewrites:
                time.sleep(0.2)
                pending_rewrites = self._due_rewrites(pending_rewrites)
        except OSError as exc:  # reported by join(); a dead thread must not look like a slow one
            self.error = exc

    def _due_rewrites(self, queue: list[tuple[float, PlannedFile]]) -> list[tuple[float, PlannedFile]]:
        now = time.monotonic()
        for due, planned in [item for item in queue if item[0] <= now]:
            # In place, as an editor saving over it would: the file's new content must become a new version.
            (self.inbox / planned.relpath).write_bytes(self._rng.randbytes(max(1, planned.size)))
            self.rewrites[planned.relpath] = self.rewrites.get(planned.relpath, 0) + 1
        return [item for item in queue if item[0] > now]

    def _write(self, planned: PlannedFile, data: bytes) -> None:
        target = self.inbox / planned.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        if planned.way == "rename":
            temporary = target.with_name(target.name + ".tmp")
            temporary.write_bytes(data)
            os.rename(temporary, target)
        elif planned.way == "slow":
            step = max(1, len(data) // 8)
            with open(target, "wb") as handle:
                for offset in range(0, len(data), step):
                    handle.write(data[offset:offset + step])
                    handle.flush()
                    time.sleep(0.05)
        else:
            target.write_bytes(data)


def _ccg_token(token_url: str) -> str:
    response = requests.post(token_url, data={
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "box_subject_type": "user", "box_subject_id": DEFAULT_USER}, timeout=30)
    if response.status_code != 200:
        raise ChaosError(f"client_credentials token request -> {response.status_code}")
    return str(response.json()["access_token"])


def _emulator_args(seed: int, faults: bool) -> list[str]:
    args = ["--part-sizes", "*=4MiB", "--seed", str(seed)]
    if faults:
        args += ["--fail-rate", "0.03", "--drop-rate", "0.01", "--commit-202", "1", "--commit-retry-after", "1"]
    return args


def _wait_finished(config: Path, expected: int, timeout: float) -> dict[str, Any]:
    """Poll `syncd status --json` until nothing is pending/uploading and every file has a row (twice in a row)."""
    deadline = time.monotonic() + timeout
    calm = 0
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = status_json(config)
        settled = pending_from_status(status) == 0 and sum(status["counts"].values()) >= expected
        calm = calm + 1 if settled else 0
        if calm >= 2:
            return status
        time.sleep(1.0)
    return status


def _answers(stats: dict[str, Any]) -> dict[str, int]:
    """Requests by status across endpoints, plus `endpoint:status` for every non-2xx (the faults met)."""
    totals: dict[str, int] = {}
    for endpoint, codes in stats.get("requests", {}).items():
        for status, count in codes.items():
            totals[status] = totals.get(status, 0) + count
            if not status.startswith("2"):
                totals[f"{endpoint}:{status}"] = totals.get(f"{endpoint}:{status}", 0) + count
    return totals


def run_chaos(*, files: int, kills: int, seed: int, work: Path, restart_emulator: bool = False,
              faults: bool = True, finish_timeout: float = 600.0) -> dict[str, Any]:
    """One chaos run in `work` (created if needed); returns the figures and the verifier's findings."""
    started = time.monotonic()
    plan = plan_run(files=files, kills=kills, seed=seed, restart_emulator=restart_emulator, faults=faults)
    work.mkdir(parents=True, exist_ok=True)
    inbox = work / "inbox"
    inbox.mkdir(exist_ok=True)
    emulator = EmulatorProcess(work / "box", *_emulator_args(seed, faults))
    emulator.data_dir.mkdir(exist_ok=True)
    emulator.start()
    daemon: DaemonProcess | None = None
    answers: dict[str, int] = {}
    restarts = 0
    try:
        auth = ({"type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                 "subject_type": "user", "subject_id": DEFAULT_USER} if faults else None)
        config = write_config(work / "syncd.yaml", config_data(
            emulator, work / "journal.db", [Watch(inbox)], auth=auth, readiness={"settle": "300ms"},
            retry={"max_attempts": 25, "initial_backoff": "300ms", "max_backoff": "2s"}))
        daemon = DaemonProcess(config, work / "daemon.log")
        kill_phase = sum(plan.kill_gaps) + 1.5 * kills
        dropper = Dropper(inbox, plan.files, seed=seed, spread_s=max(5.0, 0.7 * kill_phase)).start()
        rng = random.Random(seed + 2)
        for number, gap in enumerate(plan.kill_gaps, start=1):
            daemon.start(wait_ready=False)
            # Storms and expiries land while the daemon works (right after a start it would only hit the token).
            time.sleep(gap / 2)
            if number in plan.storms_at:
                endpoint = STORM_ENDPOINTS[len([n for n in plan.storms_at if n < number]) % len(STORM_ENDPOINTS)]
                emulator.faults(reject_next={"count": STORM_REQUESTS, "status": 429, "retry_after": 1,
                                             "endpoint": endpoint})
            if number in plan.token_expiry_at:
                emulator.expire_tokens()
            if number in plan.emulator_kills_at:
                # Box vanishes under a working daemon for a moment: it must wait, not give files up.
                answers = _merge(answers, _answers(emulator.stats()))
                emulator.kill()
                time.sleep(rng.uniform(0.5, 2.0))
                emulator.start()
                restarts += 1
            time.sleep(gap / 2)
            daemon.kill()
        dropper.join()
        daemon.start(wait_ready=False)
        status = _wait_finished(config, len(plan.files), finish_timeout)
        daemon.stop(timeout=30)
        answers = _merge(answers, _answers(emulator.stats()))
        # The check reads Box as it is; the faults were for the daemon.
        emulator.faults(fail_rate=0, drop_rate=0, reject_next={"count": 0, "status": 429})
        token = _ccg_token(emulator.token_url) if faults else emulator.token
        reader = BoxReader(emulator.api_url, token)
        try:
            report = verify(inbox, reader, extra_versions=dropper.rewrites, config=config)
        finally:
            reader.close()
    finally:
        if daemon is not None:
            daemon.kill()
        emulator.stop()
    result: dict[str, Any] = {
        "files": len(plan.files), "kills": kills, **report.counts(),
        "duration_s": round(time.monotonic() - started, 1), "emulator_restarts": restarts,
        "seed": seed, "faults": faults, "daemon_starts": daemon.starts,
        "chunked_files": sum(p.size >= CHUNKED_MIN for p in plan.files),
        "bytes": sum(p.size for p in plan.files), "rewrites": sum(dropper.rewrites.values()),
        "box_files": report.box_files, "final_counts": status.get("counts", {}),
        "emulator_answers": answers,
        "defects": {"lost": report.lost[:20], "duplicated": report.duplicated[:20],
                    "corrupted": report.corrupted[:20], "extra": report.extra[:20]},
    }
    return result


def _merge(left: dict[str, int], right: dict[str, int]) -> dict[str, int]:
    return {key: left.get(key, 0) + right.get(key, 0) for key in set(left) | set(right)}


def print_table(result: dict[str, Any]) -> None:
    """The run's figures as a small table (the defect rows must read 0)."""
    print(f"chaos run: {result['files']} files ({result['chunked_files']} chunked, {result['rewrites']} rewritten), "
          f"{result['kills']} SIGKILLs, {result['emulator_restarts']} emulator restarts, seed {result['seed']}, "
          f"{result['duration_s']:.0f} s")
    answers = {k: v for k, v in result["emulator_answers"].items() if ":" not in k}
    faulted = {k: v for k, v in sorted(answers.items()) if not k.startswith("2")}
    print(f"  emulator answers met: {sum(answers.values())} requests, non-2xx {faulted} ('0' = connection cut)")
    print(f"  {'check':<15}{'count':>7}  {'target':>6}")
    for name in ("lost", "duplicated", "corrupted", "still_pending", "extra"):
        print(f"  {name:<15}{result[name]:>7}  {0:>6}")
    for name, paths in result["defects"].items():
        if paths:
            print(f"  {name}: {', '.join(paths[:10])}")


def run(*, quick: bool = False, restart_emulator: bool = False) -> dict[str, Any]:
    """The suite's entry point: 1,000 files and 200 kills (quick: 80/10, or 60/6 with emulator restarts)."""
    if quick:
        files, kills = (60, 6) if restart_emulator else (80, 10)
    else:
        files, kills = 1000, 200
    with tempfile.TemporaryDirectory(prefix="syncd-chaos-") as tmp:
        result = run_chaos(files=files, kills=kills, seed=1, work=Path(tmp) / "work", restart_emulator=restart_emulator)
    flag = " --restart-emulator" if restart_emulator else ""
    return {**result, "command": f"python -m bench.chaos --files {files} --kills {kills} --seed 1{flag}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="150 files, 20 kills (a few minutes)")
    parser.add_argument("--files", type=int, default=None, help="files to ingest (default 1000; quick 150)")
    parser.add_argument("--kills", type=int, default=None, help="daemon SIGKILLs (default 200; quick 20)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--restart-emulator", action="store_true", help="also SIGKILL and restart the emulator")
    parser.add_argument("--no-faults", action="store_true", help="no injected emulator faults (kills only)")
    parser.add_argument("--work", type=Path, default=None, help="work directory to keep (default: a temporary one)")
    args = parser.parse_args(argv)
    files = args.files if args.files is not None else (150 if args.quick else 1000)
    kills = args.kills if args.kills is not None else (20 if args.quick else 200)
    work = args.work or Path(tempfile.mkdtemp(prefix="syncd-chaos-"))
    result = run_chaos(files=files, kills=kills, seed=args.seed, work=work,
                       restart_emulator=args.restart_emulator, faults=not args.no_faults)
    result["command"] = "python -m bench.chaos " + " ".join(argv if argv is not None else sys.argv[1:])
    print_table(result)
    clean = not any(result[name] for name in ("lost", "duplicated", "corrupted", "still_pending", "extra"))
    if clean and args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"  work directory kept: {work} (daemon.log, journal.db, box/)")
    out = save_result("chaos-restart" if args.restart_emulator else "chaos", result)
    print(f"  written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
