"""Direct upload: one multipart POST, the file streamed from disk."""

from __future__ import annotations

import json
import os
import time
from typing import IO, Any, Callable, Mapping

from requests_toolbelt.multipart.encoder import MultipartEncoder, MultipartEncoderMonitor

from .client import BoxClient, validate_id
from .errors import BoxAPIError, OutcomeUnknown, SourceChanged
from .upload_base import UploadBase, UploadTarget, own_conflict_id, single_entry
from .upload_values import OnBytes, SourceFingerprint, UploadedFile, file_times, hash_file


class DirectUpload(UploadBase):
    """One multipart POST (``attributes`` first, file streamed from disk).

    ``content-md5`` carries the SHA-1 so Box rejects bytes that do not match
    it; the answer's SHA-1 is checked too.
    """

    def __init__(self, client: BoxClient, path: str | os.PathLike[str], parent_folder_id: str | None, name: str,
                 *, existing_file_id: str | None = None, etag: str | None = None, sha1: str | None = None,
                 on_bytes: OnBytes | None = None, preflight: bool = True, max_unknown_outcomes: int = 3) -> None:
        super().__init__(client, path, UploadTarget(parent_folder_id, name, existing_file_id, etag), on_bytes)
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
            return self._checked(single_entry(response.json(), "upload"), sha1)

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
            own_id = own_conflict_id(exc, sha1)
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
