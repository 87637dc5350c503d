"""Run the real daemon (`python -m syncd run`) in a subprocess for integration tests.

Also the checks every daemon test shares: what Box holds (read through the
emulator's HTTP API with plain `requests`, never through syncd.box or the
journal), the local files' SHA-1s, and `syncd status --json`.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.emulator import EmulatorProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
#: Box refuses upload sessions for smaller files, and so does the config loader (MIN_DIRECT_UPLOAD_MAX).
CHUNKED_MIN = 20_000_000


class DaemonTestError(AssertionError):
    """The daemon did not do what a test waited for; carries the tail of its log."""


# ---------------------------------------------------------------- configuration


@dataclass
class Watch:
    """One watch of a test config (paths absolute)."""

    path: Path
    folder_id: str = "0"
    name: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def to_yaml(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": str(self.path), "folder_id": self.folder_id, **self.options}
        if self.name is not None:
            data["name"] = self.name
        return data


def config_data(emulator: EmulatorProcess, journal: Path, watches: Sequence[Watch], *,
                auth: dict[str, Any] | None = None, box: dict[str, Any] | None = None,
                **top: Any) -> dict[str, Any]:
    """A config dict for the daemon against `emulator`: fast settle and retries unless overridden."""
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
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# ---------------------------------------------------------------- the process


def syncd_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "syncd", *args]


def run_syncd(*args: str, timeout: float = 60.0, prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """Run one `syncd` command to completion (stdout and stderr captured)."""
    return subprocess.run([*prefix, *syncd_command(*args)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def status_json(config: Path) -> dict[str, Any]:
    """`syncd status --json` of the journal named in `config` (as the operator would run it)."""
    result = run_syncd("status", "--config", str(config), "--json", "--failures", "100")
    if result.returncode != 0:
        raise DaemonTestError(f"syncd status exited {result.returncode}: {result.stderr}")
    return json.loads(result.stdout)


def history_json(config: Path, path: str | None = None) -> list[dict[str, Any]]:
    """`syncd history --json` (all files, or one `WATCH:RELPATH`), newest first."""
    args = ["history", "--config", str(config), "--json", "--limit", "1000"]
    if path is not None:
        args.append(path)
    result = run_syncd(*args)
    if result.returncode != 0:
        raise DaemonTestError(f"syncd history exited {result.returncode}: {result.stderr}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


class DaemonProcess:
    """`syncd run --config CONFIG` as a child process whose output goes to a log file.

    `prefix` runs it under a wrapper (e.g. `setpriv` to drop capabilities).
    Every start appends to the same log, so a test can read the whole story.
    """

    def __init__(self, config: Path, log_path: Path, *, prefix: Sequence[str] = ()) -> None:
        self.config = config
        self.log_path = log_path
        self.prefix = tuple(prefix)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log_offset = 0

    def __repr__(self) -> str:
        return f"DaemonProcess(config={str(self.config)!r}, pid={self.pid})"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self, *, wait_ready: bool = True) -> DaemonProcess:
        """Start the daemon; with `wait_ready`, return once it logged `daemon_started`."""
        if self.running():
            raise DaemonTestError("daemon already running")
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen([*self.prefix, *syncd_command("run", "--config", str(self.config))],
                                            cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.starts += 1
        if wait_ready:
            self.wait_for_event("daemon_started", timeout=START_TIMEOUT)
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit and return its exit code."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise DaemonTestError(f"daemon still running after {timeout}s\n{self.tail()}") from None

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, as systemd stops it; returns the exit code."""
        if not self.running():
            assert self.process is not None
            return self.process.returncode
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would."""
        if self.running():
            assert self.process is not None
            self.process.kill()
            self.process.wait(10)

    # -------------------------------------------------------------- its log

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return "daemon log tail:\n" + "\n".join(self.log_text().splitlines()[-lines:])

    def events(self, name: str | None = None, *, since_start: bool = False) -> list[dict[str, Any]]:
        """Parsed JSON log lines (optionally only `event == name`, only of the current run)."""
        text = self.log_text()
        if since_start:
            text = text.encode("utf-8")[self._log_offset:].decode("utf-8", errors="replace")
        found = []
        for line in text.splitlines():
            if not line.startswith("{"):
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut by SIGKILL
            if name is None or entry.get("event") == name:
                found.append(entry)
        return found

    def wait_for_event(self, name: str, *, timeout: float = 30.0,
                       where: Callable[[dict[str, Any]], bool] = lambda e: True) -> dict[str, Any]:
        """The first log entry of this run named `name` that satisfies `where`, waiting for it."""
        deadline = time.monotonic() + timeout
        while True:
            for entry in self.events(name, since_start=True):
                if where(entry):
                    return entry
            if not self.running():
                raise DaemonTestError(f"daemon exited ({self.process and self.process.returncode}) "
                                      f"before logging {name}\n{self.tail()}")
            if time.monotonic() > deadline:
                raise DaemonTestError(f"no {name} log entry within {timeout}s\n{self.tail()}")
            time.sleep(0.1)


# ------------------------------------------------------------- local and Box


def sha1_of(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def local_files(root: Path) -> dict[str, str]:
    """Relative path -> SHA-1 of every regular file under `root` (symlinks not followed)."""
    found: dict[str, str] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            found[path.relative_to(root).as_posix()] = sha1_of(path)
    return found


def box_files(emulator: EmulatorProcess, folder_id: str = "0", prefix: str = "") -> dict[str, dict[str, Any]]:
    """Relative path -> Box file entry (with `sha1`) of every file under a Box folder."""
    found: dict[str, dict[str, Any]] = {}
    for entry in emulator.folder_items(folder_id):
        path = f"{prefix}{entry['name']}"
        if entry["type"] == "folder":
            found.update(box_files(emulator, entry["id"], f"{path}/"))
        elif entry["type"] == "file":
            found[path] = entry
    return found


def box_sha1s(emulator: EmulatorProcess, folder_id: str = "0") -> dict[str, str]:
    return {path: entry["sha1"] for path, entry in box_files(emulator, folder_id).items()}


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.25,
               message: Callable[[], str] | str = "condition not met") -> None:
    """Poll `predicate` until it is true; DaemonTestError with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise DaemonTestError(message() if callable(message) else message)
        time.sleep(interval)


def wait_for_box(emulator: EmulatorProcess, expected: dict[str, str], *, timeout: float,
                 daemon: DaemonProcess | None = None, folder_id: str = "0") -> dict[str, str]:
    """Wait until Box holds every expected path with its SHA-1; returns what Box holds then."""
    held: dict[str, str] = {}

    def arrived() -> bool:
        nonlocal held
        held = box_sha1s(emulator, folder_id)
        return all(held.get(path) == sha1 for path, sha1 in expected.items())

    def explain() -> str:
        missing = sorted(p for p, s in expected.items() if held.get(p) != s)
        return (f"{len(missing)} of {len(expected)} files not in Box with the right SHA-1 after {timeout}s, "
                f"e.g. {missing[:5]}\n" + (daemon.tail() if daemon else ""))

    wait_until(arrived, timeout=timeout, interval=0.5, message=explain)
    return held


def assert_exactly_once(emulator: EmulatorProcess, expected: dict[str, str], *, folder_id: str = "0",
                        versions: dict[str, set[int]] | None = None) -> None:
    """Box holds exactly `expected` (path -> SHA-1): nothing missing, nothing extra, one version each
    (or one of `versions[path]` where the test changed a file)."""
    files = box_files(emulator, folder_id)
    held = {path: entry["sha1"] for path, entry in files.items()}
    missing = sorted(set(expected) - set(held))
    extra = sorted(set(held) - set(expected))
    wrong = sorted(p for p in expected if p in held and held[p] != expected[p])
    assert not missing and not extra and not wrong, (
        f"Box differs from the drop folder: missing {missing[:10]}, extra {extra[:10]}, wrong SHA-1 {wrong[:10]}")
    for path, entry in files.items():
        want = (versions or {}).get(path, {1})
        # Box lists only the previous versions; the current one is the file itself.
        got = len(emulator.file_versions(entry["id"])) + 1
        assert got in want, f"{path}: {got} versions in Box, expected {sorted(want)}"


def settled_counts(status: dict[str, Any]) -> dict[str, int]:
    """The non-zero state counts of a `status --json` report."""
    return {state: n for state, n in status["counts"].items() if n}


def iter_chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]
