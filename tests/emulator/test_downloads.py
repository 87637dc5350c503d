"""Downloads as Box serves them: 302 from the API, bytes (whole or ranged) from a short-lived URL."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.emulator.wire import auth, chunked_upload, upload
from tests.support import openapi
from tests.support.emulator import EmulatorProcess

ARGS = ("--min-chunked-size", "1000", "--part-sizes", "*=1KiB")


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path_factory.mktemp("downloads"), *ARGS) as process:
        yield process


def download_url(box: EmulatorProcess, file_id: str, **params: Any) -> str:
    response = requests.get(f"{box.api_url}/files/{file_id}/content", params=params, headers=auth(box),
                            allow_redirects=False, timeout=30)
    assert response.status_code == 302, response.text
    openapi.validate_http_response(response)
    return response.headers["Location"]


def test_content_redirects_to_a_download_url_that_serves_the_bytes(box: EmulatorProcess) -> None:
    data = os.urandom(5000)
    item = chunked_upload(box, "spread.bin", data)  # five part files on disk
    location = download_url(box, item["id"])
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}" == box.origin and parts.path.startswith("/d/1/")
    assert parts.path.endswith("/download")

    whole = requests.get(location, timeout=30)  # the URL is the credential: no Authorization
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["Content-Length"] == "5000" and whole.headers["ETag"] == f'"{hashlib.sha1(data).hexdigest()}"'
    assert whole.headers["Accept-Ranges"] == "bytes" and "spread.bin" in whole.headers["Content-Disposition"]

    def ranged(value: str, **headers: str) -> requests.Response:
        return requests.get(location, headers={"Range": value, **headers}, timeout=30)

    for value, first, last in (("bytes=0-9", 0, 9), ("bytes=1000-2047", 1000, 2047), ("bytes=1020-3000", 1020, 3000),
                               ("bytes=4990-", 4990, 4999), ("bytes=-7", 4993, 4999), ("bytes=4000-99999", 4000, 4999),
                               ("bytes=-9999", 0, 4999)):
        reply = ranged(value)
        assert reply.status_code == 206, value
        assert reply.content == data[first:last + 1], value
        assert reply.headers["Content-Range"] == f"bytes {first}-{last}/5000", value
        assert reply.headers["Content-Length"] == str(last - first + 1), value
    for value in ("bytes=5000-", "bytes=9999-10000", "bytes=-0"):
        refused = ranged(value)
        assert refused.status_code == 416 and refused.headers["Content-Range"] == "bytes */5000", value
        assert refused.json()["code"] == "requested_range_not_satisfiable"
    # What the emulator does not serve as a range (several, malformed, stale If-Range) gets it all.
    for value, extra in (("bytes=0-1,5-6", {}), ("bytes=9-3", {}), ("items=0-1", {}),
                         ("bytes=0-9", {"If-Range": '"0000"'})):
        reply = ranged(value, **extra)
        assert reply.status_code == 200 and reply.content == data, value
    assert ranged("bytes=0-9", **{"If-Range": whole.headers["ETag"]}).status_code == 206

    head = requests.head(location, timeout=30)
    assert head.status_code == 200 and head.headers["Content-Length"] == "5000" and head.content == b""
    assert requests.post(location, timeout=30).status_code == 405

    # Clients that follow redirects, the Range header included, see no change.
    followed = requests.get(f"{box.api_url}/files/{item['id']}/content", headers={**auth(box), "Range": "bytes=2-4"},
                            timeout=30)
    assert followed.status_code == 206 and followed.content == data[2:5]


def test_versions_empty_files_and_pre_authenticated_urls(box: EmulatorProcess) -> None:
    first = upload(box, "versions.txt", b"first").json()["entries"][0]
    requests.post(f"{box.upload_url}/files/{first['id']}/content", files=[("file", ("f", b"second"))],
                  headers=auth(box), timeout=30)
    old = box.file_versions(first["id"])[0]
    assert requests.get(download_url(box, first["id"], version=old["id"]), timeout=30).content == b"first"
    assert requests.get(download_url(box, first["id"]), timeout=30).content == b"second"
    for bad in ("999", "x1"):
        missing = requests.get(f"{box.api_url}/files/{first['id']}/content", params={"version": bad},
                               headers=auth(box), allow_redirects=False, timeout=30)
        assert missing.status_code == 404

    empty = upload(box, "empty.txt", b"").json()["entries"][0]
    location = download_url(box, empty["id"])
    reply = requests.get(location, timeout=30)
    assert reply.status_code == 200 and reply.content == b"" and reply.headers["Content-Length"] == "0"
    assert requests.get(location, headers={"Range": "bytes=0-"}, timeout=30).status_code == 416

    # Box's access_token query parameter authenticates the API call itself.
    query = requests.get(f"{box.api_url}/files/{first['id']}/content", params={"access_token": box.token},
                         allow_redirects=False, timeout=30)
    assert query.status_code == 302
    anonymous = requests.get(f"{box.api_url}/files/{first['id']}/content", allow_redirects=False, timeout=30)
    assert anonymous.status_code == 401


def test_download_urls_follow_the_host_and_public_url(emulator_factory: Any) -> None:
    plain = emulator_factory()
    item = upload(plain, "host.txt", b"host").json()["entries"][0]
    redirect = requests.get(f"{plain.api_url}/files/{item['id']}/content", allow_redirects=False,
                            headers={**auth(plain), "Host": "api.box.com"}, timeout=30)
    assert redirect.headers["Location"].startswith("http://api.box.com/d/1/")
    public = emulator_factory("--public-url", "https://box.example.test:8443")
    item = upload(public, "public.txt", b"public").json()["entries"][0]
    assert download_url(public, item["id"]).startswith("https://box.example.test:8443/d/1/")


def test_expired_forged_and_orphaned_download_urls_are_refused(emulator_factory: Any) -> None:
    box = emulator_factory()
    item = upload(box, "short-lived.txt", b"soon gone").json()["entries"][0]
    location = download_url(box, item["id"])
    assert requests.get(location, timeout=30).content == b"soon gone"
    box.restart()  # the URL survives a restart of the emulator
    assert requests.get(location, timeout=30).content == b"soon gone"

    prefix, token, tail = location.rsplit("/", 2)
    version, expires, signature = token.split(".")
    forged = [f"{prefix}/{version}.{int(expires) + 3600}.{signature}/{tail}",
              f"{prefix}/{int(version) + 1}.{expires}.{signature}/{tail}",
              f"{prefix}/{version}.{expires}.{'0' * 64}/{tail}", f"{prefix}/garbage/{tail}"]
    for url in forged:
        reply = requests.get(url, timeout=30)
        assert reply.status_code == 404 and reply.json()["code"] == "not_found", url

    box.advance_clock(15 * 60 + 1)
    expired = requests.get(location, timeout=30)
    assert expired.status_code == 403 and expired.json()["code"] == "forbidden"
    assert "expired" in expired.json()["message"]
    fresh = download_url(box, item["id"])
    assert requests.get(fresh, timeout=30).content == b"soon gone"

    requests.delete(f"{box.api_url}/files/{item['id']}", headers=auth(box), timeout=30)
    assert requests.get(fresh, timeout=30).status_code == 404
