"""A real HTTP proxy in front of the emulator that answers some requests itself, for
behaviour the emulator does not offer (a Box without the plan endpoint, a Box that
refuses plans). Everything else is forwarded as it came, ``Host`` included, so the
emulator's absolute URLs name the proxy and the client keeps going through it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

#: (method, path) -> (status, JSON body) to answer instead of the emulator, or None to forward.
Override = Callable[[str, str], "tuple[int, object] | None"]

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class BoxProxy:
    """``with BoxProxy(emulator.origin, override) as proxy:`` then point a client at ``proxy.api_url``."""

    def __init__(self, target_origin: str, override: Override) -> None:
        self.target = target_origin
        self.override = override
        self.answered: list[tuple[str, str]] = []  # requests the proxy answered itself
        self._http = requests.Session()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                answer = proxy.override(self.command, path)
                if answer is not None:
                    proxy.answered.append((self.command, path))
                    status, payload = answer
                    data = json.dumps(payload).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                response = proxy._http.request(self.command, proxy.target + self.path, data=body, headers=headers,
                                               allow_redirects=False, timeout=60)
                self.send_response(response.status_code)
                for key, value in response.headers.items():
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(response.content)))
                self.end_headers()
                self.wfile.write(response.content)

            do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.api_url = f"{self.origin}/2.0"
        self.upload_url = f"{self.origin}/api/2.0"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "BoxProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()
