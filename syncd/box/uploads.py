"""Uploads: direct (multipart) and chunked (upload sessions, parallel parts,
resume), and :class:`Uploader`, which picks one by size.

Resume state goes in and out as plain values through :class:`UploadProgress`,
which the caller implements (the daemon keeps it in its journal). Nothing
here knows about watched folders or the journal.

Idempotence: an upload or commit that may already have been applied (lost
answer, retry meeting 409 ``item_name_in_use``, 412 after a version upload)
counts as success when Box holds a file with our SHA-1 under our name or id.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Any, Callable, Mapping, Protocol

from requests_toolbelt.multipart.encoder import MultipartEncoder, MultipartEncoderMonitor

from .client import BoxClient, validate_id, validate_name
from .errors import BoxAPIError, IntegrityError, OutcomeUnknown, SourceChanged, UploadCancelled

log = logging.getLogger(__name__)

MiB = 1024 * 1024
BOX_CHUNKED_MINIMUM = 20_000_000  # Box refuses upload sessions for smaller files
DEFAULT_CHUNKED_THRESHOLD = 50 * MiB
DEFAULT_CONCURRENCY = 4
HASH_BLOCK = 4 * MiB

OnBytes = Callable[[int], None]


# -- plain values -------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadedFile:
    """The result of an upload: the file (or new version) as Box now holds it."""

    file_id: str
    version_id: str | None
    sha1: str
    size: int
    etag: str | None
    name: str

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


@dataclass(frozen=True)
class UploadedPart:
    """One part stored in an upload session (``sha1`` in hex)."""

    part_id: str
    offset: int
    size: int
    sha1: str

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "UploadedPart":
        return cls(str(raw["part_id"]), int(raw["offset"]), int(raw["size"]), str(raw.get("sha1") or ""))

    def to_json(self) -> dict[str, Any]:
        return {"part_id": self.part_id, "offset": self.offset, "size": self.size, "sha1": self.sha1}


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
            upload_part_url=session_url,
            commit_url=endpoints.get("commit") or f"{session_url}/commit",
            list_parts_url=endpoints.get("list_parts") or f"{session_url}/parts",
            abort_url=endpoints.get("abort") or session_url,
            status_url=endpoints.get("status") or session_url,
        )

    def to_json(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "parts"}
        data["parts"] = [part.to_json() for part in self.parts]
        return data

    @classmethod
    def from_saved_json(cls, data: Mapping[str, Any]) -> "SavedSession":
        """Inverse of :meth:`to_json`."""
        values = {k: data[k] for k in cls.__dataclass_fields__ if k != "parts"}
        return cls(**values, parts=tuple(UploadedPart.from_json(p) for p in data.get("parts", ())))


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


# -- pure helpers -------------------------------------------------------------------------


def content_range(offset: int, length: int, total: int) -> str:
    """The ``Content-Range`` header for a part: ``bytes first-last/total``."""
    if length <= 0 or offset < 0 or offset + length > total:
        raise ValueError(f"bad part range offset={offset} length={length} total={total}")
    return f"bytes {offset}-{offset + length - 1}/{total}"


def part_ranges(file_size: int, part_size: int) -> list[tuple[int, int]]:
    """(offset, length) of every part: all ``part_size`` long except a shorter last one."""
    if part_size <= 0:
        raise ValueError(f"part_size must be positive, got {part_size}")
    return [(offset, min(part_size, file_size - offset)) for offset in range(0, file_size, part_size)]


def sha_digest_header(digest: bytes) -> str:
    """``Digest`` header value: ``sha=`` + base64 of the raw SHA-1."""
    return "sha=" + base64.b64encode(digest).decode("ascii")


def box_time(timestamp: float) -> str:
    """Box's time format: ISO-8601, whole seconds, with an offset."""
    return datetime.fromtimestamp(int(timestamp), timezone.utc).isoformat()


def file_times(st: os.stat_result) -> dict[str, str]:
    """``content_created_at``/``content_modified_at`` from a stat result."""
    created = getattr(st, "st_birthtime", None) or min(st.st_mtime, st.st_ctime)
    return {"content_created_at": box_time(created), "content_modified_at": box_time(st.st_mtime)}


def hash_file(path: str | os.PathLike[str]) -> tuple[str, SourceFingerprint]:
    """SHA-1 (hex) of a file, and its fingerprint, checked unchanged across the read."""
    with open(path, "rb") as handle:
        before = SourceFingerprint.of(os.fstat(handle.fileno()))
        digest = hashlib.sha1()
        buffer = bytearray(HASH_BLOCK)
        view = memoryview(buffer)
        total = 0
        while True:
            n = handle.readinto(buffer)
            if not n:
                break
            digest.update(view[:n])
            total += n
    after = SourceFingerprint.of_path(path)
    reason = before.difference(after) or (None if total == before.size else f"read {total} of {before.size} bytes")
    if reason:
        raise SourceChanged(os.fspath(path), reason)
    return digest.hexdigest(), before


def _own_conflict_id(exc: BoxAPIError, sha1: str) -> str | None:
    """The id of the file in the way of a 409 when it holds our bytes (our own earlier attempt)."""
    if exc.code != "item_name_in_use":
        return None
    for conflict in exc.conflicts:
        if conflict.type == "file" and conflict.sha1 and conflict.sha1.lower() == sha1.lower():
            return conflict.id
    return None


def _single_entry(body: Any, what: str) -> Mapping[str, Any]:
    entries = body.get("entries") if isinstance(body, Mapping) else None
    if not entries or len(entries) != 1:
        raise BoxAPIError(201, "unexpected_answer", f"{what}: expected exactly one entry")
    return entries[0]


# -- shared upload behaviour ------------------------------------------------------------


@dataclass
class _Target:
    """Where an upload goes: a new file in a folder, or a new version of a file."""

    parent_folder_id: str | None
    name: str
    existing_file_id: str | None
    etag: str | None


class _UploadBase:
    def __init__(self, client: BoxClient, path: str | os.PathLike[str], target: _Target,
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
        own_id = _own_conflict_id(exc, sha1)
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


# -- direct upload ------------------------------------------------------------------------


class DirectUpload(_UploadBase):
    """One multipart POST (``attributes`` first, file streamed from disk).

    ``content-md5`` carries the SHA-1 so Box rejects bytes that do not match
    it; the answer's SHA-1 is checked too.
    """

    def __init__(self, client: BoxClient, path: str | os.PathLike[str], parent_folder_id: str | None, name: str,
                 *, existing_file_id: str | None = None, etag: str | None = None, sha1: str | None = None,
                 on_bytes: OnBytes | None = None, preflight: bool = True, max_unknown_outcomes: int = 3) -> None:
        super().__init__(client, path, _Target(parent_folder_id, name, existing_file_id, etag), on_bytes)
        self.sha1 = sha1
        self.preflight = preflight
        #: How many lost answers are resolved (look at Box, then send again) before giving up.
        self.max_unknown_outcomes = max(1, max_unknown_outcomes)

    def run(self) -> UploadedFile:
        """Upload and return the new file or version."""
        if self.sha1 is None:
            sha1, fingerprint = hash_file(self.path)
        else:
            sha1, fingerprint = self.sha1.lower(), SourceFingerprint.of_path(self.path)
        st = os.stat(self.path)
        url = self._upload_url(sha1, fingerprint.size)
        if isinstance(url, UploadedFile):
            return url
        attributes: dict[str, Any] = {"name": self.target.name, **file_times(st)}
        if self.target.existing_file_id:
            attributes.pop("content_created_at")  # a version has no creation time of its own
        else:
            attributes["parent"] = {"id": self.target.parent_folder_id}
        headers = {"Content-MD5": sha1}
        if self.target.etag and self.target.existing_file_id:
            headers["If-Match"] = self.target.etag
        handles: list[IO[bytes]] = []
        try:
            return self._post(url, attributes, headers, sha1, fingerprint, handles)
        finally:
            for handle in handles:
                handle.close()

    def _post(self, url: str, attributes: Mapping[str, Any], headers: Mapping[str, str], sha1: str,
              fingerprint: SourceFingerprint, handles: list[IO[bytes]]) -> UploadedFile:
        transport = self.client.transport
        unknown = server_errors = 0
        while True:
            try:
                response = transport.request(
                    "POST", url, body_factory=self._body(attributes, fingerprint.size, handles), headers=headers,
                    replay_safe=False, upload=True,
                )
            except OutcomeUnknown:
                # The answer was lost: look whether our bytes arrived before sending them again.
                unknown += 1
                own = self._find_own(sha1)
                if own is not None:
                    return own
                if unknown >= self.max_unknown_outcomes:
                    raise
                continue
            except BoxAPIError as exc:
                resolved = self._resolve_error(exc, sha1)
                if resolved is not None:
                    return resolved
                if exc.code == "bad_digest":
                    reason = fingerprint.difference(SourceFingerprint.of_path(self.path))
                    if reason or self.sha1 is not None:
                        raise SourceChanged(self.path, reason or "bytes differ from the given SHA-1") from exc
                if exc.status < 500:
                    raise
                # A 5xx write may have been applied anyway: look, then send again.
                server_errors += 1
                own = self._find_own(sha1)
                if own is not None:
                    return own
                if server_errors >= transport.retry.max_attempts:
                    raise
                time.sleep(transport.backoff(server_errors - 1, exc.retry_after))
                continue
            return self._checked(_single_entry(response.json(), "upload"), sha1)

    def _upload_url(self, sha1: str, size: int) -> str | UploadedFile:
        if self.target.existing_file_id:
            return f"{self.client.upload_url}/files/{validate_id('file_id', self.target.existing_file_id)}/content"
        assert self.target.parent_folder_id is not None
        default = f"{self.client.upload_url}/files/content"
        if not self.preflight:
            return default
        try:
            answer = self.client.preflight(self.target.parent_folder_id, self.target.name, size)
        except BoxAPIError as exc:
            own_id = _own_conflict_id(exc, sha1)
            if own_id is not None:
                return UploadedFile.from_json(self.client.get_file(own_id))
            raise
        url = answer.upload_url
        return url if url and url.startswith("http") else default

    def _body(self, attributes: Mapping[str, Any], size: int,
              handles: list[IO[bytes]]) -> Callable[[], tuple[Any, Mapping[str, str]]]:
        def build() -> tuple[Any, Mapping[str, str]]:
            # A fresh encoder and file handle per attempt: a streamed body cannot be rewound.
            handle = open(self.path, "rb")  # noqa: SIM115 - closed by run() after the last attempt
            handles.append(handle)
            encoder = MultipartEncoder(fields=[
                ("attributes", json.dumps(attributes)),
                ("file", (self.target.name, handle, "application/octet-stream")),
            ])
            body: Any = encoder
            if self.on_bytes is not None:
                reported = [0]

                def monitor_callback(monitor: MultipartEncoderMonitor) -> None:
                    sent = min(monitor.bytes_read, size)
                    if sent > reported[0]:
                        self.on_bytes(sent - reported[0])  # type: ignore[misc]
                        reported[0] = sent

                body = MultipartEncoderMonitor(encoder, monitor_callback)
            return body, {"Content-Type": encoder.content_type}
        return build


# -- chunked upload -----------------------------------------------------------------------


class _SessionGone(Exception):
    """The upload session expired or vanished (404/410) while we used it."""


class ChunkedUpload(_UploadBase):
    """An upload session: parts read once from disk, hashed in the same pass,
    sent in parallel (``concurrency`` parts in flight at most), committed with
    the whole-file digest. Resumable through ``progress``.
    """

    def __init__(self, client: BoxClient, path: str | os.PathLike[str], parent_folder_id: str | None, name: str,
                 *, existing_file_id: str | None = None, etag: str | None = None, sha1: str | None = None,
                 progress: UploadProgress | None = None, on_bytes: OnBytes | None = None,
                 concurrency: int = DEFAULT_CONCURRENCY, commit_deadline: float = 900.0,
                 parts_mismatch_window: float = 10.0, sleep: Callable[[float], None] = time.sleep,
                 cancel: threading.Event | None = None) -> None:
        super().__init__(client, path, _Target(parent_folder_id, name, existing_file_id, etag), on_bytes)
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.expected_sha1 = sha1.lower() if sha1 else None
        self.progress = progress
        self.concurrency = concurrency
        self.commit_deadline = commit_deadline
        self.parts_mismatch_window = parts_mismatch_window
        self._sleep = sleep
        # Set by the caller (e.g. a daemon shutting down): no new part is started,
        # parts in flight finish and are recorded, and UploadCancelled is raised.
        self.cancel = cancel

    # public --------------------------------------------------------------------------

    def run(self) -> UploadedFile:
        """Upload (resuming a saved session when there is one) and commit."""
        fingerprint = SourceFingerprint.of_path(self.path)
        saved = self.progress.load() if self.progress is not None else None
        session, remote = self._resume(saved, fingerprint.size)
        if saved is not None and session is None:
            # The saved session is gone: maybe because our commit went through before a
            # crash. Box holding our bytes already means done (no second version).
            own = self._find_own(self._local_sha1())
            if own is not None:
                return own
        for _ in range(3):
            if session is None:
                created = self._create_session(fingerprint.size)
                if isinstance(created, UploadedFile):
                    return created
                session, remote = created, {}
            try:
                parts, sha1 = self._send_parts(session, remote, fingerprint)
                return self._commit(session, parts, sha1)
            except _SessionGone:
                self._discarded()
                session = None
            except SourceChanged:
                self._abandon(session)
                raise
        raise BoxAPIError(410, "session_expired", f"upload sessions for {self.path} kept expiring")

    def abort(self, session: SavedSession) -> None:
        """Abandon ``session`` on Box (DELETE); a session already gone is fine."""
        abort_session(self.client, session)

    def _local_sha1(self) -> str:
        """The SHA-1 the caller queued the file with, else a fresh hash of it."""
        return self.expected_sha1 or hash_file(self.path)[0]

    # session lifecycle ---------------------------------------------------------------

    def _discarded(self) -> None:
        if self.progress is not None:
            self.progress.session_discarded()

    def _abandon(self, session: SavedSession | None) -> None:
        if session is not None:
            self.abort(session)
        self._discarded()

    def _resume(self, saved: SavedSession | None, file_size: int
                ) -> tuple[SavedSession | None, dict[int, UploadedPart]]:
        if saved is None:
            return None, {}
        if saved.file_size != file_size:
            self._abandon(saved)  # the file is not the one this session was for
            return None, {}
        try:
            status = self.client.transport.request_json("GET", saved.status_url)
            remote = self._list_parts(saved)
        except BoxAPIError as exc:
            if exc.status in (404, 410):
                self._discarded()
                return None, {}
            raise
        if isinstance(status, Mapping) and status.get("part_size"):
            if int(status["part_size"]) != saved.part_size:
                self._abandon(saved)
                return None, {}
        return saved, remote

    def _list_parts(self, session: SavedSession) -> dict[int, UploadedPart]:
        """Every stored part by offset (``offset`` here is an index into the list)."""
        parts: dict[int, UploadedPart] = {}
        index = 0
        while True:
            page = self.client.transport.request_json(
                "GET", session.list_parts_url, params={"offset": index, "limit": 1000}) or {}
            entries = page.get("entries") or []
            for raw in entries:
                part = UploadedPart.from_json(raw)
                parts[part.offset] = part
            index += len(entries)
            total = page.get("total_count")
            if not entries or (isinstance(total, int) and index >= total):
                return parts

    def _create_session(self, file_size: int) -> SavedSession | UploadedFile:
        body: dict[str, Any] = {"file_size": file_size}
        if self.target.existing_file_id:
            url = f"{self.client.upload_url}/files/{validate_id('file_id', self.target.existing_file_id)}/upload_sessions"
            body["file_name"] = validate_name(self.target.name)
        else:
            url = f"{self.client.upload_url}/files/upload_sessions"
            body["folder_id"] = validate_id("parent_folder_id", str(self.target.parent_folder_id))
            body["file_name"] = validate_name(self.target.name)
        headers = {"If-Match": self.target.etag} if self.target.etag and self.target.existing_file_id else None
        try:
            # A repeated create only leaves an unused session behind, which expires.
            raw = self.client.transport.request_json("POST", url, json=body, headers=headers,
                                                     replay_safe=True, upload=True)
        except BoxAPIError as exc:
            if exc.code == "session_conflict" and isinstance(exc.context_info.get("session"), Mapping):
                raw = exc.context_info["session"]
            elif exc.code == "item_name_in_use" and any(c.type == "file" for c in exc.conflicts):
                # Maybe our own earlier attempt committed: hash and compare before giving up.
                conflict = next(c for c in exc.conflicts if c.type == "file")
                if conflict.sha1:
                    if self._local_sha1() == conflict.sha1.lower():
                        return UploadedFile.from_json(self.client.get_file(conflict.id))
                raise
            else:
                raise
        session = SavedSession.from_json(raw, file_size)
        if session.part_size * session.total_parts < file_size:
            raise BoxAPIError(201, "invalid_session", "session parts do not cover the file")
        if self.progress is not None:
            self.progress.session_created(session)
        return session

    # parts ---------------------------------------------------------------------------

    def _send_parts(self, session: SavedSession, remote: Mapping[int, UploadedPart],
                    fingerprint: SourceFingerprint) -> tuple[list[UploadedPart], str]:
        """Read every part once, hash it, send what Box lacks; return all parts and the file SHA-1."""
        whole = hashlib.sha1()
        done: list[UploadedPart] = []
        done_lock = threading.Lock()
        slots = threading.BoundedSemaphore(self.concurrency)  # bounds parts held in memory
        futures: list[Future[UploadedPart]] = []
        failed = threading.Event()
        cancelled = False

        def finished(future: Future[UploadedPart]) -> None:
            slots.release()
            if future.cancelled() or future.exception() is not None:
                failed.set()
                return
            with done_lock:
                done.append(future.result())

        with open(self.path, "rb") as handle, ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix="box-part"
        ) as pool:
            try:
                for offset, length in part_ranges(fingerprint.size, session.part_size):
                    slots.acquire()
                    if failed.is_set():
                        slots.release()
                        break
                    if self.cancel is not None and self.cancel.is_set():
                        slots.release()
                        cancelled = True
                        break
                    data = handle.read(length)
                    if len(data) != length:
                        slots.release()
                        raise SourceChanged(self.path, f"short read at offset {offset}")
                    reason = fingerprint.difference(SourceFingerprint.of(os.fstat(handle.fileno())))
                    if reason:
                        slots.release()
                        raise SourceChanged(self.path, reason)
                    stored = remote.get(offset)
                    if stored is not None:
                        slots.release()
                        whole.update(data)
                        if stored.size != length or (
                                stored.sha1 and stored.sha1.lower() != hashlib.sha1(data).hexdigest()):
                            raise SourceChanged(self.path, f"part at offset {offset} differs from the stored one")
                        with done_lock:
                            done.append(stored)
                        if self.on_bytes is not None:
                            self.on_bytes(length)
                        continue
                    future = pool.submit(self._put_part, session, offset, data)
                    future.add_done_callback(finished)
                    futures.append(future)
                    # Hash for the whole-file digest while the worker hashes and sends the part
                    # (hashlib releases the GIL): the same bytes, read once.
                    whole.update(data)
                    del data  # only the worker holds the part now
                if not failed.is_set() and not cancelled and handle.read(1):
                    raise SourceChanged(self.path, "file grew while uploading")
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
            # Leaving the pool waits for the parts still in flight.
        for future in futures:
            exc = future.exception() if future.done() and not future.cancelled() else None
            if exc is not None:
                raise exc
        if cancelled:
            raise UploadCancelled(self.path)
        sha1 = whole.hexdigest()
        reason = fingerprint.difference(SourceFingerprint.of_path(self.path))
        if reason:
            raise SourceChanged(self.path, reason)
        if self.expected_sha1 is not None and sha1 != self.expected_sha1:
            raise SourceChanged(self.path, "content differs from the SHA-1 it was queued with")
        done.sort(key=lambda part: part.offset)
        if len(done) != session.total_parts:
            raise IntegrityError("parts uploaded", session.total_parts, len(done))
        return done, sha1

    def _put_part(self, session: SavedSession, offset: int, data: bytes) -> UploadedPart:
        digest = hashlib.sha1(data).digest()
        sha1_hex = digest.hex()
        headers = {
            "Content-Type": "application/octet-stream",
            "Digest": sha_digest_header(digest),
            "Content-Range": content_range(offset, len(data), session.file_size),
        }
        try:
            body = self.client.transport.request_json("PUT", session.upload_part_url, data=data,
                                                      headers=headers)
            raw = (body or {}).get("part") if isinstance(body, Mapping) else None
            if not isinstance(raw, Mapping):
                raw = body  # the guide shows a bare part object
            part = UploadedPart.from_json(raw)
        except BoxAPIError as exc:
            if exc.status in (404, 410):
                raise _SessionGone() from exc
            existing = exc.context_info.get("conflicting_part") if exc.status == 416 else None
            if not isinstance(existing, Mapping):
                raise
            # Our earlier attempt stored it (answer lost): count it when it is the same part.
            part = UploadedPart.from_json(existing)
            if part.sha1 and part.sha1.lower() != sha1_hex:
                raise
        if part.offset != offset or part.size != len(data) or (part.sha1 and part.sha1.lower() != sha1_hex):
            raise IntegrityError(f"part at offset {offset}", (offset, len(data), sha1_hex),
                                 (part.offset, part.size, part.sha1))
        if self.progress is not None:
            self.progress.part_uploaded(part)
        if self.on_bytes is not None:
            self.on_bytes(len(data))
        return part

    # commit --------------------------------------------------------------------------

    def _commit(self, session: SavedSession, parts: list[UploadedPart], sha1: str) -> UploadedFile:
        st = os.stat(self.path)
        attributes = file_times(st)
        if self.target.existing_file_id:
            attributes.pop("content_created_at")
        body = {"parts": [part.to_json() for part in parts], "attributes": attributes}
        headers = {"Digest": sha_digest_header(bytes.fromhex(sha1)), "Content-Type": "application/json"}
        if self.target.etag and self.target.existing_file_id:
            headers["If-Match"] = self.target.etag
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            elapsed = time.monotonic() - started
            try:
                response = self.client.transport.request(
                    "POST", session.commit_url, json=body, headers=headers, replay_safe=False,
                    ok=(200, 201, 202),
                )
            except OutcomeUnknown:
                own = self._find_own(sha1)
                if own is not None:
                    return own
                if elapsed > self.commit_deadline:
                    raise
                continue  # the session is still there: committing again is safe
            except BoxAPIError as exc:
                resolved = self._resolve_error(exc, sha1)
                if resolved is not None:
                    return resolved
                if exc.code == "parts_mismatch" and elapsed < self.parts_mismatch_window:
                    # Box may not list the last part yet right after it was stored.
                    self._sleep(min(5.0, 0.5 * attempt))
                    continue
                if exc.status in (404, 410):
                    # Gone after a lost commit answer means it was committed by us: check.
                    own = self._find_own(sha1)
                    if own is not None:
                        return own
                    raise _SessionGone() from exc
                if exc.status >= 500 and elapsed < self.commit_deadline:
                    # The commit may have been applied anyway: look, then commit again.
                    own = self._find_own(sha1)
                    if own is not None:
                        return own
                    self._sleep(self.client.transport.backoff(min(attempt - 1, 6), exc.retry_after))
                    continue
                raise
            if response.status_code == 202:
                retry_after = BoxAPIError.from_response(response).retry_after
                wait_s = retry_after if retry_after is not None else min(10.0, 1.0 * attempt)
                if elapsed + wait_s > self.commit_deadline:
                    raise BoxAPIError(202, "commit_pending",
                                      f"commit still pending after {elapsed:.0f}s (deadline {self.commit_deadline}s)",
                                      method="POST", url=session.commit_url, retry_after=retry_after)
                self._sleep(wait_s)
                continue
            return self._checked(_single_entry(response.json(), "commit"), sha1)


def abort_session(client: BoxClient, session: SavedSession) -> None:
    """DELETE an upload session that will never be committed (best effort: it expires anyway)."""
    try:
        client.transport.request("DELETE", session.abort_url, ok=(200, 204, 404, 410))
    except BoxAPIError as exc:
        log.info("could not abort upload session", extra={"session_id": session.session_id, "status": exc.status})


# -- the facade ---------------------------------------------------------------------------


class Uploader:
    """Uploads a file to Box, direct or chunked by size, as a new file or a new version.

    ``chunked_threshold``: files of at least this many bytes go through an
    upload session (default 50 MiB; never below Box's 20,000,000-byte minimum).
    """

    def __init__(self, client: BoxClient, *, chunked_threshold: int = DEFAULT_CHUNKED_THRESHOLD,
                 concurrency: int = DEFAULT_CONCURRENCY, preflight: bool = True,
                 commit_deadline: float = 900.0) -> None:
        if chunked_threshold < BOX_CHUNKED_MINIMUM:
            raise ValueError(f"chunked_threshold must be at least {BOX_CHUNKED_MINIMUM} (Box's minimum "
                             f"for upload sessions), got {chunked_threshold}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.client = client
        self.chunked_threshold = chunked_threshold
        self.concurrency = concurrency
        self.preflight = preflight
        self.commit_deadline = commit_deadline

    def upload(self, path: str | os.PathLike[str], parent_folder_id: str | None, name: str, *,
               existing_file_id: str | None = None, etag: str | None = None, sha1: str | None = None,
               progress: UploadProgress | None = None, on_bytes: OnBytes | None = None,
               cancel: threading.Event | None = None) -> UploadedFile:
        """Upload ``path`` as ``name`` into ``parent_folder_id`` (or as a new version of
        ``existing_file_id``, guarded by ``etag`` when given) and return what Box stored.

        ``sha1``: the SHA-1 the caller hashed; the upload fails with SourceChanged if
        the bytes differ. ``progress``: resume state for chunked uploads (a saved
        session forces the chunked path). ``on_bytes(n)``: called as bytes are sent (from
        worker threads for chunked uploads; a retried attempt may report its bytes again).
        ``cancel``: when set, a chunked upload starts no further part, lets the parts in
        flight finish (they are recorded through ``progress``) and raises UploadCancelled,
        keeping the session for a later resume; a direct upload is short and runs to its end.

        Raises BoxAPIError (see ``error_class``), SourceChanged, OutcomeUnknown,
        IntegrityError or AuthError.
        """
        validate_name(name)
        if existing_file_id is None:
            if parent_folder_id is None:
                raise ValueError("either parent_folder_id or existing_file_id is required")
            validate_id("parent_folder_id", parent_folder_id)
        size = os.stat(path).st_size
        saved = progress.load() if progress is not None else None
        if saved is not None or size >= self.chunked_threshold:
            return ChunkedUpload(
                self.client, path, parent_folder_id, name, existing_file_id=existing_file_id, etag=etag,
                sha1=sha1, progress=progress, on_bytes=on_bytes, concurrency=self.concurrency,
                commit_deadline=self.commit_deadline, cancel=cancel,
            ).run()
        return DirectUpload(
            self.client, path, parent_folder_id, name, existing_file_id=existing_file_id, etag=etag,
            sha1=sha1, on_bytes=on_bytes, preflight=self.preflight,
        ).run()

    def discard(self, session: SavedSession) -> None:
        """Abandon a saved session for good (e.g. the local file is gone): DELETE it on Box."""
        abort_session(self.client, session)


__all__ = [
    "BOX_CHUNKED_MINIMUM", "DEFAULT_CHUNKED_THRESHOLD", "ChunkedUpload", "DirectUpload", "SavedSession",
    "SourceFingerprint", "UploadProgress", "UploadedFile", "UploadedPart", "Uploader", "abort_session", "box_time",
    "content_range", "file_times", "hash_file", "part_ranges", "sha_digest_header",
]
