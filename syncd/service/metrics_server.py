"""The HTTP server for /metrics and /healthz.

`MetricsServer` serves `/metrics` (a `Metrics` exposition) and `/healthz` (the
same `HealthCheck` that drives the systemd watchdog) from a daemon thread, on
loopback unless told otherwise.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from syncd.config import is_loopback_host
from syncd.logs import get_logger
from syncd.service.health import HealthCheck
from syncd.service.metrics import Metrics

log = get_logger(__name__)


class MetricsServerError(RuntimeError):
    """The metrics server could not start (bad address, port in use...)."""


class _Handler(BaseHTTPRequestHandler):
    # Set per server class in MetricsServer.start.
    metrics: Metrics
    health: HealthCheck
    server_version = "syncd-metrics"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body, content_type = self.metrics.exposition(self.headers.get("Accept", ""))
            self._reply(200, body, content_type)
        elif path == "/healthz":
            report = self.health.check()
            data = report.to_dict()
            refusing = sorted(scope for scope, no in self.metrics.box_refusals().items() if no)
            data["box_refusing"] = refusing
            if report.healthy and refusing:
                # Box refusing us is no reason for systemd to restart the daemon: 200, not 503.
                data["status"] = "degraded"
            body = json.dumps(data, sort_keys=True).encode()
            self._reply(200 if report.healthy else 503, body, "application/json")
        else:
            self._reply(404, b'{"error": "not found; try /metrics or /healthz"}', "application/json")

    def do_POST(self) -> None:  # noqa: N802
        self._reply(405, b'{"error": "method not allowed"}', "application/json", allow="GET")

    do_PUT = do_DELETE = do_PATCH = do_POST  # noqa: N815

    def _reply(self, code: int, body: bytes, content_type: str, allow: str | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if allow:
            self.send_header("Allow", allow)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (base class's name)
        # http.server writes every request to stderr; a scrape every 15 s is not news.
        log.debug("metrics_http_request", client=self.client_address[0], request=format % args)


class MetricsServer:
    """Serves /metrics and /healthz on host:port from a daemon thread.

    Port 0 picks a free port (see `port` after `start()`). Non-loopback
    addresses are refused unless `allow_non_loopback` is set: the endpoints
    carry no secrets, but watch names and volumes are nobody else's business.
    """

    def __init__(
        self,
        metrics: Metrics,
        health: HealthCheck,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        allow_non_loopback: bool = False,
    ) -> None:
        if not 0 <= port <= 65535:
            raise MetricsServerError(f"metrics port must be between 0 and 65535, got {port}")
        if not allow_non_loopback and not is_loopback_host(host):
            raise MetricsServerError(
                f"metrics address {host!r} is not a loopback address; use 127.0.0.1 or ::1, "
                "or allow non-loopback addresses explicitly"
            )
        self._metrics = metrics
        self._health = health
        self._host = host
        self._requested_port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"MetricsServer(host={self._host!r}, port={self.port})"

    @property
    def port(self) -> int:
        """The bound port (the requested one until `start()`)."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:9464."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Bind and serve in a daemon thread; raises MetricsServerError if the address is unusable."""
        if self._server is not None:
            raise MetricsServerError("metrics server already started")
        handler = type("MetricsHandler", (_Handler,), {"metrics": self._metrics, "health": self._health})
        server_class = _server_class_for(self._host)
        try:
            server = server_class((self._host, self._requested_port), handler)
        except OSError as exc:
            raise MetricsServerError(
                f"cannot serve metrics on {self._host}:{self._requested_port}: {exc.strerror or exc}"
            ) from exc
        self._server = server
        # A short poll interval keeps stop() quick (shutdown waits for the next poll).
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="metrics-http", daemon=True
        )
        self._thread.start()
        log.info("metrics_server_started", url=self.url)

    def stop(self) -> None:
        """Stop serving and release the port."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)


def _server_class_for(host: str) -> type[ThreadingHTTPServer]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return type("MetricsHTTPServer", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True})
