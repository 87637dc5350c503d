"""What direct and chunked uploads share: where the upload goes, what it reads
from (an :class:`~syncd.box.upload_source.UploadSource`, or a path opened once as
a :class:`~syncd.box.upload_source.PathSource`), its heartbeat, and how an error
or a lost answer is recognised as our own earlier attempt already done.

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
from .heartbeat import Heartbeat, beating
from .upload_source import PathSource, UploadSource, source_sha1
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
    """What DirectUpload and ChunkedUpload share: their target and source, the heartbeat,
    and recognising our own earlier attempt.

    ``source`` is an open :class:`UploadSource`, or a path that is opened (once) when
    first read and closed when :meth:`run` ends.
    """

    def __init__(self, client: BoxClient, source: UploadSource | str | os.PathLike[str], target: UploadTarget,
                 on_bytes: OnBytes | None) -> None:
        self.client = client
        self._path = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
        self._source: UploadSource | None = None if self._path is not None else source  # type: ignore[assignment]
        self.target = target
        self.heartbeat = Heartbeat(on_bytes)

    @property
    def label(self) -> str:
        """The source's display name, for messages."""
        return self._path if self._path is not None else self.source.label

    @property
    def source(self) -> UploadSource:
        """What the upload reads: the given source, or the path opened once."""
        if self._source is None:
            assert self._path is not None
            self._source = PathSource(self._path)
        return self._source

    def run(self) -> UploadedFile:
        """Upload and return what Box stored (see the subclass)."""
        try:
            with beating(self.heartbeat):
                return self._run()
        finally:
            if self._path is not None and isinstance(self._source, PathSource):
                self._source.close()
                self._source = None

    def _run(self) -> UploadedFile:
        raise NotImplementedError

    def _sha1_of_source(self) -> str:
        """A full read pass for the SHA-1, beating the heartbeat as it goes."""
        return source_sha1(self.source, on_block=self.heartbeat.beat)

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
            raise IntegrityError(f"SHA-1 of uploaded {self.label}", sha1, result.sha1)
        return result
