"""Every entry of a drop folder in the journal (issue 10): names that are not UTF-8 stored
losslessly, a bad entry refused alone, full identities (device, ctime), files sent back to
readiness, parked links and FIFOs, the Box path each file owns, and a scan compared with
the rows in bounded memory. On both engines (the version-4 row: SQLite's own migration)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from syncd.journal import (
    NAME_COLLISION,
    WAITING_FOR_READINESS,
    FileState,
    HistoryEvent,
    Journal,
    ObservationKind,
    ObservedFile,
    ParkedEntry,
)
from syncd.journal.migrations import apply_migrations
from syncd.journal.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from tests.journal.conftest import JournalStore

LATIN1_CAFE = os.fsdecode(b"caf\xe9.txt")  # 'caf\udce9.txt': a Latin-1 name, not UTF-8
BROKEN = os.fsdecode(b"scan-\xff\xfe.pdf")
SHA_A = "a" * 40


def entry(relpath: str, size: int = 10, *, inode: int = 7, device: int = 64769, ctime_ns: int = 1) -> ObservedFile:
    return ObservedFile(relpath, size, 1, inode, device, ctime_ns)


def claim(journal: Journal, now: float = 200.0):
    row = journal.claim_next(now)
    assert row is not None
    return journal.claimed(row)


class Identity:
    def __init__(self, inode: int, *, device: int = 64769, size: int = 0, mtime_ns: int = 5, ctime_ns: int = 5):
        self.device, self.inode, self.size, self.mtime_ns, self.ctime_ns = device, inode, size, mtime_ns, ctime_ns


# ----------------------------------------------------------------- names that are not UTF-8


def stored_relpath_types(store: JournalStore) -> dict[object, str]:
    """Each stored relpath of `files` and the type it is stored as."""
    if store.backend == "sqlite":
        conn = sqlite3.connect(store.where)  # type: ignore[arg-type]
        try:
            return dict(conn.execute("SELECT relpath, typeof(relpath) FROM files").fetchall())
        finally:
            conn.close()
    return {bytes(value): kind for value, kind in  # type: ignore[arg-type]
            store.admin_sql("SELECT relpath, pg_typeof(relpath)::text FROM syncd.files")}


def test_a_latin1_name_beside_five_ordinary_files_keeps_none_of_them_out(journal: Journal,
                                                                         journal_store: JournalStore) -> None:
    # The batch of issue 10: one badly encoded name used to roll back the whole batch.
    names = [LATIN1_CAFE, *(f"ordinary-{n}.txt" for n in range(5))]
    batch = journal.observe_many("inbox", [entry(name, inode=n + 1) for n, name in enumerate(names)], now=100.0)
    assert batch.refused == []
    assert sorted(o.file.relpath for o in batch) == sorted(names)
    assert journal.find("inbox", LATIN1_CAFE).relpath == LATIN1_CAFE  # type: ignore[union-attr]
    assert [h.relpath for h in journal.history("inbox", LATIN1_CAFE)] == [LATIN1_CAFE]
    stored = stored_relpath_types(journal_store)
    if journal_store.backend == "sqlite":  # the raw bytes (a BLOB); the UTF-8 names stay TEXT
        assert (stored[b"caf\xe9.txt"], stored["ordinary-0.txt"]) == ("blob", "text")
    else:  # PostgreSQL: every name as its raw bytes
        assert (stored[b"caf\xe9.txt"], stored[b"ordinary-0.txt"]) == ("bytea", "bytea")


def test_one_bad_entry_is_refused_with_its_reason_and_the_rest_recorded(journal: Journal) -> None:
    impossible = "lone-\ud800.txt"  # a surrogate no file name can produce
    batch = journal.observe_many(
        "inbox", [entry("a.txt"), entry(impossible), ("short-tuple", 1), entry("../escape"), entry(BROKEN)], 100.0)
    assert sorted(o.file.relpath for o in batch) == sorted(["a.txt", BROKEN])
    reasons = {r.relpath: r.reason for r in batch.refused}
    assert set(reasons) == {impossible, "short-tuple", "../escape"}
    assert "no file name can contain" in reasons[impossible]
    assert "normalised relative path" in reasons["../escape"]


def test_a_name_is_one_row_whatever_the_calls_and_its_folder_is_found_by_range(journal: Journal) -> None:
    folder = os.fsdecode(b"d\xe9p\xf4t")
    for relpath in (f"{folder}/a.txt", f"{folder}/{LATIN1_CAFE}", "ok/b.txt", "okay.txt"):
        journal.observe("inbox", relpath, 1, 1, 1, now=1.0)
        assert journal.observe("inbox", relpath, 1, 1, 1, now=2.0).kind is ObservationKind.UNCHANGED
    removed = journal.remove_below("inbox", folder, "folder deleted")
    assert sorted(r.relpath for r in removed) == sorted([f"{folder}/a.txt", f"{folder}/{LATIN1_CAFE}"])
    journal.observe("inbox", "ok/" + LATIN1_CAFE, 1, 1, 2, now=3.0)
    removed = journal.remove_below("inbox", "ok", "folder deleted")
    assert sorted(r.relpath for r in removed) == sorted(["ok/b.txt", "ok/" + LATIN1_CAFE])
    assert [k.relpath for k in journal.known_files("inbox")] == ["okay.txt"]


# -------------------------------------------------------------------- identities


def test_device_and_ctime_are_part_of_the_identity(journal: Journal) -> None:
    journal.observe_many("inbox", [entry("a.txt", ctime_ns=10)], now=1.0)
    row = journal.find("inbox", "a.txt")
    # A journal several hosts share records no device (each host's mount has its own; test_shared_identity).
    assert (row.device, row.ctime_ns) == (None if journal.multi_host else 64769, 10)  # type: ignore[union-attr]
    assert journal.observe_many("inbox", [entry("a.txt", ctime_ns=10)], now=2.0).observations == []
    # Size and mtime put back after a change: the ctime still tells.
    changed = journal.observe_many("inbox", [entry("a.txt", ctime_ns=11)], now=3.0).observations
    assert [o.kind for o in changed] == [ObservationKind.CHANGED]
    assert "ctime changed" in journal.history("inbox", "a.txt")[0].detail  # type: ignore[operator]
    if not journal.multi_host:
        other_device = journal.observe_many("inbox", [entry("a.txt", ctime_ns=11, device=1)], now=4.0).observations
        assert [o.kind for o in other_device] == [ObservationKind.CHANGED]
        assert "replaced" in (journal.history("inbox", "a.txt")[0].detail or "")


def test_a_version_4_row_is_compared_on_what_it_has_and_completed_quietly(journal_path: Path) -> None:
    journal_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(journal_path, isolation_level=None)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    apply_migrations(conn, MIGRATIONS, target=4)
    conn.execute("INSERT INTO files (watch, relpath, size, mtime_ns, inode, sha1, state, box_file_id, attempts,"
                 f" next_attempt_at, detected_at, ready_at, updated_at) VALUES ('inbox', 'old.pdf', 5, 9, 3,"
                 f" '{SHA_A}', 'uploaded', 'F1', 1, 10, 10, 10, 11)")
    conn.close()
    with Journal.open(journal_path) as journal:
        assert journal.find("inbox", "old.pdf").device is None  # type: ignore[union-attr]
        same = journal.observe("inbox", "old.pdf", 5, 9, 3, now=20.0, device=7, ctime_ns=8)
        assert same.kind is ObservationKind.UNCHANGED
        row = journal.find("inbox", "old.pdf")
        assert (row.state, row.device, row.ctime_ns) == (FileState.UPLOADED, 7, 8)  # type: ignore[union-attr]
        assert journal.observe("inbox", "old.pdf", 5, 9, 3, now=21.0, device=7, ctime_ns=9).kind is (
            ObservationKind.CHANGED)
    conn = sqlite3.connect(journal_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


# ------------------------------------------------------------- back to readiness


def test_a_file_sent_back_to_readiness_waits_without_spending_an_attempt(journal: Journal) -> None:
    journal.observe_many("inbox", [entry("a.txt", ctime_ns=1)], now=100.0)
    claimed = claim(journal)
    assert claimed.record.attempts == 1
    back = claimed.back_to_readiness("changed since it was found ready: its size changed", now=201.0)
    assert (back.state, back.attempts, back.waiting_for_readiness) == (FileState.PENDING, 0, True)
    assert back.next_attempt_at == WAITING_FOR_READINESS
    assert journal.claim_next(now=1e12) is None  # no worker takes it while it settles
    assert journal.next_attempt_time() == WAITING_FOR_READINESS
    # Readiness finds it stable, the same identity (it had changed before the row was written): due now.
    settled = journal.observe_many("inbox", [entry("a.txt", ctime_ns=1)], now=300.0).observations
    assert [(o.kind, o.file.next_attempt_at) for o in settled] == [(ObservationKind.CHANGED, 300.0)]
    assert journal.history("inbox", "a.txt")[0].event is HistoryEvent.SETTLED
    again = claim(journal, now=301.0)
    again.back_to_readiness("a writer opened it during the upload", now=302.0)
    changed = journal.observe_many("inbox", [entry("a.txt", 20, ctime_ns=2)], now=400.0).observations
    assert [(o.kind, o.file.size, o.file.next_attempt_at) for o in changed] == [(ObservationKind.CHANGED, 20, 400.0)]


def test_a_scan_looks_again_at_files_waiting_for_readiness(journal: Journal) -> None:
    for one in (entry("waits.txt"), entry("done.txt", inode=8)):  # one by one: "waits.txt" is claimed first
        journal.observe_many("inbox", [one], now=1.0)
    claim(journal, now=2.0).back_to_readiness("changed", now=3.0)
    with journal.compare_with_disk("inbox") as scan:
        scan.found("waits.txt", Identity(7, size=10, mtime_ns=1, ctime_ns=1))
        scan.found("done.txt", Identity(8, size=10, mtime_ns=1, ctime_ns=1))
        waiting = journal.find("inbox", "waits.txt")
        assert waiting is not None and waiting.waiting_for_readiness
        assert list(scan.to_look_at()) == ["waits.txt"]


# ------------------------------------------------------------------- parked entries


def test_links_and_fifos_are_parked_once_and_leave_when_they_become_files(journal: Journal) -> None:
    link = ParkedEntry("link.txt", Identity(50), "symlink_skipped", "symbolic links are not followed")
    fifo = ParkedEntry("pipe", Identity(51), "not_regular_file", "is a FIFO (named pipe)")
    parked, refused = journal.park_entries("inbox", [link, fifo, ParkedEntry("../x", Identity(52), "c", "r")], 1.0)
    assert [r.relpath for r in parked] == ["link.txt", "pipe"] and [r.relpath for r in refused] == ["../x"]
    row = journal.find("inbox", "pipe")
    assert (row.state, row.last_error, row.last_error_code) == (  # type: ignore[union-attr]
        FileState.QUARANTINED, "is a FIFO (named pipe)", "not_regular_file")
    assert journal.park_entries("inbox", [link, fifo], 2.0) == ([], [])  # nothing new: nothing written
    assert len(journal.history("inbox", "pipe")) == 1
    # Replaced by a regular file: a new identity, so it is observed as changed and goes up.
    became = journal.observe("inbox", "link.txt", 3, 3, 99, now=3.0, device=64769, ctime_ns=3)
    assert (became.kind, became.file.state) == (ObservationKind.CHANGED, FileState.PENDING)
    # And a pending file replaced by a link is parked.
    journal.observe("inbox", "was-file.txt", 3, 3, 100, now=4.0)
    swapped = ParkedEntry("was-file.txt", Identity(101), "symlink_skipped", "symbolic links are not followed")
    assert [r.state for r in journal.park_entries("inbox", [swapped], 5.0)[0]] == [FileState.QUARANTINED]


def test_an_uploading_or_uploaded_row_is_not_parked(journal: Journal) -> None:
    journal.observe("inbox", "a.txt", 1, 1, 1, now=1.0)
    claimed = claim(journal, now=2.0)
    link = ParkedEntry("a.txt", Identity(9), "symlink_skipped", "symbolic links are not followed")
    assert journal.park_entries("inbox", [link], 3.0) == ([], [])
    claimed.mark_uploaded("F1", "V1", None, SHA_A, 4.0)
    assert journal.park_entries("inbox", [link], 5.0) == ([], [])
    assert journal.find("inbox", "a.txt").state is FileState.UPLOADED  # type: ignore[union-attr]


# -------------------------------------------------------------------------- Box names


def test_a_box_path_has_one_owner_and_is_freed_with_its_row(journal: Journal) -> None:
    journal.observe_many("inbox", [entry("Report.pdf", inode=1), entry("report.pdf", inode=2)], now=1.0)
    first = claim(journal, now=2.0)
    assert first.take_box_path("report.pdf", "report.pdf", "Report.pdf") is None
    assert first.take_box_path("report.pdf", "report.pdf", "Report.pdf") is None  # its own: still fine
    second = claim(journal, now=3.0)
    clash = second.take_box_path("report.pdf", "report.pdf", "report.pdf")
    assert clash is not None and (clash.other_relpath, clash.other_box_path, clash.folder) == (
        first.record.relpath, "Report.pdf", None)
    second.mark_quarantined(f"collides with {clash.other_relpath} in Box", code=NAME_COLLISION)
    # The owner is uploaded and its source deleted: the row stays (Box holds it), so does the key.
    first.mark_uploaded("F1", "V1", None, SHA_A, 4.0)
    assert journal.find("inbox", "report.pdf").state is FileState.QUARANTINED  # type: ignore[union-attr]
    # The owner's row goes: the key is free and the parked file tries again.
    journal.forget("inbox", "Report.pdf", now=5.0)
    retried = journal.find("inbox", "report.pdf")
    assert (retried.state, retried.attempts) == (FileState.PENDING, 0)  # type: ignore[union-attr]
    again = claim(journal, now=6.0)
    assert again.take_box_path("report.pdf", "report.pdf", "report.pdf") is None
    assert again.owned_box_path().box_path == "report.pdf"  # type: ignore[union-attr]


def test_a_file_name_and_a_folder_name_clash_both_ways(journal: Journal) -> None:
    for one in (entry("Scans", inode=1), entry("scans/a.pdf", inode=2), entry("b", inode=3),
                entry("B/c.txt", inode=4)):  # one by one: claimed in this order (a batch may lock in path order)
        journal.observe_many("inbox", [one], now=1.0)
    scans = claim(journal, now=2.0)
    assert scans.take_box_path("scans", "scans", "Scans") is None
    inside = claim(journal, now=3.0)
    clash = inside.take_box_path("scans/a.pdf", "scans/a.pdf", "scans/a.pdf")
    assert clash is not None and (clash.other_relpath, clash.folder) == ("Scans", "scans")
    folder_first = claim(journal, now=4.0)
    assert folder_first.record.relpath == "b"
    assert folder_first.take_box_path("b", "b", "b") is None
    c = claim(journal, now=5.0)
    assert c.take_box_path("b/c.txt", "b/c.txt", "B/c.txt") is not None  # its folder is the file "b"
    # A name that is someone's folder: the file "scans/a.pdf" got "x/a.pdf" instead; "x" is taken below.
    assert inside.take_box_path("scans/a.pdf", "x/a.pdf", "x/a.pdf") is None
    journal.observe("inbox", "X", 1, 1, 5, now=6.0)
    x = claim(journal, now=7.0)
    below = x.take_box_path("x", "x", "X")
    assert below is not None and below.other_relpath == "scans/a.pdf"


# ----------------------------------------------------------------- comparing a scan


def test_a_scan_is_compared_with_the_rows_in_sql(journal: Journal) -> None:
    journal.observe_many("inbox", [entry("same.txt", inode=1)], now=1.0)  # the first claimed
    journal.observe_many("inbox", [entry("changed.txt", inode=2),
                                   entry(LATIN1_CAFE, inode=3), entry("gone.txt", inode=4),
                                   entry("unlisted/kept.txt", inode=5), entry("link", inode=6)], now=1.0)
    uploading = claim(journal, now=2.0)  # "same.txt": a worker has it
    assert uploading.record.relpath == "same.txt"
    with journal.compare_with_disk("inbox") as scan:
        scan.found("same.txt", Identity(1, size=10, mtime_ns=1, ctime_ns=1))
        scan.found("changed.txt", Identity(2, size=11, mtime_ns=1, ctime_ns=1))
        scan.found(LATIN1_CAFE, Identity(3, size=10, mtime_ns=1, ctime_ns=1))
        scan.found("new.txt", Identity(9))
        scan.seen("link")
        assert sorted(scan.to_look_at()) == ["changed.txt", "new.txt"]
        missing = list(scan.missing(keep={FileState.UPLOADING, FileState.UPLOADED}, skip_below=["unlisted"]))
        assert missing == [("gone.txt", FileState.PENDING)]
        assert list(scan.missing(skip_below=[""])) == []
    removed = journal.remove_many("inbox", ["gone.txt", "same.txt"], "no longer in the drop folder",
                                  keep={FileState.UPLOADING})
    assert [r.relpath for r in removed] == ["gone.txt"]


def test_comparing_100000_scanned_files_keeps_nothing_per_file_in_python(journal: Journal) -> None:
    journal.observe_many("inbox", [entry(f"d{n % 100}/f{n}", inode=n + 1) for n in range(2000)], now=1.0)
    with journal.compare_with_disk("inbox") as scan:
        for n in range(100_000):
            scan.found(f"d{n % 100}/f{n}", Identity(n + 1, size=10, mtime_ns=1, ctime_ns=1))
        assert scan.count == 100_000
        looked = scan.to_look_at()
        first = next(looked)
        assert first.startswith("d")
        assert sum(1 for _ in looked) == 100_000 - 2000 - 1
