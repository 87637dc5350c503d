"""Direct uploads, new versions and the idempotence rules, against the real emulator."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path

import pytest

from syncd.box import BoxAPIError, DirectUpload, ErrorClass, SourceChanged, Uploader, UploadedFile

from .conftest import MB, count, stop_dropping


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def test_direct_upload_streams_and_checks_sha1(emulator, client, make_file) -> None:
    path = make_file("report.bin", 3 * MB)
    os.utime(path, (1_600_000_000, 1_600_000_000))
    sent: list[int] = []
    result = Uploader(client).upload(path, "0", "report.bin", on_bytes=sent.append)
    assert isinstance(result, UploadedFile)
    assert result.sha1 == _sha1(path) and result.size == 3 * MB and result.name == "report.bin"
    assert result.version_id and result.etag is not None
    assert sum(sent) == 3 * MB
    assert emulator.download(result.file_id) == path.read_bytes()
    stored = emulator.get_file(result.file_id)
    assert datetime.fromisoformat(stored["content_modified_at"]).timestamp() == 1_600_000_000
    stats = emulator.stats()
    assert count(stats, "files.preflight", "200") == 1 and count(stats, "files.upload", "201") == 1


def test_repeat_of_our_own_upload_is_success_not_a_new_version(emulator, client, make_file) -> None:
    path = make_file("same.bin", 200_000)
    first = Uploader(client).upload(path, "0", "same.bin")
    # With preflight: the 409 is seen before any bytes go out.
    again = Uploader(client, preflight_from=0).upload(path, "0", "same.bin")
    # Without preflight: the POST itself meets 409 item_name_in_use with our SHA-1.
    emulator.reset_stats()
    third = DirectUpload(client, path, "0", "same.bin", preflight=False).run()
    assert first.file_id == again.file_id == third.file_id
    assert count(emulator.stats(), "files.upload", "409") == 1
    assert emulator.file_versions(first.file_id) == []  # no earlier versions: still one version


def test_other_content_under_the_same_name_is_a_name_conflict(client, make_file) -> None:
    first = Uploader(client).upload(make_file("a.bin", 1000, seed=1), "0", "clash.bin")
    other = make_file("b.bin", 1000, seed=2)
    for preflight in (True, False):
        with pytest.raises(BoxAPIError) as caught:
            Uploader(client, preflight_from=0 if preflight else None).upload(other, "0", "clash.bin")
        assert caught.value.error_class is ErrorClass.NAME_CONFLICT
        assert caught.value.conflicts[0].id == first.file_id
        assert caught.value.conflicts[0].sha1 == first.sha1


def test_new_version_with_if_match(emulator, client, make_file) -> None:
    v1 = Uploader(client).upload(make_file("v1.bin", 5000, seed=1), "0", "doc.bin")
    v2_path = make_file("v2.bin", 7000, seed=2)
    v2 = Uploader(client).upload(v2_path, None, "doc.bin", existing_file_id=v1.file_id, etag=v1.etag)
    assert v2.file_id == v1.file_id and v2.version_id != v1.version_id and v2.sha1 == _sha1(v2_path)
    assert emulator.download(v1.file_id) == v2_path.read_bytes()
    # A stale etag is refused (someone else changed the file): not applied.
    v3_path = make_file("v3.bin", 9000, seed=3)
    with pytest.raises(BoxAPIError) as caught:
        Uploader(client).upload(v3_path, None, "doc.bin", existing_file_id=v1.file_id, etag=v1.etag)
    assert caught.value.status == 412 and caught.value.error_class is ErrorClass.PERMANENT_FILE
    # /versions lists the earlier versions only (as on Box): v1.
    assert [v["id"] for v in emulator.file_versions(v1.file_id)] == [v1.version_id]
    # Retrying v2 with its old etag after it was applied: 412, but Box holds our bytes: success.
    again = Uploader(client).upload(v2_path, None, "doc.bin", existing_file_id=v1.file_id, etag=v1.etag)
    assert again.sha1 == v2.sha1 and len(emulator.file_versions(v1.file_id)) == 1


def test_given_sha1_that_does_not_match_the_bytes(client, make_file) -> None:
    path = make_file("x.bin", 5000)
    with pytest.raises(SourceChanged):
        Uploader(client).upload(path, "0", "x.bin", sha1="0" * 40)


def test_5xx_and_429_on_upload_are_retried(emulator, client, make_file) -> None:
    path = make_file("flaky.bin", 100_000)
    emulator.faults(reject_next={"count": 2, "status": 503, "endpoint": "files.upload"})
    result = Uploader(client).upload(path, "0", "flaky.bin")
    stats = emulator.stats()
    assert count(stats, "files.upload", "503") == 2 and count(stats, "files.upload", "201") == 1
    # A 5xx write may have been applied: Box was asked before each new attempt.
    assert count(stats, "folders.items", "200") == 2
    emulator.reset_stats()
    emulator.faults(reject_next={"count": 2, "status": 429, "retry_after": 1, "endpoint": "files.upload"})
    result2 = Uploader(client).upload(make_file("flaky2.bin", 100_000, seed=5), "0", "flaky2.bin")
    stats = emulator.stats()
    assert count(stats, "files.upload", "429") == 2 and count(stats, "files.upload", "201") == 1
    assert count(stats, "folders.items") == 0  # a 429 was not applied: just wait and resend
    assert result.sha1 == _sha1(path) and result2.file_id != result.file_id


def test_5xx_on_a_version_upload_that_was_applied_is_not_sent_twice(emulator, client, make_file) -> None:
    v1 = Uploader(client).upload(make_file("v1.bin", 5000, seed=1), "0", "doc.bin")
    v2_path = make_file("v2.bin", 6000, seed=2)
    v2 = Uploader(client).upload(v2_path, None, "doc.bin", existing_file_id=v1.file_id)
    # Box applied v2 but its answer was a 5xx; our retry without etag finds it.
    emulator.faults(reject_next={"count": 1, "status": 500, "endpoint": "files.upload_version"})
    again = Uploader(client).upload(v2_path, None, "doc.bin", existing_file_id=v1.file_id)
    assert again.version_id == v2.version_id
    assert count(emulator.stats(), "files.upload_version", "201") + count(
        emulator.stats(), "files.upload_version", "200") == 1


def test_dropped_connections_on_direct_upload(emulator, client, make_file) -> None:
    emulator.faults(drop_rate=0.5, seed=3)
    paths = [make_file(f"d{i}.bin", 300_000, seed=i) for i in range(4)]
    results = [DirectUpload(client, p, "0", p.name, max_unknown_outcomes=10).run() for p in paths]
    stop_dropping(emulator)
    assert [r.sha1 for r in results] == [_sha1(p) for p in paths]
    assert count(emulator.stats(), "files.upload", "0") >= 1  # some uploads really were cut
    names = sorted(item["name"] for item in emulator.folder_items("0"))
    assert names == sorted(p.name for p in paths)


def test_missing_parent_folder_is_permanent_config(client, make_file) -> None:
    with pytest.raises(BoxAPIError) as caught:
        Uploader(client).upload(make_file("x.bin", 10), "987654321", "x.bin")
    assert caught.value.status == 404 and caught.value.error_class is ErrorClass.PERMANENT_CONFIG


def test_size_and_quota_limits_are_classified(emulator, client, make_file) -> None:
    emulator.faults(max_file_size=1000)
    with pytest.raises(BoxAPIError) as too_big:
        Uploader(client).upload(make_file("big.bin", 5000), "0", "big.bin")
    assert too_big.value.code == "file_size_limit_exceeded"
    assert too_big.value.error_class is ErrorClass.QUARANTINE
    emulator.faults(max_file_size=0, storage_quota=1000)
    with pytest.raises(BoxAPIError) as full:
        Uploader(client).upload(make_file("big2.bin", 5000), "0", "big2.bin")
    assert full.value.code == "storage_limit_exceeded"
    assert full.value.error_class is ErrorClass.QUOTA


def test_bad_names_are_refused_before_any_request(client, make_file) -> None:
    path = make_file("ok.bin", 10)
    for bad in ("", "a/b", "..", "trailing ", "x" * 256):
        with pytest.raises(ValueError):
            Uploader(client).upload(path, "0", bad)


def test_a_small_file_costs_one_round_trip_and_its_409_is_still_reconciled(emulator, client, make_file) -> None:
    """Below PREFLIGHT_FROM no preflight is sent: one request per new file. The repeat of our
    own upload meets 409 on the POST itself, which resolves to our file, exactly once."""
    from syncd.box import PREFLIGHT_FROM

    small = make_file("small.bin", 64 * 1024)
    assert small.stat().st_size < PREFLIGHT_FROM
    first = Uploader(client).upload(small, "0", "small.bin")
    stats = emulator.stats()
    assert count(stats, "files.preflight") == 0 and count(stats, "files.upload", "201") == 1
    emulator.reset_stats()
    again = Uploader(client).upload(small, "0", "small.bin")
    stats = emulator.stats()
    assert again.file_id == first.file_id and again.version_id == first.version_id
    assert count(stats, "files.preflight") == 0 and count(stats, "files.upload", "409") == 1
    assert count(stats, "files.upload", "201") == 0 and emulator.file_versions(first.file_id) == []
    # From the threshold up, Box is asked first: a refused upload sends no body.
    big = make_file("big.bin", PREFLIGHT_FROM)
    emulator.reset_stats()
    Uploader(client).upload(big, "0", "big.bin")
    assert count(emulator.stats(), "files.preflight", "200") == 1
