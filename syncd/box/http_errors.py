"""What goes wrong on the wire, in syncd.box's terms (the transport's error mapping).

:func:`mapped_send_errors` wraps one send and turns what requests/urllib3 raise
into :class:`~syncd.box.errors.BoxConnectionError` (no answer; safe to send
again) or :class:`~syncd.box.errors.OutcomeUnknown` (no answer, and the body may
have been applied); :func:`accepted` turns an answer the caller does not accept
into :class:`~syncd.box.errors.BoxAPIError` with Box's code and request id.
Modelled on httpx's ``map_httpcore_exceptions``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import requests
import urllib3.exceptions

from .errors import BoxAPIError, BoxConnectionError, OutcomeUnknown, redact_url

# Mistakes in the request itself: retrying cannot help.
_CALLER_ERRORS = (
    requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader, requests.exceptions.URLRequired,
)


def body_may_have_been_sent(exc: requests.RequestException) -> bool:
    """False only when the request certainly never reached the server."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = exc.args[0] if exc.args else None
        inner = getattr(reason, "reason", reason)
        if isinstance(inner, (urllib3.exceptions.NewConnectionError, ConnectionRefusedError)):
            return False
        if isinstance(reason, urllib3.exceptions.MaxRetryError) and isinstance(
            reason.reason, urllib3.exceptions.NewConnectionError
        ):
            return False
    return True


@contextmanager
def mapped_send_errors(method: str, url: str, *, replay_safe: bool) -> Iterator[None]:
    """Map the failures of one send to syncd.box's errors.

    - a malformed request (bad URL, scheme or header): ValueError;
    - no answer, the body may have reached Box, and the request is not safe to
      repeat: OutcomeUnknown, so that the caller looks at Box before sending again;
    - any other failure to get an answer: BoxConnectionError (``cause`` names it).

    Nothing of the request beyond its method and its URL without query is kept.
    """
    try:
        yield
    except _CALLER_ERRORS as exc:
        raise ValueError(f"bad request to {redact_url(url)}: {type(exc).__name__}") from None
    except requests.RequestException as exc:
        cause = type(exc).__name__
        if body_may_have_been_sent(exc) and not replay_safe:
            raise OutcomeUnknown(method, url, cause) from None
        raise BoxConnectionError(method, url, cause) from None


def accepted(response: requests.Response, ok: Iterable[int] | None) -> requests.Response:
    """``response`` if its status is one the caller accepts (``ok``; default: any 2xx), else
    BoxAPIError built from Box's error body (status, code, message, request id, Retry-After)."""
    status = response.status_code
    if (200 <= status < 300) if ok is None else status in frozenset(ok):
        return response
    raise BoxAPIError.from_response(response)
