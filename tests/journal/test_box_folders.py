"""Box sub-folder ids in the journal: what FolderTree reads and writes through it."""

from __future__ import annotations

import pytest

from syncd.journal import Journal, JournalError
from tests.journal.conftest import JournalStore


def test_saved_ids_are_found_by_parent_and_name_key(journal: Journal) -> None:
    assert journal.box_folder_id("0", "scans") is None
    journal.save_box_folder_id("0", "scans", "100")
    journal.save_box_folder_id("100", "2026", "101")
    journal.save_box_folder_id("555", "scans", "200")  # another watch's folder: its own key
    assert journal.box_folder_id("0", "scans") == "100"
    assert journal.box_folder_id("100", "2026") == "101"
    assert journal.box_folder_id("555", "scans") == "200"
    assert journal.box_folder_id("0", "2026") is None
    journal.save_box_folder_id("0", "scans", "102")  # re-created: the new id replaces the old
    assert journal.box_folder_id("0", "scans") == "102"


def test_forget_drops_the_folder_and_everything_recorded_below_it(journal: Journal) -> None:
    tree = {("0", "a"): "1", ("1", "b"): "2", ("2", "c"): "3", ("1", "d"): "4", ("0", "e"): "5",
            ("5", "f"): "6"}
    for (parent, name), folder in tree.items():
        journal.save_box_folder_id(parent, name, folder)
    assert journal.forget_box_folder("2") == 2  # b (named "2") and c below it
    assert journal.box_folder_id("1", "b") is None and journal.box_folder_id("2", "c") is None
    assert journal.box_folder_id("1", "d") == "4" and journal.box_folder_id("0", "a") == "1"
    assert journal.forget_box_folder("1") == 2  # a and d
    assert journal.box_folder_id("0", "e") == "5" and journal.box_folder_id("5", "f") == "6"
    assert journal.forget_box_folder("999") == 0
    assert journal.forget_box_folder(None) == 2
    assert journal.box_folder_id("0", "e") is None


def test_forget_survives_a_cycle(journal: Journal) -> None:
    # Ids come from Box; a cycle is impossible there, but it must not hang the journal.
    journal.save_box_folder_id("1", "x", "2")
    journal.save_box_folder_id("2", "y", "1")
    assert journal.forget_box_folder("1") == 2


def test_folder_ids_persist_across_opens(journal_store: JournalStore) -> None:
    with journal_store.open() as journal:
        journal.save_box_folder_id("0", "inbox", "77")
    with journal_store.open() as journal:
        assert journal.box_folder_id("0", "inbox") == "77"


@pytest.mark.parametrize("parent, name, folder", [("", "a", "1"), ("0", "", "1"), ("0", "a", ""),
                                                   ("0", "a\x00b", "1"), (0, "a", "1")])
def test_bad_folder_keys_are_refused(journal: Journal, parent, name, folder) -> None:
    with pytest.raises(ValueError):
        journal.save_box_folder_id(parent, name, folder)
    assert journal.forget_box_folder(None) == 0


def test_reader_cannot_record_folder_ids(journal: Journal, journal_store: JournalStore) -> None:
    journal.save_box_folder_id("0", "a", "1")
    with journal_store.open(role="reader") as reader:
        assert reader.box_folder_id("0", "a") == "1"
        with pytest.raises(JournalError, match="read-only"):
            reader.save_box_folder_id("0", "b", "2")
