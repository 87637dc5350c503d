"""New versions that send only the parts Box lacks (issue 13, client side), against the
real emulator with 1 MiB parts: what was sent (the emulator's part-byte counter), what
the commit made, fallbacks when the plan endpoint is missing or refuses, and resume
in the middle of a delta upload."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from syncd.box import BoxAPIError, ChunkedUpload, Uploader, UploadedPart
from structlog.testing import capture_logs
from tests.support.box_proxy import BoxProxy

from .conftest import MemoryProgress, count, make_client, write_file

MiB = 1024 * 1024
SMALL_PARTS = ("--min-chunked-size", "1000000", "--part-sizes", "*=1MiB")


@pytest.fixture
def box(emulator_factory):
    emulator = emulator_factory(*SMALL_PARTS)
    with make_client(emulator) as client:
        yield emulator, client


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _first_version(box, path: Path, name: str = "doc.bin"):
    emulator, client = box
    first = ChunkedUpload(client, path, "0", name).run()
    emulator.reset_stats()
    return first


def _version(box, path: Path, file_id: str, **kwargs):
    _, client = box
    return ChunkedUpload(client, path, None, "doc.bin", existing_file_id=file_id, **kwargs).run()


def _rewrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def test_a_changed_middle_part_is_the_only_part_sent(box, tmp_path: Path) -> None:
    emulator, _ = box
    path = write_file(tmp_path / "doc.bin", 6 * MiB)
    first = _first_version(box, path)
    _rewrite(path, 3 * MiB + 100, b"new bytes" * 100)
    result = _version(box, path, first.file_id, etag=first.etag)
    assert result.file_id == first.file_id and result.version_id != first.version_id
    assert result.sha1 == _sha1(path) and emulator.download(first.file_id) == path.read_bytes()
    assert (result.parts_reused, result.bytes_reused) == (5, 5 * MiB)
    stats = emulator.stats()
    assert emulator.part_bytes_received() == MiB and count(stats, "sessions.upload_part", "200") == 1
    assert count(stats, "sessions.plan", "200") == 6 and count(stats, "sessions.commit", "201") == 1
    assert [v["id"] for v in emulator.file_versions(first.file_id)] == [first.version_id]


def test_an_append_sends_the_last_part_and_the_new_ones(box, tmp_path: Path) -> None:
    emulator, _ = box
    path = write_file(tmp_path / "doc.bin", 4 * MiB + 1000)
    first = _first_version(box, path)
    with open(path, "ab") as handle:
        handle.write(os.urandom(MiB))
    result = _version(box, path, first.file_id)
    assert result.sha1 == _sha1(path) and emulator.download(first.file_id) == path.read_bytes()
    # Parts 0-3 unchanged; the old short last part grew and a new one follows: 2 parts sent.
    assert result.parts_reused == 4 and emulator.part_bytes_received() == MiB + 1000


def test_identical_content_makes_no_new_version_and_sends_nothing(box, tmp_path: Path) -> None:
    emulator, _ = box
    path = write_file(tmp_path / "doc.bin", 3 * MiB + 7)
    first = _first_version(box, path)
    os.utime(path)  # touched, not changed
    result = _version(box, path, first.file_id)
    assert (result.file_id, result.version_id, result.sha1) == (first.file_id, first.version_id, first.sha1)
    assert result.parts_reused == 4 and result.bytes_reused == path.stat().st_size
    stats = emulator.stats()
    assert emulator.part_bytes_received() == 0
    # Box's "the file did not change": 202 without Retry-After, answered by a look at the file, no wait.
    assert count(stats, "sessions.commit", "202") == 1 and count(stats, "sessions.commit", "201") == 0
    assert emulator.file_versions(first.file_id) == []


def test_new_files_and_delta_off_never_plan(box, tmp_path: Path) -> None:
    emulator, client = box
    path = write_file(tmp_path / "doc.bin", 2 * MiB)
    first = _first_version(box, path)
    result = _version(box, path, first.file_id, delta=False)
    stats = emulator.stats()
    assert count(stats, "sessions.plan") == 0 and emulator.part_bytes_received() == 2 * MiB
    assert result.parts_reused == 0
    emulator.reset_stats()
    ChunkedUpload(client, write_file(tmp_path / "new.bin", 2 * MiB, seed=3), "0", "new.bin").run()
    assert count(emulator.stats(), "sessions.plan") == 0


def _through_proxy(emulator, override):
    """A client that reaches the emulator through a BoxProxy answering ``override``'s requests itself."""
    proxy = BoxProxy(emulator.origin, override)
    via = SimpleNamespace(api_url=proxy.api_url, upload_url=proxy.upload_url, token=emulator.token)
    return proxy, make_client(via)


def _is_plan(method: str, path: str) -> bool:
    return method == "POST" and path.endswith("/plan")


@pytest.mark.parametrize("status", [404, 405])
def test_a_missing_plan_endpoint_falls_back_and_is_remembered(box, tmp_path: Path, status: int) -> None:
    """A Box without the plan endpoint (404/405 while the session lives): every part is sent, and
    the client does not ask again."""
    emulator, _ = box
    path = write_file(tmp_path / "doc.bin", 3 * MiB)
    first = _first_version(box, path)
    error = {"type": "error", "status": status, "code": "not_found" if status == 404 else "method_not_allowed",
             "message": "no such endpoint"}
    proxy, client = _through_proxy(emulator, lambda m, p: (status, error) if _is_plan(m, p) else None)
    with proxy, client:
        _rewrite(path, 0, b"changed")
        with capture_logs() as logs:
            second = ChunkedUpload(client, path, None, "doc.bin", existing_file_id=first.file_id,
                                   concurrency=1).run()
        assert second.sha1 == _sha1(path) and second.parts_reused == 0
        assert emulator.part_bytes_received() == 3 * MiB and client.plan_unavailable
        assert len(proxy.answered) == 1
        assert [e["reason"] for e in logs if e["event"] == "upload_plan_skipped"] == ["the plan endpoint is missing"]
        # Remembered for this client: the next version does not ask again.
        _rewrite(path, MiB, b"again")
        third = ChunkedUpload(client, path, None, "doc.bin", existing_file_id=first.file_id).run()
        assert third.sha1 == _sha1(path) and len(proxy.answered) == 1
    assert emulator.download(first.file_id) == path.read_bytes()


@pytest.mark.parametrize("answer", [
    (400, {"type": "error", "status": 400, "code": "bad_request", "message": "plan refused"}),
    (200, {"upload_session_id": "X"}),  # no hits/misses lists: not an answer to act on
])
def test_a_refused_plan_falls_back_for_that_upload_only(box, tmp_path: Path, answer) -> None:
    emulator, _ = box
    path = write_file(tmp_path / "doc.bin", 3 * MiB)
    first = _first_version(box, path)
    refusing = [True]
    proxy, client = _through_proxy(emulator, lambda m, p: answer if refusing[0] and _is_plan(m, p) else None)
    with proxy, client:
        _rewrite(path, 2 * MiB, b"changed")
        second = ChunkedUpload(client, path, None, "doc.bin", existing_file_id=first.file_id, concurrency=1).run()
        assert second.sha1 == _sha1(path) and second.parts_reused == 0 and not client.plan_unavailable
        assert emulator.part_bytes_received() == 3 * MiB and len(proxy.answered) == 1
        refusing[0] = False
        _rewrite(path, 2 * MiB, b"CHANGED")
        emulator.reset_stats()
        third = ChunkedUpload(client, path, None, "doc.bin", existing_file_id=first.file_id).run()
    assert third.parts_reused == 2 and emulator.part_bytes_received() == MiB


def test_plan_attempts_that_fail_for_long_fall_back_without_failing_the_upload(box, tmp_path: Path) -> None:
    emulator, _ = box
    path = write_file(tmp_path / "doc.bin", 2 * MiB)
    first = _first_version(box, path)
    _rewrite(path, 0, b"changed")
    emulator.faults(reject_next={"count": 50, "status": 503, "endpoint": "sessions.plan"})
    second = _version(box, path, first.file_id, concurrency=1)
    assert second.sha1 == _sha1(path) and second.parts_reused == 0
    assert emulator.part_bytes_received() == 2 * MiB


class Crash(Exception):
    """Stands for the process dying after some parts."""


def test_a_crash_mid_delta_resends_only_what_was_in_flight(box, tmp_path: Path) -> None:
    emulator, _ = box
    path = write_file(tmp_path / "doc.bin", 8 * MiB)
    first = _first_version(box, path)
    for part in (1, 4, 6):
        _rewrite(path, part * MiB + 5, b"delta")
    progress = MemoryProgress()

    def crash_after_first(part: UploadedPart) -> None:
        raise Crash()

    progress.after_part = crash_after_first
    with pytest.raises(Crash):
        _version(box, path, first.file_id, progress=progress, concurrency=1)
    assert progress.saved is not None and [p.offset for p in progress.saved.parts] == [MiB]
    sent_before = emulator.part_bytes_received()
    progress.after_part = None
    emulator.reset_stats()
    result = _version(box, path, first.file_id, progress=progress, concurrency=1)
    stats = emulator.stats()
    assert sent_before == MiB and emulator.part_bytes_received() == 2 * MiB  # parts 4 and 6 only
    assert count(stats, "sessions.create_version") == 0  # the saved session was resumed
    assert result.sha1 == _sha1(path) and result.parts_reused == 5
    assert emulator.download(first.file_id) == path.read_bytes()


def test_a_new_version_through_the_uploader_and_a_stale_etag(box, tmp_path: Path) -> None:
    """The Uploader takes the delta path for versions at or above the chunked threshold, and
    If-Match still guards it."""
    emulator, client = box
    path = write_file(tmp_path / "doc.bin", 21_000_000)
    first = Uploader(client, chunked_threshold=20_000_000).upload(path, "0", "doc.bin")
    _rewrite(path, 10 * MiB, b"middle")
    emulator.reset_stats()
    second = Uploader(client, chunked_threshold=20_000_000).upload(path, None, "doc.bin",
                                                                    existing_file_id=first.file_id, etag=first.etag)
    assert second.sha1 == _sha1(path) and emulator.part_bytes_received() == MiB
    assert second.parts_reused == 20 and second.bytes_reused == 21_000_000 - MiB
    _rewrite(path, 0, b"later")
    with pytest.raises(BoxAPIError) as caught:
        Uploader(client, chunked_threshold=20_000_000).upload(path, None, "doc.bin",
                                                              existing_file_id=first.file_id, etag=first.etag)
    assert caught.value.status == 412
