"""HTTP transport for Box: one pooled ``requests.Session`` and the loop that turns
a logical request into sends, in the way httpx splits a client's jobs:

- a single send (``Transport._send``): the client-side rate limiter, a fresh body
  and headers, one exchange on the pooled session;
- the error mapping (:mod:`~syncd.box.http_errors`): requests/urllib3 failures to
  BoxConnectionError or OutcomeUnknown, unaccepted answers to BoxAPIError;
- the auth (:class:`~syncd.box.credentials.AuthFlow`): bearer token and As-User on
  every send, one refresh after a 401;
- the retry policy (:class:`~syncd.box.http_retry.RetryState`): whether to send
  again and after how long (backoff with full jitter, ``Retry-After`` obeyed).

A request whose outcome may be unknown (the body may have reached Box but the
answer was lost) is retried only when it is safe to repeat; otherwise
:class:`~syncd.box.errors.OutcomeUnknown` is raised for the upload layer to
resolve by looking at Box.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlsplit

import requests
import requests.adapters

from .. import __version__
from ..logs import get_logger
from .credentials import Auth, AuthFlow
from .errors import BoxAPIError, BoxConnectionError, parse_retry_after, redact_url
from .heartbeat import pause
from .http_errors import accepted, mapped_send_errors
from .http_retry import RETRYABLE_STATUSES, SAFE_METHODS, RetryPolicy, RetryState, retry_delay
from .ratelimit import RateLimiter
from .trusted_urls import TrustedURLs, is_loopback

log = get_logger(__name__)

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


Body = bytes | str | None
BodyFactory = Callable[[], tuple[Any, Mapping[str, str]]]


@dataclass(frozen=True)
class _Call:
    """One logical request as the caller asked for it; each send builds its body and headers anew."""

    method: str
    url: str
    params: Mapping[str, Any] | None
    json: Any
    data: Body
    body_factory: BodyFactory | None
    headers: Mapping[str, str] | None
    replay_safe: bool
    upload: bool
    timeout: tuple[float, float] | None


#: Bytes handed to the socket per write of a streamed body (urllib3's default is 16 KiB): a part
#: goes out in a few large writes, and each write is a point where the upload's heartbeat can beat.
SEND_BLOCK = 1 << 20


class _PoolAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter with urllib3 connections that send streamed bodies in ``SEND_BLOCK`` writes."""

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, blocksize=SEND_BLOCK, **pool_kwargs)


class _Session(requests.Session):
    """A ``requests.Session`` that reads the environment's settings once per origin.

    With ``trust_env`` (kept: ``HTTPS_PROXY``/``NO_PROXY`` and ``REQUESTS_CA_BUNDLE`` are how
    an operator points syncd at a proxy or a private CA) requests walks ``os.environ`` at every
    request to find proxies and the CA bundle, and looks for a ``.netrc``: on a small-file
    upload that was a sixth of syncd's CPU. What the environment says for an origin cannot
    change while syncd runs (it has no way to change its own environment), so the answer is
    kept per (scheme, host, the request's own settings).
    """

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._environment_lock = threading.Lock()

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> dict[str, Any]:
        if proxies or not isinstance(url, str):
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, stream, verify, cert if cert is None or isinstance(cert, str) else tuple(cert))
        with self._environment_lock:
            known = self._environment.get(key)
        if known is None:
            known = super().merge_environment_settings(url, proxies, stream, verify, cert)
            with self._environment_lock:
                self._environment[key] = known
        return {**known, "proxies": dict(known["proxies"])}


class Transport:
    """Sends authenticated requests to Box with pooling, rate limiting and retries.

    ``concurrency`` sizes the connection pool (one connection per parallel
    worker). ``timeout`` is (connect, read) seconds. TLS verification cannot be
    turned off except for loopback hosts. The bearer token goes only to URLs that
    ``trusted`` accepts (:mod:`~syncd.box.trusted_urls`; the client adds its
    configured URLs). Waits (rate limit, backoff) beat the current upload's
    heartbeat (:mod:`~syncd.box.heartbeat`).
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
        self.trusted = TrustedURLs()
        self.verify = verify
        self.user_agent = user_agent
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        #: Called with the endpoint (`endpoint_template`) and status of every answer from Box
        #: (retried ones too), e.g. to count answers by endpoint and code.
        self.on_status: Callable[[str, int], None] | None = None
        self.session = _Session()
        adapter = _PoolAdapter(
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
        call = _Call(method, url, params, json, data, body_factory, headers,
                     method in SAFE_METHODS if replay_safe is None else replay_safe, upload, timeout)
        accepted_statuses = frozenset(ok) if ok is not None else None
        auth = self.auth.flow()
        retries = RetryState(self.retry, self._delay)
        while True:
            try:
                response = self._send(call, auth)
            except BoxConnectionError as exc:
                wait = retries.after_no_answer()
                if wait is None:
                    raise BoxConnectionError(method, url, f"{exc.cause} after {retries.failures} attempts") from None
                log.info("box_request_retrying", method=method, url=redact_url(url), attempt=retries.failures,
                         wait_s=round(wait, 3), cause=exc.cause)
                pause(wait, self._sleep)
                continue
            if self.on_status is not None:
                self.on_status(endpoint_template(method, url), response.status_code)
            if auth.refresh_after(response):
                log.info("box_token_rejected", method=method, url=redact_url(url), status=response.status_code,
                         request_id=BoxAPIError.from_response(response).request_id)
                response.close()
                continue
            if response.status_code in RETRYABLE_STATUSES:
                error = BoxAPIError.from_response(response)
                wait = retries.after_answer(error.status, error.retry_after, replay_safe=call.replay_safe)
                if wait is None:
                    raise error
                response.close()
                log.info("box_request_retrying", method=method, url=redact_url(url), attempt=retries.failures,
                         wait_s=round(wait, 3), status=error.status, error_code=error.code,
                         request_id=error.request_id)
                pause(wait, self._sleep)
                continue
            return accepted(response, accepted_statuses)

    def _send(self, call: _Call, auth: AuthFlow) -> requests.Response:
        """One HTTP exchange: check the URL may get the token, hold a rate-limit slot, build the body
        and the headers, send, and map a failure to get an answer to BoxConnectionError or OutcomeUnknown.

        The slot is released when the answer came back (or the send failed): a 429 tells the
        limiter to hold back and to learn a smaller limit.
        """
        self.trusted.check(call.url)
        permit = self.rate_limiter.acquire(self.auth.identity, upload=call.upload)
        response: requests.Response | None = None
        try:
            headers: dict[str, str] = {}
            auth.apply(headers)
            body: Any = call.data
            if call.body_factory is not None:
                body, extra = call.body_factory()
                headers.update(extra)
            if call.headers:
                headers.update(call.headers)
            with mapped_send_errors(call.method, call.url, replay_safe=call.replay_safe):
                response = self.session.request(
                    call.method, call.url, params=call.params, json=call.json, data=body, headers=headers,
                    timeout=call.timeout or self.timeout, verify=self._verify_for(call.url), allow_redirects=False,
                )
            return response
        finally:
            limited = response is not None and response.status_code == 429
            self.rate_limiter.release(permit, rate_limited=limited, retry_after=parse_retry_after(
                response.headers.get("Retry-After")) if limited and response is not None else None)

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
