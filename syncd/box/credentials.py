"""Box credential providers: developer token, OAuth 2.0 refresh tokens, Client
Credentials Grant and JWT, each optionally acting as another user (``as-user``).

Every method hands out an access token through :meth:`Auth.access_token`
(refreshing it shortly before it expires, one thread at a time while the
others wait) and accepts :meth:`Auth.invalidate` after a 401 so that the next
call refreshes once. Secrets never appear in ``repr``/``str`` or exceptions.

Tokens obtained at run time (access tokens, OAuth refresh tokens read from the
store or rotated by Box) are handed to :attr:`Auth.on_token` the moment they
are received, before they are used or stored: the application registers them
with its log redactor, so no later message can carry one.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import requests

from ..logs import get_logger
from .errors import AuthError, ErrorClass, redact_url

log = get_logger(__name__)

BOX_TOKEN_URL = "https://api.box.com/oauth2/token"
# Box's own audience for JWT assertions, whatever host the token is fetched from.
BOX_JWT_AUDIENCE = "https://api.box.com/oauth2/token"


@dataclass(frozen=True)
class AccessToken:
    """An access token and the monotonic time at which it expires."""

    value: str = field(repr=False)
    expires_at: float  # time.monotonic() seconds
    lifetime: float

    def needs_refresh(self, now: float) -> bool:
        # Refresh early: a tenth of the lifetime, at most a minute, before expiry.
        margin = min(60.0, self.lifetime / 10.0)
        return now >= self.expires_at - margin


class Auth:
    """Base class: a source of access tokens for Box requests."""

    #: The user to act as (sent as ``As-User``), or None.
    as_user: str | None = None
    #: Whether a 401 can be cured by fetching a new token.
    can_refresh: bool = False
    #: Called with every secret obtained at run time, as soon as it is received (see the module docstring).
    on_token: Callable[[str], None] | None = None

    def _received(self, token: object) -> None:
        if isinstance(token, str) and token and self.on_token is not None:
            self.on_token(token)

    def access_token(self) -> str:
        """A currently valid access token."""
        raise NotImplementedError

    def invalidate(self, token: str) -> None:
        """Box refused ``token`` (401): forget it so the next ``access_token`` fetches a new one."""

    def bind_session(self, http: requests.Session) -> None:
        """Use the transport's pooled session for token requests too (no-op without any)."""

    @property
    def identity(self) -> str:
        """A non-secret key naming the Box user requests run as (for per-user rate limits)."""
        return self.as_user or type(self).__name__

    def flow(self) -> "AuthFlow":
        """The auth of one logical request (all its sends): see :class:`AuthFlow`."""
        return AuthFlow(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(as_user={self.as_user!r})"

    __str__ = __repr__


class AuthFlow:
    """Box's bearer auth applied to the sends of one logical request (httpx's auth flow, for Box).

    Each send carries the provider's current access token (which it renews ahead
    of expiry) and ``As-User`` when set. When Box answers 401, the flow makes the
    provider forget that token and asks for the request to be sent once more with
    a new one; once per logical request, so refused credentials end in the 401.
    """

    def __init__(self, auth: Auth) -> None:
        self._auth = auth
        self._token: str | None = None
        self._refreshed = False

    def apply(self, headers: dict[str, str]) -> None:
        """Add the auth headers of the next send to ``headers``."""
        self._token = self._auth.access_token()
        headers["Authorization"] = f"Bearer {self._token}"
        if self._auth.as_user:
            headers["As-User"] = self._auth.as_user

    def refresh_after(self, response: requests.Response) -> bool:
        """Whether Box refused the token of the last send and the request should go again with a new one."""
        if response.status_code != 401 or not self._auth.can_refresh or self._refreshed or self._token is None:
            return False
        self._auth.invalidate(self._token)
        self._refreshed = True
        return True

    def __repr__(self) -> str:
        return f"AuthFlow({self._auth!r}, refreshed={self._refreshed})"


class DeveloperTokenAuth(Auth):
    """A fixed developer token (60 minutes on Box; it cannot be refreshed)."""

    def __init__(self, token: str, *, as_user: str | None = None) -> None:
        if not token or not isinstance(token, str):
            raise ValueError("developer token must be a non-empty string")
        self._token = token
        self.as_user = as_user

    def access_token(self) -> str:
        return self._token


class TokenEndpoint:
    """POSTs form grants to Box's ``/oauth2/token`` and returns the JSON answer."""

    def __init__(self, token_url: str = BOX_TOKEN_URL, *, http: requests.Session | None = None,
                 timeout: tuple[float, float] = (10.0, 60.0), user_agent: str | None = None) -> None:
        self.token_url = token_url
        self._own_http = http is None
        self._http = http or requests.Session()
        self._timeout = timeout
        self._user_agent = user_agent

    def bind_session(self, http: requests.Session) -> None:
        """Share the client's pooled session (unless one was given explicitly)."""
        if self._own_http:
            self._http.close()
            self._http = http
            self._own_http = False

    def request_token_with_retries(self, build_form: Callable[[], Mapping[str, str]], *, attempts: int = 4,
                                   sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
        """:meth:`request_token` with a fresh form per attempt, retried on transient
        failures (429, 5xx, no answer) with full-jitter backoff.

        Only for grants that can be repeated (client credentials; JWT, whose form
        carries a new assertion and ``jti`` each time). Never for refresh tokens,
        which a lost answer may already have spent.
        """
        for attempt in range(attempts):
            try:
                return self.request_token(build_form())
            except AuthError as exc:
                if exc.error_class is not ErrorClass.RETRY_LATER or attempt + 1 >= attempts:
                    raise
                wait = random.uniform(0.0, min(10.0, 0.5 * 2**attempt))
                log.info("box_token_request_retrying", url=redact_url(self.token_url), attempt=attempt + 1,
                         wait_s=round(wait, 3), status=exc.status, error_code=exc.code)
                sleep(wait)
        raise AssertionError("unreachable")

    def request_token(self, form: Mapping[str, str]) -> dict[str, Any]:
        """Send one grant; raise AuthError (never echoing the form) on failure."""
        headers = {"User-Agent": self._user_agent} if self._user_agent else {}
        grant = form.get("grant_type", "?")
        try:
            response = self._http.post(self.token_url, data=dict(form), timeout=self._timeout, headers=headers)
        except requests.RequestException as exc:
            raise AuthError(f"token request ({grant}) failed: {type(exc).__name__}") from None
        if response.status_code != 200:
            code, description = "http_error", response.reason or ""
            try:
                body = response.json()
                code = str(body.get("error") or body.get("code") or code)
                description = str(body.get("error_description") or body.get("message") or description)
            except ValueError:
                pass
            raise AuthError(
                f"token request ({grant}) refused: {response.status_code} {code}: {description}",
                status=response.status_code,
                code=code,
            )
        try:
            body = response.json()
            body["access_token"]  # noqa: B018 - presence check
        except (ValueError, KeyError, TypeError):
            raise AuthError(f"token request ({grant}): answer without access_token", status=200) from None
        return body


class _GrantAuth(Auth):
    """Shared logic for methods that fetch access tokens from the token endpoint."""

    can_refresh = True

    def __init__(self, endpoint: TokenEndpoint, *, as_user: str | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._endpoint = endpoint
        self._clock = clock
        self._lock = threading.Lock()
        self._token: AccessToken | None = None
        self.as_user = as_user

    def _fetch(self) -> AccessToken:
        raise NotImplementedError

    def bind_session(self, http: requests.Session) -> None:
        self._endpoint.bind_session(http)

    def _token_from(self, body: Mapping[str, Any]) -> AccessToken:
        self._received(body.get("access_token"))
        try:
            lifetime = float(body.get("expires_in", 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        return AccessToken(str(body["access_token"]), self._clock() + lifetime, lifetime)

    def access_token(self) -> str:
        # One thread refreshes while the others wait on the lock, then reuse its token.
        with self._lock:
            if self._token is None or self._token.needs_refresh(self._clock()):
                self._token = self._fetch()
            return self._token.value

    def invalidate(self, token: str) -> None:
        with self._lock:
            # Only the first thread reporting this token forces a refresh.
            if self._token is not None and self._token.value == token:
                self._token = None


class TokenStore:
    """Where an OAuth refresh token lives: a JSON file written atomically with mode 0600.

    The file holds ``{"refresh_token": "..."}``. Saving writes a temp file in
    the same directory, fsyncs it, renames it over the old one and fsyncs the
    directory, so a crash leaves either the old or the new token, never half.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> str:
        """The stored refresh token; AuthError when missing or unreadable."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            token = data["refresh_token"]
        except FileNotFoundError:
            raise AuthError(f"no refresh token stored at {self.path}") from None
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise AuthError(f"unreadable token store {self.path}: {type(exc).__name__}") from None
        if not isinstance(token, str) or not token:
            raise AuthError(f"token store {self.path} holds no refresh token")
        return token

    def save(self, refresh_token: str) -> None:
        """Persist ``refresh_token`` atomically (temp file, fsync, rename, fsync dir), mode 0600."""
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"refresh_token": refresh_token}, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def __repr__(self) -> str:
        return f"TokenStore({str(self.path)!r})"


class OAuthRefreshAuth(_GrantAuth):
    """OAuth 2.0 with single-use refresh tokens kept in a :class:`TokenStore`.

    Each refresh returns a new refresh token and kills the old one, so the new
    one is persisted *before* the new access token is used: a crash once it is
    on disk leaves a usable refresh token there. Box keeps no grace period for
    the old one, so a crash (or a lost answer) between Box rotating the token and
    the write leaves only a spent token: Box refuses it (400 ``invalid_grant``)
    and the error says to authorize again with ``syncd auth login``.
    """

    def __init__(self, client_id: str, client_secret: str, store: TokenStore, *,
                 token_url: str = BOX_TOKEN_URL, http: requests.Session | None = None,
                 as_user: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if not client_id or not client_secret:
            raise ValueError("OAuth needs a client_id and a client_secret")
        super().__init__(TokenEndpoint(token_url, http=http), as_user=as_user, clock=clock)
        self.client_id = client_id
        self._client_secret = client_secret
        self.store = store
        # A rotated refresh token Box handed out that could not be persisted yet (disk
        # full, read-only): kept in memory only so that a later attempt can persist it.
        self._unsaved_refresh: str | None = None

    @classmethod
    def from_authorization_code(cls, code: str, client_id: str, client_secret: str, store: TokenStore,
                                **kwargs: Any) -> "OAuthRefreshAuth":
        """Exchange an authorization code, persist the refresh token, and return a ready auth."""
        auth = cls(client_id, client_secret, store, **kwargs)
        body = auth._endpoint.request_token({
            "grant_type": "authorization_code", "code": code,
            "client_id": client_id, "client_secret": client_secret,
        })
        auth._accept(body)
        return auth

    def _accept(self, body: Mapping[str, Any]) -> AccessToken:
        refresh = body.get("refresh_token")
        self._received(body.get("access_token"))
        if not isinstance(refresh, str) or not refresh:
            raise AuthError("token answer without a refresh_token")
        self._received(refresh)
        # Persist first: the old refresh token is already spent on Box's side.
        try:
            self.store.save(refresh)
        except BaseException:
            self._unsaved_refresh = refresh
            raise
        self._unsaved_refresh = None
        self._after_persist()
        token = self._token_from(body)
        self._token = token
        return token

    def _after_persist(self) -> None:
        """Hook between persisting the new refresh token and using the new access token (tests)."""

    def _fetch(self) -> AccessToken:
        if self._unsaved_refresh is not None:
            # Only a persisted refresh token may be spent: retry persisting it first.
            self.store.save(self._unsaved_refresh)
            self._unsaved_refresh = None
        stored = self.store.load()
        self._received(stored)
        try:
            body = self._endpoint.request_token({
                "grant_type": "refresh_token", "refresh_token": stored,
                "client_id": self.client_id, "client_secret": self._client_secret,
            })
        except AuthError as exc:
            if exc.code != "invalid_grant":
                raise
            raise AuthError(f"{exc}; the refresh token in {self.store.path} is spent or expired (Box's are "
                            f"single use, with no grace period, and last 60 days): run `syncd auth login` "
                            f"to authorize syncd again", status=exc.status, code=exc.code) from None
        return self._accept(body)

    def __repr__(self) -> str:
        return f"OAuthRefreshAuth(client_id={self.client_id!r}, store={self.store!r}, as_user={self.as_user!r})"

    __str__ = __repr__


class ClientCredentialsAuth(_GrantAuth):
    """Client Credentials Grant for an enterprise (service account) or a user subject."""

    def __init__(self, client_id: str, client_secret: str, *, subject_type: str = "enterprise",
                 subject_id: str, token_url: str = BOX_TOKEN_URL, http: requests.Session | None = None,
                 as_user: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if subject_type not in ("enterprise", "user"):
            raise ValueError(f"subject_type must be 'enterprise' or 'user', got {subject_type!r}")
        if not client_id or not client_secret or not subject_id:
            raise ValueError("client credentials need client_id, client_secret and subject_id")
        super().__init__(TokenEndpoint(token_url, http=http), as_user=as_user, clock=clock)
        self.client_id = client_id
        self._client_secret = client_secret
        self.subject_type = subject_type
        self.subject_id = str(subject_id)

    def _fetch(self) -> AccessToken:
        return self._token_from(self._endpoint.request_token_with_retries(lambda: {
            "grant_type": "client_credentials", "client_id": self.client_id,
            "client_secret": self._client_secret, "box_subject_type": self.subject_type,
            "box_subject_id": self.subject_id,
        }))

    @property
    def identity(self) -> str:
        return self.as_user or f"{self.subject_type}:{self.subject_id}"

    def __repr__(self) -> str:
        return (f"ClientCredentialsAuth(client_id={self.client_id!r}, subject_type={self.subject_type!r}, "
                f"subject_id={self.subject_id!r}, as_user={self.as_user!r})")

    __str__ = __repr__


class JWTAuth(_GrantAuth):
    """Server authentication with a signed JWT assertion (RS256, ``kid``, 30 s ``exp``, unique ``jti``)."""

    def __init__(self, client_id: str, client_secret: str, *, key_id: str, private_key: Any,
                 subject_type: str = "enterprise", subject_id: str, token_url: str = BOX_TOKEN_URL,
                 audience: str = BOX_JWT_AUDIENCE, algorithm: str = "RS256",
                 http: requests.Session | None = None, as_user: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if subject_type not in ("enterprise", "user"):
            raise ValueError(f"subject_type must be 'enterprise' or 'user', got {subject_type!r}")
        if algorithm not in ("RS256", "RS384", "RS512"):
            raise ValueError(f"unsupported JWT algorithm {algorithm!r}")
        super().__init__(TokenEndpoint(token_url, http=http), as_user=as_user, clock=clock)
        self.client_id = client_id
        self._client_secret = client_secret
        self.key_id = key_id
        self._private_key = private_key
        self.subject_type = subject_type
        self.subject_id = str(subject_id)
        self.audience = audience
        self.algorithm = algorithm

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, user_id: str | None = None,
                    **kwargs: Any) -> "JWTAuth":
        """Build from a Box app config (the JSON Box's developer console downloads).

        Uses ``boxAppSettings.{clientID,clientSecret,appAuth{publicKeyID,privateKey,passphrase}}``
        and ``enterpriseID``; with ``user_id`` the subject is that user instead.
        """
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            settings = config["boxAppSettings"]
            app_auth = settings["appAuth"]
            client_id, client_secret = settings["clientID"], settings["clientSecret"]
            key_id, pem = app_auth["publicKeyID"], app_auth["privateKey"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"Box app config lacks {exc}") from None
        passphrase = app_auth.get("passphrase") or None
        try:
            key = load_pem_private_key(pem.encode("utf-8"), passphrase.encode("utf-8") if passphrase else None)
        except (ValueError, TypeError) as exc:
            # The library's message says only what was wrong (bad passphrase, bad PEM), never the key.
            raise ValueError(f"cannot load the app's private key: {exc}") from None
        if user_id is not None:
            subject_type, subject_id = "user", str(user_id)
        else:
            enterprise = config.get("enterpriseID")
            if not enterprise:
                raise ValueError("Box app config has no enterpriseID; pass user_id")
            subject_type, subject_id = "enterprise", str(enterprise)
        return cls(client_id, client_secret, key_id=key_id, private_key=key,
                   subject_type=subject_type, subject_id=subject_id, **kwargs)

    @classmethod
    def from_config_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> "JWTAuth":
        """Read a Box app config JSON file and call :meth:`from_config`."""
        try:
            config = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read Box app config {path}: {type(exc).__name__}") from None
        return cls.from_config(config, **kwargs)

    def assertion(self) -> str:
        """A fresh signed assertion: expires in 30 s, unique ``jti``."""
        import jwt

        now = int(time.time())
        claims = {
            "iss": self.client_id, "sub": self.subject_id, "box_sub_type": self.subject_type,
            "aud": self.audience, "jti": secrets.token_hex(32), "exp": now + 30, "iat": now,
        }
        return jwt.encode(claims, self._private_key, algorithm=self.algorithm, headers={"kid": self.key_id})

    def _fetch(self) -> AccessToken:
        return self._token_from(self._endpoint.request_token_with_retries(lambda: {
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": self.assertion(),
            "client_id": self.client_id, "client_secret": self._client_secret,
        }))

    @property
    def identity(self) -> str:
        return self.as_user or f"{self.subject_type}:{self.subject_id}"

    def __repr__(self) -> str:
        return (f"JWTAuth(client_id={self.client_id!r}, key_id={self.key_id!r}, "
                f"subject_type={self.subject_type!r}, subject_id={self.subject_id!r}, as_user={self.as_user!r})")

    __str__ = __repr__
