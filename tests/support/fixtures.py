"""Shared pytest fixtures (registered from tests/conftest.py).

`emulator`: a fresh emulator process with its own data directory, stopped after
the test. `emulator_factory(*extra_args, token=...)`: start more (or
differently configured) emulators; all are stopped after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.emulator import EmulatorProcess


@pytest.fixture
def emulator_factory(tmp_path: Path) -> Iterator[Callable[..., EmulatorProcess]]:
    started: list[EmulatorProcess] = []

    def start(*extra_args: str, token: str = "dev-token") -> EmulatorProcess:
        data_dir = tmp_path / f"emulator-{len(started)}"
        process = EmulatorProcess(data_dir, *extra_args, token=token)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def emulator(emulator_factory: Callable[..., EmulatorProcess]) -> EmulatorProcess:
    return emulator_factory()
