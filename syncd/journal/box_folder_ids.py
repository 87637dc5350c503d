"""The Box folder-id cache of the journal: the ids of the sub-folders syncd made
or found in Box, by (parent id, case-folded name), so a restart need not ask
Box for each folder again. Committed without fsync: a lost id only costs one
more question to Box.
"""

from __future__ import annotations

from syncd.journal.backend import rerun_on_conflict
from syncd.journal.core import JournalCore
from syncd.journal.validation import check_box_ids


class BoxFolderIds(JournalCore):
    """Part of `Journal`: Box sub-folder ids by (parent id, case-folded name)."""

    def box_folder_id(self, parent_id: str, name_key: str) -> str | None:
        """The recorded id of the Box folder `name_key` (a case-folded name) under `parent_id`."""
        check_box_ids(parent_id=parent_id, name_key=name_key)
        with self._read() as conn:
            found = conn.execute(
                "SELECT folder_id FROM box_folders WHERE parent_id = ? AND name_key = ?", (parent_id, name_key)
            ).fetchone()
        return None if found is None else str(found[0])

    @rerun_on_conflict
    def save_box_folder_id(self, parent_id: str, name_key: str, folder_id: str, *, now: float | None = None) -> None:
        """Record (or replace) the id of the Box folder `name_key` under `parent_id`.

        Committed without fsync, like scanner bookkeeping: an id lost to a power cut
        only costs one more question to Box (a create answered 409).
        """
        check_box_ids(parent_id=parent_id, name_key=name_key, folder_id=folder_id)
        with self._write(durable=False) as conn:
            conn.execute(
                "INSERT INTO box_folders (parent_id, name_key, folder_id, resolved_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (parent_id, name_key) DO UPDATE SET folder_id = excluded.folder_id,"
                " resolved_at = excluded.resolved_at",
                (parent_id, name_key, folder_id, self._now(now)),
            )

    @rerun_on_conflict
    def forget_box_folder(self, folder_id: str | None) -> int:
        """Drop the recorded ids of a Box folder and of every folder recorded below it.

        For a folder found deleted on Box: the ids under it are gone with it. None
        drops every recorded id. Returns how many were dropped.
        """
        with self._write(durable=False) as conn:
            if folder_id is None:
                return conn.execute("DELETE FROM box_folders").rowcount
            check_box_ids(folder_id=folder_id)
            # UNION (not UNION ALL) stops at ids already seen, should the entries ever form a cycle.
            # Counted from RETURNING: sqlite3's rowcount is -1 for a statement that starts with WITH,
            # and SQLite's changes() is its own.
            return len(conn.execute(
                "WITH RECURSIVE gone(id) AS (VALUES (?) UNION"
                " SELECT b.folder_id FROM box_folders AS b JOIN gone ON b.parent_id = gone.id)"
                " DELETE FROM box_folders WHERE folder_id IN (SELECT id FROM gone)"
                " OR parent_id IN (SELECT id FROM gone) RETURNING folder_id",
                (folder_id,),
            ).fetchall())
