"""The OAuth 2.0 authorization-code bootstrap behind `syncd auth login`.

A person opens the authorize URL, approves the app, and Box redirects the
browser to a loopback address where a one-shot listener picks up the code
(or the person pastes the code). The code is exchanged for tokens at once
(it lives 30 s) and the refresh token is stored with mode 0600.
"""

from __future__ import annotations

import http.server
import secrets
import threading
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

BOX_AUTHORIZE_URL = "https://account.box.com/api/oauth2/authorize"


def default_authorize_url(api_url: str) -> str:
    """Box's authorize page, or the emulator's when the API is not Box's."""
    parts = urlsplit(api_url)
    if parts.hostname and parts.hostname.endswith("box.com"):
        return BOX_AUTHORIZE_URL
    return f"{parts.scheme}://{parts.netloc}/api/oauth2/authorize"


def authorize_url(base: str, client_id: str, redirect_uri: str, state: str) -> str:
    """The URL a person opens to grant access."""
    query = urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
                       "state": state})
    return f"{base}?{query}"


def new_state() -> str:
    """An unguessable `state`, so a forged redirect cannot inject a code."""
    return secrets.token_urlsafe(24)


class AuthorizationDenied(Exception):
    """The redirect carried an error, or a `state` that is not ours."""


@dataclass
class _Result:
    code: str | None = None
    error: str | None = None


class RedirectListener:
    """A one-shot HTTP listener on loopback that receives Box's redirect."""

    def __init__(self, state: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = state
        self._result = _Result()
        self._done = threading.Event()
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                query = parse_qs(urlsplit(self.path).query)
                if query.get("state", [""])[0] != listener.state:
                    listener._finish(error="the redirect's state does not match this login (ignored)")
                elif "error" in query:
                    listener._finish(error=f"Box refused: {query['error'][0]} "
                                           f"{query.get('error_description', [''])[0]}".strip())
                elif query.get("code", [""])[0]:
                    listener._finish(code=query["code"][0])
                else:
                    listener._finish(error="the redirect carried no code")
                body = ("syncd: authorization received, you can close this window.\n" if listener._result.code
                        else f"syncd: {listener._result.error}\n").encode()
                self.send_response(200 if listener._result.code else 400)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # the query holds the code: never log it

        self._server = http.server.HTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="oauth-redirect", daemon=True)

    @property
    def redirect_uri(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/callback"

    def _finish(self, *, code: str | None = None, error: str | None = None) -> None:
        if not self._done.is_set():
            self._result = _Result(code, error)
            self._done.set()

    def __enter__(self) -> RedirectListener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait(self, timeout: float) -> str:
        """The authorization code; AuthorizationDenied or TimeoutError otherwise."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"no redirect arrived within {timeout:.0f} s")
        if self._result.code is None:
            raise AuthorizationDenied(self._result.error or "authorization failed")
        return self._result.code
