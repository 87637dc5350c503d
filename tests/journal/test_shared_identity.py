"""A file's device number on a journal several hosts share: each host mounts the shared folder
with a device number of its own, so PostgreSQL journals record none and compare inode, size and
times; a SQLite journal (one host) keeps comparing the device."""

from __future__ import annotations

from syncd.journal import Journal, ObservationKind, ParkedEntry
from syncd.pipeline.identity import FileIdentity
from tests.journal.conftest import JournalStore


def test_the_same_file_seen_through_two_mounts_is_one_unchanged_file(journal: Journal,
                                                                      journal_store: JournalStore) -> None:
    first = journal.observe("w", "scan.pdf", 10, 111, 42, 1.0, device=2049, ctime_ns=222)
    assert first.kind is ObservationKind.NEW
    again = journal.observe("w", "scan.pdf", 10, 111, 42, 2.0, device=51, ctime_ns=222)  # host b's mount
    if journal_store.backend == "postgres":
        assert first.file.device is None
        assert again.kind is ObservationKind.UNCHANGED
    else:
        assert first.file.device == 2049
        assert again.kind is ObservationKind.CHANGED  # one host: another device is another file
    changed = journal.observe("w", "scan.pdf", 10, 111, 42, 3.0, device=51, ctime_ns=333)
    assert changed.kind is ObservationKind.CHANGED  # the ctime still tells a rewrite on either engine


def test_a_parked_entry_seen_through_another_mount_costs_nothing(journal: Journal,
                                                                 journal_store: JournalStore) -> None:
    link = ParkedEntry("link", FileIdentity(2049, 7, 0, 1, 1), "symlink", "a symbolic link")
    parked, _ = journal.park_entries("w", [link], 1.0)
    assert len(parked) == 1
    other_mount = ParkedEntry("link", FileIdentity(51, 7, 0, 1, 1), "symlink", "a symbolic link")
    parked, _ = journal.park_entries("w", [other_mount], 2.0)
    assert len(parked) == (0 if journal_store.backend == "postgres" else 1)
