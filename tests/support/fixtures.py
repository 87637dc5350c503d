"""Shared pytest fixtures (registered from tests/conftest.py).

`emulator`: a fresh emulator process with its own data directory, stopped after
the test. `emulator_factory(*extra_args, token=...)`: start more (or
differently configured) emulators; all are stopped after the test.
`million_row_journal`: a private copy of a journal of a million rows (built once per session).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.big_journal import build_template, copy_journal, remove_journal
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


@pytest.fixture(scope="session")
def million_row_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    template = build_template(tmp_path_factory.mktemp("big-journal") / "journal.db")
    yield template
    remove_journal(template)


@pytest.fixture
def million_row_journal(million_row_template: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of the million-row journal (tests.support.big_journal) at tmp_path/var/journal.db."""
    journal = copy_journal(million_row_template, tmp_path / "var" / "journal.db")
    yield journal
    remove_journal(journal)
