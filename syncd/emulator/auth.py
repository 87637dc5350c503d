"""Access tokens and Box's OAuth 2.0 grants (REFERENCE.md §3.8).

Tokens are random strings, stored hashed, with expiry on the emulator clock.
Supported grants: authorization_code, refresh_token (single use, rotated on
every refresh), client_credentials (enterprise or user subject) and the JWT
bearer grant (RS256/384/512 assertion verified against a registered public
key, `exp` at most 60 s ahead, `jti` 16-128 characters and never reused).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from syncd.emulator.errors import BoxError, OAuthError
from syncd.emulator.store import Store, TokenRecord, User

REFRESH_TOKEN_LIFETIME = 60 * 24 * 3600
AUTH_CODE_LIFETIME = 30
JWT_AUDIENCE = "https://api.box.com/oauth2/token"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_ALGORITHMS = ("RS256", "RS384", "RS512")
MAX_JWT_LIFETIME = 60
CLOCK_SKEW = 5

_WWW_AUTHENTICATE = ('Bearer realm="Service", error="invalid_token", '
                     'error_description="The access token provided is invalid."')


def unauthorized(empty_body: bool = False) -> BoxError:
    return BoxError(401, "unauthorized", "Unauthorized", None, {"WWW-Authenticate": _WWW_AUTHENTICATE},
                    empty_body=empty_body)


@dataclass(frozen=True)
class OAuthClient:
    client_id: str
    client_secret: str
    enterprise_id: str

    def __repr__(self) -> str:  # the secret never appears in a repr
        return f"OAuthClient(client_id={self.client_id!r}, client_secret='***')"


class Authenticator:
    """Issues and checks tokens; `now` is the emulator clock, `ttl` the current token lifetime."""

    def __init__(self, store: Store, client: OAuthClient, now: Callable[[], float],
                 ttl: Callable[[], int], default_user_id: str, empty_401_body: bool = False) -> None:
        self.store = store
        self.empty_401_body = empty_401_body
        self.client = client
        self.now = now
        self.ttl = ttl
        self.default_user_id = default_user_id

    # -- bearer tokens -----------------------------------------------------
    def register_developer_token(self, token: str) -> None:
        """The --token value: valid until /_emulator/tokens/expire (re-registered on restart).

        Only the current --token is a developer token: one from an earlier run stops working.
        """
        self.store.forget_tokens("developer")
        self.store.save_token(token, TokenRecord("developer", self.default_user_id, None, None, False, None))

    def authenticate(self, authorization: str | None, as_user: str | None) -> User:
        """The user a request acts as; raises 401/403/400 Box errors."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise unauthorized(self.empty_401_body)
        token = authorization[7:].strip()
        record = self.store.get_token(token) if token else None
        if record is None or record.kind not in ("access", "developer"):
            raise unauthorized(self.empty_401_body)
        if record.expires_at is not None and record.expires_at <= self.now():
            raise unauthorized(self.empty_401_body)
        user = self.store.get_user(record.user_id)
        if user is None:
            raise unauthorized(self.empty_401_body)
        if as_user is None:
            return user
        if user.role not in ("admin", "service_account"):
            raise BoxError(403, "access_denied_insufficient_permissions",
                           "as-user requires an admin or service account token")
        target = self.store.get_user(as_user.strip())
        if target is None:
            raise BoxError(400, "bad_request",
                           "as-user names an unknown user", {"errors": [
                               {"reason": "invalid_parameter", "name": "as-user", "message": "Invalid user id"}]})
        return target

    def _issue(self, user_id: str, with_refresh: bool) -> dict[str, Any]:
        now = self.now()
        ttl = self.ttl()
        access = secrets.token_urlsafe(24)
        self.store.save_token(access, TokenRecord("access", user_id, self.client.client_id, now + ttl, False, None))
        body: dict[str, Any] = {"access_token": access, "expires_in": ttl, "token_type": "bearer",
                                "restricted_to": [], "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}
        if with_refresh:
            body["refresh_token"] = self.mint_refresh_token(user_id)
        return body

    def issue_pair(self, user_id: str | None = None) -> dict[str, Any]:
        """A token answer with an access token and a refresh token, as the refresh grant gives.

        For test clients that start from stored OAuth tokens
        (POST /_emulator/oauth/tokens); the refresh token rotates like any other.
        """
        return self._issue(user_id or self.default_user_id, with_refresh=True)

    def mint_refresh_token(self, user_id: str | None = None) -> str:
        token = secrets.token_urlsafe(48)
        self.store.save_token(token, TokenRecord("refresh", user_id or self.default_user_id, self.client.client_id,
                                                 self.now() + REFRESH_TOKEN_LIFETIME, False, None))
        return token

    def expire_all(self) -> int:
        return self.store.expire_access_tokens(self.now())

    # -- authorize ---------------------------------------------------------
    def authorize(self, query: dict[str, str]) -> str:
        """Auto-approve an authorization request; returns the redirect location."""
        if query.get("response_type") != "code":
            raise BoxError(400, "bad_request", "response_type must be 'code'")
        if query.get("client_id") != self.client.client_id:
            raise BoxError(400, "bad_request", "unknown client_id")
        redirect_uri = query.get("redirect_uri")
        if not redirect_uri or not redirect_uri.startswith(("http://", "https://")):
            raise BoxError(400, "bad_request", "redirect_uri must be an absolute http(s) URL")
        code = secrets.token_urlsafe(24)
        self.store.save_token(code, TokenRecord("code", self.default_user_id, self.client.client_id,
                                                self.now() + AUTH_CODE_LIFETIME, False, redirect_uri))
        params = {"code": code}
        if "state" in query:
            params["state"] = query["state"]
        separator = "&" if "?" in redirect_uri else "?"
        return f"{redirect_uri}{separator}{urlencode(params)}"

    # -- token endpoint ----------------------------------------------------
    def grant(self, form: dict[str, str]) -> dict[str, Any]:
        """Handle POST /oauth2/token; raises OAuthError."""
        grant_type = form.get("grant_type")
        if not grant_type:
            raise OAuthError("invalid_request", "Missing grant_type parameter")
        handlers = {
            "authorization_code": self._authorization_code,
            "refresh_token": self._refresh_token,
            "client_credentials": self._client_credentials,
            JWT_GRANT: self._jwt_bearer,
        }
        handler = handlers.get(grant_type)
        if handler is None:
            raise OAuthError("unsupported_grant_type", "Grant type is not supported")
        return handler(form)

    def _check_client(self, form: dict[str, str], error: str = "invalid_client") -> None:
        client_id = form.get("client_id")
        client_secret = form.get("client_secret")
        if not client_id or not client_secret:
            raise OAuthError("invalid_request" if error == "invalid_client" else error,
                             "The client credentials are missing")
        if client_id != self.client.client_id or not secrets.compare_digest(client_secret, self.client.client_secret):
            if error == "invalid_client":
                raise OAuthError("invalid_client", "The client credentials are invalid")
            raise OAuthError(error, "Grant credentials are invalid")

    def _authorization_code(self, form: dict[str, str]) -> dict[str, Any]:
        self._check_client(form)
        code = form.get("code")
        if not code:
            raise OAuthError("invalid_request", "Missing code parameter")
        record = self.store.use_token_once(code, "code", self.now())
        if record is None:
            raise OAuthError("invalid_grant", "Auth code doesn't exist or is invalid for the client")
        return self._issue(record.user_id, with_refresh=True)

    def _refresh_token(self, form: dict[str, str]) -> dict[str, Any]:
        self._check_client(form)
        token = form.get("refresh_token")
        if not token:
            raise OAuthError("invalid_request", "Missing refresh_token parameter")
        record = self.store.use_token_once(token, "refresh", self.now())
        if record is None:
            raise OAuthError("invalid_grant", "Invalid refresh token")
        return self._issue(record.user_id, with_refresh=True)

    def _subject(self, subject_type: str | None, subject_id: str | None) -> User:
        if subject_type == "enterprise" and subject_id == self.client.enterprise_id:
            return self.store.service_account(subject_id, self.now())
        if subject_type == "user" and subject_id:
            user = self.store.get_user(subject_id)
            if user is not None:
                return user
        raise OAuthError("invalid_grant", "Grant credentials are invalid")

    def _client_credentials(self, form: dict[str, str]) -> dict[str, Any]:
        self._check_client(form, error="invalid_grant")
        user = self._subject(form.get("box_subject_type"), form.get("box_subject_id"))
        return self._issue(user.id, with_refresh=False)

    def _jwt_bearer(self, form: dict[str, str]) -> dict[str, Any]:
        import jwt  # imported lazily: only this grant needs PyJWT and cryptography

        self._check_client(form)
        assertion = form.get("assertion")
        if not assertion:
            raise OAuthError("invalid_request", "Missing assertion parameter")
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            raise OAuthError("invalid_grant", "Invalid JWT assertion") from None
        if header.get("alg") not in JWT_ALGORITHMS:
            raise OAuthError("invalid_grant", "Unsupported JWT signing algorithm")
        kid = header.get("kid")
        pem = self.store.jwt_key(kid) if isinstance(kid, str) else None
        if pem is None:
            raise OAuthError("invalid_grant", "Unknown public key id (kid)")
        try:
            claims = jwt.decode(assertion, pem, algorithms=list(JWT_ALGORITHMS), audience=JWT_AUDIENCE,
                                options={"verify_exp": False, "require": ["iss", "sub", "aud", "jti", "exp"]})
        except jwt.PyJWTError as exc:
            raise OAuthError("invalid_grant", f"Invalid JWT assertion: {type(exc).__name__}") from None
        # JWT times come from the client's wall clock, so they are checked
        # against wall time, not the (possibly advanced) emulator clock.
        wall = time.time()
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp <= wall - CLOCK_SKEW:
            raise OAuthError("invalid_grant", "Please check the 'exp' claim: the assertion has expired")
        if exp > wall + MAX_JWT_LIFETIME + CLOCK_SKEW:
            raise OAuthError("invalid_grant", "Please check the 'exp' claim: it must be at most 60 seconds ahead")
        if claims.get("iss") != self.client.client_id:
            raise OAuthError("invalid_grant", "Please check the 'iss' claim")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 16 <= len(jti) <= 128:
            raise OAuthError("invalid_grant", "Please check the 'jti' claim: 16 to 128 characters")
        user = self._subject(claims.get("box_sub_type"), str(claims.get("sub")))
        if not self.store.use_jti(jti, float(exp), wall):
            raise OAuthError("invalid_grant", "Please check the 'jti' claim: it was used before")
        return self._issue(user.id, with_refresh=False)
