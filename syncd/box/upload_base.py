"""What direct and chunked uploads share: where the upload goes, and how an
error or a lost answer is recognised as our own earlier attempt already done.

Idempotence: an upload or commit that may already have been applied (lost
answer, retry meeting 409 ``item_name_in_use``, 412 after a version upload)
counts as success when Box holds a file with our SHA-1 under our name or id.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

from .client import BoxClient
from .errors import BoxAPIError, IntegrityError
from .upload_values import OnBytes, UploadedFile


def own_conflict_id(exc: BoxAPIError, sha1: str) -> str | None:
    """The id of the file in the way of a 409 when it holds our bytes (our own earlier attempt)."""
    if exc.code != "item_name_in_use":
        return None
    for conflict in exc.conflicts:
        if conflict.type == "file" and conflict.sha1 and conflict.sha1.lower() == sha1.lower():
            return conflict.id
    return None


def single_entry(body: Any, what: str) -> Mapping[str, Any]:
    """The one entry of an upload or commit answer; BoxAPIError when there is not exactly one."""
    entries = body.get("entries") if isinstance(body, Mapping) else None
    if not entries or len(entries) != 1:
        raise BoxAPIError(201, "unexpected_answer", f"{what}: expected exactly one entry")
    return entries[0]


@dataclass
class UploadTarget:
    """Where an upload goes: a new file in a folder, or a new version of a file."""

    parent_folder_id: str | None
    name: str
    existing_file_id: str | None
    etag: str | None


class UploadBase:
    """What DirectUpload and ChunkedUpload share: their target, and recognising our own earlier attempt."""

    def __init__(self, client: BoxClient, path: str | os.PathLike[str], target: UploadTarget,
                 on_bytes: OnBytes | None) -> None:
        self.client = client
        self.path = os.fspath(path)
        self.target = target
        self.on_bytes = on_bytes

    def _find_own(self, sha1: str) -> UploadedFile | None:
        """Box already holds our bytes under our name (new file) or id (version)?"""
        if self.target.existing_file_id:
            item: Mapping[str, Any] | None = self.client.get_file(self.target.existing_file_id)
        else:
            assert self.target.parent_folder_id is not None
            item = self.client.find_file(self.target.parent_folder_id, self.target.name)
            if item is not None:
                item = self.client.get_file(str(item["id"]))
        if item is not None and str(item.get("sha1", "")).lower() == sha1.lower():
            return UploadedFile.from_json(item)
        return None

    def _resolve_error(self, exc: BoxAPIError, sha1: str) -> UploadedFile | None:
        """Turn "already done by our own earlier attempt" errors into the existing file."""
        own_id = own_conflict_id(exc, sha1)
        if own_id is not None:
            return UploadedFile.from_json(self.client.get_file(own_id))
        if exc.status == 412 and self.target.existing_file_id:
            return self._find_own(sha1)
        return None

    def _checked(self, item: Mapping[str, Any], sha1: str) -> UploadedFile:
        result = UploadedFile.from_json(item)
        if result.sha1.lower() != sha1.lower():
            raise IntegrityError(f"SHA-1 of uploaded {self.path}", sha1, result.sha1)
        return result
