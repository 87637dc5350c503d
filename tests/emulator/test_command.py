"""The `syncd emulator` command line: help, option validation, start line, shutdown."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.support.emulator import REPO_ROOT, EmulatorProcess


def run_cli(*args: str, timeout: float = 30, full_cli: bool = False) -> subprocess.CompletedProcess[str]:
    """`python -m syncd emulator` (full_cli) or the lighter `python -m syncd.emulator` (same options)."""
    entry = ["-m", "syncd", "emulator"] if full_cli else ["-m", "syncd.emulator"]
    return subprocess.run([sys.executable, *entry, *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_help_documents_every_knob_and_the_choices() -> None:
    result = run_cli("--help", full_cli=True)
    assert result.returncode == 0
    for option in ("--host", "--port", "--data", "--token", "--public-url", "--latency-ms", "--bandwidth",
                   "--upload-rate-limit", "--api-rate-limit", "--commit-202", "--commit-retry-after",
                   "--fail-rate", "--drop-rate", "--token-ttl", "--max-file-size", "--storage-quota",
                   "--min-chunked-size", "--part-sizes", "--seed", "--jwt-public-key", "--jwt-key-id"):
        assert option in result.stdout, option
    assert "range_overlaps_existing_part" in result.stdout and "parts_mismatch" in result.stdout


def test_bad_options_exit_2_with_a_clear_message(tmp_path: Path) -> None:
    for args, fragment in ((("--fail-rate", "3"), "fail_rate"), (("--part-sizes", "huge"), "part-size"),
                           (("--jwt-key-id", "k"), "--jwt-public-key"), (("--token", ""), "--token")):
        result = run_cli("--port", "0", "--data", str(tmp_path / "d"), *args)
        assert result.returncode == 2 and fragment in result.stderr, (args, result.stderr)
    assert run_cli("--port", "0").returncode == 2  # --data is required


def test_port_in_use_and_clean_sigterm(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_cli("--port", str(taken.getsockname()[1]), "--data", str(tmp_path / "d"))
        assert result.returncode == 1 and "cannot listen" in result.stderr
    box = EmulatorProcess(tmp_path / "d2").start()
    assert box.api_url.endswith("/2.0") and box.upload_url.endswith("/api/2.0")
    assert box.token_url.endswith("/oauth2/token")
    assert box.process is not None
    box.process.send_signal(signal.SIGTERM)
    assert box.process.wait(10) == 0
    assert "dev-token" not in box.stderr
