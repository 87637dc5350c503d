"""Run the real daemon (`python -m syncd run`) as a child process: for syncd's own
tests and benchmarks, and for anyone's test suite or benchmark that wants a daemon
working against a Box (usually the emulator, see syncd.emulator.harness).

    with EmulatorProcess(work / "box") as box:
        config = write_config(work / "syncd.yaml",
                              config_data(box, work / "journal.db", [Watch(work / "inbox")]))
        with DaemonProcess(config, work / "daemon.log") as daemon:  # started: it logged daemon_started
            ...  # drop files into work / "inbox"
            daemon.wait_for_event("upload_committed", timeout=30)
            [event_time(e) for e in daemon.events("upload_committed")]
        status_json(config)["counts"]

The daemon's output goes to a log file, JSON lines when the config says
``logging.format: json`` (as `config_data` does), which `DaemonProcess.events`
parses. Every start appends to the same log, so the whole story can be read after.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Self

import yaml

from syncd.config.model import MIN_DIRECT_UPLOAD_MAX
from syncd.emulator.harness import EmulatorProcess

__all__ = [
    "CHUNKED_MIN", "START_TIMEOUT", "DaemonProcess", "DaemonProcessError", "Watch", "config_data", "event_time",
    "history_json", "run_syncd", "status_json", "syncd_command", "write_config",
]

#: Seconds `DaemonProcess.start` waits for `daemon_started`.
START_TIMEOUT = 30.0
#: The smallest file that can go chunked: Box refuses upload sessions for smaller files, so the
#: config's `box.direct_upload_max` cannot be lower. `config_data` sets it there, so a file of
#: more than CHUNKED_MIN bytes takes the chunked path.
CHUNKED_MIN = MIN_DIRECT_UPLOAD_MAX


class DaemonProcessError(RuntimeError):
    """The daemon (or a `syncd` command) did not do what was waited for; carries the tail of its log."""


# ---------------------------------------------------------------- configuration


@dataclass
class Watch:
    """One watch of a config written by `config_data` (paths absolute)."""

    path: Path
    folder_id: str = "0"
    name: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def to_yaml(self) -> dict[str, Any]:
        """The watch as a `watches:` entry."""
        data: dict[str, Any] = {"path": str(self.path), "folder_id": self.folder_id, **self.options}
        if self.name is not None:
            data["name"] = self.name
        return data


def config_data(emulator: EmulatorProcess, journal: Path, watches: Sequence[Watch], *,
                auth: dict[str, Any] | None = None, box: dict[str, Any] | None = None,
                **top: Any) -> dict[str, Any]:
    """A config dict for the daemon against `emulator`, tuned for tests: fast settle and retries,
    Box's rate limits lifted, chunked uploads from CHUNKED_MIN.

    `auth` replaces the developer token, `box` entries are merged into `box:`, and every other
    keyword sets a top-level key (merged into it when both are dicts).
    """
    data: dict[str, Any] = {
        "box": {
            "api_url": emulator.api_url,
            "upload_url": emulator.upload_url,
            "token_url": emulator.token_url,
            "auth": auth or {"type": "developer_token", "token": emulator.token},
            "direct_upload_max": CHUNKED_MIN,
            "part_concurrency": 2,
            # Box's real per-user limits (the defaults) would make the tests wait, not test more.
            "uploads_per_minute": 6000,
            "calls_per_minute": 20000,
            **(box or {}),
        },
        "journal": str(journal),
        "watches": [w.to_yaml() for w in watches],
        "workers": 3,
        "shutdown_timeout": "10s",
        "readiness": {"settle": "500ms", "closed_settle": "200ms"},
        "retry": {"max_attempts": 10, "initial_backoff": "500ms", "max_backoff": "2s"},
        "logging": {"format": "json", "level": "info"},
    }
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def write_config(path: Path, data: dict[str, Any]) -> Path:
    """Write `data` as the YAML config file `path` (parents created); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# ---------------------------------------------------------------- syncd commands


def syncd_command(*args: str) -> list[str]:
    """The argv of `syncd ARGS...` run by this interpreter (`python -m syncd`)."""
    return [sys.executable, "-m", "syncd", *args]


def _child_env() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1")


def run_syncd(*args: str, timeout: float = 60.0, prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """Run one `syncd` command to completion (stdout and stderr captured; the exit code is the caller's to check).

    `prefix` runs it under a wrapper (e.g. `setpriv` to drop capabilities).
    """
    return subprocess.run([*prefix, *syncd_command(*args)], capture_output=True, text=True, timeout=timeout,
                          env=_child_env(), check=False)


def status_json(config: Path) -> dict[str, Any]:
    """`syncd status --json` of the journal named in `config` (as the operator would run it)."""
    result = run_syncd("status", "--config", str(config), "--json", "--failures", "100")
    if result.returncode != 0:
        raise DaemonProcessError(f"syncd status exited {result.returncode}: {result.stderr}")
    return json.loads(result.stdout)


def history_json(config: Path, path: str | None = None) -> list[dict[str, Any]]:
    """`syncd history --json` (all files, or one `WATCH:RELPATH`), newest first."""
    args = ["history", "--config", str(config), "--json", "--limit", "1000"]
    if path is not None:
        args.append(path)
    result = run_syncd(*args)
    if result.returncode != 0:
        raise DaemonProcessError(f"syncd history exited {result.returncode}: {result.stderr}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def event_time(entry: dict[str, Any]) -> float:
    """Epoch seconds of a JSON log entry's `timestamp` (ISO 8601, UTC, as the daemon logs it)."""
    return datetime.fromisoformat(entry["timestamp"]).timestamp()


# ---------------------------------------------------------------- the daemon


class DaemonProcess:
    """`syncd run --config CONFIG` as a child process whose output goes to a log file.

    `prefix` runs it under a wrapper (e.g. `setpriv` to drop capabilities); `env` adds to its
    environment (e.g. NOTIFY_SOCKET and WATCHDOG_USEC, as systemd sets them).
    Every start appends to the same log, so a test can read the whole story.
    As a context manager it is started (ready) on entry and stopped on exit.
    """

    def __init__(self, config: Path, log_path: Path, *, prefix: Sequence[str] = (),
                 env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log_path = log_path
        self.prefix = tuple(prefix)
        self.env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log_offset = 0

    def __repr__(self) -> str:
        pid = None if self.process is None else self.process.pid
        return f"DaemonProcess(config={str(self.config)!r}, pid={pid})"

    @property
    def pid(self) -> int:
        """The process id of the latest start (raises if it was never started)."""
        return self._started().pid

    def _started(self) -> subprocess.Popen[bytes]:
        if self.process is None:
            raise DaemonProcessError("daemon not started")
        return self.process

    # -------------------------------------------------------------- lifecycle

    def start(self, *, wait_ready: bool = True) -> Self:
        """Start the daemon; with `wait_ready`, return once it logged `daemon_started`
        (and kill it if it does not within START_TIMEOUT)."""
        if self.running():
            raise DaemonProcessError("daemon already running")
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen([*self.prefix, *syncd_command("run", "--config", str(self.config))],
                                            stdout=log_file, stderr=subprocess.STDOUT,
                                            env={**_child_env(), **self.env})
        self.starts += 1
        if wait_ready:
            try:
                self.wait_for_event("daemon_started", timeout=START_TIMEOUT)
            except DaemonProcessError:
                self.kill()
                raise
        return self

    def running(self) -> bool:
        """Whether the latest start is still running."""
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        """Send `signum` (SIGHUP reloads the config, SIGTERM/SIGINT stop it)."""
        self._started().send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit and return its exit code."""
        try:
            return self._started().wait(timeout)
        except subprocess.TimeoutExpired:
            raise DaemonProcessError(f"daemon still running after {timeout}s\n{self.tail()}") from None

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, as systemd stops it; returns the exit code (DaemonProcessError if it outlasts `timeout`)."""
        process = self._started()
        if process.poll() is not None:
            return process.returncode
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self.kill()

    # -------------------------------------------------------------- its log

    def log_text(self) -> str:
        """The whole log (every start), as text."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the log, headed for an error message."""
        return "daemon log tail:\n" + "\n".join(self.log_text().splitlines()[-lines:])

    def events(self, name: str | None = None, *, since_start: bool = False) -> list[dict[str, Any]]:
        """Parsed JSON log lines (optionally only `event == name`, only of the current run)."""
        text = self.log_text()
        if since_start:
            text = text.encode("utf-8")[self._log_offset:].decode("utf-8", errors="replace")
        # The daemon writes the event name as json.dumps does; lines without it need no parsing.
        needle = None if name is None else json.dumps(name, ensure_ascii=False)
        found = []
        for line in text.splitlines():
            if not line.startswith("{") or (needle is not None and needle not in line):
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut by SIGKILL
            if name is None or entry.get("event") == name:
                found.append(entry)
        return found

    def wait_for_event(self, name: str, *, timeout: float = 30.0, interval: float = 0.1,
                       where: Callable[[dict[str, Any]], bool] = lambda e: True) -> dict[str, Any]:
        """The first log entry of this run named `name` that satisfies `where`, polling the log
        every `interval` seconds; DaemonProcessError if the daemon exits or `timeout` passes first."""
        deadline = time.monotonic() + timeout
        while True:
            for entry in self.events(name, since_start=True):
                if where(entry):
                    return entry
            if not self.running():
                raise DaemonProcessError(f"daemon exited ({self.process and self.process.returncode}) "
                                         f"before logging {name}\n{self.tail()}")
            if time.monotonic() > deadline:
                raise DaemonProcessError(f"no {name} log entry within {timeout}s\n{self.tail()}")
            time.sleep(interval)
