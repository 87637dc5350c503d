"""Bad input never crashes the emulator or corrupts its state; errors are Box-style JSON."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator

import pytest
import requests

from tests.emulator.wire import auth, commit, create_session, put_part, sha_digest
from tests.support.emulator import EmulatorProcess


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path_factory.mktemp("robust"), "--min-chunked-size", "1000",
                         "--part-sizes", "*=1KiB") as emulator:
        yield emulator
        assert emulator.process is not None and emulator.process.poll() is None, emulator.stderr
        assert "Traceback" not in emulator.stderr, emulator.stderr


def raw(box: EmulatorProcess, payload: bytes, read_timeout: float = 10) -> bytes:
    """Send raw bytes on a fresh connection; return everything the server answers until it closes."""
    host, port = box.origin.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=read_timeout) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def status_and_code(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    error = json.loads(body)
    assert error["type"] == "error" and error["status"] == status
    return status, error["code"]


def test_malformed_json_bodies(box: EmulatorProcess) -> None:
    for body in (b"{not json", b"\xff\xfe", b"[1, 2]", b""):
        reply = requests.post(f"{box.api_url}/folders", data=body, timeout=30,
                              headers={**auth(box), "Content-Type": "application/json"})
        assert reply.status_code == 400 and reply.json()["code"] == "bad_request", body
        reply = requests.post(f"{box.upload_url}/files/upload_sessions", data=body, headers=auth(box), timeout=30)
        assert reply.status_code == 400, body


def test_oversized_json_body_is_413(box: EmulatorProcess) -> None:
    reply = requests.post(f"{box.api_url}/folders", data=b"[" + b"0," * 600_000 + b"0]", headers=auth(box),
                          timeout=30)
    assert reply.status_code == 413 and reply.json()["code"] == "request_entity_too_large"


def test_missing_headers_and_wrong_content_range(box: EmulatorProcess) -> None:
    data = os.urandom(1500)
    session = create_session(box, "robust.bin", len(data)).json()
    url = session["session_endpoints"]["upload_part"]
    part = data[:1024]
    for headers, expected in (
        ({"Digest": sha_digest(part)}, (400, "bad_request")),
        ({"Content-Range": "bytes 0-1023/1500"}, (400, "bad_request")),
        ({"Digest": "md5=abc", "Content-Range": "bytes 0-1023/1500"}, (400, "bad_request")),
        ({"Digest": "sha=!!notbase64", "Content-Range": "bytes 0-1023/1500"}, (400, "bad_request")),
        ({"Digest": sha_digest(part), "Content-Range": "bytes 1023-0/1500"}, (416, "requested_range_not_satisfiable")),
    ):
        reply = requests.put(url, data=part, headers={**auth(box), **headers}, timeout=30)
        assert (reply.status_code, reply.json().get("code")) == expected, (headers, reply.text)
    answer = raw(box, (f"PUT /api/2.0/files/upload_sessions/{session['id']} HTTP/1.1\r\nHost: x\r\n"
                       f"Authorization: Bearer dev-token\r\nDigest: {sha_digest(part)}\r\n"
                       "Content-Range: bytes 0-1023/1500\r\n\r\n").encode())
    assert status_and_code(answer) == (411, "length_required")
    short = raw(box, (f"PUT /api/2.0/files/upload_sessions/{session['id']} HTTP/1.1\r\nHost: x\r\n"
                      f"Authorization: Bearer dev-token\r\nDigest: {sha_digest(part)}\r\n"
                      "Content-Range: bytes 0-1023/1500\r\nContent-Length: 10\r\n\r\n").encode() + part[:10])
    assert status_and_code(short) == (400, "bad_request")
    good = [put_part(box, session, data[offset:offset + 1024], offset, len(data)).json()["part"]
            for offset in (0, 1024)]
    assert commit(box, session, good, data).status_code == 201


def test_truncated_part_body_leaves_no_part(box: EmulatorProcess) -> None:
    data = os.urandom(2048)
    session = create_session(box, "truncated-part.bin", len(data)).json()
    head = (f"PUT /api/2.0/files/upload_sessions/{session['id']} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer dev-token\r\nDigest: {sha_digest(data[:1024])}\r\n"
            "Content-Range: bytes 0-1023/2048\r\nContent-Length: 1024\r\n\r\n").encode()
    raw(box, head + data[:300])
    listed = requests.get(session["session_endpoints"]["list_parts"], headers=auth(box), timeout=30).json()
    assert listed["total_count"] == 0
    parts = [put_part(box, session, data[offset:offset + 1024], offset, len(data)).json()["part"]
             for offset in (0, 1024)]
    assert commit(box, session, parts, data).status_code == 201


def test_chunked_part_body(box: EmulatorProcess) -> None:
    data = os.urandom(1200)
    session = create_session(box, "chunked-part.bin", len(data)).json()
    reply = requests.put(session["session_endpoints"]["upload_part"], data=iter([data[:500], data[500:1024]]),
                         headers={**auth(box), "Digest": sha_digest(data[:1024]),
                                  "Content-Range": "bytes 0-1023/1200"}, timeout=30)
    assert reply.status_code == 200, reply.text
    bad_framing = raw(box, (f"PUT /api/2.0/files/upload_sessions/{session['id']} HTTP/1.1\r\nHost: x\r\n"
                            f"Authorization: Bearer dev-token\r\nDigest: {sha_digest(data[1024:])}\r\n"
                            "Content-Range: bytes 1024-1199/1200\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "zz\r\nnope\r\n").encode())
    assert bad_framing == b""  # a broken framing closes the connection, nothing stored
    listed = requests.get(session["session_endpoints"]["list_parts"], headers=auth(box), timeout=30).json()
    assert listed["total_count"] == 1


def test_http_level_garbage(box: EmulatorProcess) -> None:
    huge_header = b"GET /2.0/users/me HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n"
    assert status_and_code(raw(box, huge_header))[0] == 431
    many = b"GET /2.0/users/me HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n"
    assert status_and_code(raw(box, many))[0] == 431
    long_line = b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert status_and_code(raw(box, long_line))[0] == 414
    assert status_and_code(raw(box, b"BLAH\r\n\r\n"))[0] == 400
    bad_length = b"POST /2.0/folders HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"
    assert status_and_code(raw(box, bad_length)) == (400, "bad_request")
    unknown = b"GET /definitely/not/here HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert status_and_code(raw(box, unknown)) == (404, "not_found")
    assert raw(box, b"") == b""


def test_keep_alive_survives_errors(box: EmulatorProcess) -> None:
    with requests.Session() as http:
        http.headers.update(auth(box))
        assert http.post(f"{box.api_url}/folders", data=b"{bad", timeout=30).status_code == 400
        assert http.get(f"{box.api_url}/nowhere", timeout=30).status_code == 404
        big = os.urandom(300_000)
        files = [("file", ("f", big)), ("attributes", (None, json.dumps({"name": "k", "parent": {"id": "0"}})))]
        assert http.post(f"{box.upload_url}/files/content", files=files, timeout=30).status_code == 400
        assert http.get(f"{box.api_url}/users/me", timeout=30).status_code == 200


def test_out_of_range_numbers_are_400_not_500(box: EmulatorProcess) -> None:
    huge = 10**20
    reply = requests.post(f"{box.upload_url}/files/upload_sessions", headers=auth(box), timeout=30,
                          json={"folder_id": "0", "file_size": huge, "file_name": "huge.bin"})
    assert reply.status_code == 400 and reply.json()["code"] == "invalid_file_size"
    for params in ({"offset": huge}, {"limit": huge}, {"usemarker": "true", "marker": "bzoxMDAwMDAwMDAwMDAwMDAwMDAwMDAw"}):
        reply = requests.get(f"{box.api_url}/folders/0/items", params=params, headers=auth(box), timeout=30)
        assert reply.status_code == 400, params
    preflight = requests.options(f"{box.api_url}/files/content", headers=auth(box), timeout=30,
                                 json={"name": "n.bin", "size": huge, "parent": {"id": "0"}})
    assert preflight.status_code == 400
    for knobs in ({"latency_ms": huge}, {"latency_ms": "inf"}, {"commit_retry_after": huge},
                  {"token_ttl": 0}, {"reject_next": {"count": 1, "status": 429, "retry_after": huge}}):
        assert requests.put(f"{box.origin}/_emulator/faults", json=knobs, timeout=30).status_code == 400, knobs
    infinite = requests.put(f"{box.origin}/_emulator/faults", data=b'{"latency_ms": Infinity}', timeout=30)
    assert infinite.status_code == 400
    put_time = requests.post(f"{box.upload_url}/files/content", headers=auth(box), timeout=30,
                             files=[("attributes", (None, json.dumps({"name": "t.txt", "parent": {"id": "0"}}))),
                                    ("file", ("f", b"t"))]).json()["entries"][0]
    nulled = requests.put(f"{box.api_url}/files/{put_time['id']}", json={"content_modified_at": None},
                          headers=auth(box), timeout=30)
    assert nulled.status_code == 400 and nulled.json()["code"] == "bad_request"


def test_admin_api_is_never_shaped(box: EmulatorProcess) -> None:
    box.faults(latency_ms=600_000, bandwidth=1, drop_rate=1.0, fail_rate=1.0)
    try:
        assert box.faults()["latency_ms"] == 600_000  # answered at once despite the knobs
    finally:
        box.faults(latency_ms=0, bandwidth=0, drop_rate=0, fail_rate=0)
    assert requests.get(f"{box.api_url}/users/me", headers=auth(box), timeout=30).status_code == 200
