"""Chunked upload: an upload session, parts sent in parallel, resumable, and for a new
version of a file only the parts Box does not already hold (issue 13).

**One read pass.** Each part is read once from the source (``read_exact``), in order,
by one reader thread that feeds the whole-file SHA-1 as it goes; a worker thread then
hashes the part (SHA-1 for its ``Digest``, SHA-512 when planning; hashlib releases the
GIL) and plans and/or sends it. At most ``concurrency`` parts are held at once.

**Delta versions.** A new version plans each part before sending it: ``POST
session_endpoints.plan`` with the part's offset, size and SHA-512 (boxsdk 10.18's
``UploadPartPlan``; one part per call, from the part's worker, as the SDK's
``upload_big_file_version`` does, so a part costs one extra round trip but the file is
still read once and never held whole). A hit is not sent: the commit names it by
``part_id``, ``offset`` and ``size``. Commit entries never carry ``sha512`` (uploaded
parts carry ``sha1``), which keeps Box's all-or-none ``sha512`` rule. When the plan
endpoint is missing (404 or 405 while the session is alive) the client remembers it
(``BoxClient.plan_unavailable``) and sends every part from then on; when Box refuses
a plan (any other 4xx, or a malformed answer) or keeps failing, this upload sends
the rest of its parts. A version whose every part is a hit is Box's "file did not
change": the commit answers 202 without ``Retry-After`` and no version is made; the
result is the file's current version, with every part reused.

Resume state goes in and out as plain values through
:class:`~syncd.box.upload_values.UploadProgress`, which the caller implements (the
daemon keeps it in its journal). Parts uploaded to the session are listed on resume and
not sent again; plan hits are not recorded (they cost nothing to ask for again), so a
crash mid-delta resends at most the parts that were in flight. Nothing here knows
about watched folders or the journal.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import io
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..logs import get_logger
from .client import BoxClient, validate_id, validate_name
from .errors import BoxAPIError, IntegrityError, OutcomeUnknown, SourceChanged, UploadCancelled
from .heartbeat import beat, pause
from .trusted_urls import UntrustedURL
from .upload_base import UploadBase, UploadTarget, single_entry
from .upload_source import UploadSource, ensure_unchanged
from .upload_values import (
    DEFAULT_CONCURRENCY,
    OnBytes,
    SavedSession,
    UploadedFile,
    UploadedPart,
    UploadProgress,
    file_times,
)

log = get_logger(__name__)


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


@dataclass(frozen=True)
class _Part:
    """A part ready for the commit, and how it got there."""

    part: UploadedPart
    reused: bool  # a plan hit: Box already held these bytes


@dataclass(frozen=True)
class _PartsDone:
    parts: list[UploadedPart]
    sha1: str
    reused: int
    bytes_reused: int


class _PartBody(io.BytesIO):
    """A part's bytes as a streamed request body: every block handed to the socket is a heartbeat."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)  # shares `data` (no copy) as long as nothing writes
        self._length = len(data)

    def __len__(self) -> int:  # requests sends Content-Length from it
        return self._length

    def read(self, size: int | None = -1) -> bytes:
        beat()
        return super().read(size)


class _Planner:
    """Asks the session's plan endpoint whether Box already holds a part; stops asking when it cannot help."""

    def __init__(self, client: BoxClient, session: SavedSession) -> None:
        self.client = client
        self.session = session
        self.active = not self.client.plan_unavailable

    def hit(self, offset: int, data: bytes) -> UploadedPart | None:
        """The stored part Box names for these bytes, or None (send them)."""
        if not self.active:
            return None
        sha512 = hashlib.sha512(data).hexdigest()
        wanted = {"offset": offset, "size": len(data), "sha512": sha512}
        try:
            # A plan changes nothing on Box: repeating it after a lost answer is harmless.
            answer = self.client.transport.request_json("POST", self.session.plan_url, json={"parts": [wanted]},
                                                        replay_safe=True)
        except BoxAPIError as exc:
            self._refused(exc)
            return None
        hits = answer.get("hits") if isinstance(answer, Mapping) else None
        if not isinstance(hits, list) or not isinstance(answer.get("misses"), list):
            self._stop("the plan answer has no hits/misses lists")
            return None
        for raw in hits:
            if (isinstance(raw, Mapping) and raw.get("offset") == offset and raw.get("size") == len(data)
                    and str(raw.get("sha512", sha512)).lower() == sha512 and raw.get("part_id")):
                return UploadedPart(str(raw["part_id"]), offset, len(data), "")
        return None

    def _refused(self, exc: BoxAPIError) -> None:
        if exc.status == 410:
            raise _SessionGone() from exc
        if exc.status in (404, 405):
            if exc.status == 404 and not self._session_alive():
                raise _SessionGone() from exc
            # The session is there but its plan endpoint is not: this Box does not plan. Remember it.
            self.client.plan_unavailable = True
            self._stop("the plan endpoint is missing", exc)
            return
        if exc.status in (401, 403):
            raise exc  # the credentials or the file: sending parts would fail the same way
        self._stop("Box refused the plan", exc)

    def _session_alive(self) -> bool:
        try:
            self.client.transport.request_json("GET", self.session.status_url)
        except BoxAPIError as exc:
            if exc.status in (404, 410):
                return False
            raise
        return True

    def _stop(self, reason: str, exc: BoxAPIError | None = None) -> None:
        if not self.active:
            return
        self.active = False
        log.info("upload_plan_skipped", session_id=self.session.session_id, reason=reason,
                 status=exc.status if exc else None, error_code=exc.code if exc else None,
                 request_id=exc.request_id if exc else None, detail="the remaining parts are sent in full")


class ChunkedUpload(UploadBase):
    """An upload session: parts read once from the source, hashed in the same pass,
    sent in parallel (``concurrency`` parts in flight at most), committed with the
    whole-file digest; a new version sends only the parts Box lacks (``delta``).
    Resumable through ``progress``.
    """

    def __init__(self, client: BoxClient, source: UploadSource | str | os.PathLike[str],
                 parent_folder_id: str | None, name: str, *, existing_file_id: str | None = None,
                 etag: str | None = None, sha1: str | None = None, progress: UploadProgress | None = None,
                 on_bytes: OnBytes | None = None, concurrency: int = DEFAULT_CONCURRENCY,
                 commit_deadline: float = 900.0, parts_mismatch_window: float = 10.0,
                 sleep: Callable[[float], None] = time.sleep, cancel: threading.Event | None = None,
                 delta: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(client, source, UploadTarget(parent_folder_id, name, existing_file_id, etag), on_bytes)
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.expected_sha1 = sha1.lower() if sha1 else None
        self.progress = progress
        self.concurrency = concurrency
        self.commit_deadline = commit_deadline
        self.parts_mismatch_window = parts_mismatch_window
        self._sleep = sleep
        self._clock = clock  # times the commit's deadlines; with ``sleep``, a test's fake time
        # Set by the caller (e.g. a daemon shutting down): no new part is started,
        # parts in flight finish and are recorded, and UploadCancelled is raised.
        self.cancel = cancel
        #: Plan each part of a new version and send only what Box lacks.
        self.delta = delta

    # public --------------------------------------------------------------------------

    def _run(self) -> UploadedFile:
        """Upload (resuming a saved session when there is one) and commit."""
        size = self.source.size
        saved = self.progress.load() if self.progress is not None else None
        session, remote = self._resume(saved, size)
        if saved is not None and session is None:
            # The saved session is gone: maybe because our commit went through before a
            # crash. Box holding our bytes already means done (no second version).
            own = self._find_own(self._local_sha1())
            if own is not None:
                return own
        for _ in range(3):
            if session is None:
                created = self._create_session(size)
                if isinstance(created, UploadedFile):
                    return created
                session, remote = created, {}
            try:
                done = self._send_parts(session, remote)
                result = self._commit(session, done.parts, done.sha1)
                return result.with_reuse(done.reused, done.bytes_reused)
            except _SessionGone:
                self._discarded()
                session = None
            except SourceChanged:
                self._abandon(session)
                raise
        raise BoxAPIError(410, "session_expired", f"upload sessions for {self.label} kept expiring")

    def abort(self, session: SavedSession) -> None:
        """Abandon ``session`` on Box (DELETE); a session already gone is fine."""
        abort_session(self.client, session)

    def _local_sha1(self) -> str:
        """The SHA-1 the caller queued the file with, else a read pass over the source.

        Only reconciliation needs this pass (a saved session found gone, a 409 on create):
        the upload itself hashes while it reads its parts.
        """
        return self.expected_sha1 or self._sha1_of_source()

    # session lifecycle ---------------------------------------------------------------

    def _discarded(self) -> None:
        if self.progress is not None:
            self.progress.session_discarded()

    def _abandon(self, session: SavedSession | None) -> None:
        if session is not None:
            self.abort(session)
        self._discarded()

    def _untrusted(self, session: SavedSession) -> UntrustedURL | None:
        for url in session.urls:
            try:
                self.client.transport.trusted.check(url)
            except UntrustedURL as exc:
                return exc
        return None

    def _resume(self, saved: SavedSession | None, file_size: int
                ) -> tuple[SavedSession | None, dict[int, UploadedPart]]:
        if saved is None:
            return None, {}
        refused = self._untrusted(saved)
        if refused is not None:
            # Never send the token to a stored URL we would not accept from Box now: start afresh.
            log.warning("upload_session_url_refused", session_id=saved.session_id, url=refused.url,
                        reason=refused.reason, detail="the saved session is dropped; a new one is created")
            self._discarded()
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
        refused = self._untrusted(session)
        if refused is not None:
            raise refused  # before it is saved for a resume
        if self.progress is not None:
            self.progress.session_created(session)
        return session

    # parts ---------------------------------------------------------------------------

    def _send_parts(self, session: SavedSession, remote: Mapping[int, UploadedPart]) -> _PartsDone:
        """Read every part once, hash it, plan and send what Box lacks; return all parts and the file SHA-1."""
        source = self.source
        planner = _Planner(self.client, session) if self.delta and self.target.existing_file_id else None
        whole = hashlib.sha1()
        done: list[_Part] = []
        done_lock = threading.Lock()
        slots = threading.BoundedSemaphore(self.concurrency)  # bounds parts held in memory
        futures: list[Future[_Part]] = []
        failed = threading.Event()
        cancelled = False

        def finished(future: Future[_Part]) -> None:
            slots.release()
            if future.cancelled() or future.exception() is not None:
                failed.set()
                return
            with done_lock:
                done.append(future.result())

        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="box-part") as pool:
            try:
                for offset, length in part_ranges(source.size, session.part_size):
                    slots.acquire()
                    if failed.is_set():
                        slots.release()
                        break
                    if self.cancel is not None and self.cancel.is_set():
                        slots.release()
                        cancelled = True
                        break
                    try:
                        data = source.read_exact(offset, length)
                        ensure_unchanged(source)
                    except BaseException:
                        slots.release()
                        raise
                    whole.update(data)  # the whole-file SHA-1, from the bytes that are sent
                    stored = remote.get(offset)
                    if stored is not None:
                        slots.release()
                        if stored.size != length or (
                                stored.sha1 and stored.sha1.lower() != hashlib.sha1(data).hexdigest()):
                            raise SourceChanged(self.label, f"part at offset {offset} differs from the stored one")
                        with done_lock:
                            done.append(_Part(stored, reused=False))
                        self.heartbeat.sent(length)
                        continue
                    # Each part runs in a copy of this context: its waits beat this upload's heartbeat.
                    future = pool.submit(contextvars.copy_context().run, self._part, session, offset, data, planner)
                    future.add_done_callback(finished)
                    futures.append(future)
                    del data  # only the worker holds the part now
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
            raise UploadCancelled(self.label)
        sha1 = whole.hexdigest()
        ensure_unchanged(source)  # a write (or growth) after the last part was read
        if self.expected_sha1 is not None and sha1 != self.expected_sha1:
            raise SourceChanged(self.label, "content differs from the SHA-1 it was queued with")
        done.sort(key=lambda item: item.part.offset)
        if len(done) != session.total_parts:
            raise IntegrityError("parts uploaded", session.total_parts, len(done))
        reused = [item.part for item in done if item.reused]
        return _PartsDone([item.part for item in done], sha1, len(reused), sum(p.size for p in reused))

    def _part(self, session: SavedSession, offset: int, data: bytes, planner: _Planner | None) -> _Part:
        """One part, in a worker: a plan hit when Box already holds it, else sent."""
        if planner is not None:
            hit = planner.hit(offset, data)
            if hit is not None:
                self.heartbeat.beat()
                return _Part(hit, reused=True)
        return _Part(self._put_part(session, offset, data), reused=False)

    def _put_part(self, session: SavedSession, offset: int, data: bytes) -> UploadedPart:
        digest = hashlib.sha1(data).digest()
        sha1_hex = digest.hex()
        headers = {
            "Content-Type": "application/octet-stream",
            "Digest": sha_digest_header(digest),
            "Content-Range": content_range(offset, len(data), session.file_size),
        }
        try:
            body = self.client.transport.request_json(
                "PUT", session.upload_part_url, body_factory=lambda: (_PartBody(data), {}), headers=headers)
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
        self.heartbeat.sent(len(data))
        return part

    # commit --------------------------------------------------------------------------

    def _commit(self, session: SavedSession, parts: list[UploadedPart], sha1: str) -> UploadedFile:
        attributes = file_times(self.source.fstat())
        if self.target.existing_file_id:
            attributes.pop("content_created_at")
        body = {"parts": [part.to_json() for part in parts], "attributes": attributes}
        headers = {"Digest": sha_digest_header(bytes.fromhex(sha1)), "Content-Type": "application/json"}
        if self.target.etag and self.target.existing_file_id:
            headers["If-Match"] = self.target.etag
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            elapsed = self._clock() - started
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
                    pause(min(5.0, 0.5 * attempt), self._sleep)
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
                    pause(self.client.transport.backoff(min(attempt - 1, 6), exc.retry_after), self._sleep)
                    continue
                raise
            if response.status_code == 202:
                retry_after = BoxAPIError.from_response(response).retry_after
                if retry_after is None and self.target.existing_file_id:
                    # Box's "the file did not change" (boxsdk: upload_big_file_version returns None):
                    # no new version; the file as it is holds our bytes.
                    own = self._find_own(sha1)
                    if own is not None:
                        return own
                wait_s = retry_after if retry_after is not None else min(10.0, 1.0 * attempt)
                if elapsed + wait_s > self.commit_deadline:
                    raise BoxAPIError(202, "commit_pending",
                                      f"commit still pending after {elapsed:.0f}s (deadline {self.commit_deadline}s)",
                                      method="POST", url=session.commit_url, retry_after=retry_after)
                pause(wait_s, self._sleep)
                continue
            return self._checked(single_entry(response.json(), "commit"), sha1)


def abort_session(client: BoxClient, session: SavedSession) -> None:
    """DELETE an upload session that will never be committed (best effort: it expires anyway)."""
    try:
        client.transport.request("DELETE", session.abort_url, ok=(200, 204, 404, 410))
    except BoxAPIError as exc:
        log.info("upload_session_abort_failed", session_id=session.session_id, status=exc.status,
                 error_code=exc.code, request_id=exc.request_id, detail="the session expires on its own")
