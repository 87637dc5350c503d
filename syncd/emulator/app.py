"""Routing: which handler serves a request, and what runs before it.

Order for Box endpoints: route -> injected faults (`reject_next`, `fail_rate`)
-> a `refuse` window (401/403 for every request) -> authentication (+ `as-user`)
-> rate limits -> handler. Download URLs
(`/d/1/...`, downloads.py) see faults but need no token: the URL is the
credential. Admin endpoints under `/_emulator/` see no faults and are not
counted in stats; with --admin-token they need it as a Bearer token.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from syncd.emulator import commit, content, downloads, items, plan
from syncd.emulator.clock import iso
from syncd.emulator.context import Context
from syncd.emulator.auth import unauthorized
from syncd.emulator.errors import BoxError, OAuthError, generic
from syncd.emulator.faults import Stats
from syncd.emulator.server import Request, Response
from syncd.emulator.store import DEFAULT_ENTERPRISE_ID, User

Handler = Callable[[Context, Request, User, dict[str, str]], Response]

_ID = r"(?P<id>[^/]+)"
_SESSION = r"(?P<session_id>[^/]+)"


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    endpoint: str
    handler: Handler


def _route(method: str, path: str, endpoint: str, handler: Handler) -> Route:
    return Route(method, re.compile(f"^{path}$"), endpoint, handler)


ROUTES: tuple[Route, ...] = (
    _route("POST", "/api/2.0/files/content", "files.upload", content.upload_file),
    _route("OPTIONS", "(?:/api)?/2.0/files/content", "files.preflight", content.preflight),
    _route("POST", "/api/2.0/files/upload_sessions", "sessions.create", content.create_session),
    _route("GET", f"/api/2.0/files/upload_sessions/{_SESSION}", "sessions.get", content.get_session),
    _route("PUT", f"/api/2.0/files/upload_sessions/{_SESSION}", "sessions.upload_part", content.upload_part),
    _route("DELETE", f"/api/2.0/files/upload_sessions/{_SESSION}", "sessions.abort", content.abort_session),
    _route("GET", f"/api/2.0/files/upload_sessions/{_SESSION}/parts", "sessions.list_parts", content.list_parts),
    _route("POST", f"/api/2.0/files/upload_sessions/{_SESSION}/plan", "sessions.plan", plan.plan_session),
    _route("POST", f"/api/2.0/files/upload_sessions/{_SESSION}/commit", "sessions.commit", commit.commit_session),
    _route("POST", f"/api/2.0/files/{_ID}/content", "files.upload_version", content.upload_version),
    _route("OPTIONS", f"(?:/api)?/2.0/files/{_ID}/content", "files.preflight", content.preflight),
    _route("POST", f"/api/2.0/files/{_ID}/upload_sessions", "sessions.create_version",
           content.create_version_session),
    _route("POST", "/2.0/folders", "folders.create", items.create_folder),
    _route("GET", f"/2.0/folders/{_ID}", "folders.get", items.get_folder),
    _route("DELETE", f"/2.0/folders/{_ID}", "folders.delete", items.delete_folder),
    _route("GET", f"/2.0/folders/{_ID}/items", "folders.items", items.folder_items),
    _route("GET", f"/2.0/files/{_ID}", "files.get", items.get_file),
    _route("PUT", f"/2.0/files/{_ID}", "files.update", items.update_file),
    _route("DELETE", f"/2.0/files/{_ID}", "files.delete", items.delete_file),
    _route("GET", f"/2.0/files/{_ID}/content", "files.download", downloads.download_file),
    _route("GET", f"/2.0/files/{_ID}/versions", "files.versions", items.file_versions),
    _route("GET", "/2.0/users/me", "users.me", items.users_me),
)


def find_route(method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
    """(route, path params, path_known): path_known without a route means 405."""
    path_known = False
    for route in ROUTES:
        match = route.pattern.match(path)
        if match is None:
            continue
        if route.method == method or (method == "HEAD" and route.method == "GET"):
            return route, match.groupdict(), True
        path_known = True
    return None, {}, path_known


class EmulatorApp:
    """The Box emulator as the HTTP layer sees it."""

    def __init__(self, ctx: Context, public_url: str | None, admin_token: str | None = None) -> None:
        self.ctx = ctx
        self.faults = ctx.faults
        self.stats = Stats()
        self.public_url = public_url
        self._admin_token = admin_token

    def handle(self, request: Request) -> Response:
        path = request.path
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")  # rclone's preflight uses `/files/content/`
        if path.startswith("/_emulator/"):
            request.endpoint = "_admin"
            self._check_admin_token(request)
            return self._admin(request, path)
        download = downloads.DOWNLOAD_PATH_RE.match(path)
        if download is not None:
            request.endpoint = "downloads.content"
            self._inject(request)
            return downloads.serve_download(self.ctx, request, download["token"])
        if path == "/oauth2/token" or path == "/api/oauth2/token":
            request.endpoint = "oauth.token"
            self._inject(request)
            if request.method != "POST":
                raise generic(405, "Method Not Allowed")
            if self.faults.refusing("oauth.token") == 401:
                # The credentials look revoked: no grant works (and none is spent) until the window ends.
                raise OAuthError("invalid_grant", "Refused (emulator refuse fault)")
            return self._token(request)
        if path == "/api/oauth2/authorize":
            request.endpoint = "oauth.authorize"
            self._inject(request)
            if request.method != "GET":
                raise generic(405, "Method Not Allowed")
            query = {name: values[0] for name, values in request.query.items()}
            return Response(302, headers={"Location": self.ctx.auth.authorize(query)})
        route, params, known = find_route(request.method, path)
        if route is None:
            self._inject(request)
            if known:
                raise generic(405, "Method Not Allowed")
            raise BoxError(404, "not_found", f"No API endpoint at {request.method} {request.path}")
        request.endpoint = route.endpoint
        applied = self._inject(request)
        self._refuse(request)
        authorization = request.header("Authorization")
        if authorization is None and route.endpoint == "files.download" and request.arg("access_token"):
            # Box's download "pre-authentication": the token in the query string.
            authorization = f"Bearer {request.arg('access_token')}"
        user = self.ctx.auth.authenticate(authorization, request.header("As-User"))
        wait = self.faults.rate_limited(route.endpoint, user.id)
        if wait is not None:
            raise BoxError(429, "rate_limit_exceeded", "Request rate limit exceeded, please try again later",
                           None, {"Retry-After": str(wait)})
        response = route.handler(self.ctx, request, user, params)
        if applied is not None:
            # The work is done, but the client is told it failed (Box: "the write may have been applied").
            raise applied
        return response

    def _inject(self, request: Request) -> BoxError | None:
        """Raise a due fault now, or return it to raise after the handler ran (`applied`)."""
        fault = self.faults.injected(request.endpoint)
        if fault is None:
            return None
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        if fault.status == 429:
            headers.setdefault("Retry-After", "1")
            raise BoxError(429, "rate_limit_exceeded", "Request rate limit exceeded, please try again later",
                           None, headers)
        error = BoxError(fault.status, generic(fault.status, "").code, "Injected failure (emulator fault)",
                         None, headers)
        if fault.applied:
            return error
        raise error

    def _refuse(self, request: Request) -> None:
        """Answer 401 or 403 while a `refuse` window covers this endpoint."""
        status = self.faults.refusing(request.endpoint)
        if status == 401:
            raise unauthorized(self.ctx.auth.empty_401_body)
        if status == 403:
            raise BoxError(403, "access_denied_insufficient_permissions", "Access denied (emulator refuse fault)")

    def _token(self, request: Request) -> Response:
        raw = request.body.read_all(1 << 20)
        try:
            parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise OAuthError("invalid_request", "Body must be application/x-www-form-urlencoded") from None
        form = {name: values[0] for name, values in parsed.items()}
        return Response.json(200, self.ctx.auth.grant(form))

    # -- admin -------------------------------------------------------------
    def _check_admin_token(self, request: Request) -> None:
        if self._admin_token is None:
            return
        given = request.header("Authorization") or ""
        if not given.lower().startswith("bearer ") or \
                not secrets.compare_digest(given[7:].strip().encode(), self._admin_token.encode()):
            raise BoxError(401, "unauthorized", "The admin API needs the --admin-token as a Bearer token", None,
                           {"WWW-Authenticate": 'Bearer realm="syncd-emulator-admin"'})

    def _admin(self, request: Request, path: str) -> Response:
        action = (request.method, path[len("/_emulator"):])
        try:
            if action == ("GET", "/faults"):
                return Response.json(200, self.faults.snapshot())
            if action == ("PUT", "/faults"):
                return Response.json(200, self.faults.update(request.json()))
            if action == ("GET", "/stats"):
                return Response.json(200, self.stats.snapshot())
            if action == ("POST", "/stats/reset"):
                self.stats.reset()
                return Response.json(200, self.stats.snapshot())
            if action == ("POST", "/clock"):
                return self._advance_clock(request)
            if action == ("POST", "/tokens/expire"):
                return Response.json(200, {"expired": self.ctx.auth.expire_all()})
            if action == ("POST", "/oauth/refresh-token"):
                return Response.json(200, {"refresh_token": self.ctx.auth.mint_refresh_token(
                    self._admin_user(request))})
            if action == ("POST", "/oauth/tokens"):
                return Response.json(200, self.ctx.auth.issue_pair(self._admin_user(request)))
            if action == ("POST", "/jwt-keys"):
                return self._register_key(request)
            if action == ("POST", "/users"):
                return self._create_user(request)
        except ValueError as exc:
            raise BoxError(400, "bad_request", str(exc)) from None
        raise BoxError(404, "not_found", f"No admin endpoint at {request.method} {request.path}")

    def _admin_user(self, request: Request) -> str | None:
        """The body's optional `user_id` (None: the default user); 404 if no such user."""
        user_id = _optional_json(request).get("user_id")
        if user_id is None:
            return None
        if self.ctx.store.get_user(str(user_id)) is None:
            raise BoxError(404, "not_found", "Unknown user_id")
        return str(user_id)

    def _advance_clock(self, request: Request) -> Response:
        body = _optional_json(request)
        seconds = body.get("advance_seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise ValueError("advance_seconds must be a number")
        offset = self.ctx.clock.advance(float(seconds))
        self.ctx.store.set_meta("clock_offset", repr(offset))
        self.ctx.store.purge_expired_sessions(self.ctx.clock.now())
        return Response.json(200, {"now": iso(self.ctx.clock.now())})

    def _register_key(self, request: Request) -> Response:
        body = _optional_json(request)
        kid, pem = body.get("kid"), body.get("public_key_pem")
        if not isinstance(kid, str) or not kid or not isinstance(pem, str):
            raise ValueError("kid and public_key_pem are required strings")
        load_public_key(pem)
        self.ctx.store.save_jwt_key(kid, pem)
        return Response.json(201, {"kid": kid})

    def _create_user(self, request: Request) -> Response:
        body = _optional_json(request)
        name, login = body.get("name"), body.get("login")
        if not isinstance(name, str) or not name or not isinstance(login, str) or not login:
            raise ValueError("name and login are required strings")
        user = self.ctx.store.create_user(name, login, "user", DEFAULT_ENTERPRISE_ID, self.ctx.clock.now())
        return Response.json(201, self.ctx.shapes.user(user, self.faults.settings.storage_quota,
                                                       self.faults.settings.max_file_size))


def load_public_key(pem: str) -> Any:
    """Parse a PEM public key; ValueError with a clear message if it is not one."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        return load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise ValueError(f"public_key_pem is not a PEM public key: {exc}") from None


def _optional_json(request: Request) -> dict[str, Any]:
    if not request.body.present:
        return {}
    body = request.json()
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body
