"""Sub-folders syncd creates in Box (mirror_subfolders), through the real daemon:
one deleted in Box is created again with no operator action and no failed file, and
their ids outlive a restart, so the next run asks Box for none of them again."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from tests.daemon.daemon_process import (
    CHUNKED_MIN,
    Watch,
    box_files,
    config_data,
    status_json,
    wait_for_box,
    wait_until,
    write_config,
)
from tests.daemon.drops import random_bytes, write_file

SUBFOLDERS = 20


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _folder_creates(emulator, status: str | None = None) -> int:
    by_status = emulator.stats().get("requests", {}).get("folders.create", {})
    return sum(int(n) for s, n in by_status.items() if status is None or s == status)


def _folder_id(emulator, parent_id: str, name: str) -> str:
    [found] = [e["id"] for e in emulator.folder_items(parent_id) if e["type"] == "folder" and e["name"] == name]
    return found


def _config(tmp_path: Path, emulator, inbox: Path, folder_id: str = "0") -> Path:
    inbox.mkdir(parents=True, exist_ok=True)
    return write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "var" / "journal.db", [Watch(inbox, folder_id=folder_id)],
        readiness={"settle": "300ms", "closed_settle": "200ms"}))


def test_a_subfolder_deleted_in_box_is_created_again(tmp_path: Path, emulator, daemon_factory) -> None:
    inbox = tmp_path / "inbox"
    config = _config(tmp_path, emulator, inbox)
    daemon = daemon_factory(config).start()

    write_file(inbox / "a/b/x.txt", b"before the folder was deleted\n")
    wait_for_box(emulator, {"a/b/x.txt": _sha1(b"before the folder was deleted\n")}, timeout=30, daemon=daemon)
    old_a = _folder_id(emulator, "0", "a")
    emulator.delete_folder(old_a)  # an operator deletes "a" (and so "a/b") in Box
    assert box_files(emulator) == {}

    late = b"dropped after the folder was deleted\n"
    write_file(inbox / "a/b/y.txt", late)
    wait_for_box(emulator, {"a/b/y.txt": _sha1(late)}, timeout=30, daemon=daemon)

    assert _folder_id(emulator, "0", "a") != old_a  # a new "a/b", not the one in the trash
    # Box holds the file a moment before the journal records the commit.
    wait_until(lambda: status_json(config)["counts"]["uploaded"] == 2, timeout=15,
               message=lambda: str(status_json(config)["counts"]))
    status = status_json(config)
    assert status["counts"]["failed"] == 0 and status["recent_failures"] == [], status
    [event] = daemon.events("box_folder_recreated")
    assert event["folder_path"] == "a/b" and event["path"] == "a/b/y.txt", event
    assert event["old_folder_id"] != event["folder_id"]

    # Again, for a chunked upload: creating its session in the deleted folder answers 404.
    emulator.delete_folder(_folder_id(emulator, "0", "a"))
    big = random_bytes(random.Random(7), CHUNKED_MIN + 1_000_000)
    write_file(inbox / "a/b/big.bin", big)
    wait_for_box(emulator, {"a/b/big.bin": _sha1(big)}, timeout=60, daemon=daemon)
    assert len(daemon.events("box_folder_recreated")) == 2
    assert status_json(config)["counts"]["failed"] == 0
    assert daemon.stop() == 0


def test_subfolder_ids_outlive_a_restart(tmp_path: Path, emulator, daemon_factory) -> None:
    inbox = tmp_path / "inbox"
    config = _config(tmp_path, emulator, inbox)
    daemon = daemon_factory(config).start()
    first = {f"dir-{n:02}/first.txt": f"first {n}\n".encode() for n in range(SUBFOLDERS)}
    for relpath, data in first.items():
        write_file(inbox / relpath, data)
    wait_for_box(emulator, {p: _sha1(d) for p, d in first.items()}, timeout=60, daemon=daemon)
    assert _folder_creates(emulator, "201") == SUBFOLDERS
    assert daemon.stop() == 0

    before, conflicts_before = _folder_creates(emulator), _folder_creates(emulator, "409")
    daemon.start()
    second = {f"dir-{n:02}/second.txt": f"second {n}\n".encode() for n in range(SUBFOLDERS)}
    for relpath, data in second.items():
        write_file(inbox / relpath, data)
    expected = {p: _sha1(d) for p, d in {**first, **second}.items()}
    wait_for_box(emulator, expected, timeout=60, daemon=daemon)
    wait_until(lambda: status_json(config)["counts"]["uploaded"] == 2 * SUBFOLDERS, timeout=30,
               message=lambda: daemon.tail())

    # The restarted daemon read every folder id from its journal: not one POST /folders,
    # so none answered 409 (before, each folder cost one against the rate limit).
    assert _folder_creates(emulator, "409") - conflicts_before == 0
    assert _folder_creates(emulator) - before == 0
    assert daemon.stop() == 0
