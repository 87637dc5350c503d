"""The Box path each file of a watch owns: no two local paths may become one item in Box.

Box names are unique per folder regardless of case and Unicode normalisation,
and sanitising can turn two local names into one. The pipeline computes, for a
file, the key under which Box paths are equal (`syncd.pipeline.names.box_path_key`)
and asks, before it uploads, to own that key in its watch (`ClaimedFile.take_box_path`).
The `box_names` table (schema version 5) holds one entry per file row:

* the key is taken when it is free; a file that owns it keeps it across attempts
  and new versions (renamed names stay stable), and while its row stays in the
  journal, which for an uploaded file whose source was deleted is until the row
  is pruned: Box still holds that item;
* a key is freed with the row that owns it (ON DELETE CASCADE); files parked
  because of it (`NAME_COLLISION`) are then tried again (`rows.retry_parked_collisions`);
* folders count too: a file whose key is a folder of another file's path (``a``
  vs ``A/b.txt``), or whose folder is another file's key, clashes as well.

Everything here runs on a connection inside the caller's transaction. `path_key` is
compared bytewise on both engines (PostgreSQL: `COLLATE "C"`), so the ranges below hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from syncd.journal.backend import Tx
from syncd.journal.relpaths import loaded_relpath

#: `last_error_code` of a file parked because its Box name belongs to another file.
NAME_COLLISION = "name_collision"


@dataclass(frozen=True, slots=True)
class OwnedBoxPath:
    """The Box path a file row owns: the key it wanted, and the path it took under it."""

    base_key: str
    path_key: str
    box_path: str


@dataclass(frozen=True, slots=True)
class BoxPathClash:
    """Another file of the watch owns the Box path (or a folder on it) that was asked for.

    ``folder`` is the clashing folder of the asked path (None when the file's own name
    clashes): a file can be given another name, but its folders cannot.
    """

    other_relpath: str
    other_box_path: str
    folder: str | None = None


def owned_box_path(conn: Tx, file_id: int) -> OwnedBoxPath | None:
    """The Box path the row `file_id` owns, or None."""
    found = conn.execute("SELECT base_key, path_key, box_path FROM box_names WHERE file_id = ?",
                         (file_id,)).fetchone()
    return None if found is None else OwnedBoxPath(*found)


def _owner(conn: Tx, where: str, params: tuple[object, ...]) -> tuple[str, str, str] | None:
    found = conn.execute(
        f"SELECT b.path_key, b.box_path, f.relpath FROM box_names b JOIN files f ON f.id = b.file_id WHERE {where}"
        " LIMIT 1", params).fetchone()
    return None if found is None else (found[0], found[1], loaded_relpath(found[2]))


def find_clash(conn: Tx, watch: str, file_id: int, path_key: str) -> BoxPathClash | None:
    """Who, other than `file_id`, owns `path_key`, a folder on it, or a path below it as a folder."""
    exact = _owner(conn, "b.watch = ? AND b.path_key = ? AND b.file_id != ?", (watch, path_key, file_id))
    if exact is not None:
        return BoxPathClash(exact[2], exact[1])
    # Our name as another file's folder: keys in [path_key + "/", path_key + "0").
    below = _owner(conn, "b.watch = ? AND b.path_key > ? AND b.path_key < ? AND b.file_id != ?",
                   (watch, path_key + "/", path_key + "0", file_id))
    if below is not None:
        return BoxPathClash(below[2], below[1])
    parts = path_key.split("/")
    folders = ["/".join(parts[:depth]) for depth in range(1, len(parts))]
    if folders:
        marks = ", ".join("?" * len(folders))
        above = _owner(conn, f"b.watch = ? AND b.path_key IN ({marks}) AND b.file_id != ?",
                       (watch, *folders, file_id))
        if above is not None:
            return BoxPathClash(above[2], above[1], folder=above[0])
    return None


def take_box_path(conn: Tx, watch: str, file_id: int, base_key: str, path_key: str,
                  box_path: str) -> BoxPathClash | None:
    """Make `file_id` own `path_key` (wanted as `base_key`) in `watch`; the clash when another file has it.

    An entry the row owned before under another key is replaced. The check and the insert
    run under advisory locks: a clash with a folder is between two different keys, which
    no unique index can refuse, so two hosts must not each find none and insert. Two keys
    clash only when one is the other or a folder of it, so each taker locks its folders
    shared and its own key exclusively, root first: a file wanting a key that is another's
    folder waits for it (and the other way round), and files side by side in one folder
    never wait for each other. (An entry the row replaces needs no lock: freeing a key
    cannot make a clash.)
    """
    parts = path_key.split("/")
    for depth in range(1, len(parts)):
        conn.advisory_lock(f"syncd-box-names:{watch}:{'/'.join(parts[:depth])}", shared=True)
    conn.advisory_lock(f"syncd-box-names:{watch}:{path_key}")
    clash = find_clash(conn, watch, file_id, path_key)
    if clash is not None:
        return clash
    conn.execute(
        "INSERT INTO box_names (file_id, watch, path_key, base_key, box_path) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (file_id) DO UPDATE SET watch = excluded.watch, path_key = excluded.path_key,"
        " base_key = excluded.base_key, box_path = excluded.box_path",
        (file_id, watch, path_key, base_key, box_path))
    return None
