"""rclone, the tool syncd's users compare it with, as the peer of the head-to-head benchmark.

Debian's ``rclone`` package (1.60) is installed on first use (``apt-get install -y
rclone``; CI does not run benchmarks, so the project's bootstrap does not install it).
rclone's Box backend has Box's URLs built in, so it reaches the emulator through Box's
host names (``bench/box_hosts.py``) and trusts the emulator's CA through ``SSL_CERT_FILE``
(Go reads it). Its credentials are an rclone config holding an OAuth token pair minted
by the emulator, as ``rclone config`` would have stored it after a login.

The command is ``rclone copy SRC box:FOLDER`` with rclone's defaults (4 transfers,
8 checkers, no ``--tpslimit``; the Box backend's own pacer spaces calls at least 10 ms
apart) plus :data:`SAFETY_FLAGS`, which change nothing about speed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.emulator import BenchError

RCLONE_PACKAGE = "rclone"
REMOTE = "box"
#: rclone opens its connections from the loopback address only, so that even a resolver
#: that ignored the hosts file could not send it to Box's real servers: a socket bound to
#: 127.0.0.1 cannot reach another machine. No effect on speed.
SAFETY_FLAGS = ("--bind", "127.0.0.1")

# rclone's log lines: "2026/11/26 06:45:00 ERROR : name: Failed to copy: ..." (level padded to 6).
_LOG_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d(?:\.\d+)? (?P<level>[A-Z]+)\s*: (?P<message>.*)$")
_FAILED_ATTEMPT = re.compile(r"Attempt (?P<attempt>\d+)/(?P<of>\d+) failed with (?P<errors>\d+) errors")


class RcloneError(BenchError):
    """rclone could not be installed, or a copy did not finish cleanly."""


def ensure_rclone() -> str:
    """rclone's version line, installing Debian's package first if rclone is missing."""
    if shutil.which("rclone") is None:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        install = ["apt-get", "install", "-y", "-q", RCLONE_PACKAGE]
        print(f"  installing rclone: {' '.join(install)}", flush=True)
        if subprocess.run(install, env=env, capture_output=True, text=True, check=False).returncode != 0:
            # A machine whose package lists were never fetched knows no rclone yet.
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True, check=False)
            retried = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
            if retried.returncode != 0:
                raise RcloneError(f"`{' '.join(install)}` failed ({retried.returncode}): {retried.stderr.strip()[-500:]}")
    version = subprocess.run(["rclone", "version"], capture_output=True, text=True, check=False, timeout=60)
    if version.returncode != 0 or not version.stdout:
        raise RcloneError(f"`rclone version` failed ({version.returncode}): {version.stderr.strip()[-500:]}")
    return version.stdout.splitlines()[0].strip()


def rclone_config(tokens: Mapping[str, Any], now: datetime) -> str:
    """An rclone config with one Box remote, `REMOTE`, holding `tokens` (the token endpoint's answer:
    access_token, refresh_token, expires_in) as rclone stores them: a JSON blob whose `expiry`
    is an RFC 3339 time. `now` must be timezone-aware."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    blob = {
        "access_token": tokens["access_token"],
        "token_type": "bearer",
        "refresh_token": tokens["refresh_token"],
        "expiry": (now + timedelta(seconds=int(tokens["expires_in"]))).isoformat(timespec="seconds"),
    }
    return f"[{REMOTE}]\ntype = box\ntoken = {json.dumps(blob)}\n"


def copy_argv(source: Path, folder: str, flags: Sequence[str] = ()) -> list[str]:
    """`rclone copy SOURCE box:FOLDER` with the safety flags and `flags`."""
    return ["rclone", "copy", str(source), f"{REMOTE}:{folder}", *SAFETY_FLAGS, *flags]


@dataclass(frozen=True)
class RcloneLog:
    """What rclone said at its default log level: errors, and whole-copy attempts that failed."""

    errors: tuple[str, ...] = ()
    failed_attempts: int = 0
    other: tuple[str, ...] = field(default=())


def parse_rclone_log(text: str) -> RcloneLog:
    """Sort rclone's stderr into ERROR messages (counting the "Attempt N/M failed" ones, each of
    which made rclone start the whole copy again) and every other line."""
    errors: list[str] = []
    other: list[str] = []
    failed = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _LOG_LINE.match(line)
        if match is None or match["level"] != "ERROR":
            other.append(line)
            continue
        errors.append(match["message"])
        if _FAILED_ATTEMPT.search(match["message"]):
            failed += 1
    return RcloneLog(tuple(errors), failed, tuple(other))


@dataclass(frozen=True)
class RcloneRun:
    """One `rclone copy`: its wall time and what it logged."""

    argv: tuple[str, ...]
    seconds: float
    log: RcloneLog


def run_copy(source: Path, folder: str, *, config: Path, ca_file: Path, flags: Sequence[str] = (),
             timeout: float = 900.0) -> RcloneRun:
    """Run `rclone copy` to completion with `config` and the emulator's CA; RcloneError unless it exits 0.

    The time is the process's wall time, start-up included, as a user timing the command sees it.
    """
    argv = copy_argv(source, folder, flags)
    env = dict(os.environ, RCLONE_CONFIG=str(config), SSL_CERT_FILE=str(ca_file))
    started = time.perf_counter()
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as error:
        raise RcloneError(f"`{' '.join(argv)}` still running after {timeout:.0f} s (killed)") from error
    seconds = time.perf_counter() - started
    log = parse_rclone_log(done.stderr + done.stdout)
    if done.returncode != 0:
        raise RcloneError(f"`{' '.join(argv)}` exited {done.returncode}: {'; '.join(log.errors[-3:]) or done.stderr[-500:]}")
    return RcloneRun(tuple(argv), seconds, log)
