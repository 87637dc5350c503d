"""Chunked upload: an upload session, parts sent in parallel, resumable.

Resume state goes in and out as plain values through
:class:`~syncd.box.upload_values.UploadProgress`, which the caller implements
(the daemon keeps it in its journal). Nothing here knows about watched folders
or the journal.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Mapping

import structlog

from .client import BoxClient, validate_id, validate_name
from .errors import BoxAPIError, IntegrityError, OutcomeUnknown, SourceChanged, UploadCancelled
from .upload_base import UploadBase, UploadTarget, single_entry
from .upload_values import (
    DEFAULT_CONCURRENCY,
    OnBytes,
    SavedSession,
    SourceFingerprint,
    UploadedFile,
    UploadedPart,
    UploadProgress,
    file_times,
    hash_file,
)

log = structlog.get_logger("syncd.box.uploads")  # named as before uploads.py was split


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


class _SessionGone(Exception):
    """The upload session expired or vanished (404/410) while we used it."""


class ChunkedUpload(UploadBase):
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
        super().__init__(client, path, UploadTarget(parent_folder_id, name, existing_file_id, etag), on_bytes)
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
            return self._checked(single_entry(response.json(), "commit"), sha1)


def abort_session(client: BoxClient, session: SavedSession) -> None:
    """DELETE an upload session that will never be committed (best effort: it expires anyway)."""
    try:
        client.transport.request("DELETE", session.abort_url, ok=(200, 204, 404, 410))
    except BoxAPIError as exc:
        log.info("upload_session_abort_failed", session_id=session.session_id, status=exc.status,
                 error_code=exc.code, request_id=exc.request_id, detail="the session expires on its own")
