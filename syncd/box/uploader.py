"""Uploads: :class:`Uploader` picks a direct or a chunked upload by size.

Resume state goes in and out as plain values through :class:`UploadProgress`,
which the caller implements (the daemon keeps it in its journal). Nothing
here knows about watched folders or the journal.
"""

from __future__ import annotations

import os
import threading

from .chunked_upload import ChunkedUpload, abort_session
from .client import BoxClient, validate_id, validate_name
from .direct_upload import DirectUpload
from .upload_values import (
    BOX_CHUNKED_MINIMUM,
    DEFAULT_CHUNKED_THRESHOLD,
    DEFAULT_CONCURRENCY,
    OnBytes,
    SavedSession,
    UploadedFile,
    UploadProgress,
)


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
