"""What ingest records around a commit (issue 11), against the real emulator and a real journal:
a commit whose claim went stale is remembered (the new content versions it: not skipped, no
"name (1)"), versions are sent with If-Match (someone else's change is not overwritten; our own
reconciles), a journal that refuses the outcome gets the claim back once it accepts writes, and
the job's progress counts every byte whatever thread sends it."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from syncd.config import load_config
from syncd.journal import FileRecord, FileState, HistoryEvent, Journal
from syncd.pipeline.ingest import Ingest, OutcomeKind
from syncd.pipeline.progress import JobProgress
from syncd.service.box_connection import connect_box
from syncd.testing.daemon_process import Watch, config_data, write_config
from tests.emulator.wire import auth


class Rig:
    """A watch on `inbox`, its journal and Box connection; `claim(name, data)` drops and claims a file."""

    def __init__(self, tmp_path: Path, emulator, conflict: str = "version", busy_timeout: float = 10.0) -> None:
        self.inbox = tmp_path / "inbox"
        self.inbox.mkdir()
        self.config = load_config(write_config(tmp_path / "syncd.yaml", config_data(
            emulator, tmp_path / "journal.db", [Watch(self.inbox, name="inbox", options={"conflict": conflict})])))
        self.journal = Journal.open(tmp_path / "journal.db", busy_timeout=busy_timeout)
        self.box = connect_box(self.config)
        self.emulator = emulator

    def observe(self, name: str, data: bytes) -> None:
        path = self.inbox / name
        path.write_bytes(data)
        st = path.stat()
        self.journal.observe("inbox", name, st.st_size, st.st_mtime_ns, st.st_ino, time.time())

    def claim(self, name: str, data: bytes) -> FileRecord:
        self.observe(name, data)
        claimed = self.journal.claim_next(time.time() + 3600)
        assert claimed is not None and claimed.relpath == name
        return claimed

    def ingest(self, **kwargs) -> Ingest:
        return Ingest(self.config, self.journal, self.box.client, self.box.uploader, self.box.folders, **kwargs)

    def box_names(self) -> list[str]:
        return sorted(item["name"] for item in self.emulator.folder_items("0"))

    def close(self) -> None:
        self.box.close()
        self.journal.close()


@pytest.fixture
def rig_for(tmp_path: Path, emulator) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(**kwargs) -> Rig:
        made.append(Rig(tmp_path, emulator, **kwargs))
        return made[-1]

    yield make
    for rig in made:
        rig.close()


@pytest.mark.parametrize("policy", ["skip", "rename"])
def test_a_commit_whose_claim_went_stale_is_versioned_by_the_new_content(rig_for, policy: str) -> None:
    rig = rig_for(conflict=policy)
    first = rig.claim("report.txt", b"first content")

    def intake_sees_a_change(_sent: int) -> None:
        # While the old content is on the wire (it reaches Box whole), intake records a change:
        # this claim goes stale before its outcome is recorded.
        if rig.journal.get(first.id).claim_seq == first.claim_seq:  # type: ignore[union-attr]
            rig.journal.observe("inbox", "report.txt", 99, 1, first.inode, time.time())

    outcome = rig.ingest(on_bytes=intake_sees_a_change).process(first)
    assert outcome.kind is OutcomeKind.STALE
    row = rig.journal.get(first.id)
    assert row is not None and row.state is FileState.PENDING and row.box_file_id is not None
    assert rig.journal.history("inbox", "report.txt", limit=1)[0].event is HistoryEvent.COMMIT_REMEMBERED

    second = rig.claim("report.txt", b"the new content")
    outcome = rig.ingest().process(second)
    assert outcome.kind is OutcomeKind.UPLOADED  # not skipped
    assert rig.box_names() == ["report.txt"]  # no "report (1).txt"
    [item] = rig.emulator.folder_items("0")
    assert len(rig.emulator.file_versions(item["id"])) == 1  # the first content is the previous version
    assert outcome.uploaded is not None and outcome.uploaded.file_id == row.box_file_id


def test_versions_carry_if_match_so_someone_elses_change_is_not_overwritten(rig_for, emulator) -> None:
    rig = rig_for()
    assert rig.ingest().process(rig.claim("doc.txt", b"v1")).kind is OutcomeKind.UPLOADED
    row = rig.journal.find("inbox", "doc.txt")
    assert row is not None and row.box_etag is not None
    # Someone uploads a version of it in Box.
    reply = requests.post(f"{emulator.upload_url}/files/{row.box_file_id}/content", headers=auth(emulator),
                          files=[("file", ("doc.txt", b"their edit", "application/octet-stream"))], timeout=30)
    assert reply.status_code in (200, 201), reply.text
    outcome = rig.ingest().process(rig.claim("doc.txt", b"v2 from the drop folder"))
    assert (outcome.kind, outcome.code) == (OutcomeKind.FAILED, "precondition_failed")
    assert "Box's copy changed since syncd uploaded it" in outcome.detail
    [item] = emulator.folder_items("0")
    assert item["sha1"] == __import__("hashlib").sha1(b"their edit").hexdigest()  # not overwritten


def test_a_version_that_already_reached_box_reconciles_despite_a_stale_etag(rig_for) -> None:
    rig = rig_for()
    assert rig.ingest().process(rig.claim("doc.txt", b"v1")).kind is OutcomeKind.UPLOADED
    second = rig.claim("doc.txt", b"v2")
    assert rig.ingest().process(second).kind is OutcomeKind.UPLOADED
    # A crash lost the journal's record of v2's commit: the row is back at v1's etag, v2 in Box.
    conn = sqlite3.connect(rig.journal.path)
    conn.execute("UPDATE files SET box_etag = '0', state = 'uploading', claim_seq = claim_seq + 1 WHERE id = ?",
                 (second.id,))
    conn.commit()
    conn.close()
    recovered = rig.journal.get(second.id)
    assert recovered is not None
    outcome = rig.ingest().process(recovered, interrupted=True)
    assert outcome.kind is OutcomeKind.UPLOADED
    [item] = rig.emulator.folder_items("0")
    assert len(rig.emulator.file_versions(item["id"])) == 1  # v1 and v2: no third upload


def test_an_outcome_the_journal_refuses_goes_back_to_pending_once_it_accepts_writes(rig_for) -> None:
    rig = rig_for(busy_timeout=0.2)
    claimed = rig.claim("a.txt", b"data")
    blocker = sqlite3.connect(rig.journal.path, isolation_level=None)

    def the_journal_locks_up(_sent: int) -> None:
        if not blocker.in_transaction:
            blocker.execute("BEGIN IMMEDIATE")  # another writer holds it longer than the busy timeout

    ingest = rig.ingest(on_bytes=the_journal_locks_up)
    outcome = ingest.process(claimed)
    assert (outcome.kind, outcome.code) == (OutcomeKind.STRANDED, "journal_error")
    assert len(ingest.stranded) == 1
    assert ingest.stranded.requeue() == 0  # still locked: kept for later
    assert rig.journal.get(claimed.id).state is FileState.UPLOADING  # type: ignore[union-attr]
    blocker.execute("ROLLBACK")
    blocker.close()
    assert ingest.stranded.requeue() == 1 and len(ingest.stranded) == 0
    row = rig.journal.get(claimed.id)
    assert row is not None and (row.state, row.last_error_code) == (FileState.PENDING, "journal_error")
    # The next attempt finds its own upload in Box: recorded, not sent again.
    again = rig.journal.claim_next(time.time() + 3600)
    assert again is not None and rig.ingest().process(again).kind is OutcomeKind.UPLOADED
    assert rig.box_names() == ["a.txt"]
    [item] = rig.emulator.folder_items("0")
    assert rig.emulator.file_versions(item["id"]) == []


def test_every_byte_sent_counts_for_the_job(rig_for) -> None:
    rig = rig_for()
    progress = JobProgress("a.txt")
    outcome = rig.ingest().process(rig.claim("a.txt", b"x" * 50_000), progress=progress)
    assert outcome.kind is OutcomeKind.UPLOADED
    assert progress.bytes >= 50_000  # the multipart body as it was sent (the file plus its framing)
