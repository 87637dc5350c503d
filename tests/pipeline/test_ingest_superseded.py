"""Ingest against the real emulator when intake re-queues a file in the middle of its upload.

A worker uploading a large file and intake noticing that the file changed race each
other: intake records the new content and another worker may claim (or even upload) it
before the first worker's read comes up short. The first upload must then be discarded,
never committed, and the log must say so once.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from structlog.testing import capture_logs

from syncd.config import load_config
from syncd.service.box_connection import connect_box
from syncd.testing.daemon_process import CHUNKED_MIN, Watch, config_data, write_config
from syncd.journal import Journal
from syncd.pipeline.ingest import Ingest, OutcomeKind

DISCARD_EVENTS = {"upload_discarded_file_changed", "upload_superseded"}


def _observe(journal: Journal, path: Path) -> None:
    st = path.stat()
    journal.observe("inbox", path.name, st.st_size, st.st_mtime_ns, st.st_ino, time.time())


def test_an_upload_superseded_while_its_file_shrinks_is_discarded_and_logged_once(tmp_path: Path, emulator_factory):
    emulator = emulator_factory("--part-sizes", "*=1MiB", "--bandwidth", "20000000")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = load_config(write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "journal.db", [Watch(inbox)], box={"part_concurrency": 1})))
    path = inbox / "export.csv"
    path.write_bytes(os.urandom(CHUNKED_MIN + 1_000_000))
    journal = Journal.open(tmp_path / "journal.db")
    box = connect_box(config)
    try:
        _observe(journal, path)
        first = journal.claim_next(time.time())
        assert first is not None
        reclaimed: list[int] = []
        changed = threading.Event()

        def intake_and_another_worker_step_in(_sent: int) -> None:
            # While the first part is on the wire: the file is cut, intake records the new
            # content and a second worker claims it, so the first claim goes stale.
            if changed.is_set():
                return
            changed.set()
            with open(path, "r+b") as f:
                f.truncate(1000)
            _observe(journal, path)
            second = journal.claim_next(time.time())
            assert second is not None
            reclaimed.append(second.claim_seq)

        ingest = Ingest(config, journal, box.client, box.uploader, box.folders,
                        on_bytes=intake_and_another_worker_step_in)
        with capture_logs() as logs:
            outcome = ingest.process(first)
    finally:
        box.close()
        journal.close()

    assert reclaimed and reclaimed[0] != first.claim_seq
    assert outcome.kind is OutcomeKind.STALE, outcome
    discards = [entry["event"] for entry in logs if entry["event"] in DISCARD_EVENTS]
    assert len(discards) == 1, logs
    assert emulator.stats()["requests"].get("sessions.commit", {}) == {}, "the cut file was committed"
