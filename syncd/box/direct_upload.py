"""Direct upload: one multipart POST, the body streamed from the source.

Two read passes, on purpose: ``Content-MD5`` (which carries the SHA-1) is a header,
so the SHA-1 must be known before the body is sent, and it is what makes Box
refuse a body that is not the bytes that were hashed, before any version exists.
Hashing while streaming instead would let a file that changed mid-send become a
live version first and a mismatch only after. Direct uploads are small (below the
chunked threshold, 50 MiB by default), so the second pass usually comes from the
page cache; a caller that already hashed the source passes ``sha1`` and the upload
reads it once.
"""

from __future__ import annotations

import json
import os
from typing import IO, Any, Callable, Mapping

from requests_toolbelt.multipart.encoder import MultipartEncoder, MultipartEncoderMonitor

from .client import BoxClient, validate_id
from .errors import BoxAPIError, OutcomeUnknown, SourceChanged
from .heartbeat import pause
from .upload_base import UploadBase, UploadTarget, own_conflict_id, single_entry
from .upload_source import UploadSource
from .upload_values import OnBytes, UploadedFile, file_times


class DirectUpload(UploadBase):
    """One multipart POST (``attributes`` first, the file streamed from the source).

    ``content-md5`` carries the SHA-1 so Box rejects bytes that do not match
    it; the answer's SHA-1 is checked too. ``preflight``: ask Box first whether
    the upload would be accepted (new files only); :class:`~syncd.box.Uploader`
    decides by size.
    """

    def __init__(self, client: BoxClient, source: UploadSource | str | os.PathLike[str],
                 parent_folder_id: str | None, name: str, *, existing_file_id: str | None = None,
                 etag: str | None = None, sha1: str | None = None, on_bytes: OnBytes | None = None,
                 preflight: bool = True, max_unknown_outcomes: int = 3) -> None:
        super().__init__(client, source, UploadTarget(parent_folder_id, name, existing_file_id, etag), on_bytes)
        self.sha1 = sha1
        self.preflight = preflight
        #: How many lost answers are resolved (look at Box, then send again) before giving up.
        self.max_unknown_outcomes = max(1, max_unknown_outcomes)

    def _run(self) -> UploadedFile:
        source = self.source
        sha1 = self._sha1_of_source() if self.sha1 is None else self.sha1.lower()
        url = self._upload_url(sha1, source.size)
        if isinstance(url, UploadedFile):
            return url
        attributes: dict[str, Any] = {"name": self.target.name, **file_times(source.fstat())}
        if self.target.existing_file_id:
            attributes.pop("content_created_at")  # a version has no creation time of its own
        else:
            attributes["parent"] = {"id": self.target.parent_folder_id}
        headers = {"Content-MD5": sha1}
        if self.target.etag and self.target.existing_file_id:
            headers["If-Match"] = self.target.etag
        bodies: list[IO[bytes]] = []
        try:
            return self._post(url, attributes, headers, sha1, bodies)
        finally:
            for body in bodies:
                body.close()

    def _post(self, url: str, attributes: Mapping[str, Any], headers: Mapping[str, str], sha1: str,
              bodies: list[IO[bytes]]) -> UploadedFile:
        transport = self.client.transport
        unknown = server_errors = 0
        while True:
            try:
                response = transport.request(
                    "POST", url, body_factory=self._body(attributes, bodies), headers=headers,
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
                    change = self.source.check_unchanged()
                    if change is not None or self.sha1 is not None:
                        reason = str(change) if change is not None else "bytes differ from the given SHA-1"
                        raise SourceChanged(self.label, reason) from exc
                if exc.status < 500:
                    raise
                # A 5xx write may have been applied anyway: look, then send again.
                server_errors += 1
                own = self._find_own(sha1)
                if own is not None:
                    return own
                if server_errors >= transport.retry.max_attempts:
                    raise
                pause(transport.backoff(server_errors - 1, exc.retry_after))
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
        if not answer.upload_url:
            return default
        # Box may send the upload to another host: the token goes along only to a trusted one.
        return self.client.transport.trusted.check(answer.upload_url)

    def _body(self, attributes: Mapping[str, Any],
              bodies: list[IO[bytes]]) -> Callable[[], tuple[Any, Mapping[str, str]]]:
        size = self.source.size

        def build() -> tuple[Any, Mapping[str, str]]:
            # A fresh encoder and stream per attempt: a streamed body cannot be rewound.
            stream = self.source.stream(0, size)
            bodies.append(stream)  # type: ignore[arg-type]
            encoder = MultipartEncoder(fields=[
                ("attributes", json.dumps(attributes)),
                ("file", (self.target.name, stream, "application/octet-stream")),
            ])
            reported = [0]

            def monitor_callback(monitor: MultipartEncoderMonitor) -> None:
                sent = min(monitor.bytes_read, size)
                if sent > reported[0]:
                    self.heartbeat.sent(sent - reported[0])
                    reported[0] = sent

            return MultipartEncoderMonitor(encoder, monitor_callback), {"Content-Type": encoder.content_type}
        return build
