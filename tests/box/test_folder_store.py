"""FolderTree with a FolderIdStore, against the real emulator: ids resolved once are not
asked of Box again (by another tree on the same store, or after a restart through the
journal), forgetting reaches the store, and folders deleted on Box are created again."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.box import BoxAPIError, FolderTree, MemoryFolderIds
from syncd.service.box_connection import JournalFolderIds
from syncd.journal import Journal

from .conftest import count, make_client

PATH = ("inbox", "2026", "march")


def creates(emulator, status: str | None = None) -> int:
    return count(emulator.stats(), "folders.create", status)


def test_a_second_tree_on_the_same_store_asks_box_nothing(emulator, client) -> None:
    store = MemoryFolderIds()
    leaf = FolderTree(client, store).ensure("0", PATH)
    emulator.reset_stats()
    with make_client(emulator) as other:
        # Another tree (as after a restart) on the same store; Box names are case-insensitive.
        assert FolderTree(other, store).ensure("0", ("INBOX", "2026", "March")) == leaf
    assert emulator.stats()["requests"] == {}  # not one call: no POST /folders, no lookup


def test_ids_kept_in_the_journal_outlive_the_process(emulator, client, tmp_path: Path) -> None:
    journal_path = tmp_path / "journal.db"
    with Journal.open(journal_path) as journal:
        leaf = FolderTree(client, JournalFolderIds(journal)).ensure("0", PATH)
    assert creates(emulator, "201") == 3
    emulator.reset_stats()
    with Journal.open(journal_path) as journal, make_client(emulator) as restarted:
        assert FolderTree(restarted, JournalFolderIds(journal)).ensure("0", PATH) == leaf
        assert journal.box_folder_id("0", "inbox") is not None
    assert creates(emulator) == 0


def test_forget_drops_the_ids_from_the_store_too(emulator, client) -> None:
    store = MemoryFolderIds()
    tree = FolderTree(client, store)
    leaf = tree.ensure("0", PATH)
    inbox = store.get("0", "inbox")
    assert inbox is not None and tree.ensure("0", ("inbox", "april")) != leaf
    tree.forget(inbox)  # the folder and everything remembered below it
    assert store.get("0", "inbox") is None and store.get(inbox, "2026") is None
    assert store.get(inbox, "april") is None
    emulator.reset_stats()
    assert tree.ensure("0", PATH) == leaf  # asked again: each create meets 409, same ids
    assert creates(emulator, "409") == 3
    tree.forget()
    assert store.get("0", "inbox") is None


def test_a_deleted_folder_is_created_again(emulator, client) -> None:
    store = MemoryFolderIds()
    tree = FolderTree(client, store)
    old_leaf = tree.ensure("0", PATH)
    emulator.delete_folder(str(store.get("0", "inbox")))  # an operator deletes the top of the path
    assert tree.is_gone(old_leaf) and not tree.is_gone("0")
    emulator.reset_stats()
    new_leaf = tree.recreate("0", PATH, old_leaf)
    assert new_leaf != old_leaf and not tree.is_gone(new_leaf)
    assert [e["name"] for e in emulator.folder_items("0")] == ["inbox"]
    # Remembered parents are found gone one level at a time, from the bottom: "march" in the
    # old "2026" answers 404, then "2026" in the old "inbox"; then all three are made anew.
    assert creates(emulator, "404") == 2 and creates(emulator, "201") == 3
    assert tree.ensure("0", PATH) == new_leaf


def test_a_stale_parent_is_noticed_when_a_new_child_is_created(emulator, client) -> None:
    tree = FolderTree(client)
    tree.ensure("0", ("scans", "a"))
    scans = tree.store.get("0", "scans")
    assert scans is not None
    emulator.delete_folder(scans)
    # "scans" is remembered but gone: creating "b" in it answers 404, so it is made again.
    new_b = tree.ensure("0", ("scans", "b"))
    new_scans = tree.store.get("0", "scans")
    assert new_scans not in (None, scans) and tree.store.get(new_scans, "b") == new_b
    assert [e["name"] for e in emulator.folder_items(new_scans)] == ["b"]


def test_the_callers_own_folder_is_never_created(emulator, client) -> None:
    watch_folder = client.create_folder("0", "configured")["id"]
    tree = FolderTree(client)
    leaf = tree.ensure(watch_folder, ("a", "b"))
    emulator.delete_folder(watch_folder)
    with pytest.raises(BoxAPIError) as caught:
        tree.recreate(watch_folder, ("a", "b"), leaf)
    assert caught.value.status == 404
    assert emulator.folder_items("0") == []  # "configured" stays deleted: it is the operator's
    with pytest.raises(BoxAPIError) as missing:
        tree.ensure("31337", ("x",))
    assert missing.value.status == 404


def test_memory_store_forgets_whole_subtrees() -> None:
    store = MemoryFolderIds()
    for parent, name, folder in (("0", "a", "1"), ("1", "b", "2"), ("2", "c", "3"), ("0", "d", "4")):
        store.put(parent, name, folder)
    store.forget("1")
    assert [store.get(p, n) for p, n in (("0", "a"), ("1", "b"), ("2", "c"), ("0", "d"))] == [None, None, None, "4"]
    store.forget(None)
    assert store.get("0", "d") is None
