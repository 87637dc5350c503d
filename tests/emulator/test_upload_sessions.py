"""Chunked upload sessions: create, parts, list, commit, abort, expiry, persistence."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.emulator.wire import auth, chunked_upload, commit, create_session, put_part, sha_digest, upload
from tests.support.emulator import EmulatorProcess

PART = 1024
SMALL_SESSIONS = ("--min-chunked-size", "1000", "--part-sizes", "4KiB=1KiB,*=2KiB")


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path_factory.mktemp("sessions"), *SMALL_SESSIONS) as emulator:
        yield emulator


def code(response: requests.Response) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


def new_session(box: EmulatorProcess, name: str, size: int) -> dict:
    reply = create_session(box, name, size)
    assert reply.status_code == 201, reply.text
    return reply.json()


def test_session_shape_and_part_size_table(box: EmulatorProcess) -> None:
    session = new_session(box, "shape.bin", 3000)
    assert len(session["id"]) == 32 and session["id"] == session["id"].upper()
    assert session["type"] == "upload_session" and session["num_parts_processed"] == 0
    assert session["part_size"] == 1024 and session["total_parts"] == 3
    endpoints = session["session_endpoints"]
    url = f"{box.upload_url}/files/upload_sessions/{session['id']}"
    assert endpoints["upload_part"] == endpoints["abort"] == endpoints["status"] == url
    assert endpoints["commit"] == url + "/commit" and endpoints["list_parts"] == url + "/parts"
    assert endpoints["log_event"] == url + "/log"
    bigger = new_session(box, "shape-big.bin", 5000)
    assert bigger["part_size"] == 2048 and bigger["total_parts"] == 3


@pytest.mark.parametrize(("body", "expected"), [
    ({"file_size": 2000, "file_name": "a"}, (400, "missing_destination")),
    ({"folder_id": "abc", "file_size": 2000, "file_name": "a"}, (400, "invalid_folder_id")),
    ({"folder_id": "0", "file_name": "a"}, (400, "missing_file_size")),
    ({"folder_id": "0", "file_size": "big", "file_name": "a"}, (400, "invalid_file_size")),
    ({"folder_id": "0", "file_size": -5, "file_name": "a"}, (400, "invalid_file_size")),
    ({"folder_id": "0", "file_size": 999, "file_name": "a"}, (400, "file_size_too_small")),
    ({"folder_id": "0", "file_size": 2000}, (400, "missing_file_name")),
    ({"folder_id": "0", "file_size": 2000, "file_name": "a/b"}, (400, "item_name_invalid")),
    ({"folder_id": "0", "file_size": 2000, "file_name": "n" * 300}, (400, "item_name_too_long")),
    ({"folder_id": "777777", "file_size": 2000, "file_name": "a"}, (404, "invalid_parameter")),
])
def test_create_session_errors(box: EmulatorProcess, body: dict, expected: tuple[int, str]) -> None:
    reply = requests.post(f"{box.upload_url}/files/upload_sessions", json=body, headers=auth(box), timeout=30)
    assert code(reply) == expected


def test_create_session_name_clash_and_minimum_accepted(box: EmulatorProcess) -> None:
    existing = upload(box, "clash.bin", b"z" * 10).json()["entries"][0]
    reply = create_session(box, "CLASH.bin", 2000)
    assert code(reply) == (409, "item_name_in_use")
    assert reply.json()["context_info"]["conflicts"]["id"] == existing["id"]
    assert create_session(box, "exactly-minimum.bin", 1000).status_code == 201


def test_full_upload_in_parallel_out_of_order(box: EmulatorProcess) -> None:
    data = os.urandom(10 * PART + 123)
    session = new_session(box, "parallel.bin", len(data))
    offsets = list(range(0, len(data), session["part_size"]))[::-1]
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda offset: put_part(box, session, data[offset:offset + session["part_size"]],
                                                         offset, len(data)), offsets))
    assert all(reply.status_code == 200 for reply in replies), [reply.text for reply in replies]
    parts = [reply.json()["part"] for reply in replies]
    for part, offset in zip(parts, offsets):
        chunk = data[offset:offset + session["part_size"]]
        assert part["offset"] == offset and part["size"] == len(chunk)
        assert part["sha1"] == hashlib.sha1(chunk).hexdigest() and len(part["part_id"]) == 8
    listed = requests.get(session["session_endpoints"]["list_parts"], headers=auth(box), timeout=30).json()
    assert listed["total_count"] == session["total_parts"]
    assert [entry["offset"] for entry in listed["entries"]] == sorted(offsets)
    one = requests.get(session["session_endpoints"]["list_parts"], params={"offset": 2, "limit": 1},
                       headers=auth(box), timeout=30).json()
    assert [entry["offset"] for entry in one["entries"]] == [2 * session["part_size"]]
    assert one["total_count"] == session["total_parts"]
    status = requests.get(session["session_endpoints"]["status"], headers=auth(box), timeout=30).json()
    assert status["num_parts_processed"] == session["total_parts"]
    reply = commit(box, session, parts[::-1], data,
                   attributes={"content_modified_at": "2021-06-01T12:00:00-07:00"})
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["total_count"] == 1
    entry = body["entries"][0]
    assert entry["sha1"] == hashlib.sha1(data).hexdigest() and entry["size"] == len(data)
    assert entry["content_modified_at"] == "2021-06-01T19:00:00+00:00"
    assert box.download(entry["id"]) == data
    again = commit(box, session, parts, data)
    assert again.status_code == 201 and again.json()["entries"][0]["id"] == entry["id"]
    aborted = requests.delete(session["session_endpoints"]["abort"], headers=auth(box), timeout=30)
    assert aborted.status_code == 204 and aborted.content == b""


def test_part_errors(box: EmulatorProcess) -> None:
    data = os.urandom(3000)
    session = new_session(box, "part-errors.bin", len(data))
    first = data[:PART]
    missing_digest = put_part(box, session, first, 0, len(data), headers={"Digest": ""})
    assert code(missing_digest) == (400, "bad_request")
    wrong_digest = put_part(box, session, first, 0, len(data), headers={"Digest": sha_digest(b"other")})
    assert code(wrong_digest) == (412, "precondition_failed")
    garbled = put_part(box, session, first, 0, len(data), headers={"Content-Range": "bytes=0-1023"})
    assert code(garbled) == (400, "bad_request")
    for bad_range in ("bytes 1-1024/3000", "bytes 0-511/3000", "bytes 0-1023/4000", "bytes 2048-3071/3000"):
        reply = put_part(box, session, first, 0, len(data), headers={"Content-Range": bad_range})
        assert code(reply) == (416, "requested_range_not_satisfiable"), bad_range
    legacy_case = put_part(box, session, first, 0, len(data),
                           headers={"Digest": "SHA=" + base64.b64encode(hashlib.sha1(first).digest()).decode()})
    assert legacy_case.status_code == 200
    stored = legacy_case.json()["part"]
    again = put_part(box, session, first, 0, len(data))
    assert code(again) == (416, "range_overlaps_existing_part")
    assert again.json()["context_info"]["conflicting_part"] == stored
    sha256 = data[PART:2 * PART]
    reply = put_part(box, session, sha256, PART, len(data), headers={
        "Digest": "sha-256=" + base64.b64encode(hashlib.sha256(sha256).digest()).decode()})
    assert reply.status_code == 200
    listed = requests.get(session["session_endpoints"]["list_parts"], headers=auth(box), timeout=30).json()
    assert listed["total_count"] == 2
    bad_offset = requests.get(session["session_endpoints"]["list_parts"], params={"offset": 10001},
                              headers=auth(box), timeout=30)
    assert code(bad_offset) == (400, "bad_request")


def test_session_ids_and_other_users(box: EmulatorProcess) -> None:
    malformed = requests.get(f"{box.upload_url}/files/upload_sessions/not-a-session", headers=auth(box), timeout=30)
    assert code(malformed) == (400, "invalid_upload_session_id")
    unknown = requests.get(f"{box.upload_url}/files/upload_sessions/{'A' * 32}", headers=auth(box), timeout=30)
    assert code(unknown) == (404, "not_found")
    session = new_session(box, "mine.bin", 2000)
    other = box.create_user("Other", "other@example.com")
    as_other = requests.get(session["session_endpoints"]["status"],
                            headers={**auth(box), "As-User": other["id"]}, timeout=30)
    assert code(as_other) == (403, "forbidden")


def test_commit_checks_in_order(box: EmulatorProcess) -> None:
    data = os.urandom(2500)
    session = new_session(box, "commit-order.bin", len(data))
    parts = [put_part(box, session, data[offset:offset + PART], offset, len(data)).json()["part"]
             for offset in range(0, len(data), PART)]
    forged = dict(parts[0], part_id="DEADBEEF")
    mismatch = commit(box, session, [forged] + parts[1:], data)
    assert code(mismatch) == (400, "parts_mismatch")
    assert mismatch.json()["message"].startswith("No matching part found on server for ")
    assert code(commit(box, session, parts[:-1], data)) == (400, "parts_mismatch")
    wrong = commit(box, session, parts, b"not the file")
    assert code(wrong) == (400, "digest_mismatch")
    assert wrong.json()["message"].startswith("File digest was incorrect. Actual: ")
    no_digest = requests.post(session["session_endpoints"]["commit"], json={"parts": parts},
                              headers=auth(box), timeout=30)
    assert code(no_digest) == (400, "bad_request")
    # The old Java SDK leaves sha1 out of the listed parts: that is accepted.
    no_sha_parts = [{key: value for key, value in part.items() if key != "sha1"} for part in parts]
    done = commit(box, session, no_sha_parts, data)
    assert done.status_code == 201, done.text
    assert done.json()["entries"][0]["sha1"] == hashlib.sha1(data).hexdigest()


def test_commit_202_then_201_and_preconditions(box: EmulatorProcess) -> None:
    data = os.urandom(2100)
    session = new_session(box, "commit-202.bin", len(data))
    parts = [put_part(box, session, data[offset:offset + PART], offset, len(data)).json()["part"]
             for offset in range(0, len(data), PART)]
    box.faults(commit_202=2, commit_retry_after=3)
    try:
        for _ in range(2):
            reply = commit(box, session, parts, data)
            assert reply.status_code == 202 and reply.headers["Retry-After"] == "3"
        reply = commit(box, session, parts, data)
        assert reply.status_code == 201
    finally:
        box.faults(commit_202=0, commit_retry_after=1)
    file_id = reply.json()["entries"][0]["id"]
    version = requests.post(f"{box.upload_url}/files/{file_id}/upload_sessions", json={"file_size": 2000},
                            headers=auth(box), timeout=30)
    assert version.status_code == 201, version.text
    vsession = version.json()
    new = os.urandom(2000)
    vparts = [put_part(box, vsession, new[offset:offset + PART], offset, len(new)).json()["part"]
              for offset in range(0, len(new), PART)]
    assert code(commit(box, vsession, vparts, new, headers={"If-Match": "99"})) == (412, "precondition_failed")
    assert code(commit(box, vsession, vparts, new, headers={"If-None-Match": "*"})) == (412, "precondition_failed")
    done = commit(box, vsession, vparts, new, headers={"If-Match": "0"})
    assert done.status_code == 201
    assert done.json()["entries"][0]["id"] == file_id and box.download(file_id) == new
    assert len(box.file_versions(file_id)) == 1


def test_version_session_errors(box: EmulatorProcess) -> None:
    missing = requests.post(f"{box.upload_url}/files/55555555/upload_sessions", json={"file_size": 2000},
                            headers=auth(box), timeout=30)
    assert code(missing) == (404, "not_found")
    item = upload(box, "vs.bin", b"v").json()["entries"][0]
    upload(box, "vs-other.bin", b"o")
    clash = requests.post(f"{box.upload_url}/files/{item['id']}/upload_sessions",
                          json={"file_size": 2000, "file_name": "VS-OTHER.bin"}, headers=auth(box), timeout=30)
    assert code(clash) == (409, "item_name_in_use")
    no_size = requests.post(f"{box.upload_url}/files/{item['id']}/upload_sessions", json={},
                            headers=auth(box), timeout=30)
    assert code(no_size) == (400, "missing_file_size")


def test_abort_discards_and_expiry_gives_410(box: EmulatorProcess) -> None:
    data = os.urandom(2000)
    session = new_session(box, "aborted.bin", len(data))
    assert put_part(box, session, data[:PART], 0, len(data)).status_code == 200
    assert requests.delete(session["session_endpoints"]["abort"], headers=auth(box), timeout=30).status_code == 204
    gone = requests.get(session["session_endpoints"]["status"], headers=auth(box), timeout=30)
    assert code(gone) == (404, "not_found")
    expiring = new_session(box, "expiring.bin", len(data))
    box.advance_clock(7 * 24 * 3600 + 1)
    for reply in (requests.get(expiring["session_endpoints"]["status"], headers=auth(box), timeout=30),
                  put_part(box, expiring, data[:PART], 0, len(data)),
                  commit(box, expiring, [], data)):
        assert code(reply) == (410, "session_expired")
    fresh = chunked_upload(box, "after-expiry.bin", data)
    assert fresh["sha1"] == hashlib.sha1(data).hexdigest()


def test_clock_offset_survives_restart_and_expired_parts_are_purged(emulator_factory) -> None:
    box = emulator_factory(*SMALL_SESSIONS)
    session = new_session(box, "clock.bin", 2000)
    assert put_part(box, session, os.urandom(PART), 0, 2000).status_code == 200
    assert (box.data_dir / "parts" / session["id"]).is_dir()
    box.advance_clock(7 * 24 * 3600 + 5)
    assert not (box.data_dir / "parts" / session["id"]).exists()
    box.restart()
    expired = requests.get(session["session_endpoints"]["status"], headers=auth(box), timeout=30)
    assert code(expired) == (410, "session_expired")


def test_sessions_and_parts_survive_restart(emulator_factory) -> None:
    box = emulator_factory(*SMALL_SESSIONS)
    data = os.urandom(3000)
    session = new_session(box, "restart.bin", len(data))
    first = put_part(box, session, data[:PART], 0, len(data)).json()["part"]
    box.kill()  # a crash, not a clean stop
    box.start()
    listed = requests.get(session["session_endpoints"]["list_parts"], headers=auth(box), timeout=30).json()
    assert listed["entries"] == [first]
    rest = [put_part(box, session, data[offset:offset + PART], offset, len(data)).json()["part"]
            for offset in range(PART, len(data), PART)]
    reply = commit(box, session, [first] + rest, data)
    assert reply.status_code == 201, reply.text
    file_id = reply.json()["entries"][0]["id"]
    box.restart()
    assert box.download(file_id) == data
    assert box.get_file(file_id)["sha1"] == hashlib.sha1(data).hexdigest()
