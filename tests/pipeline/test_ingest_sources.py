"""The start of an attempt (issue 10), against the real emulator, a real journal and real files:
the claimed file opened once as readiness saw it, swapped-in links and FIFOs parked, changed
files sent back to readiness without an attempt spent, Box names and their collisions, and a
writer that opens the file during a chunked upload cancelling it at once through the lease."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from syncd.config import Config, load_config
from syncd.journal import NAME_COLLISION, FileRecord, FileState, Journal, ObservedFile
from syncd.pipeline.identity import FileIdentity
from syncd.pipeline.ingest import Ingest, Outcome, OutcomeKind
from syncd.pipeline.writers import LeaseMonitor
from syncd.service.box_connection import connect_box
from syncd.testing.daemon_process import CHUNKED_MIN, Watch, config_data, write_config
from tests.daemon.daemon_process import box_files
from tests.support.emulator import EmulatorProcess
from tests.support.waiting import wait_until

LATIN1_CAFE = os.fsdecode(b"caf\xe9.txt")


@dataclass
class Rig:
    inbox: Path
    journal: Journal
    emulator: EmulatorProcess
    make_ingest: Callable[..., Ingest]
    watch_options: dict[str, object] = field(default_factory=dict)

    def observe(self, relpath: str) -> None:
        """Readiness found `relpath` stable: its identity goes to the journal."""
        st = os.lstat(self.inbox / relpath)
        batch = self.journal.observe_many("inbox", [ObservedFile.of(relpath, FileIdentity.from_stat(st))],
                                          time.time())
        assert batch.refused == []

    def claim_and_ingest(self, **ingest_options: object) -> tuple[Outcome, FileRecord | None]:
        claimed = self.journal.claim_next(time.time())
        assert claimed is not None
        outcome = self.make_ingest(self.watch_options, **ingest_options).process(claimed)
        return outcome, self.journal.get(claimed.id)


@pytest.fixture
def rig_factory(tmp_path: Path, emulator_factory) -> Iterator[Callable[..., Rig]]:
    """make(*emulator_args, **watch_options): an inbox, a journal and Ingests built on demand."""
    closing: list[Callable[[], None]] = []

    def make(*emulator_args: str, **watch_options: object) -> Rig:
        emulator = emulator_factory(*emulator_args)
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        journal = Journal.open(tmp_path / "journal.db")
        closing.append(journal.close)

        def make_ingest(options: dict[str, object], **ingest_options: object) -> Ingest:
            config: Config = load_config(write_config(tmp_path / "syncd.yaml", config_data(
                emulator, tmp_path / "journal.db", [Watch(inbox, name="inbox", options=dict(options))])))
            box = connect_box(config)
            closing.append(box.close)
            return Ingest(config, journal, box.client, box.uploader, box.folders, **ingest_options)  # type: ignore[arg-type]

        return Rig(inbox, journal, emulator, make_ingest, dict(watch_options))

    yield make
    for close in reversed(closing):
        close()


@pytest.fixture
def rig(rig_factory: Callable[..., Rig]) -> Rig:
    return rig_factory()


@pytest.fixture
def emulator(rig: Rig) -> EmulatorProcess:
    return rig.emulator


def test_a_file_changed_after_it_was_found_ready_goes_back_without_spending_an_attempt(rig: Rig, emulator) -> None:
    (rig.inbox / "report.pdf").write_bytes(b"first half")
    rig.observe("report.pdf")
    with open(rig.inbox / "report.pdf", "ab") as f:
        f.write(b" and the rest")
    outcome, row = rig.claim_and_ingest()
    assert (outcome.kind, outcome.code) == (OutcomeKind.CHANGED, "changed")
    assert "its size changed from 10 to 23 bytes" in outcome.detail
    assert row is not None and row.waiting_for_readiness and row.attempts == 0
    assert box_files(emulator) == {}
    # Readiness finds it stable again: due now, and it goes up whole.
    rig.observe("report.pdf")
    outcome, row = rig.claim_and_ingest()
    assert outcome.kind is OutcomeKind.UPLOADED and row is not None and row.attempts == 1
    assert emulator.download(box_files(emulator)["report.pdf"]["id"]) == b"first half and the rest"


def test_links_fifos_and_folders_swapped_in_after_readiness_are_parked_at_once(rig: Rig, tmp_path: Path,
                                                                               emulator) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"token store")
    for name in ("link.txt", "fifo", "dir"):
        (rig.inbox / name).write_bytes(b"innocent")
        rig.observe(name)
    for name in ("link.txt", "fifo", "dir"):
        (rig.inbox / name).unlink()
    (rig.inbox / "link.txt").symlink_to(secret)
    os.mkfifo(rig.inbox / "fifo")  # no writer: an open that blocked would hang this test
    (rig.inbox / "dir").mkdir()
    reasons = {}
    for _ in range(3):
        outcome, row = rig.claim_and_ingest()
        assert outcome.kind is OutcomeKind.QUARANTINED and row is not None and row.state is FileState.QUARANTINED
        reasons[row.relpath] = row.last_error
    assert reasons == {"link.txt": "a symbolic link is on its path (links are never followed)",
                       "fifo": "is a FIFO (named pipe)", "dir": "is a directory"}
    assert box_files(emulator) == {}


def test_a_folder_on_the_path_swapped_for_a_link_to_outside_is_never_followed(rig: Rig, tmp_path: Path,
                                                                              emulator) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.txt").write_bytes(b"not for Box")
    (rig.inbox / "sub").mkdir()
    (rig.inbox / "sub" / "a.txt").write_bytes(b"for Box")
    rig.observe("sub/a.txt")
    os.rename(rig.inbox / "sub", tmp_path / "moved-away")
    (rig.inbox / "sub").symlink_to(outside, target_is_directory=True)
    outcome, row = rig.claim_and_ingest()
    assert outcome.kind is OutcomeKind.QUARANTINED and "symbolic link" in outcome.detail
    assert box_files(emulator) == {}


def test_names_that_are_not_utf8_follow_the_watch_policy(rig: Rig, emulator) -> None:
    (rig.inbox / LATIN1_CAFE).write_bytes(b"latin-1")  # invalid_names: quarantine (the default)
    rig.observe(LATIN1_CAFE)
    outcome, row = rig.claim_and_ingest()
    assert outcome.kind is OutcomeKind.QUARANTINED
    assert row is not None and row.last_error == "name is not valid UTF-8: caf\\xe9.txt"
    rig.watch_options["invalid_names"] = "sanitize"
    rig.journal.retry("inbox", LATIN1_CAFE, failed_only=False)
    outcome, _ = rig.claim_and_ingest()
    assert outcome.kind is OutcomeKind.UPLOADED
    assert list(box_files(emulator)) == ["café.txt"]


@pytest.mark.parametrize("policy", ["quarantine", "rename"])
def test_two_local_names_that_are_one_box_name_never_become_versions(rig_factory: Callable[..., Rig],
                                                                     policy: str) -> None:
    rig = rig_factory(name_collisions=policy)
    emulator = rig.emulator
    nfc, nfd = "r\u00e9sum\u00e9.txt", "re\u0301sume\u0301.txt"
    for name, data in (("Report.pdf", b"upper"), ("report.pdf", b"lower"), (nfc, b"nfc"), (nfd, b"nfd")):
        (rig.inbox / name).write_bytes(data)
        rig.observe(name)
    outcomes = [rig.claim_and_ingest()[0] for _ in range(4)]
    held = {name: emulator.download(entry["id"]) for name, entry in box_files(emulator).items()}
    if policy == "quarantine":
        assert sorted(o.kind for o in outcomes) == sorted([OutcomeKind.UPLOADED] * 2 + [OutcomeKind.QUARANTINED] * 2)
        parked = [o.detail for o in outcomes if o.kind is OutcomeKind.QUARANTINED]
        assert sorted(parked)[0].startswith("collides with ") and "in Box" in parked[0]
        assert held == {"Report.pdf": b"upper", nfc: b"nfc"}  # the first claimed of each pair
        assert {o.code for o in outcomes if o.kind is OutcomeKind.QUARANTINED} == {NAME_COLLISION}
    else:
        assert all(o.kind is OutcomeKind.UPLOADED for o in outcomes)
        assert held == {"Report.pdf": b"upper", "report (collision 1).pdf": b"lower", nfc: b"nfc",
                        "re\u0301sume\u0301 (collision 1).txt": b"nfd"}
    for entry in box_files(emulator).values():
        assert emulator.file_versions(entry["id"]) == []


def test_a_writer_already_holding_the_file_sends_it_back(rig: Rig, emulator) -> None:
    (rig.inbox / "open.log").write_bytes(b"line 1\n")
    rig.observe("open.log")
    leases = LeaseMonitor()
    try:
        with open(rig.inbox / "open.log", "ab"):  # held open for writing, nothing written
            outcome, row = rig.claim_and_ingest(leases=leases)
    finally:
        leases.stop()
    assert (outcome.kind, outcome.code) == (OutcomeKind.CHANGED, "writer_seen")
    assert row is not None and row.waiting_for_readiness and row.attempts == 0
    assert box_files(emulator) == {}


def test_a_writer_opening_the_file_during_a_chunked_upload_cancels_it_at_once(rig_factory: Callable[..., Rig]
                                                                               ) -> None:
    rig = rig_factory("--part-sizes", "*=1MiB")
    emulator = rig.emulator
    data = os.urandom(CHUNKED_MIN + 3 * 1024 * 1024)
    (rig.inbox / "big.bin").write_bytes(data)
    rig.observe("big.bin")
    emulator.faults(latency_ms=400)  # each part takes a while: the writer arrives mid-upload
    leases = LeaseMonitor()
    result: list[tuple[Outcome, FileRecord | None]] = []
    worker = threading.Thread(target=lambda: result.append(rig.claim_and_ingest(leases=leases)))
    worker.start()
    try:
        wait_until(lambda: emulator.stats()["requests"].get("sessions.upload_part", {}).get("200", 0) >= 1,
                   interval=0.05, message="no part was sent")
        # The open waits until syncd gives the lease up (at once), then the writer writes.
        with open(rig.inbox / "big.bin", "r+b") as writer:
            writer.write(b"rewritten")
        worker.join(60)
    finally:
        leases.stop()
    assert not worker.is_alive()
    outcome, row = result[0]
    assert outcome.kind is OutcomeKind.CHANGED and "lease broken" in outcome.detail, outcome
    assert row is not None and row.waiting_for_readiness and row.attempts == 0
    assert emulator.stats()["requests"].get("sessions.commit", {}) == {}
    parts_sent = emulator.stats()["requests"]["sessions.upload_part"]["200"]
    assert parts_sent < -(-len(data) // (1024 * 1024)), "every part was sent: nothing was cancelled"
    assert box_files(emulator) == {}
