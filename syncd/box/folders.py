"""FolderTree: find or create a path of sub-folders under a parent, with a cache."""

from __future__ import annotations

import threading
from typing import Iterable

from .client import BoxClient
from .errors import BoxAPIError, ErrorClass


class FolderTree:
    """Resolves ``(parent_id, ("a", "b"))`` to the id of folder ``a/b`` under the parent,
    creating what is missing.

    A 409 on create (another worker or process created it first) resolves to
    the existing folder's id. Results are cached; :meth:`forget` drops an entry
    whose folder turned out to be gone (404 on use).
    """

    def __init__(self, client: BoxClient) -> None:
        self.client = client
        self._cache: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def ensure(self, parent_id: str, path: Iterable[str]) -> str:
        """The id of the folder at ``path`` under ``parent_id``, created if missing."""
        names = (path,) if isinstance(path, str) else tuple(path)
        folder_id = str(parent_id)
        for name in names:
            if not name:
                raise ValueError(f"empty folder name in path {names!r}")
            folder_id = self._child(folder_id, name)
        return folder_id

    def forget(self, folder_id: str | None = None) -> None:
        """Drop cached entries under or naming ``folder_id`` (everything when None)."""
        with self._lock:
            if folder_id is None:
                self._cache.clear()
                return
            for key, value in list(self._cache.items()):
                if value == folder_id or key[0] == folder_id:
                    del self._cache[key]

    def _child(self, parent_id: str, name: str) -> str:
        key = (parent_id, name.casefold())
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        folder_id = self._find_or_create(parent_id, name)
        with self._lock:
            self._cache[key] = folder_id
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
