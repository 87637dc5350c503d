"""The upload-session plan and commits that reuse parts (issue 13), over real HTTP.

Every plan answer and every error is checked against boxsdk 10.18's own schema
classes (UploadSessionPlanResponse, UploadSession, UploadParts, ClientError);
commits and their errors also against openapi.json. Part sizes are 1 KiB so the
files stay a few KiB.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from box_sdk_gen.schemas.client_error import ClientError
from box_sdk_gen.schemas.files import Files
from box_sdk_gen.schemas.upload_part import UploadPart
from box_sdk_gen.schemas.upload_parts import UploadParts
from box_sdk_gen.schemas.upload_session import UploadSession
from box_sdk_gen.schemas.upload_session_plan_response import UploadSessionPlanResponse

from tests.emulator.sdk_shapes import check_shape
from tests.emulator import wire
from tests.emulator.wire import (auth, chunked_upload, create_session, create_version_session, plan, plan_parts,
                                 put_part, sha_digest, upload)
from tests.support import openapi
from tests.support.emulator import EmulatorProcess

KIB = 1024
ARGS = ("--min-chunked-size", "1000", "--part-sizes", f"*={KIB}")
COMMIT = "/files/upload_sessions/{upload_session_id}/commit"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path_factory.mktemp("plan"), *ARGS) as process:
        yield process


def error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    """The response is Box's error `code` with `status`, shaped as the SDK and the spec say."""
    __tracebackhide__ = True
    assert response.status_code == status, (response.status_code, response.text[:300])
    body = response.json()
    check_shape(ClientError, body, open_enums=frozenset({"code"}))
    openapi.validate_component("ClientError", body)
    assert body["code"] == code and body["status"] == status and body["request_id"], body
    return body


def planned(response: requests.Response, session: dict[str, Any]) -> dict[str, Any]:
    __tracebackhide__ = True
    assert response.status_code == 200, response.text[:300]
    body = response.json()
    check_shape(UploadSessionPlanResponse, body)
    assert body["upload_session_id"] == session["id"]
    return body


def version_session(box: EmulatorProcess, file_id: str, size: int, **body: Any) -> dict[str, Any]:
    reply = create_version_session(box, file_id, size, **body)
    assert reply.status_code == 201, reply.text
    session = reply.json()
    check_shape(UploadSession, session)
    return session


def committed(response: requests.Response) -> dict[str, Any]:
    __tracebackhide__ = True
    assert response.status_code == 201, response.text[:300]
    check_shape(Files, response.json())
    openapi.validate_http_response(response, COMMIT)
    return response.json()["entries"][0]


def commit(box: EmulatorProcess, session: dict[str, Any], parts: list[dict[str, Any]], data: bytes,
           **kwargs: Any) -> requests.Response:
    """Commit, after checking that every entry is an UploadPart as the SDK would send it."""
    for part in parts:
        check_shape(UploadPart, part)
    return wire.commit(box, session, parts, data, **kwargs)


def hit_entries(answer: dict[str, Any], with_sha512: bool = False) -> list[dict[str, Any]]:
    keys = ("part_id", "offset", "size", "sha512") if with_sha512 else ("part_id", "offset", "size")
    return [{key: hit[key] for key in keys} for hit in answer["hits"]]


def test_every_session_has_an_absolute_plan_endpoint(box: EmulatorProcess) -> None:
    session = create_session(box, "endpoints.bin", 3000).json()
    check_shape(UploadSession, session)
    assert session["session_endpoints"]["plan"] == f"{box.upload_url}/files/upload_sessions/{session['id']}/plan"
    status = requests.get(session["session_endpoints"]["status"], headers=auth(box), timeout=30).json()
    assert status["session_endpoints"]["plan"] == session["session_endpoints"]["plan"]
    behind = requests.post(f"{box.upload_url}/files/upload_sessions", headers={**auth(box), "Host": "upload.box.com"},
                           json={"folder_id": "0", "file_size": 3000, "file_name": "host.bin"}, timeout=30).json()
    assert behind["session_endpoints"]["plan"].startswith("http://upload.box.com/api/2.0/files/upload_sessions/")


def test_a_new_file_session_plans_every_part_as_a_miss(box: EmulatorProcess) -> None:
    data = os.urandom(3 * KIB + 10)
    chunked_upload(box, "same-bytes-elsewhere.bin", data)  # the same bytes in another file are no hit
    session = create_session(box, "brand-new.bin", len(data)).json()
    parts = plan_parts(data, KIB)
    answer = planned(plan(box, session, parts), session)
    assert answer["hits"] == [] and answer["misses"] == parts


def test_plan_of_the_current_bytes_hits_every_part_and_a_commit_of_hits_alone_makes_no_version(
        box: EmulatorProcess) -> None:
    data = os.urandom(3 * KIB + 100)
    original = chunked_upload(box, "same.bin", data)
    session = version_session(box, original["id"], len(data))
    parts = plan_parts(data, KIB)
    answer = planned(plan(box, session, parts), session)
    assert answer["misses"] == []
    assert [{k: hit[k] for k in ("offset", "size", "sha512")} for hit in answer["hits"]] == parts
    assert all(re.fullmatch(r"[0-9A-F]{16}", hit["part_id"]) for hit in answer["hits"])
    # The hashes are kept: asking again gives the same parts.
    assert planned(plan(box, session, parts), session)["hits"] == answer["hits"]

    # Content identical to the file's own: 202, no new version (boxsdk: "the file did not change").
    unchanged = commit(box, session, hit_entries(answer), data)
    assert unchanged.status_code == 202 and "Retry-After" not in unchanged.headers and unchanged.content == b""
    assert box.get_file(original["id"])["file_version"]["id"] == original["file_version"]["id"]
    assert box.file_versions(original["id"]) == []
    # The session is finished: a repeated commit answers 201 with the unchanged file.
    again = committed(commit(box, session, hit_entries(answer), data))
    assert again["file_version"]["id"] == original["file_version"]["id"] and again["sha1"] == original["sha1"]


def test_commit_mixing_hits_and_an_uploaded_part_versions_the_file(box: EmulatorProcess) -> None:
    old = os.urandom(4 * KIB)
    new = old[:KIB] + os.urandom(KIB) + old[2 * KIB:]
    original = chunked_upload(box, "mixed.bin", old)
    session = version_session(box, original["id"], len(new))
    answer = planned(plan(box, session, plan_parts(new, KIB)), session)
    assert [miss["offset"] for miss in answer["misses"]] == [KIB]
    assert [hit["offset"] for hit in answer["hits"]] == [0, 2 * KIB, 3 * KIB]

    box.reset_stats()
    uploaded = put_part(box, session, new[KIB:2 * KIB], KIB, len(new)).json()["part"]
    assert box.part_bytes_received() == KIB  # exactly one part was sent
    listing = requests.get(session["session_endpoints"]["list_parts"], headers=auth(box), timeout=30)
    check_shape(UploadParts, listing.json())
    # GET .../parts lists what was uploaded to the session, never the hits.
    assert listing.json()["total_count"] == 1 and listing.json()["entries"][0]["part_id"] == uploaded["part_id"]

    parts = hit_entries(answer) + [uploaded]  # the SDK's order: hits without hashes, uploads with sha1
    entry = committed(commit(box, session, parts, new))
    assert entry["id"] == original["id"] and entry["sha1"] == hashlib.sha1(new).hexdigest()
    assert entry["file_version"]["id"] != original["file_version"]["id"]
    assert box.download(original["id"]) == new
    # The earlier version still holds its own bytes (reused parts were linked, not moved).
    versions = box.file_versions(original["id"])
    old_version = requests.get(f"{box.api_url}/files/{original['id']}/content", params={"version": versions[0]["id"]},
                               headers=auth(box), timeout=30)
    assert old_version.content == old

    # The new version's reused ranges are known without hashing again: planning its
    # bytes hits every part.
    next_session = version_session(box, original["id"], len(new))
    assert planned(plan(box, next_session, plan_parts(new, KIB)), next_session)["misses"] == []


def test_sha512_on_every_commit_entry_or_on_none(box: EmulatorProcess) -> None:
    old = os.urandom(3 * KIB)
    new = old[:2 * KIB] + os.urandom(KIB)
    original = chunked_upload(box, "sha512.bin", old)
    session = version_session(box, original["id"], len(new))
    answer = planned(plan(box, session, plan_parts(new, KIB)), session)
    last = new[2 * KIB:]
    uploaded = put_part(box, session, last, 2 * KIB, len(new)).json()["part"]
    with_hash = {**uploaded, "sha512": hashlib.sha512(last).hexdigest()}

    # Only some entries carry sha512: refused, whichever entries they are.
    body = error(commit(box, session, hit_entries(answer) + [with_hash], new), 400, "bad_request")
    assert "sha512" in body["message"]
    error(commit(box, session, hit_entries(answer, with_sha512=True) + [uploaded], new), 400, "bad_request")
    # Every entry carries one, but a wrong one: that part does not match.
    wrong = {**with_hash, "sha512": hashlib.sha512(b"other").hexdigest()}
    error(commit(box, session, hit_entries(answer, with_sha512=True) + [wrong], new), 400, "parts_mismatch")
    # Every entry carries the right one.
    entry = committed(commit(box, session, hit_entries(answer, with_sha512=True) + [with_hash], new))
    assert entry["sha1"] == hashlib.sha1(new).hexdigest() and box.download(original["id"]) == new


def test_a_hit_of_another_file_is_refused(box: EmulatorProcess) -> None:
    data = os.urandom(2 * KIB)
    first = chunked_upload(box, "first.bin", data)
    second = chunked_upload(box, "second.bin", os.urandom(2 * KIB))
    first_session = version_session(box, first["id"], len(data))
    hits = hit_entries(planned(plan(box, first_session, plan_parts(data, KIB)), first_session))
    assert len(hits) == 2

    # A version session of another file names them: refused, and its file is untouched.
    other = version_session(box, second["id"], len(data))
    body = error(commit(box, other, hits, data), 400, "parts_mismatch")
    assert "another file" in body["message"]
    # A new-file session names them: refused too.
    fresh = create_session(box, "third.bin", len(data)).json()
    error(commit(box, fresh, hits, data), 400, "parts_mismatch")
    assert box.download(second["id"]) != data
    # The session they belong to can still use them (its failed neighbours changed nothing).
    assert commit(box, first_session, hits, data).status_code == 202


def test_hit_entries_must_match_what_the_plan_said(box: EmulatorProcess) -> None:
    data = os.urandom(2 * KIB)
    original = chunked_upload(box, "exact.bin", data)
    session = version_session(box, original["id"], len(data))
    hits = hit_entries(planned(plan(box, session, plan_parts(data, KIB)), session))
    for changed in ({**hits[0], "offset": KIB}, {**hits[0], "size": KIB - 1}, {**hits[0], "part_id": "0" * 16},
                    {**hits[0], "sha1": hashlib.sha1(b"x").hexdigest()}):
        error(commit(box, session, [changed, hits[1]], data), 400, "parts_mismatch")
    error(commit(box, session, hits[:1], data), 400, "parts_mismatch")  # does not cover the file
    error(commit(box, session, [hits[0], hits[0], hits[1]], data), 400, "parts_mismatch")  # twice
    with_sha1 = [{**hit, "sha1": hashlib.sha1(data[hit["offset"]:hit["offset"] + hit["size"]]).hexdigest()}
                 for hit in hits]
    assert commit(box, session, with_sha1, data).status_code == 202  # a right sha1 is fine


def test_plan_errors(box: EmulatorProcess) -> None:
    data = os.urandom(2 * KIB + 1)
    original = chunked_upload(box, "errors.bin", data)
    session = version_session(box, original["id"], len(data))
    good = plan_parts(data, KIB)
    url = session["session_endpoints"]["plan"]
    for body in ({}, {"parts": []}, {"parts": "all"}, [good]):
        error(requests.post(url, json=body, headers=auth(box), timeout=30), 400, "bad_request")
    bad_parts = (
        [{"offset": 0, "size": KIB}],  # no sha512
        [{**good[0], "sha512": "ab" * 63}],  # 126 hex characters
        [{**good[0], "sha512": "zz" * 64}],
        [{**good[0], "offset": -1}],
        [{**good[0], "offset": "0"}],
        [{**good[0], "size": 0}],
        [{**good[0], "size": True}],
        ["not an object"],
    )
    for parts in bad_parts:
        body = error(plan(box, session, parts), 400, "bad_request")
        assert body["context_info"]["errors"][0]["name"].startswith("parts[0]"), body
    outside = error(plan(box, session, [good[0], {**good[2], "size": 2}]), 400, "bad_request")
    assert outside["context_info"]["errors"][0]["name"] == "parts[1]" and "outside the file" in outside["message"]
    error(requests.post(url, data=b"{not json", headers={**auth(box), "Content-Type": "application/json"},
                        timeout=30), 400, "bad_request")
    uploads = box.upload_url
    error(requests.post(f"{uploads}/files/upload_sessions/not-a-session/plan", json={"parts": good},
                        headers=auth(box), timeout=30), 400, "invalid_upload_session_id")
    error(requests.post(f"{uploads}/files/upload_sessions/{'A' * 32}/plan", json={"parts": good},
                        headers=auth(box), timeout=30), 404, "not_found")
    error(requests.post(url, json={"parts": good}, timeout=30), 401, "unauthorized")
    error(requests.get(url, headers=auth(box), timeout=30), 405, "method_not_allowed")
    # Parts the session could not take (off its part grid) are misses, not errors.
    odd = [{"offset": 1, "size": KIB, "sha512": hashlib.sha512(data[1:KIB + 1]).hexdigest()}]
    assert planned(plan(box, session, odd), session)["misses"] == odd
    # A finished session has no plan any more.
    requests.delete(session["session_endpoints"]["abort"], headers=auth(box), timeout=30)
    error(plan(box, session, good), 404, "not_found")


def test_plan_of_another_users_session_is_forbidden_and_expired_sessions_are_gone(
        emulator_factory: Any) -> None:
    box = emulator_factory(*ARGS)
    data = os.urandom(2 * KIB)
    original = chunked_upload(box, "mine.bin", data)
    session = version_session(box, original["id"], len(data))
    user = box.create_user("Other", "other@example.com")
    other = box.mint_tokens(user["id"])["access_token"]
    error(plan(box, session, plan_parts(data, KIB), token=other), 403, "forbidden")
    box.advance_clock(8 * 24 * 3600)
    error(plan(box, session, plan_parts(data, KIB)), 410, "session_expired")


def test_versions_uploaded_directly_or_at_other_part_sizes_are_hashed_at_the_sessions_part_size(
        emulator_factory: Any) -> None:
    # 1 KiB parts up to 4 KiB, 2 KiB parts above: a 4 KiB version and a 6 KiB one have different grids.
    box = emulator_factory("--min-chunked-size", "1000", "--part-sizes", "4KiB=1KiB,*=2KiB")
    direct = os.urandom(6 * KIB)
    item = upload(box, "direct.bin", direct).json()["entries"][0]  # one blob, no parts at all
    session = version_session(box, item["id"], len(direct))
    assert session["part_size"] == 2 * KIB
    answer = planned(plan(box, session, plan_parts(direct, 2 * KIB)), session)
    assert len(answer["hits"]) == 3 and answer["misses"] == []

    old = os.urandom(4 * KIB)  # committed as four 1 KiB parts
    small = chunked_upload(box, "grid.bin", old)
    new = old + os.urandom(2 * KIB)  # 6 KiB: 2 KiB parts, each spanning two stored 1 KiB parts
    session = version_session(box, small["id"], len(new))
    answer = planned(plan(box, session, plan_parts(new, 2 * KIB)), session)
    assert [hit["offset"] for hit in answer["hits"]] == [0, 2 * KIB]
    assert [miss["offset"] for miss in answer["misses"]] == [4 * KIB]
    uploaded = put_part(box, session, new[4 * KIB:], 4 * KIB, len(new)).json()["part"]
    entry = committed(commit(box, session, hit_entries(answer) + [uploaded], new))
    assert entry["sha1"] == hashlib.sha1(new).hexdigest() and box.download(small["id"]) == new

    # Truncated: the new last part is a shorter range inside a stored part.
    cut = new[:5 * KIB + 7]
    session = version_session(box, small["id"], len(cut))
    answer = planned(plan(box, session, plan_parts(cut, 2 * KIB)), session)
    assert [hit["size"] for hit in answer["hits"]] == [2 * KIB, 2 * KIB, KIB + 7] and answer["misses"] == []
    entry = committed(commit(box, session, hit_entries(answer), cut))
    assert entry["size"] == len(cut) and box.download(small["id"]) == cut
    # A range downloaded across the version's files is right too.
    ranged = requests.get(f"{box.api_url}/files/{small['id']}/content", headers={**auth(box), "Range": "bytes=2000-4100"},
                          timeout=30)
    assert ranged.status_code == 206 and ranged.content == cut[2000:4101]


def test_kept_hashes_survive_a_restart(emulator_factory: Any) -> None:
    box = emulator_factory(*ARGS)
    data = os.urandom(2 * KIB)
    original = chunked_upload(box, "kept.bin", data)
    session = version_session(box, original["id"], len(data))
    before = planned(plan(box, session, plan_parts(data, KIB)), session)["hits"]
    box.restart()
    session = version_session(box, original["id"], len(data))
    assert planned(plan(box, session, plan_parts(data, KIB)), session)["hits"] == before


def test_a_hit_replaces_a_part_uploaded_at_the_same_offset(box: EmulatorProcess) -> None:
    old = os.urandom(2 * KIB)
    original = chunked_upload(box, "replace.bin", old)
    session = version_session(box, original["id"], len(old))
    hits = hit_entries(planned(plan(box, session, plan_parts(old, KIB)), session))
    stray = put_part(box, session, os.urandom(KIB), 0, len(old)).json()["part"]
    new = old[:KIB] + os.urandom(KIB)
    second = put_part(box, session, new[KIB:], KIB, len(new)).json()["part"]
    # The commit names the hit at offset 0, not the part uploaded there: the hit's bytes win.
    entry = committed(commit(box, session, [hits[0], second], new))
    assert entry["sha1"] == hashlib.sha1(new).hexdigest() and box.download(original["id"]) == new
    assert stray["offset"] == 0


def test_parts_may_carry_a_sha512_digest(box: EmulatorProcess) -> None:
    import base64

    session = create_session(box, "digest512.bin", 2 * KIB).json()
    chunk = os.urandom(KIB)
    header = "sha-512=" + base64.b64encode(hashlib.sha512(chunk).digest()).decode()
    good = put_part(box, session, chunk, 0, 2 * KIB, headers={"Digest": header})
    assert good.status_code == 200 and set(good.json()["part"]) == {"part_id", "offset", "size", "sha1"}
    bad = "sha-512=" + base64.b64encode(hashlib.sha512(b"other").digest()).decode()
    error(put_part(box, session, chunk, KIB, 2 * KIB, headers={"Digest": bad}), 412, "precondition_failed")
    both = f"{sha_digest(chunk)}, {header}"
    assert put_part(box, session, chunk, KIB, 2 * KIB, headers={"Digest": both}).status_code == 200
