"""HTTP layer: a threaded HTTP/1.1 server with keep-alive, TCP_NODELAY, TLS and traffic shaping.

One thread per connection (not per request). With a TLS context the same port
serves HTTPS and plain HTTP: the connection's first byte tells them apart (a TLS
ClientHello starts with 0x16, an HTTP request line with a letter), and the TLS
handshake runs in the connection's own thread, so a slow client never holds up
the accept loop. Absolute URLs in replies use the scheme the request came in on.

Request bodies are never read
whole: handlers pull them through `BodyReader` in ~1 MiB chunks, which also
implements `Transfer-Encoding: chunked`, the per-connection bandwidth cap and
the `drop_rate` fault (the connection is reset part-way through the body).
Every error, including HTTP parse errors such as oversized headers, is
answered with a Box-style JSON body.
"""

from __future__ import annotations

import email.message
import json
import os
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from syncd.emulator.errors import BoxError, OAuthError, generic
from syncd.emulator.faults import Faults, Stats
from syncd.emulator.ids import unique_hex

if TYPE_CHECKING:  # ssl is imported only by a TLS-serving emulator (tls.py): it costs memory
    import ssl

CHUNK = 1 << 20
TLS_HANDSHAKE = b"\x16"  # the first byte of every TLS connection (a handshake record)
MAX_JSON_BODY = 1 << 20
# Unread request bodies up to this size are drained so that the client sees our
# error reply instead of a reset; larger ones close the connection instead.
MAX_DRAIN = 256 << 20


class TruncatedBody(Exception):
    """The client closed the connection (or sent a bad chunk) before the body ended."""


class DropConnection(Exception):
    """The drop_rate fault chose to cut this request's connection mid-body."""


class Throttle:
    """Token bucket limiting one direction of one connection to `rate()` bytes/s."""

    def __init__(self, rate: Callable[[], int]) -> None:
        self._rate = rate
        self._allowance = 0.0
        self._last = time.monotonic()

    def chunk_size(self, wanted: int) -> int:
        rate = self._rate()
        if not rate:
            return wanted
        # Small slices keep the pacing smooth at low rates.
        return max(1, min(wanted, rate // 20 or 1))

    def consume(self, count: int) -> None:
        rate = self._rate()
        if not rate:
            return
        now = time.monotonic()
        # A burst of at most 50 ms worth of bytes: an idle connection must not
        # save up credit and then exceed the cap.
        self._allowance = min(rate * 0.05, self._allowance + (now - self._last) * rate)
        self._last = now
        self._allowance -= count
        if self._allowance < 0:
            time.sleep(-self._allowance / rate)
            self._last = time.monotonic()
            self._allowance = 0.0


class BodyReader:
    """Reads a request body (Content-Length or chunked), shaped and counted."""

    def __init__(self, rfile: Any, length: int | None, chunked: bool, throttle: Throttle,
                 cut_at: int | None) -> None:
        self._rfile = rfile
        self.length = length
        self.chunked = chunked
        self._throttle = throttle
        self._cut_at = cut_at
        self.bytes_read = 0
        self._chunk_left = 0
        self.finished = length == 0 or (length is None and not chunked)

    @property
    def present(self) -> bool:
        return self.chunked or bool(self.length)

    def _raw(self, size: int) -> bytes:
        size = self._throttle.chunk_size(size)
        if self._cut_at is not None:
            if self.bytes_read >= self._cut_at:
                raise DropConnection()
            size = min(size, self._cut_at - self.bytes_read)
        data = self._rfile.read1(size) if size > 0 else b""
        if not data and size > 0:
            raise TruncatedBody("connection closed before the request body ended")
        self._throttle.consume(len(data))
        self.bytes_read += len(data)
        return data

    def read(self, size: int = CHUNK) -> bytes:
        """Up to `size` bytes of body; b"" at the end. Raises TruncatedBody / DropConnection."""
        if self.finished:
            return b""
        if not self.chunked:
            assert self.length is not None
            data = self._raw(min(size, self.length - self.bytes_read))
            if self.bytes_read >= self.length:
                self.finished = True
            return data
        if self._chunk_left == 0:
            line = self._rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise TruncatedBody("bad chunk header")
            try:
                self._chunk_left = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise TruncatedBody("bad chunk size") from None
            if self._chunk_left == 0:
                while True:  # trailers up to the blank line
                    trailer = self._rfile.readline(65536)
                    if trailer in (b"\r\n", b"\n", b""):
                        break
                self.finished = True
                return b""
        data = self._raw(min(size, self._chunk_left))
        self._chunk_left -= len(data)
        if self._chunk_left == 0 and self._rfile.readline(3) not in (b"\r\n", b"\n"):
            raise TruncatedBody("chunk not followed by CRLF")
        return data

    def read_all(self, limit: int) -> bytes:
        """The whole body, at most `limit` bytes (else 413)."""
        pieces: list[bytes] = []
        total = 0
        while True:
            data = self.read(CHUNK)
            if not data:
                return b"".join(pieces)
            total += len(data)
            if total > limit:
                raise BoxError(413, "request_entity_too_large", "Request body too large")
            pieces.append(data)

    def drain(self, limit: int) -> bool:
        """Discard the rest of the body; False if more than `limit` bytes remain."""
        if self.finished:
            return True
        if self.length is not None and not self.chunked and self.length - self.bytes_read > limit:
            return False
        start = self.bytes_read
        while self.read(CHUNK):
            if self.bytes_read - start > limit:
                return False
        return True


@dataclass
class Request:
    """One parsed HTTP request, as the app sees it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: email.message.Message
    body: BodyReader
    origin: str
    request_id: str
    endpoint: str = "unknown"

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def fields(self) -> list[str] | None:
        """Box's `fields` query parameter as a list (None when absent)."""
        raw = self.arg("fields")
        if raw is None:
            return None
        return [name.strip() for name in raw.split(",") if name.strip()]

    def json(self, limit: int = MAX_JSON_BODY) -> Any:
        """The body (at most `limit` bytes, else 413) parsed as JSON; 400 bad_request if it is not."""
        raw = self.body.read_all(limit)
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BoxError(400, "bad_request", "Could not parse JSON body") from None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    files: list[Path] | None = None  # streamed one after the other instead of `body` (downloads)
    file_size: int = 0  # bytes of `files` to send ...
    file_offset: int = 0  # ... starting this far into their concatenation (a Range request)
    close: bool = False

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> "Response":
        return cls(status, json.dumps(payload, separators=(",", ":")).encode(),
                   {"Content-Type": "application/json", **(headers or {})})


def error_response(error: BoxError | OAuthError, request_id: str) -> Response:
    if isinstance(error, OAuthError):
        return Response.json(error.status, error.body())
    if error.empty_body:
        return Response(error.status, b"", dict(error.headers))
    return Response.json(error.status, error.body(request_id), error.headers)


class App:
    """What the HTTP layer needs from the application."""

    faults: Faults
    stats: Stats
    public_url: str | None

    def handle(self, request: Request) -> Response:  # pragma: no cover - interface
        raise NotImplementedError


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: App, tls: ssl.SSLContext | None = None) -> None:
        self.app = app
        self.tls = tls
        if ":" in address[0]:  # an IPv6 literal such as ::1
            self.address_family = socket.AF_INET6
        super().__init__(address, BoxRequestHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A failed TLS handshake (ssl.SSLError), a client gone mid-request, a
        # timeout: the client's business (curl without the CA, a port scanner),
        # no traceback for it. All of them are OSErrors; bugs are not.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class BoxRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "syncd-emulator"
    sys_version = ""
    server: EmulatorServer
    rbufsize = 256 * 1024
    # An idle keep-alive connection holds a thread; reap it after 5 minutes.
    timeout = 300

    def setup(self) -> None:
        self.scheme = "http"
        tls = self.server.tls
        if tls is not None:
            self.request.settimeout(self.timeout)
            if self.request.recv(1, socket.MSG_PEEK) == TLS_HANDSHAKE:
                self.request = tls.wrap_socket(self.request, server_side=True)
                self.scheme = "https"
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        faults = self.server.app.faults
        self._in = Throttle(lambda: faults.settings.bandwidth)
        self._out = Throttle(lambda: faults.settings.bandwidth)
        self._shaped = True

    def finish(self) -> None:
        super().finish()
        if self.scheme == "https":
            # socketserver closes the socket it accepted, which wrapping detached.
            self.request.close()

    def log_message(self, format: str, *args: Any) -> None:
        # Access logs would flood the test output; errors are visible in replies and stats.
        pass

    # BaseHTTPRequestHandler calls send_error for request-line/header parse
    # errors (414, 431, 400, 501): answer them Box-style too.
    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        error = generic(code, message or "Bad request")
        response = error_response(error, unique_hex(16))
        response.close = True
        self.close_connection = True
        try:
            self._write(response, head_only=False)
        except OSError:
            pass

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = do_HEAD = do_GET

    def _origin(self) -> str:
        public = self.server.app.public_url
        if public:
            return public.rstrip("/")
        host = self.headers.get("Host")
        if not host:
            address, port = self.server.server_address[:2]
            host = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        return f"{self.scheme}://{host}"

    def _body_reader(self) -> BodyReader:
        encoding = (self.headers.get("Transfer-Encoding") or "").lower()
        chunked = "chunked" in encoding
        length: int | None = None
        raw_length = self.headers.get("Content-Length")
        if not chunked and raw_length is not None:
            try:
                length = int(raw_length)
                if length < 0:
                    raise ValueError
            except ValueError:
                raise BoxError(400, "bad_request", "Invalid Content-Length header") from None
        cut_at = None
        if (chunked or length) and self._shaped and self.server.app.faults.should_drop():
            cut_at = self.server.app.faults.randint(0, (length or 65536) - 1)
        return BodyReader(self.rfile, length, chunked, self._in if self._shaped else Throttle(lambda: 0), cut_at)

    def _dispatch(self) -> None:
        app = self.server.app
        request_id = unique_hex(16)
        # Shaping never applies to the admin API, so tests can always undo a knob.
        self._shaped = not self.path.startswith("/_emulator/")
        latency = app.faults.settings.latency_ms
        if latency and self._shaped:
            time.sleep(latency / 1000.0)
        split = urlsplit(self.path)
        request: Request | None = None
        try:
            body = self._body_reader()
            request = Request(self.command, split.path, parse_qs(split.query, keep_blank_values=True),
                              self.headers, body, self._origin(), request_id)
            try:
                response = app.handle(request)
            except (BoxError, OAuthError) as error:
                response = error_response(error, request_id)
            if not body.finished and not body.drain(MAX_DRAIN):
                response.close = True
        except BoxError as error:  # bad framing headers, before a Request exists
            response = error_response(error, request_id)
            response.close = True
        except DropConnection:
            self._reset()
            if request is not None:
                app.stats.record(request.endpoint, 0, request.body.bytes_read)
            return
        except (TruncatedBody, ConnectionError, TimeoutError):
            self.close_connection = True
            if request is not None:
                app.stats.add_bytes(request.endpoint, request.body.bytes_read)
            return
        except Exception:  # a bug must not kill the connection thread silently
            traceback.print_exc()
            response = error_response(generic(500, "Internal Server Error"), request_id)
            response.close = True
        response.headers.setdefault("box-request-id", request_id)
        if request is not None and not request.endpoint.startswith("_"):
            app.stats.record(request.endpoint, response.status, request.body.bytes_read)
        try:
            self._write(response, head_only=self.command == "HEAD")
        except OSError:
            self.close_connection = True

    def _reset(self) -> None:
        """Cut the connection abruptly (RST), as a network failure would."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _write(self, response: Response, head_only: bool) -> None:
        lines = [f"HTTP/1.1 {response.status} {self.responses.get(response.status, ('',))[0]}"]
        headers = dict(response.headers)
        headers.setdefault("box-request-id", unique_hex(16))
        length = response.file_size if response.files is not None else len(response.body)
        if response.status not in (204, 304):
            headers["Content-Length"] = str(length)
        headers["Date"] = self.date_time_string()
        if response.close or self.close_connection:
            headers["Connection"] = "close"
            self.close_connection = True
        for name, value in headers.items():
            lines.append(f"{name}: {value}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if response.files is None:
            payload = head if head_only else head + response.body
            self._send(payload)
            return
        self._send(head)
        if head_only:
            return
        skip, remaining = response.file_offset, response.file_size
        for path in response.files:
            if remaining <= 0:
                break
            with open(path, "rb") as source:
                size = os.fstat(source.fileno()).st_size
                if skip >= size:
                    skip -= size
                    continue
                source.seek(skip)
                skip = 0
                while remaining > 0:
                    data = source.read(min(self._out.chunk_size(CHUNK), remaining))
                    if not data:
                        break
                    self._send(data)
                    remaining -= len(data)
        if remaining > 0:
            # The content is shorter than the Content-Length sent (it cannot be, unless
            # the data directory was damaged): end the connection so the client sees a
            # truncated body at once instead of waiting for bytes that never come.
            raise ConnectionAbortedError(f"content ended {remaining} bytes early")

    def _send(self, data: bytes) -> None:
        if not self.server.app.faults.settings.bandwidth or not getattr(self, "_shaped", True):
            self.wfile.write(data)
            return
        view = memoryview(data)
        while view:
            size = self._out.chunk_size(len(view))
            self.wfile.write(view[:size])
            self._out.consume(size)
            view = view[size:]


def serve(app: App, host: str, port: int, tls: ssl.SSLContext | None = None) -> EmulatorServer:
    """Bind (port 0 = ephemeral) and return the server; call serve_forever() on it.

    With `tls` the port answers HTTPS and plain HTTP alike (see the module docstring).
    """
    return EmulatorServer((host, port), app, tls)


def start_in_thread(server: EmulatorServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="emulator-http", daemon=True)
    thread.start()
    return thread
