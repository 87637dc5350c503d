"""The chaos verifier against a real emulator: one of each defect planted through Box's API."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import requests

from bench import verifier
from bench.verifier import (
    BoxReader,
    compare,
    local_tree,
    pending_from_status,
    renamed_original,
    verify,
)


def _upload(emulator, folder_id: str, name: str, data: bytes) -> str:
    response = requests.post(f"{emulator.upload_url}/files/content",
                             headers={"Authorization": f"Bearer {emulator.token}"},
                             data={"attributes": json.dumps({"name": name, "parent": {"id": folder_id}})},
                             files={"file": (name, data)}, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["entries"][0]["id"]


def _new_version(emulator, file_id: str, data: bytes) -> None:
    response = requests.post(f"{emulator.upload_url}/files/{file_id}/content",
                             headers={"Authorization": f"Bearer {emulator.token}"},
                             data={"attributes": json.dumps({})}, files={"file": ("x", data)}, timeout=30)
    assert response.status_code in (200, 201), response.text


def _folder(emulator, parent: str, name: str) -> str:
    response = requests.post(f"{emulator.api_url}/folders", headers={"Authorization": f"Bearer {emulator.token}"},
                             json={"name": name, "parent": {"id": parent}}, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _write(root: Path, relpath: str, data: bytes) -> None:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.mark.timeout(30)
def test_each_planted_defect_is_found_once_and_the_good_files_pass(tmp_path: Path, emulator, monkeypatch):
    # A page of 2 makes the walk follow paging in every folder of more than two items.
    monkeypatch.setattr(verifier, "PAGE_LIMIT", 2)
    local = tmp_path / "inbox"
    good = {"a.txt": b"alpha", "sub/deep/b.csv": b"bravo", "sub/rewritten.txt": b"second edit",
            "lost.txt": b"never uploaded", "corrupt.bin": b"right bytes", "dup.pdf": b"once",
            "versioned.txt": b"same"}
    for relpath, data in good.items():
        _write(local, relpath, data)
    _write(local, "ignored.tmp", b"a writer's temporary name")

    sub = _folder(emulator, "0", "sub")
    deep = _folder(emulator, sub, "deep")
    _upload(emulator, "0", "a.txt", b"alpha")
    _upload(emulator, deep, "b.csv", b"bravo")
    rewritten = _upload(emulator, sub, "rewritten.txt", b"first edit")
    _new_version(emulator, rewritten, b"second edit")  # justified: the file was rewritten once
    _upload(emulator, "0", "corrupt.bin", b"wrong bytes")
    _upload(emulator, "0", "dup.pdf", b"once")
    _upload(emulator, "0", "dup (1).pdf", b"once")
    versioned = _upload(emulator, "0", "versioned.txt", b"same")
    _new_version(emulator, versioned, b"same")  # uploaded twice: one version too many
    _upload(emulator, sub, "extra.txt", b"nobody dropped this")

    reader = BoxReader(emulator.api_url, emulator.token)
    report = verify(local, reader, extra_versions={"sub/rewritten.txt": 1})

    assert report.lost == ["lost.txt"]
    assert report.corrupted == ["corrupt.bin"]
    assert sorted(report.duplicated) == ["dup (1).pdf", "versioned.txt"]
    assert report.extra == ["sub/extra.txt"]
    assert report.still_pending == 0
    assert report.counts() == {"lost": 1, "duplicated": 2, "corrupted": 1, "still_pending": 0, "extra": 1}
    assert report.local_files == 7 and report.box_files == 8
    assert not report.clean()
    assert emulator.token not in repr(reader)


def test_a_matching_tree_is_clean(tmp_path: Path):
    local = {"x/y.txt": hashlib.sha1(b"y").hexdigest()}
    box = [verifier.BoxFile("x/y.txt", "1", hashlib.sha1(b"y").hexdigest(), 0)]
    report = compare(local, box)
    assert report.clean() and report.counts() == dict.fromkeys(report.counts(), 0)
    assert not compare(local, box, still_pending=1).clean()


def test_renamed_copies_are_recognised_only_by_box_numbering():
    assert renamed_original("dir/scan (1).pdf") == "dir/scan.pdf"
    assert renamed_original("scan (12)") == "scan"
    assert renamed_original("scan(1).pdf") is None
    assert renamed_original("scan (a).pdf") is None


def test_pending_counts_pending_and_uploading_only():
    status = {"counts": {"pending": 3, "uploading": 2, "uploaded": 40, "failed": 1}}
    assert pending_from_status(status) == 5
    assert pending_from_status({"counts": {}}) == 0


def test_a_box_error_names_the_request_but_not_the_token(emulator, tmp_path: Path):
    reader = BoxReader(emulator.api_url, "secret-token-xyz")
    with pytest.raises(verifier.VerifierError) as caught:
        reader.walk("0")
    assert "401" in str(caught.value) and "secret-token-xyz" not in str(caught.value)


def test_local_tree_hashes_regular_files_and_skips_temporary_names(tmp_path: Path):
    _write(tmp_path, "a/b.txt", b"b")
    _write(tmp_path, "c.part", b"partial")
    (tmp_path / "link").symlink_to(tmp_path / "a" / "b.txt")
    assert local_tree(tmp_path) == {"a/b.txt": hashlib.sha1(b"b").hexdigest()}
