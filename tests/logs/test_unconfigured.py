"""Before `configure_logging` (a command that sets no logging up, a program embedding syncd's
modules), events go through stdlib logging, redacted, never to stdout: structlog's own default
prints every event on stdout, where it corrupted a child process's JSON protocol."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import json
from syncd.pipeline import watcher  # a module that logs, imported as any program would

watcher.log.info("watch_started", watch="w")
watcher.log.warning("observer_restarting", watch="w", reason="refresh_token=tok-123456 was refused")
try:
    raise RuntimeError("Bearer abc.def.ghi")
except RuntimeError:
    watcher.log.exception("watch_check_crashed", watch="w")
print(json.dumps({"protocol": "intact"}))
"""


def test_events_before_configuration_go_to_stderr_redacted_never_stdout() -> None:
    result = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout == '{"protocol": "intact"}\n'
    lines = result.stderr.splitlines()
    # stdlib's last resort shows warnings and errors; the info event is dropped.
    assert lines[0] == "event='observer_restarting' watch='w' reason='refresh_token=*** was refused'"
    assert lines[1].startswith("event='watch_check_crashed' watch='w' exception='Traceback (most recent call last)")
    assert "RuntimeError: Bearer ***" in result.stderr and "abc.def" not in result.stderr
    assert len(lines) == 2  # the traceback once, inside the redacted line (not printed again by stdlib)
