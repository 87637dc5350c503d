"""syncd.box: a Box API client library (credentials, transport, errors, folders, uploads).

It knows HTTP, Box's auth methods, Box's errors and upload protocols, and
nothing about watched folders or the journal: resume state goes in and out as
plain values through :class:`UploadProgress`.

Typical use::

    auth = DeveloperTokenAuth("dev-token")
    client = BoxClient(auth, api_url="http://127.0.0.1:8765/2.0",
                       upload_url="http://127.0.0.1:8765/api/2.0")
    folder_id = FolderTree(client).ensure("0", ("inbox", "2026"))
    uploaded = Uploader(client).upload("report.pdf", folder_id, "report.pdf")
    # -> UploadedFile(file_id, version_id, sha1, size, etag, name, parts_reused, bytes_reused)
    with PathSource("report.pdf") as source:        # one open for the hash and every byte sent
        Uploader(client).upload(source, None, "report.pdf", existing_file_id=uploaded.file_id)

Public API
----------
Auth: ``DeveloperTokenAuth(token, as_user=None)``;
``OAuthRefreshAuth(client_id, client_secret, TokenStore(path), token_url=...)``
(+ ``OAuthRefreshAuth.from_authorization_code(code, ...)``);
``ClientCredentialsAuth(client_id, client_secret, subject_type=, subject_id=, token_url=...)``;
``JWTAuth.from_config_file(path, user_id=None, token_url=...)`` / ``JWTAuth.from_config(dict)``.

Client: ``BoxClient(auth, api_url=, upload_url=, concurrency=4, timeout=(10, 120),
retry=RetryPolicy(), rate_limits=RateLimits())`` with ``get_current_user()``,
``get_file(id)``, ``update_file(id, changes, etag=None)``, ``delete_file(id, etag=None)``,
``preflight(parent_id, name, size)``, ``get_folder(id)``, ``iter_folder_items(id)``,
``get_folder_items(id)``, ``find_item(folder_id, name, item_type=None)``,
``find_file(folder_id, name)``, ``create_folder(parent_id, name)``.

Folders: ``FolderTree(client, store=None).ensure(parent_id, ("a", "b")) -> folder_id``;
``recreate(parent_id, path, gone_id)`` after a 404 on a resolved folder, ``is_gone(folder_id)``;
resolved ids live in a ``FolderIdStore`` (get/put/forget; ``MemoryFolderIds`` by default).

Uploads: ``Uploader(client, chunked_threshold=50 MiB, concurrency=4, preflight_from=1 MiB,
delta=True).upload(source, parent_folder_id, name, *, existing_file_id=None, etag=None,
sha1=None, progress=None, on_bytes=None, cancel=None) -> UploadedFile``; ``source`` is an
``UploadSource`` (an open file read by offset: ``PathSource(path)``, or the daemon's own) or a
path; lower level ``DirectUpload`` and ``ChunkedUpload``; resume values
``SavedSession``/``UploadedPart`` through the ``UploadProgress`` protocol;
``Uploader.discard(saved_session)`` abandons a saved session on Box. A new version of a
file at or above the chunked threshold plans its parts and sends only those Box lacks
(``UploadedFile.parts_reused``/``bytes_reused``). ``on_bytes(n)``: bytes Box acknowledged,
and ``on_bytes(0)`` heartbeats at least every few seconds while an upload hashes or waits.

Rate limits: ``RateLimits(api_calls_per_minute=950, uploads_per_minute=230,
window_seconds=60)``, kept as sliding windows per Box user by a ``RateLimiter`` (one per
client, shared by every thread) in a ``WindowStore`` (``MemoryWindows`` by default;
``BoxClient(window_store=PostgresWindows(pool, host_id))`` shares them between hosts);
``RateLimiter.learned_limits()`` shows limits a 429 made smaller.

URLs: the bearer token goes only to https URLs on Box's hosts or the configured ones
(plain http only when every configured URL is loopback); others raise ``UntrustedURL``.

Errors: ``BoxAPIError`` (status, code, message, request_id, context_info, retry_after,
``conflicts``), ``AuthError``, ``OutcomeUnknown``, ``SourceChanged``, ``IntegrityError``,
``BoxConnectionError``, ``UntrustedURL``; all subclass ``BoxError`` and carry ``error_class`` (an
``ErrorClass``: RETRY_LATER, REFRESH_AUTH, NAME_CONFLICT, QUARANTINE, QUOTA, PERMANENT_FILE,
PERMANENT_CONFIG), so a caller decides on the class alone, never on Box's codes.

Logs
----
structlog events, with their fields in ``syncd.logs.EVENTS`` (docs/LOGS.md):
``box_request_retrying`` (status, error_code and request_id, or the cause of a send that got
no answer), ``box_token_rejected`` (a 401, one refresh follows), ``box_token_request_retrying``,
``upload_session_abort_failed``, ``box_rate_limit_learned`` (reason ``429`` or
``quiet_window``), ``upload_plan_skipped``, ``upload_session_url_refused``.

Guarantees
----------
- Exactly once: a write whose answer was lost (timeout, reset, 5xx) is not blindly
  sent again; Box is asked first, and a file with our SHA-1 under our name or id
  (409 ``item_name_in_use`` with our SHA-1, 412 after our own version, a committed
  session) is the result. New versions should pass ``etag`` for If-Match.
- A file that changes while it is uploaded raises SourceChanged; its session is
  aborted and nothing is committed.
- One open: the SHA-1 and every byte sent come from one ``UploadSource``; a change seen
  through it (size, mtime, ctime) raises SourceChanged.
- Memory: at most ``concurrency`` parts are held at once; direct uploads stream.
- Secrets (tokens, refresh tokens, client secrets, keys) never appear in logs,
  exceptions or reprs. OAuth refresh tokens are persisted (0600, atomic) before the
  access token they came with is used.
"""

from typing import TYPE_CHECKING

from .chunked_upload import ChunkedUpload
from .client import BoxClient, PreflightResult
from .credentials import (
    AccessToken,
    Auth,
    ClientCredentialsAuth,
    DeveloperTokenAuth,
    JWTAuth,
    OAuthRefreshAuth,
    TokenEndpoint,
    TokenStore,
)
from .direct_upload import DirectUpload
from .errors import (
    AuthError,
    BoxAPIError,
    BoxConnectionError,
    BoxError,
    Conflict,
    ErrorClass,
    IntegrityError,
    OutcomeUnknown,
    SourceChanged,
    UploadCancelled,
    classify,
)
from .folders import FolderIdStore, FolderTree, MemoryFolderIds
from .http_retry import RetryPolicy
from .heartbeat import HEARTBEAT_EVERY
from .ratelimit import MemoryWindows, RateLimiter, RateLimits, WindowStore
from .transport import Transport
from .trusted_urls import TrustedURLs, UntrustedURL
from .upload_source import PathSource, SourceWindow, UploadSource, pread_into
from .upload_values import (
    BOX_CHUNKED_MINIMUM,
    DEFAULT_CHUNKED_THRESHOLD,
    SavedSession,
    SourceFingerprint,
    UploadedFile,
    UploadedPart,
    UploadProgress,
    hash_file,
)
from .uploader import PREFLIGHT_FROM, Uploader

if TYPE_CHECKING:
    from .shared_windows import PostgresWindows

__all__ = [
    "AccessToken", "Auth", "AuthError", "BOX_CHUNKED_MINIMUM", "BoxAPIError", "BoxClient",
    "BoxConnectionError", "BoxError", "ChunkedUpload", "ClientCredentialsAuth", "Conflict",
    "DEFAULT_CHUNKED_THRESHOLD", "DeveloperTokenAuth", "DirectUpload", "ErrorClass",
    "FolderIdStore", "FolderTree", "HEARTBEAT_EVERY", "IntegrityError", "JWTAuth", "MemoryFolderIds",
    "MemoryWindows", "OAuthRefreshAuth", "OutcomeUnknown", "PREFLIGHT_FROM", "PathSource", "PreflightResult",
    "RateLimiter", "RateLimits", "RetryPolicy", "SavedSession", "SourceChanged", "SourceFingerprint",
    "TokenEndpoint", "TokenStore", "Transport", "TrustedURLs", "UntrustedURL", "UploadProgress",
    "SourceWindow", "UploadSource", "pread_into", "UploadedFile", "UploadedPart", "UploadCancelled", "Uploader", "WindowStore",
    "classify", "hash_file",
    "PostgresWindows",  # imported when first asked for (__getattr__)
]


def __getattr__(name: str) -> object:
    # psycopg is imported only when asked for, as by syncd.journal: hosts on SQLite never load it.
    if name == "PostgresWindows":
        from .shared_windows import PostgresWindows

        return PostgresWindows
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
