"""The one emulator launcher every benchmark uses: a fresh ``python -m syncd emulator``
subprocess on an ephemeral port, with its admin API (stats, faults) at hand."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
_LISTENING = re.compile(r"api=(?P<api>\S+) upload=(?P<upload>\S+) token=(?P<token>\S+)")


class BenchError(RuntimeError):
    """The benchmark could not run (emulator did not start, an upload was refused...)."""


@dataclass
class EmulatorRun:
    """A fresh ``python -m syncd emulator`` subprocess on an ephemeral port.

    ``extra_args`` are passed to the emulator as they are (e.g. ``["--latency-ms", "40"]``).
    Usable as a context manager: started on entry, stopped on exit.
    """

    data_dir: Path
    extra_args: Sequence[str] = ()
    token: str = field(default="dev-token", repr=False)
    process: subprocess.Popen[str] | None = field(default=None, repr=False)
    api_url: str = ""
    upload_url: str = ""

    def start(self, timeout: float = 30.0) -> EmulatorRun:
        """Start the emulator and wait for its "listening" line; returns ``self``."""
        Path(self.data_dir).mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "syncd", "emulator", "--host", "127.0.0.1", "--port", "0",
            "--data", str(self.data_dir), "--token", self.token, *self.extra_args,
        ]
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        line = _read_line(self.process, timeout)
        match = _LISTENING.search(line)
        if not match:
            self.stop()
            raise BenchError(f"emulator did not announce its URLs; first line was {line!r}")
        self.api_url, self.upload_url = match["api"], match["upload"]
        # Keep draining stdout so a chatty emulator never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def __enter__(self) -> EmulatorRun:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _drain(self) -> None:
        stream = self.process.stdout if self.process else None
        if stream is not None:
            for _ in stream:
                pass

    @property
    def pid(self) -> int:
        """The emulator's process id (raises if not started)."""
        if self.process is None:
            raise BenchError("emulator not started")
        return self.process.pid

    @property
    def admin_url(self) -> str:
        """Base URL of the unauthenticated admin API (``/_emulator``)."""
        if not self.api_url:
            raise BenchError("emulator not started")
        return self.api_url.rsplit("/2.0", 1)[0] + "/_emulator"

    def stats(self) -> dict[str, Any]:
        """``GET /_emulator/stats``: requests per endpoint and status, bytes received."""
        response = requests.get(f"{self.admin_url}/stats", timeout=10)
        response.raise_for_status()
        return response.json()

    def set_faults(self, **knobs: Any) -> dict[str, Any]:
        """``PUT /_emulator/faults`` with the given knobs (snake_case names)."""
        response = requests.put(f"{self.admin_url}/faults", json=knobs, timeout=10)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        """Terminate the emulator (kill it if it has not gone in 10 s)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def count_status(stats: dict[str, Any], status: str) -> tuple[int, int]:
    """(requests answered with ``status``, all requests) over every endpoint of a stats snapshot."""
    matching = total = 0
    for by_status in stats.get("requests", {}).values():
        for code, count in by_status.items():
            total += count
            if code == status:
                matching += count
    return matching, total


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(process.stdout.readline() if process.stdout else ""))
    reader.daemon = True
    reader.start()
    reader.join(timeout)
    if not result:
        raise BenchError(f"emulator printed nothing within {timeout:.0f} s")
    return result[0]
