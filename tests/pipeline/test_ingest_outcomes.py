"""Ingest's outcomes against the real emulator and a real journal: each `OutcomeKind` a claim
can end in for reasons other than a plain upload, and what the journal then holds."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from syncd.config import Config, load_config
from syncd.journal import FileRecord, FileState, Journal
from syncd.pipeline.ingest import Ingest, Outcome, OutcomeKind
from syncd.service.box_connection import connect_box
from syncd.testing.daemon_process import Watch, config_data, write_config


@pytest.fixture
def rig(tmp_path: Path, emulator) -> Iterator[Callable[..., tuple[Outcome, FileRecord]]]:
    """run(name, size, watch=, on_bytes=): drop a file, claim it, ingest it once; (outcome, row after)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config: Config = load_config(write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "journal.db", [Watch(inbox, name="inbox")])))
    journal = Journal.open(tmp_path / "journal.db")
    box = connect_box(config)

    def run(name: str, size: int = 1000, *, watch: str = "inbox",
            on_bytes: Callable[[int], None] | None = None) -> tuple[Outcome, FileRecord]:
        path = inbox / name
        path.write_bytes(os.urandom(size))
        st = path.stat()
        journal.observe(watch, name, st.st_size, st.st_mtime_ns, st.st_ino, time.time())
        claimed = journal.claim_next(time.time())
        assert claimed is not None and claimed.relpath == name
        outcome = Ingest(config, journal, box.client, box.uploader, box.folders, on_bytes=on_bytes).process(claimed)
        row = journal.get(claimed.id)
        assert row is not None
        return outcome, row

    yield run
    box.close()
    journal.close()


def test_a_file_of_a_watch_no_longer_configured_is_parked_as_failed(rig) -> None:
    outcome, row = rig("orphan.txt", watch="removed-by-a-reload")
    assert (outcome.kind, outcome.code) == (OutcomeKind.FAILED, "watch_removed")
    assert (row.state, row.last_error_code) == (FileState.FAILED, "watch_removed")


def test_a_bug_during_the_upload_schedules_a_retry_instead_of_stranding_the_row(rig) -> None:
    def broken_progress(_sent: int) -> None:
        raise RuntimeError("a bug in a callback")

    outcome, row = rig("a.txt", on_bytes=broken_progress)
    assert (outcome.kind, outcome.code) == (OutcomeKind.RETRY, "internal_error")
    assert (row.state, row.last_error_code) == (FileState.PENDING, "internal_error")
    assert "a bug in a callback" in (row.last_error or "")


def test_box_error_classes_decide_quarantine_and_quota(rig, emulator) -> None:
    emulator.faults(max_file_size=500)
    outcome, row = rig("too-big.bin", 1000)
    assert (outcome.kind, outcome.code) == (OutcomeKind.QUARANTINED, "file_size_limit_exceeded")
    assert row.state is FileState.QUARANTINED
    emulator.faults(max_file_size=0, storage_quota=100)
    outcome, row = rig("account-full.bin", 1000)
    # A full account is not the file's fault: it waits for space with its retries.
    assert (outcome.kind, outcome.code) == (OutcomeKind.RETRY, "storage_limit_exceeded")
    assert (row.state, row.last_error_code) == (FileState.PENDING, "storage_limit_exceeded")
