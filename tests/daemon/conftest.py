"""Fixtures for the daemon's integration tests: real daemon processes against the real emulator."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.daemon.daemon_process import DaemonProcess


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Make (not start) daemons for a config file; any still running after the test is killed."""
    made: list[DaemonProcess] = []

    def make(config: Path, *, prefix: Sequence[str] = (), log_name: str | None = None,
             env: dict[str, str] | None = None) -> DaemonProcess:
        log_path = tmp_path / (log_name or f"daemon-{len(made)}.log")
        daemon = DaemonProcess(config, log_path, prefix=prefix, env=env)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.kill()
