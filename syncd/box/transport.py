"""HTTP transport for Box: one pooled ``requests.Session``, auth headers, the
client-side rate limiter, and retries with exponential backoff and full jitter
that honour ``Retry-After`` (the policy and its delays are in
:mod:`~syncd.box.http_retry`).

A request whose outcome may be unknown (the body may have reached Box but the
answer was lost) is retried only when it is safe to repeat; otherwise
:class:`~syncd.box.errors.OutcomeUnknown` is raised for the upload layer to
resolve by looking at Box.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import threading
import time
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlsplit

import requests
import requests.adapters
import urllib3.exceptions

from .. import __version__
from .credentials import Auth
from .errors import BoxAPIError, BoxConnectionError, OutcomeUnknown, redact_url
from .http_retry import RETRYABLE_STATUSES, SAFE_METHODS, RetryPolicy, retry_delay
from .ratelimit import RateLimiter

log = logging.getLogger(__name__)

USER_AGENT = f"syncd/{__version__}"


# Path prefixes under which Box serves its APIs; what follows is the endpoint.
_API_PREFIXES = ("/api/2.0/", "/2.0/")


def endpoint_template(method: str, url: str) -> str:
    """``METHOD /path`` with ids replaced by ``{id}``: a bounded name for an endpoint, for metrics.

    ``PUT https://upload.box.com/api/2.0/files/upload_sessions/F00D.../`` becomes
    ``PUT /files/upload_sessions/{id}``. A path segment counts as an id when it holds
    only digits (file, folder, user ids) or is long and holds a digit (upload session ids);
    endpoint names such as ``oauth2`` stay.
    """
    path = urlsplit(url).path
    for prefix in _API_PREFIXES:
        if path.startswith(prefix):
            path = path[len(prefix) - 1:]
            break
    segments = ["{id}" if _is_id(segment) else segment for segment in path.strip("/").split("/") if segment]
    return f"{method.upper()} /{'/'.join(segments)}"


def _is_id(segment: str) -> bool:
    return segment.isdigit() or (len(segment) >= 16 and any(c.isdigit() for c in segment))


def is_loopback(url: str) -> bool:
    """Whether ``url`` names this machine (the only place plain HTTP / no TLS check is allowed)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _body_may_have_been_sent(exc: requests.RequestException) -> bool:
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


# Mistakes in the request itself: retrying cannot help.
_CALLER_ERRORS = (
    requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader, requests.exceptions.URLRequired,
)

Body = bytes | str | None
BodyFactory = Callable[[], tuple[Any, Mapping[str, str]]]


class Transport:
    """Sends authenticated requests to Box with pooling, rate limiting and retries.

    ``concurrency`` sizes the connection pool (one connection per parallel
    worker). ``timeout`` is (connect, read) seconds. TLS verification cannot be
    turned off except for loopback hosts.
    """

    def __init__(
        self,
        auth: Auth,
        *,
        concurrency: int = 4,
        timeout: tuple[float, float] = (10.0, 120.0),
        retry: RetryPolicy = RetryPolicy(),
        rate_limiter: RateLimiter | None = None,
        verify: bool | str = True,
        user_agent: str = USER_AGENT,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.auth = auth
        self.timeout = timeout
        self.retry = retry
        self.rate_limiter = rate_limiter if rate_limiter is not None else RateLimiter()
        self.verify = verify
        self.user_agent = user_agent
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        #: Called with the endpoint (`endpoint_template`) and status of every answer from Box
        #: (retried ones too), e.g. to count answers by endpoint and code.
        self.on_status: Callable[[str, int], None] | None = None
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=4, pool_maxsize=concurrency + 2, max_retries=0, pool_block=False
        )
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = user_agent
        auth.bind_session(self.session)

    def close(self) -> None:
        self.session.close()

    def _verify_for(self, url: str) -> bool | str:
        # Verification may be relaxed only for loopback (the emulator, a local TLS proxy).
        if self.verify is False and not is_loopback(url):
            return True
        return self.verify

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        with self._rng_lock:
            return retry_delay(attempt, retry_after, self.retry, self._rng)

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry ``attempt`` (0-based) under this transport's policy."""
        return self._delay(attempt, retry_after)

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Body = None,
        body_factory: BodyFactory | None = None,
        headers: Mapping[str, str] | None = None,
        replay_safe: bool | None = None,
        upload: bool = False,
        ok: Iterable[int] | None = None,
        timeout: tuple[float, float] | None = None,
    ) -> requests.Response:
        """Send one logical request, retrying what is safe to retry; return the final response.

        - ``replay_safe``: whether repeating the request after a lost answer is
          harmless (default: true for GET/HEAD/OPTIONS/PUT/DELETE). When false,
          a timeout or reset after sending raises OutcomeUnknown, and a 5xx answer
          is raised at once (the write may have been applied); 429 is still retried.
        - ``body_factory``: builds a fresh (body, extra headers) per attempt, for
          streamed bodies that cannot be replayed.
        - ``upload``: counts against the per-user upload rate limit.
        - ``ok``: statuses returned to the caller; any other status raises BoxAPIError.
          Default: every 2xx. (A 202 from a commit is returned, and the upload layer
          waits its ``Retry-After`` up to a deadline.)
        """
        method = method.upper()
        if replay_safe is None:
            replay_safe = method in SAFE_METHODS
        accepted = frozenset(ok) if ok is not None else None
        started = time.monotonic()
        attempt = 0  # retries of transient failures so far
        refreshed = False
        while True:
            self.rate_limiter.acquire(self.auth.identity, upload=upload)
            token = self.auth.access_token()
            send_headers = {"Authorization": f"Bearer {token}"}
            if self.auth.as_user:
                send_headers["As-User"] = self.auth.as_user
            body: Any = data
            if body_factory is not None:
                body, extra = body_factory()
                send_headers.update(extra)
            if headers:
                send_headers.update(headers)
            try:
                response = self.session.request(
                    method, url, params=params, json=json, data=body, headers=send_headers,
                    timeout=timeout or self.timeout, verify=self._verify_for(url), allow_redirects=False,
                )
            except _CALLER_ERRORS as exc:
                raise ValueError(f"bad request to {redact_url(url)}: {type(exc).__name__}") from None
            except requests.RequestException as exc:
                cause = type(exc).__name__
                if _body_may_have_been_sent(exc) and not replay_safe:
                    raise OutcomeUnknown(method, url, cause) from None
                if attempt + 1 >= self.retry.max_attempts or time.monotonic() - started > self.retry.deadline:
                    raise BoxConnectionError(method, url, f"{cause} after {attempt + 1} attempts") from None
                wait = self._delay(attempt, None)
                log.info("box request failed, retrying", extra={
                    "method": method, "url": redact_url(url), "cause": cause, "attempt": attempt + 1, "wait_s": wait})
                self._sleep(wait)
                attempt += 1
                continue
            status = response.status_code
            if self.on_status is not None:
                self.on_status(endpoint_template(method, url), status)
            if status == 401 and self.auth.can_refresh and not refreshed:
                # Refresh once: the token may have expired early or been revoked.
                response.close()
                self.auth.invalidate(token)
                refreshed = True
                continue
            if status in RETRYABLE_STATUSES:
                error = BoxAPIError.from_response(response)
                if status >= 500 and not replay_safe:
                    # Box warns that a write answered 5xx may have been applied anyway:
                    # the caller looks before sending it again.
                    raise error
                if status == 429 and error.retry_after:
                    self.rate_limiter.penalize(self.auth.identity, error.retry_after, upload=upload)
                wait = self._delay(attempt, error.retry_after)
                if attempt + 1 >= self.retry.max_attempts or time.monotonic() - started + wait > self.retry.deadline:
                    raise error
                response.close()
                log.info("box answered %s, retrying", status, extra={
                    "method": method, "url": redact_url(url), "code": error.code, "request_id": error.request_id,
                    "attempt": attempt + 1, "wait_s": wait})
                self._sleep(wait)
                attempt += 1
                continue
            if (accepted is not None and status in accepted) or (accepted is None and 200 <= status < 300):
                return response
            raise BoxAPIError.from_response(response)

    def request_json(self, method: str, url: str, **kwargs: Any) -> Any:
        """:meth:`request` and decode the JSON answer (None for an empty body)."""
        response = self.request(method, url, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise BoxAPIError(response.status_code, "invalid_json", "answer is not JSON",
                              method=method, url=redact_url(url)) from None
