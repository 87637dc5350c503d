"""Claims, leases and the fencing rule (docs/MULTI_HOST.md section 5, test plan item 2), on both
engines: a claim carries its host's lease; a host whose claim was taken over writes nothing more
for it; a lapsed lease nobody took is still its holder's; renewal answers only the claims still
held; every change of hands bumps the fence token. Leases are expired by SQL, never by waiting.

Host A is the test's daemon journal; host B a second journal on the same store with another
host id (on SQLite an operator-role journal: the flock admits one daemon, and B's takeover needs
none). Two-host cases only PostgreSQL can hold (recovery beside a live host, takeovers racing)
are PostgreSQL tests."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator

import pytest

from syncd.journal import (
    FileRecord,
    FileState,
    HistoryEvent,
    InvalidTransition,
    Journal,
    PartRecord,
    SessionRecord,
    StaleClaim,
    TakenOver,
    UnknownFile,
)
from syncd.journal.claimed_file import ClaimedFile
from tests.journal.conftest import CLOCK, JournalStore

SHA_A = "a" * 40
HOST_A = "host-a"
HOST_B = "host-b"


def add(journal: Journal, relpath: str, size: int = 20, now: float = 100.0) -> int:
    return journal.observe("inbox", relpath, size, mtime_ns=1, inode=7, now=now).file.id


def claim(journal: Journal, now: float = 150.0) -> ClaimedFile:
    record = journal.claim_next(now)
    assert record is not None
    return journal.claimed(record)


def open_host(store: JournalStore, host_id: str) -> Journal:
    """Another host on the store (SQLite: beside the daemon, as an operator-role journal)."""
    return store.open("operator" if store.backend == "sqlite" else "daemon", host_id=host_id)


@pytest.fixture
def host_a(journal_store: JournalStore) -> Iterator[Journal]:
    with journal_store.open(host_id=HOST_A) as opened:
        yield opened


@pytest.fixture
def host_b(journal_store: JournalStore, host_a: Journal) -> Iterator[Journal]:
    with open_host(journal_store, HOST_B) as opened:
        yield opened


def row_and_history(journal: Journal, file_id: int) -> tuple[object, ...]:
    row = journal.get(file_id)
    assert row is not None
    return row, journal.history("inbox", row.relpath, limit=1000), journal.load_session(file_id)


# ---------------------------------------------------------------- claiming


def test_a_claim_carries_this_hosts_lease(journal_store: JournalStore, host_a: Journal) -> None:
    add(host_a, "a.bin")
    record = host_a.claim_next(150.0)
    assert record is not None and record.lease_owner == HOST_A and record.lease_expires_at is not None
    [flight] = host_a.in_flight()
    assert flight.lease_owner == HOST_A
    assert flight.lease_expires_in is not None and 0 < flight.lease_expires_in <= host_a.lease
    if journal_store.backend == "sqlite":  # one host: the journal's clock is the lease clock
        assert record.lease_expires_at == CLOCK + host_a.lease
    journal_store.poke("UPDATE files SET lease_expires_at = 0")
    [lapsed] = host_a.in_flight()
    assert lapsed.lease_expires_in is not None and lapsed.lease_expires_in < 0


# ---------------------------------------------------------------- the fence

WRITES: dict[str, Callable[[ClaimedFile], object]] = {
    "record_sha1": lambda c: c.record_sha1(SHA_A),
    "save_session": lambda c: c.save_session(SessionRecord("S2", 8, 3, 20, expires_at=9999.0)),
    "add_part": lambda c: c.add_part(PartRecord("P1", 8, 8, "11" * 20)),
    "drop_session": lambda c: c.drop_session(),
    "mark_uploaded": lambda c: c.mark_uploaded("F1", "V1", "0", SHA_A, 300.0),
    "schedule_retry": lambda c: c.schedule_retry("later", None, 400.0, now=300.0),
    "mark_failed": lambda c: c.mark_failed("gave up", now=300.0),
    "mark_quarantined": lambda c: c.mark_quarantined("bad name", now=300.0),
    "mark_skipped": lambda c: c.mark_skipped("exists", now=300.0),
    "take_box_path": lambda c: c.take_box_path("a.bin", "a.bin", "a.bin"),
    "release": lambda c: c.release("Box refuses", "box_refusing", 400.0, now=300.0),
    "back_to_readiness": lambda c: c.back_to_readiness("grew", now=300.0),
}


@pytest.mark.parametrize("write", list(WRITES.values()), ids=list(WRITES))
def test_a_host_whose_claim_was_taken_over_writes_nothing(journal_store: JournalStore, host_a: Journal,
                                                          host_b: Journal,
                                                          write: Callable[[ClaimedFile], object]) -> None:
    file_id = add(host_a, "a.bin")
    mine = claim(host_a)
    mine.save_session(SessionRecord("S1", 8, 3, 20, expires_at=9999.0))
    mine.add_part(PartRecord("P0", 0, 8, "00" * 20))
    journal_store.poke("UPDATE files SET lease_expires_at = 0")
    [taken] = host_b.take_over_expired(300.0)
    assert (taken.record.id, taken.from_host, taken.record.lease_owner) == (file_id, HOST_A, HOST_B)
    assert taken.record.claim_seq == mine.record.claim_seq + 1 and taken.expired_s > 0
    before = row_and_history(host_b, file_id)
    with pytest.raises(StaleClaim) as refused:
        write(mine)
    assert refused.value.holder == HOST_B
    assert row_and_history(host_b, file_id) == before
    # The new holder's handle writes (and a write of A's after it still changes nothing).
    host_b.claimed(taken.record).record_sha1(SHA_A)
    assert host_b.get(file_id).sha1 == SHA_A  # type: ignore[union-attr]


def test_the_current_claim_writes_only_from_the_host_holding_its_lease(journal_store: JournalStore,
                                                                       host_a: Journal) -> None:
    file_id = add(host_a, "a.bin")
    mine = claim(host_a)
    journal_store.poke("UPDATE files SET lease_owner = 'host-x'")  # the fence token alone is not enough
    before = row_and_history(host_a, file_id)
    with pytest.raises(StaleClaim, match="held by host 'host-x'") as refused:
        mine.record_sha1(SHA_A)
    assert (refused.value.holder, refused.value.expected, refused.value.actual) == (
        "host-x", mine.record.claim_seq, mine.record.claim_seq)
    assert row_and_history(host_a, file_id) == before


def test_a_lapsed_lease_nobody_took_is_still_its_holders(journal_store: JournalStore, host_a: Journal) -> None:
    file_id = add(host_a, "a.bin")
    mine = claim(host_a)
    journal_store.poke("UPDATE files SET lease_expires_at = 0")
    hashed = mine.record_sha1(SHA_A)  # a host briefly cut off comes back before anyone took over
    assert hashed.lease_owner == HOST_A and hashed.lease_expires_at is not None and hashed.lease_expires_at > 0
    done = mine.mark_uploaded("F1", "V1", "0", SHA_A, 300.0)
    assert (done.id, done.state, done.lease_owner) == (file_id, FileState.UPLOADED, HOST_A)


def test_takeover_takes_the_oldest_lapsed_leases_first_with_a_history_line(journal_store: JournalStore,
                                                                           host_a: Journal,
                                                                           host_b: Journal) -> None:
    ids = [add(host_a, name) for name in ("a.bin", "b.bin", "c.bin", "d.bin")]
    claims = [claim(host_a) for _ in ids]
    # c lapsed first, then a; b is held still; d's holder gave it back.
    journal_store.poke(f"UPDATE files SET lease_expires_at = 2 WHERE id = {ids[0]}")
    journal_store.poke(f"UPDATE files SET lease_expires_at = 1 WHERE id = {ids[2]}")
    claims[3].mark_uploaded("F4", "V1", "0", SHA_A, 200.0)
    journal_store.poke(f"UPDATE files SET lease_expires_at = 0 WHERE id = {ids[3]}")
    assert [t.record.id for t in host_b.take_over_expired(300.0, limit=1)] == [ids[2]]
    assert [t.record.id for t in host_b.take_over_expired(300.0)] == [ids[0]]
    assert host_b.take_over_expired(300.0) == []
    [line] = [e for e in host_b.history("inbox", "c.bin") if e.event is HistoryEvent.TAKEN_OVER]
    assert (line.from_state, line.to_state) == (FileState.UPLOADING, FileState.UPLOADING)
    assert re.fullmatch(r"lease of host-a expired \d+ s ago; to be reconciled with Box", line.detail or "")
    assert host_a.get(ids[1]).lease_owner == HOST_A  # type: ignore[union-attr]


# ---------------------------------------------------------------- renewal


def test_renewal_answers_only_the_claims_still_held(journal_store: JournalStore, host_a: Journal,
                                                    host_b: Journal) -> None:
    held, taken, ended = (add(host_a, name) for name in ("a.bin", "b.bin", "c.bin"))
    c_held, c_taken, c_ended = claim(host_a), claim(host_a), claim(host_a)
    assert host_a.renew_leases([]) == set()
    journal_store.poke(f"UPDATE files SET lease_expires_at = 0 WHERE id IN ({held}, {taken})")
    assert [t.record.id for t in host_b.take_over_expired(300.0, limit=1)] == [held]  # oldest: id order
    # Give `held` back to A by a takeover of A's own, so that A holds a new claim on it.
    journal_store.poke(f"UPDATE files SET lease_expires_at = 0 WHERE id = {held}")
    [again] = host_a.take_over_expired(300.0, limit=1)  # `held` first (same expiry, lower id)
    assert again.from_host == HOST_B
    journal_store.poke(f"UPDATE files SET lease_expires_at = 0 WHERE id = {held}")
    c_ended.mark_uploaded("F3", "V1", "0", SHA_A, 200.0)
    renewed = host_a.renew_leases([
        (held, again.record.claim_seq),  # held, lapsed: renewed
        (held, c_held.record.claim_seq),  # an older claim of the same row: not ours any more
        (taken, c_taken.record.claim_seq),  # still A's (nobody took it): renewed
        (ended, c_ended.record.claim_seq),  # uploaded: nothing to renew
        (9999, 1),  # no such row
    ])
    assert renewed == {held, taken}
    assert host_a.get(held).lease_expires_at > 0  # type: ignore[operator, union-attr]
    assert host_b.renew_leases([(held, again.record.claim_seq)]) == set()  # B holds none of them


def test_giving_leases_back_lets_another_host_take_them_at_once(host_a: Journal, host_b: Journal) -> None:
    first, second = add(host_a, "a.bin"), add(host_a, "b.bin")
    claim(host_a)
    claim(host_a).mark_uploaded("F2", "V1", "0", SHA_A, 200.0)
    assert host_b.take_over_expired(300.0) == []
    assert host_a.give_back_leases() == 1
    assert [t.record.id for t in host_b.take_over_expired(300.0)] == [first]
    assert host_b.get(second).state is FileState.UPLOADED  # type: ignore[union-attr]


# ------------------------------------------------------- changes of hands


def _stale_after(journal_store: JournalStore, host_a: Journal, host_b: Journal, change: str
                 ) -> tuple[ClaimedFile, FileRecord | None]:
    """A's claim, then the change of hands `change`; (A's old handle, the row afterwards)."""
    file_id = add(host_a, "a.bin")
    if change == "claim":  # a released claim, then claimed again
        first = claim(host_a)
        first.release("later", None, 0.0, now=200.0)
        claim(host_a, now=300.0)
        return first, host_a.get(file_id)
    mine = claim(host_a)
    if change == "takeover":
        journal_store.poke("UPDATE files SET lease_expires_at = 0")
        host_b.take_over_expired(300.0)
    elif change == "recovery":
        recovered = host_a.recover_interrupted(now=300.0)  # a restart of the same host
        assert [r.id for r in recovered] == [file_id]
    elif change == "observe":
        host_a.observe("inbox", "a.bin", 21, mtime_ns=2, inode=7, now=300.0)
    elif change == "retry":
        mine.mark_failed("gave up", now=200.0)
        assert host_b.retry(now=300.0) == 1
    elif change == "forget":
        assert host_b.forget("inbox", "a.bin", now=300.0)
        return mine, None
    return mine, host_a.get(file_id)


@pytest.mark.parametrize("change", ["claim", "takeover", "recovery", "observe", "retry", "forget"])
def test_every_change_of_hands_bumps_the_fence_token(journal_store: JournalStore, host_a: Journal,
                                                     host_b: Journal, change: str) -> None:
    old, row = _stale_after(journal_store, host_a, host_b, change)
    if row is None:  # forgotten: the row is gone, and a file seen again is another row
        with pytest.raises(UnknownFile):
            old.record_sha1(SHA_A)
        assert add(host_a, "a.bin") != old.record.id
        return
    assert row.claim_seq == old.record.claim_seq + 1
    expected_owner = {"claim": HOST_A, "takeover": HOST_B, "recovery": HOST_A}.get(change)
    assert row.lease_owner == expected_owner
    with pytest.raises(StaleClaim):
        old.record_sha1(SHA_A)
    assert host_a.get(row.id) == row


# ------------------------------------------------------------ PostgreSQL


def test_recovery_at_start_takes_only_this_hosts_rows(pg_store: JournalStore) -> None:
    with pg_store.open(host_id=HOST_A) as a, pg_store.open(host_id=HOST_B) as b:
        mine, theirs = add(a, "a.bin"), add(a, "b.bin")
        claim(a)
        claim(b)
        pg_store.poke(f"UPDATE files SET lease_owner = NULL WHERE id = {mine}")  # claimed before leases
        with pg_store.open(host_id=HOST_A) as restarted:
            [recovered] = restarted.recover_interrupted(now=300.0)
            assert (recovered.id, recovered.lease_owner) == (mine, HOST_A)
        assert b.get(theirs).lease_owner == HOST_B  # type: ignore[union-attr]


def test_hosts_taking_over_the_same_lapsed_rows_at_once_take_each_once(pg_store: JournalStore) -> None:
    with pg_store.open(host_id=HOST_A) as a:
        ids = {add(a, f"f{i:02}.bin") for i in range(40)}
        for _ in ids:
            claim(a)
    pg_store.poke("UPDATE files SET lease_expires_at = 0")
    hosts = [pg_store.open(host_id=f"host-{i}") for i in range(4)]
    barrier = threading.Barrier(len(hosts))
    taken: list[list[TakenOver]] = [[] for _ in hosts]
    errors: list[BaseException] = []

    def take(i: int) -> None:
        barrier.wait(60)
        try:
            while batch := hosts[i].take_over_expired(300.0, limit=3):
                taken[i].extend(batch)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(hosts))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors and not any(thread.is_alive() for thread in threads)
        all_taken = [t.record.id for batch in taken for t in batch]
        assert sorted(all_taken) == sorted(ids)  # each exactly once
        for i, batch in enumerate(taken):
            for t in batch:
                assert hosts[0].get(t.record.id).lease_owner == f"host-{i}"  # type: ignore[union-attr]
        lines = [e.file_id for e in hosts[0].history(limit=1000) if e.event is HistoryEvent.TAKEN_OVER]
        assert sorted(lines) == sorted(ids)
    finally:
        for host in hosts:
            host.close()


# ------------------------------------------------------ re-runnable outcomes


def test_an_outcome_written_again_after_a_lost_commit_answer_returns_the_row(host_a: Journal) -> None:
    file_id = add(host_a, "a.bin")
    mine = claim(host_a)
    done = mine.mark_uploaded("F1", "V1", "0", SHA_A, 300.0)
    lines = host_a.history("inbox", "a.bin")
    assert mine.mark_uploaded("F1", "V1", "0", SHA_A, 301.0) == done  # the same commit: nothing new
    assert host_a.history("inbox", "a.bin") == lines
    with pytest.raises(InvalidTransition):  # another Box file is not this outcome
        mine.mark_uploaded("F2", "V1", "0", SHA_A, 302.0)
    parked = claim_again(host_a, file_id).mark_failed("gave up", now=400.0)
    assert host_a.claimed(parked).mark_failed("gave up", now=401.0) == parked


def claim_again(journal: Journal, file_id: int) -> ClaimedFile:
    journal.observe("inbox", "a.bin", 30, mtime_ns=2, inode=7, now=350.0)  # new content, due now
    record = journal.claim_next(360.0)
    assert record is not None and record.id == file_id
    return journal.claimed(record)


# ------------------------------------------------------------- opening


def test_a_journal_names_its_host_and_lease(journal_store: JournalStore, host_a: Journal) -> None:
    import socket

    with journal_store.open("operator") as default:
        assert default.host_id == socket.gethostname()
        assert default.multi_host == (journal_store.backend == "postgres")
        expected_lease = 60.0 if journal_store.backend == "sqlite" else journal_store.where.lease  # type: ignore[union-attr]
        assert default.lease == expected_lease
    with journal_store.open("operator", host_id="h", lease=7.5, pool_size=40) as chosen:
        assert (chosen.host_id, chosen.lease) == ("h", 7.5)
        pool = chosen.connection_pool()
        if journal_store.backend == "sqlite":
            assert pool is None
        else:
            assert pool.max_size == 40  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="lease"):
        journal_store.open("operator", lease=0)
