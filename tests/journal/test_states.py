"""The journal's state machine and API, on both engines (a real SQLite file, a real PostgreSQL database)."""

from __future__ import annotations

import threading
from dataclasses import replace
import pytest

from syncd.journal import (
    ClaimedFile,
    FileState,
    HistoryEvent,
    InvalidTransition,
    Journal,
    JournalError,
    ObservationKind,
    PartRecord,
    SessionRecord,
    StaleClaim,
    UnknownFile,
)
from tests.journal.conftest import JournalStore

SHA_A = "a" * 40
SHA_B = "b" * 40


def add(journal: Journal, relpath: str, size: int = 10, now: float = 100.0, watch: str = "inbox") -> int:
    return journal.observe(watch, relpath, size, mtime_ns=1, inode=7, now=now).file.id


def upload(journal: Journal, now: float = 200.0) -> int:
    claimed = journal.claim_next(now)
    assert claimed is not None
    journal.claimed(claimed).mark_uploaded(f"F{claimed.id}", "V1", "0", SHA_A, now)
    return claimed.id


def current_claim(journal: Journal, file_id: int) -> ClaimedFile:
    """The handle of whatever claim the row holds now (as its worker would have it)."""
    row = journal.get(file_id)
    assert row is not None
    return journal.claimed(row)


def session(size: int = 20, part_size: int = 8) -> SessionRecord:
    return SessionRecord("S1", part_size, -(-size // part_size), size, expires_at=9999.0)


# ---------------------------------------------------------------- observe


def test_new_file_is_pending_and_due_now(journal: Journal) -> None:
    seen = journal.observe("inbox", "a/b.txt", 10, 123, 7, now=100.0)
    assert seen.kind is ObservationKind.NEW and seen.previous_state is None
    row = seen.file
    assert (row.state, row.size, row.mtime_ns, row.inode, row.attempts) == (FileState.PENDING, 10, 123, 7, 0)
    assert row.next_attempt_at == row.detected_at == row.ready_at == 100.0
    [entry] = journal.history()
    assert (entry.event, entry.from_state, entry.to_state) == (HistoryEvent.ARRIVED, None, FileState.PENDING)


def test_unchanged_file_is_a_no_op(journal: Journal) -> None:
    add(journal, "a.txt")
    again = journal.observe("inbox", "a.txt", 10, 1, 7, now=150.0)
    assert again.kind is ObservationKind.UNCHANGED
    assert again.file.updated_at == 100.0
    assert len(journal.history()) == 1


def test_file_changed_after_upload_goes_up_again_as_a_new_version(journal: Journal) -> None:
    add(journal, "a.txt")
    upload(journal)
    changed = journal.observe("inbox", "a.txt", 11, 2, 7, now=300.0)
    assert changed.kind is ObservationKind.CHANGED and changed.previous_state is FileState.UPLOADED
    row = changed.file
    assert (row.state, row.box_file_id, row.sha1, row.attempts) == (FileState.PENDING, f"F{row.id}", None, 0)
    assert row.ready_at == row.next_attempt_at == 300.0 and row.detected_at == 100.0
    assert journal.history(limit=1)[0].detail == "size 10 -> 11, mtime changed"


def test_file_replaced_under_the_same_name_is_a_change(journal: Journal) -> None:
    add(journal, "a.txt")
    assert journal.observe("inbox", "a.txt", 10, 1, inode=8, now=150.0).kind is ObservationKind.CHANGED


def test_change_during_upload_discards_that_upload(journal: Journal) -> None:
    add(journal, "big.bin", size=20)
    claimed = journal.claim_next(200.0)
    assert claimed is not None
    claim = journal.claimed(claimed)
    claim.save_session(session())
    claim.add_part(PartRecord("P0", 0, 8, "00" * 20))
    changed = journal.observe("inbox", "big.bin", 25, 2, 7, now=210.0)
    assert changed.file.state is FileState.PENDING
    assert journal.load_session(claimed.id) is None
    with pytest.raises(StaleClaim):
        claim.mark_uploaded("F1", "V1", None, SHA_A, 220.0)
    with pytest.raises(StaleClaim):
        claim.add_part(PartRecord("P1", 8, 8, "00" * 20))
    assert journal.get(claimed.id).state is FileState.PENDING  # type: ignore[union-attr]


def test_observe_many_records_new_and_changed_in_one_go(journal: Journal) -> None:
    add(journal, "old.txt")
    add(journal, "same.txt")
    seen = journal.observe_many(
        "inbox", [("old.txt", 99, 1, 7), ("same.txt", 10, 1, 7), ("n1", 1, 1, 1), ("n2", 2, 2, 2)], now=150.0
    )
    assert [(o.file.relpath, o.kind) for o in seen] == [
        ("old.txt", ObservationKind.CHANGED),
        ("n1", ObservationKind.NEW),
        ("n2", ObservationKind.NEW),
    ]


@pytest.mark.parametrize(
    ("relpath", "size", "inode"),
    [("../escape", 1, 1), ("/abs", 1, 1), ("a//b", 1, 1), ("./a", 1, 1), ("", 1, 1), ("a", -1, 1), ("a", 1, -1)],
)
def test_bad_observations_are_refused_clearly(journal: Journal, relpath: str, size: int, inode: int) -> None:
    with pytest.raises(ValueError, match="relpath|size|inode"):
        journal.observe("inbox", relpath, size, 1, inode, now=1.0)
    assert journal.counts_by_state()[FileState.PENDING] == 0


def test_64_bit_inodes_round_trip(journal: Journal) -> None:
    inode = (1 << 64) - 3
    assert journal.observe("inbox", "a", 1, 1, inode, now=1.0).file.inode == inode
    assert [known.inode for known in journal.known_files("inbox")] == [inode]
    assert journal.observe("inbox", "a", 1, 1, inode, now=2.0).kind is ObservationKind.UNCHANGED


# ------------------------------------------------------------------ claims


def test_claim_marks_uploading_and_counts_the_attempt(journal: Journal) -> None:
    file_id = add(journal, "a.txt")
    claimed = journal.claim_next(now=100.0)
    assert claimed is not None
    assert (claimed.id, claimed.state, claimed.attempts, claimed.claim_seq) == (file_id, FileState.UPLOADING, 1, 1)
    assert journal.claim_next(now=100.0) is None
    assert journal.history(limit=1)[0].event is HistoryEvent.CLAIMED


def test_claim_order_is_oldest_due_first_then_smallest(journal: Journal) -> None:
    add(journal, "late-small", size=1, now=300.0)
    add(journal, "early-big", size=500, now=100.0)
    add(journal, "early-small", size=5, now=100.0)
    order = [journal.claim_next(now=1000.0) for _ in range(3)]
    assert [row.relpath for row in order if row] == ["early-small", "early-big", "late-small"]


def test_small_lane_takes_only_small_files_smallest_first(journal: Journal) -> None:
    for n in range(5):
        add(journal, f"huge{n}", size=10**9, now=100.0)
    add(journal, "mid", size=900, now=150.0)
    add(journal, "tiny", size=3, now=200.0)
    lane = [journal.claim_next(now=1000.0, max_size=1000) for _ in range(3)]
    assert [row.relpath if row else None for row in lane] == ["tiny", "mid", None]
    assert journal.next_attempt_time(max_size=1000) is None
    assert journal.next_attempt_time() == 100.0


def test_claim_respects_next_attempt_time(journal: Journal) -> None:
    add(journal, "a.txt")
    claimed = journal.claim_next(now=100.0)
    assert claimed is not None
    journal.claimed(claimed).schedule_retry("HTTP 503", "unavailable", next_attempt_at=160.0)
    row = journal.get(claimed.id)
    assert row is not None
    assert (row.state, row.last_error, row.last_error_code) == (FileState.PENDING, "HTTP 503", "unavailable")
    assert journal.next_attempt_time() == 160.0
    assert journal.claim_next(now=159.9) is None
    again = journal.claim_next(now=160.0)
    assert again is not None and again.attempts == 2 and again.claim_seq == 2


def test_concurrent_workers_never_claim_the_same_file(journal: Journal) -> None:
    for n in range(300):
        add(journal, f"f{n:03}", size=n)
    claimed: list[int] = []
    guard = threading.Lock()

    def worker(max_size: int | None) -> None:
        while (row := journal.claim_next(now=1000.0, max_size=max_size)) is not None:
            with guard:
                claimed.append(row.id)

    threads = [threading.Thread(target=worker, args=(50 if n % 2 else None,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(claimed) == list(range(1, 301))
    assert journal.counts_by_state()[FileState.UPLOADING] == 300


# --------------------------------------------------------------- outcomes


def test_uploaded_outcome_is_recorded_with_box_ids(journal: Journal) -> None:
    add(journal, "a.txt")
    claimed = journal.claim_next(now=100.0)
    assert claimed is not None
    journal.claimed(claimed).record_sha1(SHA_A.upper())
    row = journal.claimed(claimed).mark_uploaded("F9", "V9", "3", SHA_A, 120.0)
    assert (row.state, row.box_file_id, row.box_version_id, row.box_etag, row.sha1, row.uploaded_at) == (
        FileState.UPLOADED, "F9", "V9", "3", SHA_A, 120.0,
    )


def test_uploaded_sha1_must_match_the_hashed_content(journal: Journal) -> None:
    add(journal, "a.txt")
    claimed = journal.claim_next(now=100.0)
    assert claimed is not None
    journal.claimed(claimed).record_sha1(SHA_A)
    with pytest.raises(JournalError, match="differs"):
        journal.claimed(claimed).mark_uploaded("F9", "V9", None, SHA_B, 120.0)
    assert journal.get(claimed.id).state is FileState.UPLOADING  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["abc", "g" * 40, ""])
def test_bad_sha1_is_refused(journal: Journal, bad: str) -> None:
    file_id = add(journal, "a.txt")
    with pytest.raises(ValueError, match="sha1"):
        current_claim(journal, file_id).record_sha1(bad)


def test_disallowed_transitions_are_refused_and_change_nothing(journal: Journal) -> None:
    file_id = add(journal, "a.txt")
    claim = journal.claimed(journal.claim_next(now=150.0))  # type: ignore[arg-type]
    retried = claim.schedule_retry("x", None, 1.0)
    with pytest.raises(InvalidTransition, match="pending -> uploaded"):
        claim.mark_uploaded("F1", "V1", None, SHA_A, 1.0)
    assert claim.schedule_retry("x", None, 1.0) == retried  # a re-run of the same outcome: the row
    upload(journal)
    with pytest.raises(InvalidTransition, match="uploaded -> failed"):
        current_claim(journal, file_id).mark_failed("nope")
    with pytest.raises(UnknownFile):
        journal.claimed(replace(claim.record, id=999)).mark_failed("nope")
    assert [entry.event for entry in journal.history()] == [
        HistoryEvent.UPLOADED, HistoryEvent.CLAIMED, HistoryEvent.RETRY_SCHEDULED, HistoryEvent.CLAIMED,
        HistoryEvent.ARRIVED,
    ]


def test_parked_states_carry_reasons_and_show_as_recent_failures(journal: Journal) -> None:
    failed, quarantined, skipped = (add(journal, name) for name in ("f", "q", "s"))
    for _ in range(3):
        journal.claim_next(now=100.0)
    current_claim(journal, failed).mark_failed("gave up after 8 attempts", "retries_exhausted", now=110.0)
    current_claim(journal, quarantined).mark_quarantined("name ends with a space", now=120.0)
    current_claim(journal, skipped).mark_skipped("Box already has s", now=130.0)
    assert [(r.relpath, r.last_error) for r in journal.recent_failures(10)] == [
        ("q", "name ends with a space"),
        ("f", "gave up after 8 attempts"),
    ]
    assert journal.get(failed).last_error_code == "retries_exhausted"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="reason"):
        current_claim(journal, failed).mark_failed("")


def test_retry_revives_failed_files_or_all_parked_ones(journal: Journal) -> None:
    ids = {name: add(journal, name, watch=watch) for name, watch in (("f1", "a"), ("f2", "b"), ("q", "a"), ("s", "a"))}
    for _ in ids:
        journal.claim_next(now=100.0)
    current_claim(journal, ids["f1"]).mark_failed("x")
    current_claim(journal, ids["f2"]).mark_failed("x")
    current_claim(journal, ids["q"]).mark_quarantined("bad name")
    current_claim(journal, ids["s"]).mark_skipped("exists")
    assert journal.retry(watch="b") == 1
    assert journal.retry(watch="a", relpath="q") == 0  # only failed ones by default
    assert journal.retry(failed_only=False, now=500.0) == 3
    assert journal.counts_by_state()[FileState.PENDING] == 4
    row = journal.get(ids["q"])
    assert row is not None and (row.attempts, row.next_attempt_at) == (0, 500.0)
    assert journal.history(limit=1)[0].event is HistoryEvent.RETRIED
    with pytest.raises(ValueError, match="watch"):
        journal.retry(relpath="q")


# --------------------------------------------------------------- sessions


def test_session_and_parts_survive_a_retry_and_show_progress(journal: Journal) -> None:
    file_id = add(journal, "big.bin", size=20)
    claimed = journal.claim_next(now=100.0)
    assert claimed is not None
    claim = journal.claimed(claimed)
    claim.save_session(session(), now=100.0)
    claim.add_part(PartRecord("P8", 8, 8, "11" * 20))
    claim.add_part(PartRecord("P0", 0, 8, "00" * 20))
    [flight] = journal.in_flight()
    assert (flight.session_id, flight.total_parts, flight.parts_done, flight.bytes_done) == ("S1", 3, 2, 16)
    claim.schedule_retry("connection reset", "network", next_attempt_at=110.0)
    saved = journal.load_session(file_id)
    assert saved is not None
    assert saved[0] == SessionRecord("S1", 8, 3, 20, 9999.0, None, 100.0)
    assert [part.part_id for part in saved[1]] == ["P0", "P8"]
    assert journal.in_flight() == []


def test_session_rules(journal: Journal) -> None:
    file_id = add(journal, "big.bin", size=20)
    with pytest.raises(StaleClaim, match="no host holds its lease"):  # never claimed: no handle may write
        current_claim(journal, file_id).save_session(session())
    journal.claim_next(now=100.0)
    claim = current_claim(journal, file_id)
    with pytest.raises(JournalError, match="save_session first"):
        claim.add_part(PartRecord("P0", 0, 8, "00" * 20))
    with pytest.raises(ValueError, match="cannot hold"):
        claim.save_session(SessionRecord("S", 8, 2, 20, 1.0))
    claim.save_session(session())
    with pytest.raises(ValueError, match="multiple"):
        claim.add_part(PartRecord("P", 4, 8, "00" * 20))
    with pytest.raises(ValueError, match="do not fit"):
        claim.add_part(PartRecord("P", 16, 8, "00" * 20))
    claim.add_part(PartRecord("P", 16, 4, "00" * 20))
    assert claim.drop_session() is True
    assert journal.load_session(file_id) is None and claim.drop_session() is False
    claim.schedule_retry("later", None, 1.0)
    with pytest.raises(JournalError, match="not uploading"):
        claim.save_session(session())


@pytest.mark.parametrize("write", [
    lambda claim: claim.drop_session(),
    lambda claim: claim.save_session(session()),
    lambda claim: claim.add_part(PartRecord("OLD", 8, 8, "11" * 20)),
    lambda claim: claim.record_sha1(SHA_B),
    lambda claim: claim.schedule_retry("stale", None, 1.0),
], ids=["drop_session", "save_session", "add_part", "record_sha1", "schedule_retry"])
def test_a_stale_claim_cannot_touch_the_session_of_the_claim_that_replaced_it(journal: Journal, write) -> None:
    # Worker A uploads; the file changes, intake re-queues it and worker B claims the new
    # content and starts its own session. A, finishing late, must change nothing of B's.
    add(journal, "big.bin", size=20)
    first = journal.claimed(journal.claim_next(now=100.0))  # type: ignore[arg-type]
    first.save_session(session())
    journal.observe("inbox", "big.bin", 20, 2, 7, now=110.0)
    second = journal.claimed(journal.claim_next(now=120.0))  # type: ignore[arg-type]
    second.save_session(SessionRecord("S2", 8, 3, 20, expires_at=9999.0))
    second.add_part(PartRecord("P0", 0, 8, "00" * 20))
    with pytest.raises(StaleClaim):
        write(first)
    saved = journal.load_session(second.record.id)
    assert saved is not None and saved[0].session_id == "S2"
    assert [(p.part_id, p.offset) for p in saved[1]] == [("P0", 0)]
    row = journal.get(second.record.id)
    assert row is not None and (row.state, row.sha1, row.claim_seq) == (FileState.UPLOADING, None, second.record.claim_seq)


def test_upload_outcome_drops_the_session(journal: Journal) -> None:
    file_id = add(journal, "big.bin", size=20)
    journal.claim_next(now=100.0)
    claim = current_claim(journal, file_id)
    claim.save_session(session())
    claim.add_part(PartRecord("P0", 0, 8, "00" * 20))
    claim.mark_uploaded("F", "V", None, SHA_A, 120.0)
    assert journal.load_session(file_id) is None


# ------------------------------------------------------ removal and restart


def test_deleted_file_cancels_pending_work(journal: Journal) -> None:
    add(journal, "a.txt")
    removed = journal.remove("inbox", "a.txt", "deleted locally")
    assert removed is not None and removed.state is FileState.PENDING
    assert journal.claim_next(now=1000.0) is None
    assert journal.remove("inbox", "a.txt", "deleted locally") is None
    entry = journal.history(limit=1)[0]
    assert (entry.event, entry.from_state, entry.to_state, entry.detail) == (
        HistoryEvent.REMOVED, FileState.PENDING, None, "deleted locally",
    )


def test_deleted_uploaded_file_is_forgotten_so_a_new_one_uploads_again(journal: Journal) -> None:
    add(journal, "a.txt")
    upload(journal)
    journal.remove("inbox", "a.txt", "deleted after upload (action delete)")
    again = journal.observe("inbox", "a.txt", 10, 1, 7, now=500.0)
    assert again.kind is ObservationKind.NEW and again.file.box_file_id is None
    uploaded = journal.last_uploaded()
    assert uploaded is not None and uploaded.relpath == "a.txt" and uploaded.ts == 200.0


def test_forget_drops_a_row_whatever_its_state(journal: Journal) -> None:
    file_id = add(journal, "a.txt")
    journal.claim_next(now=100.0)
    current_claim(journal, file_id).save_session(session())
    assert journal.forget("inbox", "a.txt") is True
    assert journal.forget("inbox", "a.txt") is False
    assert journal.get(file_id) is None and journal.load_session(file_id) is None
    assert journal.history("inbox", "a.txt", limit=1)[0].event is HistoryEvent.FORGOTTEN


def test_interrupted_uploads_stay_uploading_for_the_reconciler(journal_store: JournalStore) -> None:
    with journal_store.open() as first:
        add(first, "a.txt")
        add(first, "b.txt")
        claimed = first.claim_next(now=100.0)
        assert claimed is not None
        first.claimed(claimed).save_session(session())
    with journal_store.open() as second:
        [row] = second.recover_interrupted(now=300.0)
        # A new claim (the crashed process's handle is fenced off), held by this host.
        assert (row.relpath, row.state, row.claim_seq) == ("a.txt", FileState.UPLOADING, claimed.claim_seq + 1)
        assert row.lease_owner == second.host_id
        assert second.load_session(row.id) is not None
        assert second.claim_next(now=400.0).relpath == "b.txt"  # type: ignore[union-attr]
        assert second.history("inbox", "a.txt", limit=1)[0].event is HistoryEvent.INTERRUPTED


# --------------------------------------------------------------- reporting


def test_reporting_queries(journal: Journal) -> None:
    add(journal, "a1", watch="a", now=100.0)
    add(journal, "a2", watch="a", now=110.0)
    add(journal, "b1", watch="b", now=120.0)
    upload(journal, now=130.0)  # a1
    assert journal.counts_by_state("a") == {
        FileState.PENDING: 1, FileState.UPLOADING: 0, FileState.UPLOADED: 1,
        FileState.FAILED: 0, FileState.QUARANTINED: 0, FileState.SKIPPED: 0,
    }
    assert journal.counts_by_state()[FileState.PENDING] == 2
    assert journal.oldest_pending().relpath == "a2"  # type: ignore[union-attr]
    assert journal.oldest_pending("b").relpath == "b1"  # type: ignore[union-attr]
    assert journal.oldest_pending("nowhere") is None
    assert journal.last_uploaded("a").relpath == "a1"  # type: ignore[union-attr]
    assert journal.last_uploaded("b") is None
    assert journal.last_arrival("a") == 110.0 and journal.last_arrival("c") is None
    journal.observe("a", "a1", 99, 1, 7, now=140.0)  # a change counts as an arrival
    assert journal.last_arrival("a") == 140.0
    assert [e.relpath for e in journal.history("a", limit=2)] == ["a1", "a1"]
    assert [e.event for e in journal.history("a", "a2")] == [HistoryEvent.ARRIVED]
    assert len(journal.history(limit=3)) == 3
    assert sorted(journal.known_files("a")) == [("a1", 99, 1, 7, FileState.PENDING), ("a2", 10, 1, 7, FileState.PENDING)]
    assert journal.prune_history(before=115.0) == 2
    assert len(journal.history()) == 4


def test_reader_cannot_write_but_sees_the_daemons_writes(journal: Journal, journal_store: JournalStore) -> None:
    with journal_store.open(role="reader") as reader:
        add(journal, "a.txt")
        assert reader.counts_by_state()[FileState.PENDING] == 1
        with pytest.raises(JournalError, match="read-only"):
            reader.observe("inbox", "b.txt", 1, 1, 1, now=1.0)
        with pytest.raises(JournalError, match="only the daemon"):
            reader.recover_interrupted()


def test_operator_can_retry_beside_a_running_daemon(journal: Journal, journal_store: JournalStore) -> None:
    file_id = add(journal, "a.txt")
    journal.claim_next(now=100.0)
    current_claim(journal, file_id).mark_failed("x")
    with journal_store.open(role="operator") as operator:
        assert operator.retry(now=150.0) == 1
    assert journal.claim_next(now=10_000.0) is not None


def test_closed_journal_says_so(journal: Journal) -> None:
    journal.close()
    journal.close()
    with pytest.raises(JournalError, match="closed"):
        journal.counts_by_state()


def test_session_endpoint_round_trips(journal: Journal) -> None:
    # Box may put a session on another host than the upload base: resume must use its URL.
    journal.observe("w", "big.bin", 20, 1, 1, now=100.0)
    claimed = journal.claim_next(101.0)
    assert claimed is not None
    url = "https://upload-las.app.box.com/api/2.0/files/upload_sessions/S9"
    journal.claimed(claimed).save_session(SessionRecord("S9", 8, 3, 20, 9999.0, endpoint=url))
    saved = journal.load_session(claimed.id)
    assert saved is not None and saved[0].endpoint == url


def test_ids_of_removed_rows_are_never_reused(journal: Journal) -> None:
    add(journal, "a.txt")
    add(journal, "b.txt")
    claimed = journal.claim_next(now=100.0)
    assert claimed is not None and claimed.relpath == "a.txt"
    journal.remove("inbox", "b.txt", "deleted locally")
    journal.remove("inbox", "a.txt", "deleted locally")
    newcomer = journal.observe("inbox", "c.txt", 1, 1, 1, now=110.0).file
    assert newcomer.id not in (1, 2)
    with pytest.raises(UnknownFile):
        journal.claimed(claimed).mark_uploaded("F1", "V1", None, SHA_A, 120.0)


def test_every_state_has_transition_rules_and_only_uploading_reaches_uploaded() -> None:
    from syncd.journal import ALLOWED_TRANSITIONS

    assert set(ALLOWED_TRANSITIONS) == set(FileState)
    assert [s for s, targets in ALLOWED_TRANSITIONS.items() if FileState.UPLOADED in targets] == [FileState.UPLOADING]
