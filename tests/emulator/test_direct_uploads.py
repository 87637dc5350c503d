"""Direct uploads, new versions and the preflight check, over real HTTP."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.emulator.wire import auth, upload
from tests.support.emulator import EmulatorProcess


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path_factory.mktemp("direct")) as emulator:
        yield emulator


def error_of(response: requests.Response) -> tuple[int, str]:
    body = response.json()
    assert body["type"] == "error" and body["status"] == response.status_code
    assert body["request_id"] and response.headers["box-request-id"]
    return response.status_code, body["code"]


def test_upload_creates_file_with_box_shapes(box: EmulatorProcess) -> None:
    data = b"hello box\n"
    reply = upload(box, "hello.txt", data, content_modified_at="2024-05-01T10:00:00+02:00")
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["total_count"] == 1 and len(body["entries"]) == 1
    entry = body["entries"][0]
    assert entry["type"] == "file" and isinstance(entry["id"], str)
    assert entry["etag"] == "0" and entry["sequence_id"] == "0"
    assert entry["sha1"] == hashlib.sha1(data).hexdigest() == entry["file_version"]["sha1"]
    assert entry["size"] == len(data) and entry["item_status"] == "active"
    assert entry["parent"]["id"] == "0" and entry["path_collection"]["entries"][0]["name"] == "All Files"
    assert entry["content_modified_at"] == "2024-05-01T08:00:00+00:00"
    assert all(entry[key] for key in ("created_at", "modified_at", "content_created_at"))
    assert box.download(entry["id"]) == data


def test_fields_query_returns_mini_plus_requested(box: EmulatorProcess) -> None:
    files = [("attributes", (None, json.dumps({"name": "fields.txt", "parent": {"id": "0"}}))),
             ("file", ("f", b"x"))]
    reply = requests.post(f"{box.upload_url}/files/content?fields=size,created_by", files=files,
                          headers=auth(box), timeout=30)
    entry = reply.json()["entries"][0]
    assert entry["size"] == 1 and entry["created_by"]["id"] == "11446498"
    assert "path_collection" not in entry and entry["sha1"]


def test_content_md5_is_checked_as_sha1(box: EmulatorProcess) -> None:
    data = b"digest me"
    good = upload(box, "md5-ok.txt", data, headers={"content-md5": hashlib.sha1(data).hexdigest()})
    assert good.status_code == 201
    bad = upload(box, "md5-bad.txt", data, headers={"content-md5": hashlib.sha1(b"other").hexdigest()})
    assert error_of(bad) == (400, "bad_digest")
    names = {item["name"] for item in box.folder_items("0")}
    assert "md5-bad.txt" not in names


def test_attributes_after_file_is_rejected(box: EmulatorProcess) -> None:
    files = [("file", ("a.txt", b"content")),
             ("attributes", (None, json.dumps({"name": "late.txt", "parent": {"id": "0"}})))]
    reply = requests.post(f"{box.upload_url}/files/content", files=files, headers=auth(box), timeout=30)
    assert error_of(reply) == (400, "metadata_after_file_contents")


def test_any_part_name_empty_filename_and_no_content_type(box: EmulatorProcess) -> None:
    boundary = "XyZbOuNdArY"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"attributes\"\r\n\r\n"
            + json.dumps({"name": "rclone-style.bin", "parent": {"id": "0"}})
            + f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"contents\"; filename=\"\"\r\n\r\n"
            ).encode() + b"\x00\x01payload" + f"\r\n--{boundary}--\r\n".encode()
    reply = requests.post(f"{box.upload_url}/files/content", data=body, timeout=30,
                          headers={**auth(box), "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert reply.status_code == 201, reply.text
    assert box.download(reply.json()["entries"][0]["id"]) == b"\x00\x01payload"


def test_chunked_transfer_encoding_body(box: EmulatorProcess) -> None:
    boundary = "chunkyboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"attributes\"\r\n\r\n"
            + json.dumps({"name": "chunked.bin", "parent": {"id": "0"}})
            + f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    payload = bytes(range(256)) * 300
    tail = f"\r\n--{boundary}--\r\n".encode()

    def pieces() -> Iterator[bytes]:  # a generator makes requests send Transfer-Encoding: chunked
        yield head
        for start in range(0, len(payload), 7000):
            yield payload[start:start + 7000]
        yield tail

    reply = requests.post(f"{box.upload_url}/files/content", data=pieces(), timeout=30,
                          headers={**auth(box), "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert reply.status_code == 201, reply.text
    assert reply.json()["entries"][0]["sha1"] == hashlib.sha1(payload).hexdigest()


@pytest.mark.parametrize(("name", "code"), [
    ("", "item_name_invalid"), ("a/b", "item_name_invalid"), ("back\\slash", "item_name_invalid"),
    (".", "item_name_invalid"), ("..", "item_name_invalid"), ("trailing ", "item_name_invalid"),
    ("tab\there", "item_name_invalid"), ("x" * 256, "item_name_too_long"),
])
def test_name_rules(box: EmulatorProcess, name: str, code: str) -> None:
    assert error_of(upload(box, name, b"n")) == (400, code)


def test_leading_space_and_255_chars_are_accepted(box: EmulatorProcess) -> None:
    assert upload(box, " leading.txt", b"l").status_code == 201
    assert upload(box, "y" * 255, b"l").status_code == 201


def test_missing_parent_and_bad_requests(box: EmulatorProcess) -> None:
    assert error_of(upload(box, "orphan.txt", b"o", parent="999999")) == (404, "not_found")
    no_parent = [("attributes", (None, json.dumps({"name": "np.txt"}))), ("file", ("f", b"x"))]
    reply = requests.post(f"{box.upload_url}/files/content", files=no_parent, headers=auth(box), timeout=30)
    assert error_of(reply) == (400, "bad_request")
    not_json = [("attributes", (None, "{not json")), ("file", ("f", b"x"))]
    reply = requests.post(f"{box.upload_url}/files/content", files=not_json, headers=auth(box), timeout=30)
    assert error_of(reply) == (400, "bad_request")
    no_file = [("attributes", (None, json.dumps({"name": "nf.txt", "parent": {"id": "0"}})))]
    reply = requests.post(f"{box.upload_url}/files/content", files=no_file, headers=auth(box), timeout=30)
    assert error_of(reply) == (400, "bad_request")
    reply = requests.post(f"{box.upload_url}/files/content", data=b"plain", headers=auth(box), timeout=30)
    assert error_of(reply) == (400, "bad_request")


def test_name_clash_is_case_insensitive_with_conflict_object(box: EmulatorProcess) -> None:
    first = upload(box, "Report.PDF", b"v1").json()["entries"][0]
    clash = upload(box, "report.pdf", b"v2")
    assert error_of(clash) == (409, "item_name_in_use")
    conflict = clash.json()["context_info"]["conflicts"]
    assert isinstance(conflict, dict)
    assert conflict["id"] == first["id"] and conflict["sha1"] == hashlib.sha1(b"v1").hexdigest()
    folder = requests.post(f"{box.api_url}/folders", json={"name": "Dir-Clash", "parent": {"id": "0"}},
                           headers=auth(box), timeout=30).json()
    clash = upload(box, "dir-clash", b"x")
    assert error_of(clash) == (409, "item_name_in_use")
    assert clash.json()["context_info"]["conflicts"]["type"] == "folder"
    assert clash.json()["context_info"]["conflicts"]["id"] == folder["id"]


def upload_version(box: EmulatorProcess, file_id: str, data: bytes, headers: dict[str, str] | None = None,
                   **attributes: object) -> requests.Response:
    files = [("attributes", (None, json.dumps(attributes))), ("file", ("f", data))]
    return requests.post(f"{box.upload_url}/files/{file_id}/content", files=files,
                         headers={**auth(box), **(headers or {})}, timeout=30)


def test_new_version_keeps_id_and_changes_version(box: EmulatorProcess) -> None:
    original = upload(box, "versioned.txt", b"one").json()["entries"][0]
    reply = upload_version(box, original["id"], b"two", headers={"If-Match": original["etag"]},
                           name="versioned-renamed.txt", content_modified_at="2020-01-02T03:04:05Z")
    assert reply.status_code in (200, 201), reply.text
    new = reply.json()["entries"][0]
    assert new["id"] == original["id"] and new["name"] == "versioned-renamed.txt"
    assert new["file_version"]["id"] != original["file_version"]["id"]
    assert new["etag"] != original["etag"] and new["sequence_id"] != original["sequence_id"]
    assert new["sha1"] == hashlib.sha1(b"two").hexdigest()
    assert new["content_modified_at"] == "2020-01-02T03:04:05+00:00"
    assert box.download(new["id"]) == b"two"
    past = box.file_versions(new["id"])
    assert [version["sha1"] for version in past] == [hashlib.sha1(b"one").hexdigest()]


def test_version_if_match_and_missing_file(box: EmulatorProcess) -> None:
    item = upload(box, "ifmatch.txt", b"one").json()["entries"][0]
    stale = upload_version(box, item["id"], b"two", headers={"If-Match": "41"})
    assert error_of(stale) == (412, "precondition_failed")
    assert box.download(item["id"]) == b"one"
    assert error_of(upload_version(box, "987654321", b"x")) == (404, "not_found")
    assert error_of(upload_version(box, "987654321", b"x", headers={"If-Match": "0"})) == (404, "not_found")
    other = upload(box, "taken.txt", b"t").json()["entries"][0]
    clash = upload_version(box, item["id"], b"three", name="TAKEN.txt")
    assert error_of(clash) == (409, "item_name_in_use")
    assert clash.json()["context_info"]["conflicts"]["id"] == other["id"]


def preflight(box: EmulatorProcess, body: dict[str, object], path: str = "/files/content") -> requests.Response:
    return requests.options(f"{box.api_url}{path}", json=body, headers=auth(box), timeout=30)


def test_preflight_ok_and_upload_url_accepts_the_post(box: EmulatorProcess) -> None:
    reply = preflight(box, {"name": "pre.txt", "size": 5, "parent": {"id": "0"}})
    assert reply.status_code == 200, reply.text
    url = reply.json()["upload_url"]
    assert url.startswith(box.origin) and "upload_session_id=" in url and reply.json()["upload_token"]
    files = [("attributes", (None, json.dumps({"name": "pre.txt", "parent": {"id": "0"}}))), ("file", ("f", b"hello"))]
    posted = requests.post(url, files=files, headers=auth(box), timeout=30)
    assert posted.status_code == 201, posted.text
    slash = preflight(box, {"name": "pre2.txt", "size": 5, "parent": {"id": "0"}}, "/files/content/")
    assert slash.status_code == 200


def test_preflight_errors(box: EmulatorProcess) -> None:
    existing = upload(box, "pre-exists.txt", b"abc").json()["entries"][0]
    clash = preflight(box, {"name": "PRE-EXISTS.txt", "size": 3, "parent": {"id": "0"}})
    assert error_of(clash) == (409, "item_name_in_use")
    assert clash.json()["context_info"]["conflicts"]["sha1"] == existing["sha1"]
    assert error_of(preflight(box, {"name": "x", "parent": {"id": "424242"}})) == (404, "not_found")
    assert error_of(preflight(box, {"name": "bad/name", "parent": {"id": "0"}})) == (400, "item_name_invalid")
    assert error_of(preflight(box, {"name": "x", "size": -1, "parent": {"id": "0"}})) == (400, "bad_request")
    version = preflight(box, {"name": "pre-exists.txt", "size": 3}, f"/files/{existing['id']}/content")
    assert version.status_code == 200 and f"/files/{existing['id']}/content" in version.json()["upload_url"]


def test_public_url_and_host_header_drive_absolute_urls(box: EmulatorProcess,
                                                        emulator_factory) -> None:
    reply = requests.options(f"{box.api_url}/files/content", json={"name": "h.txt", "parent": {"id": "0"}},
                             headers={**auth(box), "Host": "proxy.example:8443"}, timeout=30)
    assert reply.json()["upload_url"].startswith("http://proxy.example:8443/api/2.0/files/content")
    public = emulator_factory("--public-url", "https://box.example.com")
    reply = preflight(public, {"name": "p.txt", "parent": {"id": "0"}})
    assert reply.json()["upload_url"].startswith("https://box.example.com/api/2.0/files/content?")


def test_truncated_upload_leaves_no_file(box: EmulatorProcess, tmp_path: Path) -> None:
    boundary = "cutcut"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"attributes\"\r\n\r\n"
            + json.dumps({"name": "truncated.bin", "parent": {"id": "0"}})
            + f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\n").encode()
    host, port = box.origin.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall((f"POST /api/2.0/files/content HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer dev-token\r\n"
                      f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 100000\r\n\r\n"
                      ).encode() + head + b"only part of the file")
    names = {item["name"] for item in box.folder_items("0")}
    assert "truncated.bin" not in names
    assert upload(box, "truncated.bin", b"whole").status_code == 201


def test_concurrent_upload_of_the_same_name_is_temporarily_reserved(box: EmulatorProcess) -> None:
    boundary = "slowboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"attributes\"\r\n\r\n"
            + json.dumps({"name": "in-flight.bin", "parent": {"id": "0"}})
            + f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\n").encode()
    release = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield head
        yield b"first half "
        release.wait(10)
        yield b"second half" + f"\r\n--{boundary}--\r\n".encode()

    result: list[requests.Response] = []
    sender = threading.Thread(target=lambda: result.append(requests.post(
        f"{box.upload_url}/files/content", data=slow_body(), timeout=30,
        headers={**auth(box), "Content-Type": f"multipart/form-data; boundary={boundary}"})))
    sender.start()
    try:
        for _ in range(200):  # until the slow upload's attributes have been read
            check = preflight(box, {"name": "in-flight.BIN", "parent": {"id": "0"}})
            if check.status_code == 409:
                break
            time.sleep(0.02)
        assert error_of(check) == (409, "name_temporarily_reserved")
        assert error_of(upload(box, "IN-FLIGHT.bin", b"other")) == (409, "name_temporarily_reserved")
    finally:
        release.set()
        sender.join(30)
    assert result[0].status_code == 201
    assert box.download(result[0].json()["entries"][0]["id"]) == b"first half second half"
    assert error_of(upload(box, "in-flight.bin", b"again")) == (409, "item_name_in_use")
