"""Two hosts taking Box paths that clash as file and folder (`a` and `a/b.txt`) at the same moment:
no unique key can refuse that pair, so the advisory locks of `take_box_path` must; one of the two
gets the clash, never neither. And files side by side in one folder do not wait for each other.
PostgreSQL only (SQLite serialises every writer)."""

from __future__ import annotations

import threading

from syncd.journal import BoxPathClash, Journal
from syncd.journal.claimed_file import ClaimedFile
from tests.journal.conftest import JournalStore


def claimed(journal: Journal, relpath: str, inode: int) -> ClaimedFile:
    journal.observe("inbox", relpath, 10, mtime_ns=1, inode=inode, now=100.0)
    record = journal.claim_next(150.0)
    assert record is not None and record.relpath == relpath
    return journal.claimed(record)


def race(first: ClaimedFile, second: ClaimedFile, first_key: str, second_key: str
         ) -> list[BoxPathClash | None]:
    start = threading.Barrier(2)
    outcomes: list[BoxPathClash | None] = [None, None]

    def take(index: int, claim: ClaimedFile, key: str) -> None:
        start.wait()
        outcomes[index] = claim.take_box_path(key, key, key)

    threads = [threading.Thread(target=take, args=(0, first, first_key)),
               threading.Thread(target=take, args=(1, second, second_key))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_a_file_and_a_folder_of_the_same_name_never_both_win(pg_store: JournalStore) -> None:
    with pg_store.open(host_id="host-a") as a, pg_store.open(host_id="host-b") as b:
        for round_ in range(15):
            folder_file = claimed(a, f"r{round_}", inode=2 * round_ + 1)
            nested = claimed(b, f"R{round_}/b.txt", inode=2 * round_ + 2)
            outcomes = race(folder_file, nested, f"r{round_}", f"r{round_}/b.txt")
            assert sum(outcome is None for outcome in outcomes) == 1, outcomes


def test_files_side_by_side_in_one_folder_both_take_their_names(pg_store: JournalStore) -> None:
    with pg_store.open(host_id="host-a") as a, pg_store.open(host_id="host-b") as b:
        left = claimed(a, "batch/left.txt", inode=1)
        right = claimed(b, "batch/right.txt", inode=2)
        assert race(left, right, "batch/left.txt", "batch/right.txt") == [None, None]
