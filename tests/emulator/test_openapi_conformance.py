"""Every emulator endpoint, driven over real HTTP, answers what openapi.json describes.

Each response (success and error) is validated against the matching schema in Box's
openapi.json through tests/support/openapi.py, whose SPEC_EXCEPTIONS table lists where
the live service (and so the emulator) knowingly differs from the spec. Status codes
and error codes are asserted where REFERENCE.md is definite.

One emulator serves the whole module (started once: the tests create uniquely named
items so they do not see each other); tests that move the clock or expire tokens get
their own emulator.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support import openapi
from tests.support.emulator import EmulatorProcess

# Small sessions keep these tests fast: chunked uploads allowed from 1 KiB, and
# part sizes come from the emulator's answer, never assumed.
MIN_CHUNKED = 1024
PART_SIZE_ARGS = ("--min-chunked-size", str(MIN_CHUNKED), "--part-sizes", "*=1MiB")


def sha1_hex(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def sha1_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:10]}"


def _hint(response: requests.Response) -> str:
    """The start of a JSON body for assertion messages, credentials masked."""
    try:
        return json.dumps(openapi.redact(response.json()))[:300]
    except ValueError:
        return ""


@dataclass
class BoxWire:
    """Raw HTTP against the emulator; every response is validated against openapi.json."""

    emulator: EmulatorProcess
    token: str = field(repr=False)  # never in tracebacks
    http: requests.Session = field(default_factory=requests.Session)

    def call(
        self,
        method: str,
        url: str,
        expect: int | tuple[int, ...],
        *,
        code: str | None = None,
        template: str | None = None,
        auth: bool = True,
        **kwargs: Any,
    ) -> tuple[requests.Response, Any]:
        headers = dict(kwargs.pop("headers", {}) or {})
        if auth:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        response = self.http.request(method, url, headers=headers, timeout=30, **kwargs)
        expected = (expect,) if isinstance(expect, int) else expect
        body_hint = _hint(response)
        assert response.status_code in expected, f"{method} {url}: {response.status_code} {body_hint}"
        # The template comes from the URL asked for, not a redirect's target.
        body = openapi.validate_http_response(response, template or openapi.path_template_for(method, url))
        if code is not None:
            assert isinstance(body, dict) and body.get("code") == code, f"{method} {url}: {body_hint}"
        if isinstance(body, dict) and body.get("type") == "error":
            assert body["status"] == response.status_code
            assert body.get("request_id"), "errors carry request_id (REFERENCE.md §1)"
        return response, body

    # -- endpoint shorthands -------------------------------------------------------------

    def upload(
        self,
        name: str,
        data: bytes,
        parent: str = "0",
        *,
        expect: int | tuple[int, ...] = 201,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra_attributes: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[requests.Response, Any]:
        attributes = {"name": name, "parent": {"id": parent}, **(extra_attributes or {})}
        openapi.validate_request("POST", "/files/content", attributes)
        files = [("attributes", (None, json.dumps(attributes))), ("file", ("blob", data))]
        return self.call(
            "POST",
            f"{self.emulator.upload_url}/files/content",
            expect,
            code=code,
            files=files,
            headers=headers,
            params=params,
        )

    def create_session(self, name: str, size: int, parent: str = "0", **kw: Any) -> tuple[requests.Response, Any]:
        payload = {"folder_id": parent, "file_size": size, "file_name": name}
        openapi.validate_request("POST", "/files/upload_sessions", payload)
        return self.call("POST", f"{self.emulator.upload_url}/files/upload_sessions", kw.pop("expect", 201), json=payload, **kw)

    def put_part(self, session: dict[str, Any], data: bytes, offset: int, total: int, **kw: Any) -> tuple[requests.Response, Any]:
        headers = {
            "Digest": f"sha={sha1_b64(data)}",
            "Content-Range": f"bytes {offset}-{offset + len(data) - 1}/{total}",
            "Content-Type": "application/octet-stream",
            **kw.pop("headers", {}),
        }
        return self.call("PUT", session["session_endpoints"]["upload_part"], kw.pop("expect", 200), data=data, headers=headers, **kw)

    def commit(self, session: dict[str, Any], parts: list[dict[str, Any]], whole: bytes, **kw: Any) -> tuple[requests.Response, Any]:
        body = {"parts": parts, **kw.pop("extra", {})}
        openapi.validate_request("POST", "/files/upload_sessions/{upload_session_id}/commit", body)
        headers = {"Digest": f"sha={kw.pop('digest', sha1_b64(whole))}", **kw.pop("headers", {})}
        return self.call("POST", session["session_endpoints"]["commit"], kw.pop("expect", 201), json=body, headers=headers, **kw)


@pytest.fixture(scope="module")
def shared_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    process = EmulatorProcess(tmp_path_factory.mktemp("conformance"), *PART_SIZE_ARGS)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def box(shared_emulator: EmulatorProcess) -> BoxWire:
    return BoxWire(shared_emulator, shared_emulator.token)


def make_folder(box: BoxWire, name: str, parent: str = "0") -> dict[str, Any]:
    payload = {"name": name, "parent": {"id": parent}}
    openapi.validate_request("POST", "/folders", payload)
    _, folder = box.call("POST", f"{box.emulator.api_url}/folders", 201, json=payload)
    return folder


def chunked_upload(box: BoxWire, name: str, data: bytes, parent: str = "0") -> dict[str, Any]:
    _, session = box.create_session(name, len(data), parent)
    parts = []
    for offset in range(0, len(data), session["part_size"]):
        chunk = data[offset : offset + session["part_size"]]
        _, answer = box.put_part(session, chunk, offset, len(data))
        parts.append(answer["part"])
    _, files = box.commit(session, parts, data)
    return files["entries"][0]


# ------------------------------------------------------------------ the validator itself


def test_validator_rejects_what_the_spec_forbids() -> None:
    """The conformance checks below can fail: the module catches the classic mistakes."""
    good_error = {"type": "error", "status": 404, "code": "not_found", "message": "m", "request_id": "r"}
    openapi.validate_response("GET", "/files/{file_id}", 404, good_error)
    bad_bodies = [
        ("GET", "/files/{file_id}", 200, {"type": "file", "id": 12}),  # numeric id
        ("GET", "/files/{file_id}", 200, {"type": "file", "id": "1", "sequence_id": 3}),
        ("GET", "/files/{file_id}", 200, {"type": "file", "id": "1", "sha1": "not-hex"}),
        ("GET", "/files/{file_id}", 200, {"type": "file", "id": "1", "created_at": "2024-01-01 10:00"}),
        ("GET", "/files/{file_id}", 404, {"type": "error", "status": "404"}),
        ("POST", "/folders", 409, {"type": "error", "status": 409, "context_info": {"conflicts": {"type": "folder", "id": "1"}}}),
        ("POST", "/files/content", 409, {"type": "error", "status": 409, "context_info": {"conflicts": [{"type": "file", "id": "1"}]}}),
        ("GET", "/files/{file_id}", 404, None),  # empty body where JSON is due
        ("DELETE", "/files/{file_id}", 204, {"unexpected": "body"}),
    ]
    for method, template, status, body in bad_bodies:
        with pytest.raises(openapi.SpecViolation):
            openapi.validate_response(method, template, status, body)
    with pytest.raises(openapi.SpecViolation):
        openapi.validate_request("POST", "/files/upload_sessions", {"folder_id": 0, "file_size": 10})
    with pytest.raises(openapi.UnknownOperation):
        openapi.path_template_for("GET", "/2.0/no/such/thing")


def test_violation_messages_never_carry_tokens() -> None:
    secret = "s3cr3t-" + secrets.token_hex(8)
    with pytest.raises(openapi.SpecViolation) as caught:
        openapi.validate_response("POST", "/oauth2/token", 200, {"access_token": [secret], "refresh_token": 7})
    assert secret not in str(caught.value)
    assert "access_token" in str(caught.value)
    masked = openapi.redact({"access_token": secret, "entries": [{"refresh_token": secret, "id": "7"}]})
    assert secret not in json.dumps(masked) and masked["entries"][0]["id"] == "7"


def test_exceptions_table_documents_every_patch() -> None:
    rows = list(openapi.iter_exception_rows())
    assert len(rows) == len(openapi.SPEC_EXCEPTIONS) >= 8
    assert all(where and len(reason) > 40 for where, reason in rows)


# ------------------------------------------------------------------ direct upload


def test_direct_upload_and_its_errors(box: BoxWire) -> None:
    data = b"hello conformance\n" * 10
    name = unique("direct.txt")
    modified = "2024-05-01T10:20:30-07:00"
    _, files = box.upload(
        name, data, headers={"Content-MD5": sha1_hex(data)}, extra_attributes={"content_modified_at": modified}
    )
    assert files["total_count"] == 1 and len(files["entries"]) == 1
    entry = files["entries"][0]
    assert entry["sha1"] == sha1_hex(data) and entry["size"] == len(data) and entry["name"] == name
    assert entry["etag"] == "0" and entry["sequence_id"] == "0"
    assert entry["item_status"] == "active"
    assert entry["content_modified_at"].startswith("2024-05-01T")

    # `fields` returns the requested field on top of the base set.
    _, with_fields = box.upload(unique("fields.txt"), b"x", params={"fields": "name,sha1,content_modified_at"})
    assert "sha1" in with_fields["entries"][0] and "id" in with_fields["entries"][0]

    # name clash (case-insensitive): conflicts is ONE object carrying id and sha1
    _, clash = box.upload(name.upper(), b"other", expect=409, code="item_name_in_use")
    conflict = clash["context_info"]["conflicts"]
    assert conflict["id"] == entry["id"] and conflict["sha1"] == sha1_hex(data)

    box.upload(unique("digest.txt"), data, expect=400, code="bad_digest", headers={"Content-MD5": "0" * 40})
    for bad_name in ("a/b", "a\\b", ".", "..", "trailing "):
        box.upload(bad_name, b"x", expect=400, code="item_name_invalid")
    box.upload("n" * 256, b"x", expect=400, code="item_name_too_long")
    box.upload(unique("orphan.txt"), b"x", parent="987654321", expect=404, code="not_found")

    # file part before attributes
    files_first = [("file", ("blob", b"data")), ("attributes", (None, json.dumps({"name": unique("late"), "parent": {"id": "0"}})))]
    box.call("POST", f"{box.emulator.upload_url}/files/content", 400, code="metadata_after_file_contents", files=files_first)
    # no attributes at all / attributes not JSON
    box.call("POST", f"{box.emulator.upload_url}/files/content", 400, code="bad_request", files=[("file", ("blob", b"d"))])
    box.call(
        "POST",
        f"{box.emulator.upload_url}/files/content",
        400,
        files=[("attributes", (None, "{not json")), ("file", ("blob", b"d"))],
    )
    # no or bad token: 401 with WWW-Authenticate (checked by the validator)
    box.call("POST", f"{box.emulator.upload_url}/files/content", 401, auth=False, files=[("file", ("b", b"d"))])
    box.call(
        "POST",
        f"{box.emulator.upload_url}/files/content",
        401,
        headers={"Authorization": "Bearer wrong-token"},
        auth=False,
        files=[("file", ("b", b"d"))],
    )


def test_chunked_transfer_encoding_direct_upload(box: BoxWire) -> None:
    """REFERENCE.md §8: bodies may arrive without Content-Length."""
    name = unique("streamed.bin")
    data = b"z" * 70000
    boundary = "syncdboundary" + uuid.uuid4().hex
    attributes = json.dumps({"name": name, "parent": {"id": "0"}}).encode()

    def body() -> Iterator[bytes]:
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="attributes"\r\n\r\n'.encode() + attributes
        yield f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="contents"; filename=""\r\n\r\n'.encode()
        yield data[:30000]
        yield data[30000:]
        yield f"\r\n--{boundary}--\r\n".encode()

    _, files = box.call(
        "POST",
        f"{box.emulator.upload_url}/files/content",
        201,
        data=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert files["entries"][0]["sha1"] == sha1_hex(data)


# ------------------------------------------------------------------ preflight


def test_preflight_check(box: BoxWire) -> None:
    name = unique("pre.txt")
    payload = {"name": name, "size": 1234, "parent": {"id": "0"}}
    openapi.validate_request("OPTIONS", "/files/content", payload)
    for suffix in ("/files/content", "/files/content/"):
        _, answer = box.call("OPTIONS", f"{box.emulator.api_url}{suffix}", 200, json=payload)
        assert answer["upload_url"].startswith("http")

    # the upload_url (with its query string) accepts the multipart POST
    data = b"preflighted"
    attributes = json.dumps({"name": name, "parent": {"id": "0"}})
    _, files = box.call(
        "POST",
        answer["upload_url"],
        201,
        template="/files/content",
        files=[("attributes", (None, attributes)), ("file", ("f", data))],
    )
    file_id = files["entries"][0]["id"]

    _, clash = box.call("OPTIONS", f"{box.emulator.api_url}/files/content", 409, code="item_name_in_use", json=payload)
    assert clash["context_info"]["conflicts"]["id"] == file_id
    assert clash["context_info"]["conflicts"]["sha1"] == sha1_hex(data)
    box.call("OPTIONS", f"{box.emulator.api_url}/files/content", 400, code="item_name_invalid", json={**payload, "name": "x/y"})
    box.call("OPTIONS", f"{box.emulator.api_url}/files/content", 404, json={**payload, "name": unique("p"), "parent": {"id": "55555555"}})
    box.call("OPTIONS", f"{box.emulator.api_url}/files/content", 400, data="{broken", headers={"Content-Type": "application/json"})


# ------------------------------------------------------------------ new versions


def test_version_upload_if_match_and_rename(box: BoxWire) -> None:
    _, files = box.upload(unique("ver.txt"), b"v1")
    first = files["entries"][0]
    url = f"{box.emulator.upload_url}/files/{first['id']}/content"
    renamed = unique("renamed.txt")
    attributes = {"name": renamed, "content_modified_at": "2023-01-02T03:04:05+00:00"}
    openapi.validate_request("POST", "/files/{file_id}/content", attributes)
    _, second = box.call(
        "POST",
        url,
        (200, 201),
        headers={"If-Match": first["etag"]},
        files=[("attributes", (None, json.dumps(attributes))), ("file", ("f", b"v2"))],
    )
    entry = second["entries"][0]
    assert entry["id"] == first["id"] and entry["name"] == renamed
    assert entry["sha1"] == sha1_hex(b"v2") and entry["etag"] != first["etag"]
    assert entry["file_version"]["id"] != first["file_version"]["id"]

    # stale etag -> 412; unknown file -> 404; no attributes name is fine
    box.call(
        "POST", url, 412, code="precondition_failed", headers={"If-Match": first["etag"]},
        files=[("attributes", (None, "{}")), ("file", ("f", b"v3"))],
    )
    box.call(
        "POST", f"{box.emulator.upload_url}/files/99999999/content", 404, code="not_found",
        files=[("attributes", (None, "{}")), ("file", ("f", b"v3"))],
    )
    _, third = box.call("POST", url, (200, 201), files=[("attributes", (None, "{}")), ("file", ("f", b"v3"))])
    assert third["entries"][0]["name"] == renamed

    # The file part alone, as the live service accepts: a new version, the name kept.
    _, fourth = box.call("POST", url, (200, 201), files=[("file", ("f", b"v4"))])
    entry = fourth["entries"][0]
    assert entry["sha1"] == sha1_hex(b"v4") and entry["name"] == renamed
    assert entry["file_version"]["id"] != third["entries"][0]["file_version"]["id"]
    assert box.emulator.download(first["id"]) == b"v4"
    # When attributes are there, their rules stand: after the file part they are refused.
    box.call("POST", url, 400, code="metadata_after_file_contents",
             files=[("file", ("f", b"v5")), ("attributes", (None, "{}"))])
    box.call("POST", url, 400, code="bad_request", files=[("attributes", (None, "{}"))])  # no file part
    # A new file still needs them.
    box.call("POST", f"{box.emulator.upload_url}/files/content", 400, code="bad_request",
             files=[("file", ("f", b"nameless"))])

    _, versions = box.call("GET", f"{box.emulator.api_url}/files/{first['id']}/versions", 200)
    assert versions["total_count"] >= 2 and all(v["type"] == "file_version" for v in versions["entries"])


# ------------------------------------------------------------------ chunked sessions


def test_chunked_session_full_sequence(box: BoxWire) -> None:
    name = unique("big.bin")
    _, probe = box.create_session(unique("probe.bin"), 3 * 1024 * 1024)
    part_size = probe["part_size"]
    data = secrets.token_bytes(part_size * 2 + 777)
    _, session = box.create_session(name, len(data))
    assert session["num_parts_processed"] == 0 and session["total_parts"] == 3
    assert session["part_size"] * session["total_parts"] >= len(data)
    assert len(session["id"]) == 32 and session["id"] == session["id"].upper()
    for key in ("upload_part", "commit", "abort", "list_parts", "status", "log_event"):
        assert session["session_endpoints"][key].startswith("http")

    chunks = [(off, data[off : off + part_size]) for off in range(0, len(data), part_size)]
    parts: list[dict[str, Any]] = []
    for offset, chunk in reversed(chunks):  # out of order on purpose
        _, answer = box.put_part(session, chunk, offset, len(data))
        assert answer["part"]["offset"] == offset and answer["part"]["size"] == len(chunk)
        assert answer["part"]["sha1"] == sha1_hex(chunk)
        parts.append(answer["part"])
    parts.sort(key=lambda p: p["offset"])

    # overlap with a stored part: 416 with conflicting_part
    _, overlap = box.put_part(session, chunks[0][1], 0, len(data), expect=416, code="range_overlaps_existing_part")
    assert overlap["context_info"]["conflicting_part"]["part_id"] == parts[0]["part_id"]

    # list parts: sorted, index paging, true total_count
    list_url = session["session_endpoints"]["list_parts"]
    _, listing = box.call("GET", list_url, 200)
    assert listing["total_count"] == 3 and [p["offset"] for p in listing["entries"]] == [0, part_size, 2 * part_size]
    _, page = box.call("GET", list_url, 200, params={"offset": 1, "limit": 1})
    assert [p["part_id"] for p in page["entries"]] == [parts[1]["part_id"]] and page["total_count"] == 3

    box.call("GET", list_url, 400, params={"offset": 10001})

    _, status = box.call("GET", session["session_endpoints"]["status"], 200)
    assert status["num_parts_processed"] == 3 and status["id"] == session["id"]

    # commit errors: missing part, wrong digest (the session survives both)
    box.commit(session, parts[:2], data, expect=400, code="parts_mismatch")
    box.commit(session, parts, data, digest=sha1_b64(b"wrong"), expect=400, code="digest_mismatch")
    box.commit(session, parts, data, headers={"If-Match": "999"}, expect=412)
    modified = "2022-02-02T02:02:02+00:00"
    _, files = box.commit(session, parts, data, extra={"attributes": {"content_modified_at": modified}})
    entry = files["entries"][0]
    assert files["total_count"] == 1 and entry["sha1"] == sha1_hex(data) and entry["size"] == len(data)
    assert entry["content_modified_at"].startswith("2022-02-02T")
    assert box.emulator.download(entry["id"]) == data

    # DELETE after commit answers 204; the probe session is aborted the same way
    box.call("DELETE", session["session_endpoints"]["abort"], 204)
    box.call("DELETE", probe["session_endpoints"]["abort"], 204)
    box.call("GET", probe["session_endpoints"]["status"], 404)


def test_session_part_errors(box: BoxWire) -> None:
    _, session = box.create_session(unique("errs.bin"), 2 * 1024 * 1024)
    total = 2 * 1024 * 1024
    size = session["part_size"]
    chunk = b"a" * size
    # wrong digest; digest missing; content-range missing / not fitting the part size
    box.put_part(session, chunk, 0, total, headers={"Digest": f"sha={sha1_b64(b'other')}"}, expect=(400, 412))
    box.call(
        "PUT", session["session_endpoints"]["upload_part"], (400, 412), data=chunk,
        headers={"Content-Range": f"bytes 0-{size - 1}/{total}"},
    )
    box.call("PUT", session["session_endpoints"]["upload_part"], (400, 416), data=chunk, headers={"Digest": f"sha={sha1_b64(chunk)}"})
    box.put_part(session, chunk[:100], 0, total, expect=(400, 416))
    box.put_part(session, chunk, 1, total, expect=(400, 416))
    box.put_part(session, chunk, 0, total + 5, expect=(400, 416))
    # a body shorter than its content-range
    box.call(
        "PUT", session["session_endpoints"]["upload_part"], (400, 416), data=chunk[:1000],
        headers={"Digest": f"sha={sha1_b64(chunk)}", "Content-Range": f"bytes 0-{size - 1}/{total}"},
    )
    # SHA= and upper-case algorithm names are accepted (REFERENCE.md §5)
    _, ok = box.put_part(session, chunk, 0, total, headers={"Digest": f"SHA={sha1_b64(chunk)}"})
    assert ok["part"]["sha1"] == sha1_hex(chunk)
    # malformed and unknown session ids
    box.call("GET", f"{box.emulator.upload_url}/files/upload_sessions/not-a-session", 400, code="invalid_upload_session_id")
    box.call("GET", f"{box.emulator.upload_url}/files/upload_sessions/{'A' * 32}", 404)
    box.call("DELETE", session["session_endpoints"]["abort"], 204)


def test_create_session_errors(box: BoxWire) -> None:
    url = f"{box.emulator.upload_url}/files/upload_sessions"
    name = unique("s.bin")
    # the create-session codes REFERENCE.md §2 lists
    box.call("POST", url, 400, code="missing_destination", json={"file_size": 5000, "file_name": name})
    box.call("POST", url, 400, code="invalid_folder_id", json={"folder_id": "abc", "file_size": 5000, "file_name": name})
    box.call("POST", url, 400, code="missing_file_size", json={"folder_id": "0", "file_name": name})
    box.call("POST", url, 400, code="invalid_file_size", json={"folder_id": "0", "file_size": -1, "file_name": name})
    box.call("POST", url, 400, code="missing_file_name", json={"folder_id": "0", "file_size": 5000})
    box.call("POST", url, 400, code="file_size_too_small", json={"folder_id": "0", "file_size": MIN_CHUNKED - 1, "file_name": name})
    box.call("POST", url, 404, code="invalid_parameter", json={"folder_id": "424242", "file_size": 5000, "file_name": name})
    box.call("POST", url, 400, data="{", headers={"Content-Type": "application/json"})
    _, files = box.upload(name, b"exists")
    _, clash = box.call(
        "POST", url, 409, code="item_name_in_use", json={"folder_id": "0", "file_size": 5000, "file_name": name.upper()}
    )
    assert clash["context_info"]["conflicts"]["id"] == files["entries"][0]["id"]

    # a version session on the existing file
    _, version_session = box.call(
        "POST", f"{box.emulator.upload_url}/files/{files['entries'][0]['id']}/upload_sessions", 201, json={"file_size": 5000}
    )
    assert version_session["total_parts"] >= 1
    box.call("POST", f"{box.emulator.upload_url}/files/77777777/upload_sessions", 404, json={"file_size": 5000})
    box.call("DELETE", version_session["session_endpoints"]["abort"], 204)


def test_commit_answers_202_with_retry_after_then_201(emulator_factory: Any) -> None:
    emulator = emulator_factory(*PART_SIZE_ARGS, "--commit-202", "2", "--commit-retry-after", "1")
    box = BoxWire(emulator, emulator.token)
    data = secrets.token_bytes(4096)
    _, session = box.create_session(unique("c202.bin"), len(data))
    size = session["part_size"]
    parts = [box.put_part(session, data[o : o + size], o, len(data))[1]["part"] for o in range(0, len(data), size)]
    for _ in range(2):
        response, _ = box.commit(session, parts, data, expect=202)
        assert int(response.headers["Retry-After"]) >= 1
    _, files = box.commit(session, parts, data)
    assert files["entries"][0]["sha1"] == sha1_hex(data)


def test_commit_name_clash_is_409_with_conflict_object(box: BoxWire) -> None:
    name = unique("raced.bin")
    data = secrets.token_bytes(2048)
    _, session = box.create_session(name, len(data))
    _, answer = box.put_part(session, data, 0, len(data))
    _, winner = box.upload(name, b"got there first")  # the name is taken while the session is open
    _, clash = box.commit(session, [answer["part"]], data, expect=409, code="item_name_in_use")
    assert clash["context_info"]["conflicts"]["id"] == winner["entries"][0]["id"]


def test_size_cap_and_storage_quota_are_403(emulator_factory: Any) -> None:
    emulator = emulator_factory(*PART_SIZE_ARGS, "--max-file-size", "5000", "--storage-quota", "12000")
    box = BoxWire(emulator, emulator.token)
    box.upload(unique("huge.bin"), b"h" * 5001, expect=403, code="file_size_limit_exceeded")
    box.create_session(unique("huge.bin"), 5001, expect=403, code="file_size_limit_exceeded")
    preflight = {"name": unique("huge.bin"), "size": 5001, "parent": {"id": "0"}}
    box.call("OPTIONS", f"{emulator.api_url}/files/content", 403, code="file_size_limit_exceeded", json=preflight)
    box.upload(unique("fill-1.bin"), b"f" * 5000)
    box.upload(unique("fill-2.bin"), b"f" * 5000)
    box.upload(unique("over.bin"), b"o" * 4000, expect=403, code="storage_limit_exceeded")
    box.create_session(unique("over.bin"), 4000, expect=403, code="storage_limit_exceeded")
    box.call("OPTIONS", f"{emulator.api_url}/files/content", 403, code="storage_limit_exceeded", json={**preflight, "size": 4000})


def test_upload_rate_limit_is_429_with_retry_after(emulator_factory: Any) -> None:
    emulator = emulator_factory("--upload-rate-limit", "3")
    box = BoxWire(emulator, emulator.token)
    for index in range(3):
        box.upload(unique(f"rl-{index}"), b"r")
    response, _ = box.upload(unique("rl-over"), b"r", expect=429, code="rate_limit_exceeded")
    assert int(response.headers["Retry-After"]) >= 1
    box.call("GET", f"{emulator.api_url}/users/me", 200)  # only uploads are limited


def test_session_of_another_user_is_403_forbidden(box: BoxWire) -> None:
    other = box.emulator.create_user("Other User", f"{unique('other')}@example.com")
    openapi.validate_component("User--Mini", {k: other[k] for k in ("type", "id", "name", "login")})
    _, session = box.create_session(unique("mine.bin"), 4096)
    box.call("GET", session["session_endpoints"]["status"], 403, code="forbidden", headers={"As-User": other["id"]})
    _, me = box.call("GET", f"{box.emulator.api_url}/users/me", 200, headers={"As-User": other["id"]})
    assert me["id"] == other["id"]
    box.call("DELETE", session["session_endpoints"]["abort"], 204)


def test_absolute_urls_use_public_url_else_host_header(emulator_factory: Any) -> None:
    public = "https://upload.example.test"
    behind_proxy = emulator_factory(*PART_SIZE_ARGS, "--public-url", public)
    box = BoxWire(behind_proxy, behind_proxy.token)
    _, session = box.create_session(unique("p.bin"), 4096)
    assert all(url.startswith(f"{public}/api/2.0/files/upload_sessions/") for url in session["session_endpoints"].values())
    _, preflight = box.call(
        "OPTIONS", f"{behind_proxy.api_url}/files/content", 200, json={"name": unique("p"), "size": 3, "parent": {"id": "0"}}
    )
    assert preflight["upload_url"].startswith(f"{public}/api/2.0/files/content")

    plain = emulator_factory(*PART_SIZE_ARGS)
    box = BoxWire(plain, plain.token)
    _, session = box.create_session(unique("h.bin"), 4096, headers={"Host": "proxy.example:8443"})
    assert session["session_endpoints"]["commit"].startswith("http://proxy.example:8443/api/2.0/files/upload_sessions/")


def test_session_expiry_after_seven_days(emulator_factory: Any) -> None:
    emulator = emulator_factory(*PART_SIZE_ARGS)
    box = BoxWire(emulator, emulator.token)
    _, session = box.create_session(unique("old.bin"), 4096)
    emulator.advance_clock(7 * 24 * 3600 + 60)
    chunk = b"q" * min(4096, session["part_size"])
    box.put_part(session, chunk, 0, 4096, expect=410, code="session_expired")
    box.call("GET", session["session_endpoints"]["status"], (404, 410))


# ------------------------------------------------------------------ folders, files, users


def test_folders_create_get_and_list(box: BoxWire) -> None:
    folder = make_folder(box, unique("Folder"))
    assert folder["type"] == "folder" and folder["parent"]["id"] == "0"
    _, clash = box.call(
        "POST", f"{box.emulator.api_url}/folders", 409, code="item_name_in_use",
        json={"name": folder["name"].lower(), "parent": {"id": "0"}},
    )
    assert isinstance(clash["context_info"]["conflicts"], list) and clash["context_info"]["conflicts"][0]["id"] == folder["id"]
    box.call("POST", f"{box.emulator.api_url}/folders", 400, json={"name": "bad/name", "parent": {"id": "0"}})
    box.call("POST", f"{box.emulator.api_url}/folders", 400, json={"name": "", "parent": {"id": "0"}})
    box.call("POST", f"{box.emulator.api_url}/folders", 404, json={"name": unique("x"), "parent": {"id": "31337"}})
    box.call("POST", f"{box.emulator.api_url}/folders", 400, json={"parent": {"id": "0"}})

    _, root = box.call("GET", f"{box.emulator.api_url}/folders/0", 200)
    assert root["id"] == "0" and root["etag"] is None and root["sequence_id"] is None
    _, got = box.call("GET", f"{box.emulator.api_url}/folders/{folder['id']}", 200)
    assert got["etag"] == folder["etag"]
    box.call("GET", f"{box.emulator.api_url}/folders/{folder['id']}", 304, headers={"If-None-Match": folder["etag"]})
    box.call("GET", f"{box.emulator.api_url}/folders/123456789", 404, code="not_found")
    box.call("GET", f"{box.emulator.api_url}/folders/not-an-id", 405)  # malformed folder id (spec)

    # 5 items: 2 folders then 3 files; offset and marker paging
    make_folder(box, "sub-a", folder["id"])
    make_folder(box, "sub-b", folder["id"])
    for index in range(3):
        box.upload(f"file-{index}.txt", f"{index}".encode(), parent=folder["id"])
    items_url = f"{box.emulator.api_url}/folders/{folder['id']}/items"
    _, page = box.call("GET", items_url, 200, params={"offset": 0, "limit": 2})
    assert page["total_count"] == 5 and len(page["entries"]) == 2 and page["offset"] == 0
    assert [e["type"] for e in page["entries"]] == ["folder", "folder"]
    _, page2 = box.call("GET", items_url, 200, params={"offset": 4, "limit": 2})
    assert len(page2["entries"]) == 1
    seen: list[str] = []
    params: dict[str, Any] = {"usemarker": "true", "limit": 2, "fields": "name,sha1,item_status,content_modified_at"}
    for _ in range(5):
        _, marked = box.call("GET", items_url, 200, params=params)
        seen += [e["name"] for e in marked["entries"]]
        assert all(e.get("item_status") == "active" for e in marked["entries"])
        if not marked.get("next_marker"):
            assert marked.get("next_marker") in (None,) or "next_marker" not in marked
            break
        params["marker"] = marked["next_marker"]
    assert len(seen) == 5 and len(set(seen)) == 5
    box.call("GET", f"{box.emulator.api_url}/folders/123456789/items", 404)
    _, capped = box.call("GET", items_url, 200, params={"limit": 5000})
    assert capped["limit"] == 1000 and len(capped["entries"]) == 5  # silently reduced (REFERENCE.md §3.7)


def test_folder_delete_moves_the_tree_to_the_trash(box: BoxWire) -> None:
    api = box.emulator.api_url
    folder = make_folder(box, unique("Doomed"))
    sub = make_folder(box, "sub", folder["id"])
    _, files = box.upload("inner.txt", b"inner", parent=sub["id"])
    inner_id = files["entries"][0]["id"]
    url = f"{api}/folders/{folder['id']}"
    # Not empty: recursive is required (400, box-openapi#221 moved it there from 409).
    box.call("DELETE", url, 400, code="folder_not_empty")
    box.call("DELETE", url, 400, code="folder_not_empty", params={"recursive": "false"})
    box.call("DELETE", url, 412, headers={"If-Match": "not-the-etag"}, params={"recursive": "true"})
    box.call("DELETE", url, 204, params={"recursive": "true"})

    # The folder, its sub-folder and their files are gone (404) and out of the listing.
    box.call("GET", url, 404, code="not_found")
    box.call("GET", f"{api}/folders/{sub['id']}", 404, code="not_found")
    box.call("GET", f"{api}/files/{inner_id}", 404, code="not_found")
    _, root_items = box.call("GET", f"{api}/folders/0/items", 200, params={"limit": 1000})
    assert folder["name"] not in {entry["name"] for entry in root_items["entries"]}
    box.call("DELETE", url, 404, code="not_found", params={"recursive": "true"})
    # Nothing can go into a trashed folder, and its name is free again.
    box.upload("late.txt", b"late", parent=sub["id"], expect=404)
    box.call("POST", f"{api}/folders", 404, json={"name": "child", "parent": {"id": folder["id"]}})
    assert make_folder(box, folder["name"])["id"] != folder["id"]

    empty = make_folder(box, unique("Empty"))
    box.call("DELETE", f"{api}/folders/{empty['id']}", 204)  # an empty folder needs no recursive
    box.call("DELETE", f"{api}/folders/123456789", 404, code="not_found", params={"recursive": "true"})
    box.call("DELETE", f"{api}/folders/not-an-id", 405)  # malformed folder id, as for GET
    box.call("DELETE", f"{api}/folders/0", 403, code="access_denied_insufficient_permissions",
             params={"recursive": "true"})


def test_files_get_update_download_delete(box: BoxWire) -> None:
    data = b"file-endpoint-bytes"
    _, files = box.upload(unique("f.txt"), data)
    file_id = files["entries"][0]["id"]
    file_url = f"{box.emulator.api_url}/files/{file_id}"
    _, got = box.call("GET", file_url, 200)
    assert got["sha1"] == sha1_hex(data) and got["created_at"] and got["modified_at"]
    _, few = box.call("GET", file_url, 200, params={"fields": "sha1,size"})
    assert few["id"] == file_id and few["size"] == len(data)
    stamp = "2021-06-07T08:09:10+00:00"
    openapi.validate_request("PUT", "/files/{file_id}", {"content_modified_at": stamp})
    _, updated = box.call("PUT", file_url, 200, json={"content_modified_at": stamp})
    assert updated["content_modified_at"].startswith("2021-06-07T")
    box.call("PUT", file_url, 400, data="{", headers={"Content-Type": "application/json"})

    # Box answers the download with 302 to a download URL (spec: "Location ... on dl.boxcloud.com").
    redirect, _ = box.call("GET", f"{file_url}/content", 302, allow_redirects=False)
    assert redirect.headers["Location"].startswith(f"{box.emulator.origin}/d/1/") and redirect.content == b""
    assert box.http.get(redirect.headers["Location"], timeout=30).content == data
    # A client that follows redirects sees the bytes, as before.
    response = box.http.get(f"{file_url}/content", headers={"Authorization": f"Bearer {box.token}"}, timeout=30)
    assert response.status_code == 200 and response.content == data and response.history[0].status_code == 302

    box.call("DELETE", file_url, 412, headers={"If-Match": "not-the-etag"})
    box.call("DELETE", file_url, 204)
    box.call("GET", file_url, 404, code="not_found")
    box.call("GET", f"{file_url}/content", 404)
    box.call("GET", f"{file_url}/versions", 404)
    box.call("PUT", file_url, 404, json={"content_modified_at": stamp})


def test_users_me(box: BoxWire) -> None:
    _, me = box.call("GET", f"{box.emulator.api_url}/users/me", 200)
    assert me["id"] == "11446498" and me["type"] == "user" and me["login"] == "emulator@example.com"


# ------------------------------------------------------------------ OAuth and token expiry


def _token(box: BoxWire, form: dict[str, str], expect: int, valid_request: bool = True) -> dict[str, Any]:
    __tracebackhide__ = True  # the form holds client secrets and assertions
    if valid_request:
        openapi.validate_request("POST", "/oauth2/token", form)
    _, body = box.call("POST", box.emulator.token_url, expect, auth=False, data=form)
    return body


def test_oauth_grants(box: BoxWire) -> None:
    client = {"client_id": "syncd-emulator-client", "client_secret": "syncd-emulator-secret"}
    refresh = box.emulator.mint_refresh_token()
    first = _token(box, {"grant_type": "refresh_token", "refresh_token": refresh, **client}, 200)
    assert first["token_type"] == "bearer" and first["refresh_token"] != refresh and first["expires_in"] > 0
    again = _token(box, {"grant_type": "refresh_token", "refresh_token": refresh, **client}, 400)
    assert again["error"] == "invalid_grant"
    second = _token(box, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"], **client}, 200)
    BoxWire(box.emulator, second["access_token"]).call("GET", f"{box.emulator.api_url}/users/me", 200)

    ccg = _token(box, {"grant_type": "client_credentials", "box_subject_type": "enterprise", "box_subject_id": "1234567", **client}, 200)
    assert "refresh_token" not in ccg
    bad = _token(box, {"grant_type": "client_credentials", "box_subject_type": "enterprise", "box_subject_id": "1234567",
                       "client_id": "syncd-emulator-client", "client_secret": "wrong"}, 400)
    assert bad["error"]
    assert _token(box, {"grant_type": "password", **client}, 400, valid_request=False)["error"]

    wrong_secret = {"client_id": client["client_id"], "client_secret": "not-the-secret"}
    fresh = box.emulator.mint_refresh_token()
    assert _token(box, {"grant_type": "refresh_token", "refresh_token": fresh, **wrong_secret}, 400)["error"]

    # authorization_code: authorize auto-approves and redirects with code and state
    redirect = box.http.get(
        f"{box.emulator.origin}/api/oauth2/authorize",
        params={"response_type": "code", "client_id": client["client_id"], "redirect_uri": "http://localhost:9/cb", "state": "xyz"},
        allow_redirects=False,
        timeout=30,
    )
    assert redirect.status_code == 302
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(redirect.headers["Location"]).query)
    assert query["state"] == ["xyz"]
    code_grant = {"grant_type": "authorization_code", "code": query["code"][0], **client}
    granted = _token(box, code_grant, 200)
    assert granted["refresh_token"] and granted["token_type"] == "bearer"
    assert _token(box, code_grant, 400)["error"] == "invalid_grant"  # codes are single use

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    box.emulator.register_jwt_key("conformance-kid", pem)
    claims = {
        "iss": client["client_id"], "sub": "1234567", "box_sub_type": "enterprise",
        "aud": "https://api.box.com/oauth2/token", "jti": secrets.token_hex(16), "exp": int(time.time()) + 30,
    }
    assertion = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "conformance-kid"})
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion, **client}
    assert _token(box, form, 200)["access_token"]
    assert _token(box, form, 400)["error"] == "invalid_grant"  # jti reused
    too_far = {**claims, "jti": secrets.token_hex(16), "exp": int(time.time()) + 600}
    form_far = {**form, "assertion": jwt.encode(too_far, key, algorithm="RS256", headers={"kid": "conformance-kid"})}
    assert _token(box, form_far, 400)["error"] == "invalid_grant"  # exp more than 60 s ahead
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = {**claims, "jti": secrets.token_hex(16)}
    form_forged = {**form, "assertion": jwt.encode(forged, other_key, algorithm="RS256", headers={"kid": "conformance-kid"})}
    assert _token(box, form_forged, 400)["error"] == "invalid_grant"  # signature does not verify


def test_expired_token_is_401_with_www_authenticate(emulator: EmulatorProcess) -> None:
    box = BoxWire(emulator, emulator.token)
    box.call("GET", f"{emulator.api_url}/users/me", 200)
    emulator.expire_tokens()
    response, _ = box.call("GET", f"{emulator.api_url}/users/me", 401)
    assert "Bearer" in response.headers["WWW-Authenticate"]


# ------------------------------------------------------------------ injected faults, bad input


def test_injected_errors_are_box_error_bodies(box: BoxWire) -> None:
    box.emulator.faults(reject_next={"count": 1, "status": 429, "retry_after": 2})
    response, body = box.call("GET", f"{box.emulator.api_url}/users/me", 429)
    assert response.headers["Retry-After"] == "2" and body["code"] in ("rate_limit_exceeded", "too_many_requests")
    for status in (500, 502, 503):
        box.emulator.faults(reject_next={"count": 1, "status": status})
        box.call("GET", f"{box.emulator.api_url}/folders/0", status)


def test_unknown_paths_and_methods_answer_box_errors(box: BoxWire) -> None:
    for method, url in (
        ("GET", f"{box.emulator.api_url}/no/such/endpoint"),
        ("GET", f"{box.emulator.origin}/totally-unknown"),
        ("PATCH", f"{box.emulator.api_url}/files/1"),
    ):
        response = box.http.request(method, url, headers={"Authorization": f"Bearer {box.token}"}, timeout=30)
        assert 400 <= response.status_code < 500, (method, url, response.status_code)
        assert response.headers["Content-Type"].startswith("application/json")
        openapi.validate_component("ClientError", response.json())
        assert response.json()["status"] == response.status_code


def test_huge_header_gets_an_error_not_a_crash(box: BoxWire) -> None:
    response = box.http.get(
        f"{box.emulator.api_url}/users/me",
        headers={"Authorization": f"Bearer {box.token}", "X-Huge": "h" * 200_000},
        timeout=30,
    )
    assert response.status_code in (400, 431)
    box.call("GET", f"{box.emulator.api_url}/users/me", 200)  # still serving


def test_stats_count_the_requests_made(box: BoxWire) -> None:
    box.emulator.reset_stats()
    box.call("GET", f"{box.emulator.api_url}/users/me", 200)
    box.call("GET", f"{box.emulator.api_url}/folders/0", 200)
    stats = box.emulator.stats()
    assert stats["requests"]["users.me"]["200"] == 1
    assert stats["requests"]["folders.get"]["200"] == 1
