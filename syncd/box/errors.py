"""Box errors: one exception type for Box's answers, a classification the rest of
syncd can act on, and the few exceptions the upload layer raises on its own.

Nothing here ever holds a token or a client secret: exceptions carry the HTTP
method, a URL without its query string, and what Box said.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

import requests


class ErrorClass(enum.Enum):
    """What the caller should do about a failed request."""

    RETRY_LATER = "retry_later"  # transient: rate limit, 5xx, busy name, expired session
    REFRESH_AUTH = "refresh_auth"  # the access token was refused even after one refresh
    NAME_CONFLICT = "name_conflict"  # an item with that name exists (see BoxAPIError.conflicts)
    QUARANTINE = "quarantine"  # Box can never take this file as it is (its name or its size): set it aside
    QUOTA = "quota"  # the account's storage is full: no upload works until space is freed, then all do
    PERMANENT_FILE = "permanent_file"  # this upload was refused and repeating it cannot help (etag, locked)
    PERMANENT_CONFIG = "permanent_config"  # nothing will work until the configuration changes


# Codes whose meaning does not follow from the status alone.
_CODE_CLASSES: dict[str, ErrorClass] = {
    "item_name_in_use": ErrorClass.NAME_CONFLICT,
    "name_temporarily_reserved": ErrorClass.RETRY_LATER,
    "operation_blocked_temporary": ErrorClass.RETRY_LATER,
    "session_conflict": ErrorClass.RETRY_LATER,
    "rate_limit_exceeded": ErrorClass.RETRY_LATER,
    "too_many_requests": ErrorClass.RETRY_LATER,
    "parts_mismatch": ErrorClass.RETRY_LATER,
    # The body we sent did not hash to the digest we computed: the file is
    # being written to, or bytes were damaged on the way. Hash again later.
    "digest_mismatch": ErrorClass.RETRY_LATER,
    "bad_digest": ErrorClass.RETRY_LATER,
    "session_expired": ErrorClass.RETRY_LATER,
    "upload_failed": ErrorClass.RETRY_LATER,
    "item_name_invalid": ErrorClass.QUARANTINE,
    "item_name_too_long": ErrorClass.QUARANTINE,
    "file_size_limit_exceeded": ErrorClass.QUARANTINE,
    "request_entity_too_large": ErrorClass.QUARANTINE,
    "file_size_too_small": ErrorClass.PERMANENT_FILE,
    "precondition_failed": ErrorClass.PERMANENT_FILE,
    "storage_limit_exceeded": ErrorClass.QUOTA,
    "access_denied_insufficient_permissions": ErrorClass.PERMANENT_CONFIG,
    "insufficient_scope": ErrorClass.PERMANENT_CONFIG,
    "forbidden": ErrorClass.PERMANENT_CONFIG,
    "access_denied_item_locked": ErrorClass.PERMANENT_FILE,
    "invalid_grant": ErrorClass.PERMANENT_CONFIG,
    "invalid_client": ErrorClass.PERMANENT_CONFIG,
    "unauthorized_client": ErrorClass.PERMANENT_CONFIG,
}


def classify(status: int, code: str | None) -> ErrorClass:
    """Classify a Box error answer by its HTTP status and Box ``code``."""
    if code and code in _CODE_CLASSES:
        return _CODE_CLASSES[code]
    if status == 401:
        return ErrorClass.REFRESH_AUTH
    if status == 429 or status >= 500 or status in (408, 202):
        return ErrorClass.RETRY_LATER
    if status == 409:
        return ErrorClass.NAME_CONFLICT
    if status in (404, 405, 403):
        # A missing or forbidden parent folder: every file under it fails the same way.
        return ErrorClass.PERMANENT_CONFIG
    if status == 410:
        return ErrorClass.RETRY_LATER
    return ErrorClass.PERMANENT_FILE


def redact_url(url: str) -> str:
    """The URL without query string or fragment (no tokens hide there, but keep it short)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


@dataclass(frozen=True)
class Conflict:
    """The existing item named in a 409 ``item_name_in_use`` answer."""

    id: str
    type: str
    name: str | None = None
    sha1: str | None = None
    etag: str | None = None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "Conflict":
        version = raw.get("file_version") or {}
        sha1 = raw.get("sha1") or (version.get("sha1") if isinstance(version, Mapping) else None)
        return cls(
            id=str(raw.get("id", "")),
            type=str(raw.get("type", "")),
            name=raw.get("name"),
            sha1=sha1,
            etag=None if raw.get("etag") is None else str(raw.get("etag")),
        )


def parse_conflicts(context_info: Mapping[str, Any] | None) -> list[Conflict]:
    """Read ``context_info.conflicts`` in both forms Box uses: one object (files) or an array (folders)."""
    if not isinstance(context_info, Mapping):
        return []
    raw = context_info.get("conflicts")
    if isinstance(raw, Mapping):
        return [Conflict.from_json(raw)]
    if isinstance(raw, list):
        return [Conflict.from_json(item) for item in raw if isinstance(item, Mapping)]
    return []


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (Box sends integers; accept floats; ignore HTTP dates)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return seconds


class BoxError(Exception):
    """Base class of every error raised by syncd.box; each carries an ``error_class``."""

    error_class: ErrorClass = ErrorClass.RETRY_LATER


class BoxAPIError(BoxError):
    """Box answered with an error status.

    Carries the HTTP ``status``, Box's ``code`` and ``message``, ``request_id``,
    ``context_info`` and ``retry_after`` (seconds), plus ``error_class`` saying
    what the caller should do.
    """

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        *,
        method: str = "",
        url: str = "",
        request_id: str | None = None,
        context_info: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.method = method
        self.url = redact_url(url) if url else ""
        self.request_id = request_id
        self.context_info: dict[str, Any] = dict(context_info) if isinstance(context_info, Mapping) else {}
        self.retry_after = retry_after
        super().__init__(str(self))

    @property
    def error_class(self) -> ErrorClass:
        return classify(self.status, self.code)

    @property
    def conflicts(self) -> list[Conflict]:
        """Existing items in the way of a 409 (object and array forms both accepted)."""
        return parse_conflicts(self.context_info)

    def __str__(self) -> str:
        where = f" ({self.method} {self.url})" if self.method else ""
        rid = f" request_id={self.request_id}" if self.request_id else ""
        return f"Box {self.status} {self.code or '-'}: {self.message}{where}{rid}"

    def __repr__(self) -> str:
        return f"BoxAPIError(status={self.status}, code={self.code!r}, request_id={self.request_id!r})"

    @classmethod
    def from_response(cls, response: requests.Response) -> "BoxAPIError":
        """Build from an error response: Box's JSON error body, the OAuth error body, or nothing."""
        body: Any = None
        try:
            if response.content:
                body = json.loads(response.content)
        except ValueError:
            body = None
        code: str | None = None
        message = response.reason or "error"
        request_id = response.headers.get("box-request-id")
        context_info: Mapping[str, Any] | None = None
        if isinstance(body, Mapping):
            if "error" in body and "code" not in body:  # OAuth2Error shape from the token endpoint
                code = str(body.get("error"))
                message = str(body.get("error_description") or code)
            else:
                code = body.get("code")
                message = str(body.get("message") or message)
                request_id = body.get("request_id") or request_id
                context_info = body.get("context_info")
        elif response.status_code == 401:
            code = "unauthorized"
        request = response.request
        return cls(
            response.status_code,
            code,
            message,
            method=(request.method or "") if request is not None else "",
            url=response.url or "",
            request_id=request_id,
            context_info=context_info,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )


class AuthError(BoxError):
    """Getting an access token failed (bad credentials, spent refresh token, bad key).

    ``status`` and ``code`` come from the token endpoint; ``error_class`` is
    PERMANENT_CONFIG for credential problems and RETRY_LATER for transient ones.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        self.status = status
        self.code = code
        super().__init__(message)

    @property
    def error_class(self) -> ErrorClass:
        if self.status is None or self.status == 429 or self.status >= 500:
            return ErrorClass.RETRY_LATER
        return ErrorClass.PERMANENT_CONFIG


class BoxConnectionError(BoxError):
    """No answer after every retry, for a request that is safe to repeat (retry later)."""

    error_class = ErrorClass.RETRY_LATER

    def __init__(self, method: str, url: str, cause: str) -> None:
        self.method = method
        self.url = redact_url(url)
        self.cause = cause
        super().__init__(f"{method} {self.url}: connection failed: {cause}")


class OutcomeUnknown(BoxError):
    """The request may have been applied although its answer was lost.

    Raised instead of blindly repeating a non-idempotent request (a direct
    upload, a commit): the upload layer looks at Box to find out what happened.
    """

    error_class = ErrorClass.RETRY_LATER

    def __init__(self, method: str, url: str, cause: str) -> None:
        self.method = method
        self.url = redact_url(url)
        self.cause = cause
        super().__init__(f"{method} {self.url}: outcome unknown: {cause}")


class SourceChanged(BoxError):
    """The local file changed while it was being uploaded; nothing was committed."""

    error_class = ErrorClass.RETRY_LATER

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: changed during upload: {reason}")


class UploadCancelled(BoxError):
    """The caller asked the upload to stop; parts in flight finished and were recorded.

    Nothing was committed or aborted: the saved session resumes the upload later.
    """

    error_class = ErrorClass.RETRY_LATER

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"{path}: upload stopped on request; it resumes from its saved session")


class IntegrityError(BoxError):
    """Box reports content that does not match what we sent (SHA-1, part offset or size)."""

    error_class = ErrorClass.RETRY_LATER

    def __init__(self, what: str, expected: object, actual: object) -> None:
        self.what = what
        self.expected = expected
        self.actual = actual
        super().__init__(f"{what}: expected {expected!r}, Box reported {actual!r}")
