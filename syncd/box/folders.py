"""FolderTree: find or create a path of sub-folders under a parent, remembering the ids."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Protocol

from .client import BoxClient
from .errors import BoxAPIError, ErrorClass


class FolderIdStore(Protocol):
    """Where FolderTree keeps the ids it resolved: ``(parent_id, name_key) -> folder_id``.

    ``name_key`` is the case-folded folder name (Box names are unique within a parent
    case-insensitively). A persistent store (the daemon's journal) spares a restarted
    process one create-or-lookup per folder. Implementations must be thread-safe.
    """

    def get(self, parent_id: str, name_key: str) -> str | None:
        """The recorded id of folder ``name_key`` under ``parent_id``, or None."""
        ...

    def put(self, parent_id: str, name_key: str, folder_id: str) -> None:
        """Record (or replace) the id of folder ``name_key`` under ``parent_id``."""
        ...

    def forget(self, folder_id: str | None) -> None:
        """Drop the entry naming ``folder_id`` and every entry below it (everything when None)."""
        ...


class MemoryFolderIds:
    """The default FolderIdStore: a dict, for the life of the process."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def get(self, parent_id: str, name_key: str) -> str | None:
        """The recorded id of folder ``name_key`` under ``parent_id``, or None."""
        with self._lock:
            return self._ids.get((parent_id, name_key))

    def put(self, parent_id: str, name_key: str, folder_id: str) -> None:
        """Record (or replace) the id of folder ``name_key`` under ``parent_id``."""
        with self._lock:
            self._ids[(parent_id, name_key)] = folder_id

    def forget(self, folder_id: str | None) -> None:
        """Drop the entry naming ``folder_id`` and every entry below it (everything when None)."""
        with self._lock:
            if folder_id is None:
                self._ids.clear()
                return
            gone = {folder_id}
            while True:
                below = {child for (parent, _), child in self._ids.items() if parent in gone} - gone
                if not below:
                    break
                gone |= below
            for key, value in list(self._ids.items()):
                if value in gone or key[0] in gone:
                    del self._ids[key]


class _StaleParent(Exception):
    """A remembered folder answered 404 when a child was created in it: it is gone."""

    def __init__(self, folder_id: str, error: BoxAPIError) -> None:
        super().__init__(folder_id)
        self.folder_id = folder_id
        self.error = error


class FolderTree:
    """Resolves ``(parent_id, ("a", "b"))`` to the id of folder ``a/b`` under the parent,
    creating what is missing.

    A 409 on create (another worker or process created it first) resolves to the
    existing folder's id. Resolved ids are kept in ``store`` (in memory unless given
    a persistent one). A remembered folder deleted on Box is noticed when a child is
    created in it (404) and created again; :meth:`recreate` does the same for a
    folder the caller found gone (404 on an upload into it). ``parent_id`` itself is
    never created: it belongs to whoever configured it.
    """

    def __init__(self, client: BoxClient, store: FolderIdStore | None = None) -> None:
        self.client = client
        self.store: FolderIdStore = store if store is not None else MemoryFolderIds()

    def ensure(self, parent_id: str, path: Iterable[str]) -> str:
        """The id of the folder at ``path`` under ``parent_id``, created if missing."""
        names = (path,) if isinstance(path, str) else tuple(path)
        for name in names:
            if not name:
                raise ValueError(f"empty folder name in path {names!r}")
        root = str(parent_id)
        # Each stale folder found is forgotten before the next walk, one level further up
        # each time, so a path of n names needs at most n walks (one more for a deletion
        # racing with us); past that the 404 is Box's answer.
        stale: _StaleParent | None = None
        for _ in range(len(names) + 1):
            try:
                return self._walk(root, names)
            except _StaleParent as found:
                self.store.forget(found.folder_id)
                stale = found
        assert stale is not None
        raise stale.error

    def recreate(self, parent_id: str, path: Iterable[str], gone_id: str) -> str:
        """``gone_id``, resolved for ``path``, was found deleted on Box: forget it and what
        was remembered below it, and resolve ``path`` again (creating what is missing)."""
        self.store.forget(gone_id)
        return self.ensure(parent_id, path)

    def is_gone(self, folder_id: str) -> bool:
        """True if Box answers 404 for ``folder_id`` (deleted, trashed or no longer visible)."""
        try:
            self.client.get_folder(folder_id, fields="id")
        except BoxAPIError as exc:
            if exc.status == 404:
                return True
            raise
        return False

    def forget(self, folder_id: str | None = None) -> None:
        """Drop remembered ids naming or under ``folder_id`` (everything when None)."""
        self.store.forget(folder_id)

    def _walk(self, root: str, names: tuple[str, ...]) -> str:
        folder_id = root
        for name in names:
            folder_id = self._child(root, folder_id, name)
        return folder_id

    def _child(self, root: str, parent_id: str, name: str) -> str:
        key = name.casefold()
        cached = self.store.get(parent_id, key)
        if cached is not None:
            return cached
        try:
            folder_id = self._find_or_create(parent_id, name)
        except BoxAPIError as exc:
            if exc.status == 404 and parent_id != root:
                # The parent came from the store (or was made a moment ago) and is gone now.
                raise _StaleParent(parent_id, exc) from exc
            raise
        self.store.put(parent_id, key, folder_id)
        return folder_id

    def _find_or_create(self, parent_id: str, name: str) -> str:
        try:
            return str(self.client.create_folder(parent_id, name)["id"])
        except BoxAPIError as exc:
            if exc.error_class is not ErrorClass.NAME_CONFLICT:
                raise
            for conflict in exc.conflicts:
                if conflict.type == "folder" and conflict.id:
                    return conflict.id
            # No usable conflict in the answer (or a file is in the way): look.
            item = self.client.find_item(parent_id, name)
            if item is not None and item.get("type") == "folder":
                return str(item["id"])
            raise
