"""The values uploads exchange with their callers: what Box stored
(:class:`UploadedFile`, :class:`UploadedPart`), the resume state of a chunked
upload (:class:`SavedSession`, kept by the caller through :class:`UploadProgress`),
a file's SHA-1 and what it was when hashed (:func:`hash_file`,
:class:`SourceFingerprint`), and the size limits and time format both kinds of
upload share.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Protocol

from .errors import BoxAPIError
from .upload_source import PathSource, source_sha1

MiB = 1024 * 1024
BOX_CHUNKED_MINIMUM = 20_000_000  # Box refuses upload sessions for smaller files
DEFAULT_CHUNKED_THRESHOLD = 50 * MiB
DEFAULT_CONCURRENCY = 4

OnBytes = Callable[[int], None]


@dataclass(frozen=True)
class UploadedFile:
    """The result of an upload: the file (or new version) as Box now holds it.

    ``parts_reused``/``bytes_reused``: parts of a new version that Box already held
    (an upload-session plan's hits) and were therefore not sent; both 0 otherwise.
    """

    file_id: str
    version_id: str | None
    sha1: str
    size: int
    etag: str | None
    name: str
    parts_reused: int = 0
    bytes_reused: int = 0

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> "UploadedFile":
        version = item.get("file_version") or {}
        return cls(
            file_id=str(item["id"]),
            version_id=None if not version.get("id") else str(version["id"]),
            sha1=str(item.get("sha1") or version.get("sha1") or ""),
            size=int(float(item.get("size") or 0)),
            etag=None if item.get("etag") is None else str(item["etag"]),
            name=str(item.get("name", "")),
        )

    def with_reuse(self, parts: int, size: int) -> "UploadedFile":
        """The same result, saying ``parts`` parts (``size`` bytes) were reused rather than sent."""
        return replace(self, parts_reused=parts, bytes_reused=size)


@dataclass(frozen=True)
class UploadedPart:
    """One part stored in an upload session (``sha1`` in hex; empty for a plan hit, which
    Box names by ``part_id``, ``offset`` and ``size`` only)."""

    part_id: str
    offset: int
    size: int
    sha1: str

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "UploadedPart":
        return cls(str(raw["part_id"]), int(raw["offset"]), int(raw["size"]), str(raw.get("sha1") or ""))

    def to_json(self) -> dict[str, Any]:
        """Box's UploadPart shape (the commit's entries): ``sha1`` only when known."""
        data: dict[str, Any] = {"part_id": self.part_id, "offset": self.offset, "size": self.size}
        if self.sha1:
            data["sha1"] = self.sha1
        return data


@dataclass(frozen=True)
class SavedSession:
    """What a caller must keep to resume a chunked upload: plain, JSON-friendly values."""

    session_id: str
    file_size: int
    part_size: int
    total_parts: int
    expires_at: str | None
    upload_part_url: str
    commit_url: str
    list_parts_url: str
    abort_url: str
    status_url: str
    plan_url: str
    parts: tuple[UploadedPart, ...] = ()

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], file_size: int) -> "SavedSession":
        """From Box's UploadSession object (``session_endpoints`` are used verbatim)."""
        endpoints = raw.get("session_endpoints") or {}
        session_url = endpoints.get("upload_part") or endpoints.get("status") or ""
        if not session_url:
            raise BoxAPIError(201, "invalid_session", "upload session without session_endpoints")
        return cls(
            session_id=str(raw["id"]),
            file_size=file_size,
            part_size=int(raw["part_size"]),
            total_parts=int(raw["total_parts"]),
            expires_at=raw.get("session_expires_at"),
            **_session_endpoints(session_url, endpoints),
        )

    @classmethod
    def resumed(cls, session_id: str, *, endpoint: str | None, upload_url: str, file_size: int, part_size: int,
                total_parts: int, expires_at: str | None, parts: Iterable[UploadedPart] = ()) -> "SavedSession":
        """A session saved earlier, rebuilt from its id and the one URL kept with it.

        ``endpoint`` is the session's own URL as Box gave it (``upload_part_url``),
        which may be on another host than the upload base; a session saved without
        it lives at ``{upload_url}/files/upload_sessions/{session_id}``. The other
        URLs derive from that one, as Box lays them out.
        """
        session_url = endpoint or f"{upload_url.rstrip('/')}/files/upload_sessions/{session_id}"
        return cls(session_id=session_id, file_size=file_size, part_size=part_size, total_parts=total_parts,
                   expires_at=expires_at, **_session_endpoints(session_url), parts=tuple(parts))

    def to_json(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "parts"}
        data["parts"] = [part.to_json() for part in self.parts]
        return data

    @classmethod
    def from_saved_json(cls, data: Mapping[str, Any]) -> "SavedSession":
        """Inverse of :meth:`to_json` (a session saved before ``plan_url`` existed gets the derived one)."""
        data = {"plan_url": f"{data.get('upload_part_url', '')}/plan", **data}
        values = {k: data[k] for k in cls.__dataclass_fields__ if k != "parts"}
        return cls(**values, parts=tuple(UploadedPart.from_json(p) for p in data.get("parts", ())))

    @property
    def urls(self) -> tuple[str, ...]:
        """Every URL of the session (they all receive the bearer token)."""
        return (self.upload_part_url, self.commit_url, self.list_parts_url, self.abort_url, self.status_url,
                self.plan_url)


def _session_endpoints(session_url: str, given: Mapping[str, Any] | None = None) -> dict[str, str]:
    """A session's URLs: those Box gave (``session_endpoints``), the others derived from its own URL."""
    given = given or {}
    return {
        "upload_part_url": given.get("upload_part") or session_url,
        "commit_url": given.get("commit") or f"{session_url}/commit",
        "list_parts_url": given.get("list_parts") or f"{session_url}/parts",
        "abort_url": given.get("abort") or session_url,
        "status_url": given.get("status") or session_url,
        # boxsdk 10.18's `session_endpoints.plan`; where Box gives none it is the session's `/plan`.
        "plan_url": given.get("plan") or f"{session_url}/plan",
    }


class UploadProgress(Protocol):
    """Where a chunked upload keeps its resume state (implemented by the caller).

    ``load`` returns the session saved by an earlier attempt of *this* upload,
    or None. After a successful upload the caller drops what it saved.
    """

    def load(self) -> SavedSession | None: ...

    def session_created(self, session: SavedSession) -> None: ...

    def part_uploaded(self, part: UploadedPart) -> None: ...

    def session_discarded(self) -> None: ...


@dataclass(frozen=True)
class SourceFingerprint:
    """What must not change while a file is uploaded."""

    size: int
    mtime_ns: int
    inode: int
    device: int

    @classmethod
    def of(cls, st: os.stat_result) -> "SourceFingerprint":
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)

    @classmethod
    def of_path(cls, path: str | os.PathLike[str]) -> "SourceFingerprint":
        return cls.of(os.stat(path))

    def difference(self, other: "SourceFingerprint") -> str | None:
        """A human-readable reason when ``other`` differs, else None."""
        if (self.inode, self.device) != (other.inode, other.device):
            return "file was replaced (inode changed)"
        if self.size != other.size:
            return f"size changed from {self.size} to {other.size}"
        if self.mtime_ns != other.mtime_ns:
            return "modification time changed"
        return None


def box_time(timestamp: float) -> str:
    """Box's time format: ISO-8601, whole seconds, with an offset."""
    return datetime.fromtimestamp(int(timestamp), timezone.utc).isoformat()


def file_times(st: os.stat_result) -> dict[str, str]:
    """``content_created_at``/``content_modified_at`` from a stat result."""
    created = getattr(st, "st_birthtime", None) or min(st.st_mtime, st.st_ctime)
    return {"content_created_at": box_time(created), "content_modified_at": box_time(st.st_mtime)}


def hash_file(path: str | os.PathLike[str]) -> tuple[str, SourceFingerprint]:
    """SHA-1 (hex) of a file read through one descriptor, and its fingerprint at open;
    SourceChanged when it changed while it was read."""
    with PathSource(path) as source:
        return source_sha1(source), SourceFingerprint.of(source.fstat())
