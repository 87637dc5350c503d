"""Uploads: :class:`Uploader` picks a direct or a chunked upload by size, and whether a
direct upload asks Box first (preflight).

Resume state goes in and out as plain values through :class:`UploadProgress`,
which the caller implements (the daemon keeps it in its journal). Nothing
here knows about watched folders or the journal.

One round trip per small file
-----------------------------
A preflight (``OPTIONS /files/content``) costs one round trip whatever the size, and
pays off only when Box refuses the upload (a name in use, size or quota), where it
saves sending the body; without it the same 409 arrives after the body, and the
409/own-upload reconciliation is the same either way. Measured on this machine against
``syncd emulator --latency-ms 40`` (median of 7 direct uploads of new files; ms):

=========  ======================  ======================  ==========================  ==========================
body       loopback, no preflight  loopback, preflight     12 MB/s link, no preflight  12 MB/s link, preflight
=========  ======================  ======================  ==========================  ==========================
64 KiB     44                      87                      44                          87
256 KiB    46                      89                      47                          88
1 MiB      48                      89                      88                          126
4 MiB      62                      103                     351                         394
16 MiB     149                     206                     1415                        1460
48 MiB     352                     390                     -                           -
=========  ======================  ======================  ==========================  ==========================

(12 MB/s: ``--bandwidth 12000000``, the WAN setting of ``bench/client_upload.py``.)
The preflight always adds one round trip (38-57 ms). A body below 1 MiB costs at
most about one round trip to send even on the 12 MB/s link (1 MiB: 88 - 44 = 44 ms),
so skipping the preflight never loses more than it would have cost, and saves a
round trip on every accepted upload: half the time of a small file. From 1 MiB up a
refused body wastes several round trips' worth (a full account refuses every
retry), so the preflight is kept; it costs at most 12 % of such an upload. Hence
``preflight_from = PREFLIGHT_FROM = 1 MiB`` (``None``: never, ``0``: always).
New versions never preflight (their URL is fixed and Box checks them on upload).
"""

from __future__ import annotations

import os
import threading

from .chunked_upload import ChunkedUpload, abort_session
from .client import BoxClient, validate_id, validate_name
from .direct_upload import DirectUpload
from .upload_source import UploadSource, opened
from .upload_values import (
    BOX_CHUNKED_MINIMUM,
    DEFAULT_CHUNKED_THRESHOLD,
    DEFAULT_CONCURRENCY,
    MiB,
    OnBytes,
    SavedSession,
    UploadedFile,
    UploadProgress,
)

#: Direct uploads of at least this many bytes ask Box first (see the module docstring).
PREFLIGHT_FROM = 1 * MiB


class Uploader:
    """Uploads a file to Box, direct or chunked by size, as a new file or a new version.

    ``chunked_threshold``: files of at least this many bytes go through an upload
    session (default 50 MiB; never below Box's 20,000,000-byte minimum).
    ``preflight_from``: direct uploads of new files of at least this size ask Box
    first (None: never). ``delta``: new versions sent through a session send only
    the parts Box does not hold already (:mod:`~syncd.box.chunked_upload`).
    """

    def __init__(self, client: BoxClient, *, chunked_threshold: int = DEFAULT_CHUNKED_THRESHOLD,
                 concurrency: int = DEFAULT_CONCURRENCY, preflight_from: int | None = PREFLIGHT_FROM,
                 commit_deadline: float = 900.0, delta: bool = True) -> None:
        if chunked_threshold < BOX_CHUNKED_MINIMUM:
            raise ValueError(f"chunked_threshold must be at least {BOX_CHUNKED_MINIMUM} (Box's minimum "
                             f"for upload sessions), got {chunked_threshold}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if preflight_from is not None and preflight_from < 0:
            raise ValueError(f"preflight_from must be >= 0 or None, got {preflight_from}")
        self.client = client
        self.chunked_threshold = chunked_threshold
        self.concurrency = concurrency
        self.preflight_from = preflight_from
        self.commit_deadline = commit_deadline
        self.delta = delta

    def upload(self, source: UploadSource | str | os.PathLike[str], parent_folder_id: str | None, name: str, *,
               existing_file_id: str | None = None, etag: str | None = None, sha1: str | None = None,
               progress: UploadProgress | None = None, on_bytes: OnBytes | None = None,
               cancel: threading.Event | None = None) -> UploadedFile:
        """Upload ``source`` as ``name`` into ``parent_folder_id`` (or as a new version of
        ``existing_file_id``, guarded by ``etag`` when given) and return what Box stored.

        ``source``: an open :class:`~syncd.box.UploadSource` (every byte hashed and sent
        comes from it), or a path, opened once for this upload. ``sha1``: the SHA-1 the
        caller hashed from the same source; the upload fails with SourceChanged if the
        bytes differ. ``progress``: resume state for chunked uploads (a saved session
        forces the chunked path). ``on_bytes(n)``: called with n > 0 as Box acknowledges
        bytes (from worker threads for chunked uploads; a retried attempt may report its
        bytes again), and with 0 as a heartbeat at least every few seconds while the
        upload hashes or waits (see :mod:`~syncd.box.heartbeat`). ``cancel``: when set, a
        chunked upload starts no further part, lets the parts in flight finish (they are
        recorded through ``progress``) and raises UploadCancelled, keeping the session
        for a later resume; a direct upload is short and runs to its end.

        Raises BoxAPIError (see ``error_class``), SourceChanged, OutcomeUnknown,
        IntegrityError, UntrustedURL or AuthError; OSError when a path cannot be opened.
        """
        validate_name(name)
        if existing_file_id is None:
            if parent_folder_id is None:
                raise ValueError("either parent_folder_id or existing_file_id is required")
            validate_id("parent_folder_id", parent_folder_id)
        with opened(source) as readable:
            saved = progress.load() if progress is not None else None
            if saved is not None or readable.size >= self.chunked_threshold:
                return ChunkedUpload(
                    self.client, readable, parent_folder_id, name, existing_file_id=existing_file_id, etag=etag,
                    sha1=sha1, progress=progress, on_bytes=on_bytes, concurrency=self.concurrency,
                    commit_deadline=self.commit_deadline, cancel=cancel, delta=self.delta,
                ).run()
            preflight = self.preflight_from is not None and readable.size >= self.preflight_from
            return DirectUpload(
                self.client, readable, parent_folder_id, name, existing_file_id=existing_file_id, etag=etag,
                sha1=sha1, on_bytes=on_bytes, preflight=preflight,
            ).run()

    def discard(self, session: SavedSession) -> None:
        """Abandon a saved session for good (e.g. the local file is gone): DELETE it on Box."""
        abort_session(self.client, session)
