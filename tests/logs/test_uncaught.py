"""Uncaught exceptions in a real process go through the redactor instead of raw stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SECRET = "uncaught-secret-7731"

PROGRAM = textwrap.dedent("""
    import os, threading
    from syncd import logs
    logs.configure_logging("json", "info")
    logs.route_uncaught_exceptions()
    secret = os.environ["PROBE_SECRET"]
    logs.register_secret(secret)

    def worker():
        raise ValueError(f"worker saw {secret}")

    thread = threading.Thread(target=worker, name="uploader-1")
    thread.start()
    thread.join()
    raise RuntimeError(f"main saw {secret}")
""")


def test_uncaught_exceptions_are_logged_redacted() -> None:
    result = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=30, cwd=REPO,
                            env={**os.environ, "PROBE_SECRET": SECRET})
    assert result.returncode == 1
    assert SECRET not in result.stderr + result.stdout
    thread_event, main_event = (json.loads(line) for line in result.stderr.splitlines())
    assert thread_event["event"] == "uncaught_exception_in_thread" and thread_event["thread"] == "uploader-1"
    assert thread_event["level"] == "critical"
    assert thread_event["exception"].endswith("ValueError: worker saw ***")
    assert main_event["event"] == "uncaught_exception"
    assert main_event["exception"].endswith("RuntimeError: main saw ***")
