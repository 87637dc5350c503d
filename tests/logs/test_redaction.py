"""The redactor: credential keys, registered secrets, exceptions and library log lines."""

from __future__ import annotations

import http.server
import io
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import structlog

from syncd import logs
from syncd.config import load_config

SECRET = "s3cr3t-token-value-81"


def _json_lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


@pytest.fixture
def json_log() -> io.StringIO:
    buffer = io.StringIO()
    logs.configure_logging("json", "debug", stream=buffer)
    logs.register_secret(SECRET)
    return buffer


def test_sensitive_keys_are_masked_at_any_depth(json_log: io.StringIO) -> None:
    logs.get_logger("syncd.t").info(
        "token refreshed",
        access_token="abc", refresh_token="def", client_secret="ghi", password="p", Authorization="Bearer x",
        private_key="k", assertion="jwt", passphrase="pp", token_url="http://127.0.0.1/oauth2/token",
        request={"headers": {"authorization": "Bearer zzz", "Accept": "application/json"},
                 "form": [{"refresh_token": "rt"}, {"grant_type": "refresh_token"}]},
    )
    (line,) = _json_lines(json_log)
    for key in ("access_token", "refresh_token", "client_secret", "password", "Authorization", "private_key",
                "assertion", "passphrase"):
        assert line[key] == "***", key
    assert line["token_url"] == "http://127.0.0.1/oauth2/token"
    assert line["request"] == {"headers": {"authorization": "***", "Accept": "application/json"},
                               "form": [{"refresh_token": "***"}, {"grant_type": "refresh_token"}]}


def test_registered_secret_is_replaced_inside_any_string(json_log: io.StringIO) -> None:
    structlog.contextvars.bind_contextvars(context_note=f"ctx {SECRET}")
    logs.get_logger("syncd.t").warning(
        f"event text {SECRET}", nested={"list": [f"a{SECRET}b", (1, f"{SECRET}")]}, raw=SECRET.encode(),
        path=Path(f"/tmp/{SECRET}"),
    )
    (line,) = _json_lines(json_log)
    assert line["event"] == "event text ***"
    assert line["nested"] == {"list": ["a***b", [1, "***"]]}
    assert (line["raw"], line["path"], line["context_note"]) == ("***", "/tmp/***", "ctx ***")
    assert SECRET not in json_log.getvalue()


def test_exception_message_and_traceback_are_scrubbed(json_log: io.StringIO) -> None:
    log = logs.get_logger("syncd.t")
    try:
        raise PermissionError(f"401 for token {SECRET}")
    except PermissionError as error:
        log.exception("upload failed", error=error)
        log.error("upload failed again", exc_info=error)
    first, second = _json_lines(json_log)
    assert first["error"] == "PermissionError: 401 for token ***"
    assert first["exception"].startswith("Traceback (most recent call last):")
    assert first["exception"].endswith("PermissionError: 401 for token ***")
    assert second["exception"] == first["exception"]
    assert SECRET not in json_log.getvalue()


def test_patterns_are_masked_without_registration(json_log: io.StringIO) -> None:
    logs.get_logger("syncd.t").info(
        "headers were Authorization: Bearer eyJhbGciOi.abc-DEF",
        url="https://x/oauth2/token?access_token=abc123&x=1",
        body='{"access_token": "tok1", "expires_in": 3600, "refresh_token":"tok2"}',
    )
    (line,) = _json_lines(json_log)
    assert line["event"] == "headers were Authorization: Bearer ***"
    assert line["url"] == "https://x/oauth2/token?access_token=***&x=1"
    assert line["body"] == '{"access_token": "***", "expires_in": 3600, "refresh_token":"***"}'


def test_secrets_from_a_loaded_config_are_scrubbed(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "c.yaml").write_text(
        "box:\n  auth: {type: developer_token, token: {env: TOK}}\njournal: j.db\n"
        "watches: [{path: in, folder_id: '0'}]\n")
    config = load_config(tmp_path / "c.yaml", environ={"TOK": "config-token-9931"})
    buffer = io.StringIO()
    logs.configure_logging("json", "info", stream=buffer)
    for secret in config.secrets:
        logs.register_secret(secret)
    logs.get_logger().info("using token config-token-9931 (url-encoded: config-token-9931)")
    assert "config-token-9931" not in buffer.getvalue() and "***" in buffer.getvalue()


def test_very_short_values_are_not_registered(json_log: io.StringIO) -> None:
    logs.register_secret("ab")
    logs.get_logger().info("about a cab")
    assert _json_lines(json_log)[0]["event"] == "about a cab"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_requests_and_urllib3_log_lines_are_routed_and_scrubbed(json_log: io.StringIO, http_server: str) -> None:
    response = requests.get(f"{http_server}/2.0/folders/0?access_token=raw-unregistered&marker={SECRET}",
                            timeout=5)
    assert response.status_code == 200
    try:
        requests.get(f"http://127.0.0.1:1/token/{SECRET}", timeout=2)
    except requests.ConnectionError:
        logs.get_logger("syncd.box").exception("request failed")
    lines = _json_lines(json_log)
    urllib3_lines = [line for line in lines if line["logger"] == "urllib3.connectionpool"]
    assert any(line["event"].startswith("Starting new HTTP connection") for line in urllib3_lines)
    request_line = next(line for line in urllib3_lines if "GET /2.0/folders/0" in line["event"])
    assert request_line["event"].endswith('"GET /2.0/folders/0?access_token=***&marker=*** HTTP/1.1" 200 12')
    assert request_line["level"] == "debug"
    failure = next(line for line in lines if line["event"] == "request failed")
    assert "/token/***" in failure["exception"]
    assert SECRET not in json_log.getvalue() and "raw-unregistered" not in json_log.getvalue()


def test_handler_errors_do_not_echo_the_record(capfd: pytest.CaptureFixture[str]) -> None:
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError("disk gone")

    logs.configure_logging("json", "info", stream=Broken())
    logging.getLogger("urllib3").warning("token %s", SECRET)
    captured = capfd.readouterr()
    assert "could not emit a WARNING record from urllib3 (OSError)" in captured.err
    assert SECRET not in captured.err + captured.out


def test_secret_is_scrubbed_when_url_encoded(json_log: io.StringIO) -> None:
    logs.register_secret("p@ss word/+=")
    logs.get_logger().info("form body client_secret=p%40ss+word%2F%2B%3D&x=1 and path p%40ss%20word%2F%2B%3D")
    event = _json_lines(json_log)[0]["event"]
    assert "p%40ss" not in event and event.endswith("path ***")
