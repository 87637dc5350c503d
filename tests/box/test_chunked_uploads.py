"""Chunked uploads against the real emulator: parallel parts, 202 commits, 429
storms, 5xx and dropped connections, resume, expired sessions, a file that
changes between parts, and 409/416 answers that mean "already done by us".

The emulator runs with a 1 MB chunked minimum and 1 MiB parts so that the
protocol is exercised with files of a few megabytes.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from syncd.box import BoxAPIError, ChunkedUpload, ErrorClass, SourceChanged, UploadCancelled, UploadedPart

from .conftest import MB, FakeTime, MemoryProgress, count, make_client, stop_dropping

SMALL_PARTS = ("--min-chunked-size", "1000000", "--part-sizes", "*=1MiB")
MiB = 1024 * 1024


@pytest.fixture
def chunky(emulator_factory):
    """An emulator with 1 MiB parts, and a client for it."""
    emulator = emulator_factory(*SMALL_PARTS)
    with make_client(emulator) as client:
        yield emulator, client


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _upload(client, path: Path, name: str | None = None, **kwargs):
    return ChunkedUpload(client, path, "0", name or path.name, **kwargs)


def test_parallel_parts_commit_and_progress(chunky, make_file) -> None:
    emulator, client = chunky
    path = make_file("big.bin", 6 * MiB - 123)
    progress = MemoryProgress()
    sent: list[int] = []
    result = _upload(client, path, progress=progress, on_bytes=sent.append, concurrency=4).run()
    assert result.sha1 == _sha1(path) and result.size == path.stat().st_size
    assert emulator.download(result.file_id) == path.read_bytes()
    assert progress.created == 1 and progress.discarded == 0
    assert sorted(p.offset for p in progress.parts) == [i * MiB for i in range(6)]
    assert sum(sent) == path.stat().st_size
    stats = emulator.stats()
    assert count(stats, "sessions.upload_part", "200") == 6
    assert count(stats, "sessions.commit", "201") == 1 and count(stats, "sessions.abort") == 0


def test_commit_202_is_retried_honouring_retry_after(chunky, make_file) -> None:
    emulator, client = chunky
    emulator.faults(commit_202=2, commit_retry_after=1)
    path = make_file("slow.bin", 2 * MiB + 5)
    fake = FakeTime()
    result = _upload(client, path, sleep=fake.sleep, clock=fake.clock).run()
    assert fake.sleeps == [1, 1]  # waited Retry-After after each 202
    stats = emulator.stats()
    assert count(stats, "sessions.commit", "202") == 2 and count(stats, "sessions.commit", "201") == 1
    assert result.sha1 == _sha1(path)


def test_commit_that_stays_202_past_the_deadline_fails_without_abort(chunky, make_file) -> None:
    emulator, client = chunky
    emulator.faults(commit_202=100, commit_retry_after=1)
    progress = MemoryProgress()
    with pytest.raises(BoxAPIError) as caught:
        _upload(client, make_file("stuck.bin", 2 * MiB), progress=progress, commit_deadline=1.5).run()
    assert caught.value.status == 202 and caught.value.error_class is ErrorClass.RETRY_LATER
    # Not abandoned: the session is kept for a later resume.
    assert progress.saved is not None and count(emulator.stats(), "sessions.abort") == 0


def test_429_storm_on_parts_with_retry_after(emulator_factory, make_file) -> None:
    emulator = emulator_factory(*SMALL_PARTS)
    fake = FakeTime()
    emulator.faults(reject_next={"count": 4, "status": 429, "retry_after": 1, "endpoint": "sessions.upload_part"})
    path = make_file("storm.bin", 4 * MiB)
    with make_client(emulator, sleep=fake.sleep) as client:
        result = _upload(client, path, concurrency=4).run()
    # One wait per 429, each Retry-After (1 s, plus its jitter of at most 0.15 s); no other waits.
    assert len(fake.sleeps) == 4 and all(1.0 <= s <= 1.15 for s in fake.sleeps), fake.sleeps
    stats = emulator.stats()
    assert count(stats, "sessions.upload_part", "429") == 4
    assert count(stats, "sessions.upload_part", "200") == 4
    assert result.sha1 == _sha1(path)


def test_5xx_on_parts_and_on_commit(chunky, make_file) -> None:
    emulator, client = chunky
    emulator.faults(reject_next={"count": 3, "status": 502, "endpoint": "sessions.upload_part"})
    first = _upload(client, make_file("a.bin", 3 * MiB, seed=1)).run()
    emulator.faults(reject_next={"count": 2, "status": 500, "endpoint": "sessions.commit"})
    second = _upload(client, make_file("b.bin", 3 * MiB, seed=2)).run()
    stats = emulator.stats()
    assert count(stats, "sessions.upload_part", "502") == 3 and count(stats, "sessions.commit", "500") == 2
    assert count(stats, "sessions.commit", "201") == 2
    assert first.file_id != second.file_id


def test_dropped_connections_during_parts_and_commit(chunky, make_file) -> None:
    emulator, client = chunky
    emulator.faults(drop_rate=0.3, seed=11)
    paths = [make_file(f"drop{i}.bin", 3 * MiB + i, seed=i) for i in range(2)]
    results = [_upload(client, p).run() for p in paths]
    stop_dropping(emulator)
    assert [r.sha1 for r in results] == [_sha1(p) for p in paths]
    stats = emulator.stats()
    assert count(stats, "sessions.upload_part", "0") + count(stats, "sessions.commit", "0") >= 1  # drops happened
    for result in results:
        assert emulator.file_versions(result.file_id) == []


class Crash(Exception):
    """Stands for the process dying after some parts."""


def _partial_upload(client, path: Path, progress: MemoryProgress, parts_before_crash: int) -> None:
    def crash_after(part: UploadedPart) -> None:
        if len(progress.parts) >= parts_before_crash:
            raise Crash()

    progress.after_part = crash_after
    with pytest.raises(Crash):
        _upload(client, path, progress=progress, concurrency=1).run()
    progress.after_part = None


def test_resume_uploads_only_missing_parts(chunky, make_file) -> None:
    emulator, client = chunky
    path = make_file("resume.bin", 5 * MiB + 7)
    progress = MemoryProgress()
    _partial_upload(client, path, progress, parts_before_crash=2)
    assert progress.saved is not None and len(progress.saved.parts) == 2
    emulator.reset_stats()
    result = _upload(client, path, progress=progress, concurrency=2).run()
    stats = emulator.stats()
    assert count(stats, "sessions.create") == 0 and count(stats, "sessions.list_parts", "200") >= 1
    assert count(stats, "sessions.upload_part", "200") == 4  # 6 parts, 2 were already there
    assert result.sha1 == _sha1(path) and emulator.download(result.file_id) == path.read_bytes()


def test_expired_session_on_resume_falls_back_to_a_new_one(chunky, make_file) -> None:
    emulator, client = chunky
    path = make_file("late.bin", 3 * MiB)
    progress = MemoryProgress()
    _partial_upload(client, path, progress, parts_before_crash=1)
    old_session = progress.saved.session_id
    emulator.advance_clock(8 * 24 * 3600)  # sessions live 7 days
    result = _upload(client, path, progress=progress).run()
    assert progress.discarded == 1 and progress.created == 2 and progress.saved.session_id != old_session
    assert result.sha1 == _sha1(path)


def test_file_changing_between_parts_is_never_committed(chunky, make_file) -> None:
    emulator, client = chunky
    path = make_file("moving.bin", 4 * MiB)
    progress = MemoryProgress()

    def rewrite_tail(part: UploadedPart) -> None:
        if len(progress.parts) == 1:
            with open(path, "r+b") as handle:  # same size, new bytes further on
                handle.seek(3 * MiB)
                handle.write(b"changed!" * 1000)

    progress.after_part = rewrite_tail
    with pytest.raises(SourceChanged) as caught:
        _upload(client, path, progress=progress, concurrency=1).run()
    assert caught.value.error_class is ErrorClass.RETRY_LATER
    stats = emulator.stats()
    assert count(stats, "sessions.commit") == 0
    assert count(stats, "sessions.abort") == 1 and progress.discarded == 1 and progress.saved is None
    assert emulator.folder_items("0") == []


def test_file_growing_after_read_is_detected(chunky, make_file) -> None:
    emulator, client = chunky
    path = make_file("grows.bin", 2 * MiB)
    progress = MemoryProgress()

    def append(part: UploadedPart) -> None:
        with open(path, "ab") as handle:
            handle.write(b"more")

    progress.after_part = append
    with pytest.raises(SourceChanged):
        _upload(client, path, progress=progress, concurrency=1).run()
    assert count(emulator.stats(), "sessions.commit") == 0


def test_concurrent_commit_meeting_our_own_file_is_success(chunky, make_file) -> None:
    """Two attempts of the same upload (e.g. a retry racing a lost answer): the
    commit that loses meets 409 item_name_in_use with our SHA-1, which is success."""
    emulator, client = chunky
    path = make_file("twice.bin", 2 * MiB + 1)
    barrier = threading.Barrier(2, timeout=20)

    class Synchronised(MemoryProgress):
        def session_created(self, session) -> None:
            super().session_created(session)
            barrier.wait()  # both sessions exist before either commits

    results: list = []
    errors: list = []

    def attempt() -> None:
        try:
            results.append(_upload(client, path, progress=Synchronised()).run())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert results[0].file_id == results[1].file_id
    stats = emulator.stats()
    assert count(stats, "sessions.commit", "201") == 1 and count(stats, "sessions.commit", "409") == 1
    assert emulator.file_versions(results[0].file_id) == []


def test_session_create_meeting_our_own_file_is_success(chunky, make_file) -> None:
    emulator, client = chunky
    path = make_file("again.bin", 2 * MiB)
    first = _upload(client, path).run()
    emulator.reset_stats()
    second = _upload(client, path).run()
    assert second.file_id == first.file_id
    stats = emulator.stats()
    assert count(stats, "sessions.upload_part") == 0 and emulator.file_versions(first.file_id) == []


def test_part_already_stored_416_counts_as_uploaded(chunky, make_file) -> None:
    emulator, client = chunky
    path = make_file("dup.bin", 2 * MiB)
    upload = _upload(client, path)
    session = upload._create_session(path.stat().st_size)
    data = path.read_bytes()[:MiB]
    first = upload._put_part(session, 0, data)
    # The same part again, as after a lost answer: 416 range_overlaps_existing_part.
    again = upload._put_part(session, 0, data)
    assert again == first
    assert count(emulator.stats(), "sessions.upload_part", "416") == 1
    # A different part body at the same range is not "ours".
    with pytest.raises(BoxAPIError) as caught:
        upload._put_part(session, 0, b"x" * MiB)
    assert caught.value.status == 416


def test_new_version_through_a_session_with_if_match(chunky, make_file) -> None:
    emulator, client = chunky
    v1 = _upload(client, make_file("v1.bin", 2 * MiB, seed=1), "doc.bin").run()
    v2_path = make_file("v2.bin", 3 * MiB, seed=2)
    v2 = ChunkedUpload(client, v2_path, None, "doc.bin", existing_file_id=v1.file_id, etag=v1.etag).run()
    assert v2.file_id == v1.file_id and v2.version_id != v1.version_id
    assert emulator.download(v1.file_id) == v2_path.read_bytes()
    assert count(emulator.stats(), "sessions.create_version", "201") == 1


def test_parts_mismatch_is_retried_briefly_then_reported(chunky, make_file) -> None:
    emulator, client = chunky
    path = make_file("mismatch.bin", 2 * MiB)
    fake = FakeTime()
    upload = _upload(client, path, parts_mismatch_window=1.0, sleep=fake.sleep, clock=fake.clock)
    session = upload._create_session(path.stat().st_size)
    data = path.read_bytes()
    stored = upload._put_part(session, 0, data[:MiB])  # the second part never reaches Box
    missing = UploadedPart("DEADBEEF", MiB, MiB, hashlib.sha1(data[MiB:]).hexdigest())
    with pytest.raises(BoxAPIError) as caught:
        upload._commit(session, [stored, missing], hashlib.sha1(data).hexdigest())
    assert caught.value.code == "parts_mismatch"
    # Retried with a growing pause while inside the 1 s window (0 s, then 0.5 s in), reported after it.
    assert fake.sleeps == [0.5, 1.0]
    assert count(emulator.stats(), "sessions.commit", "400") == 3


@pytest.mark.parametrize("as_version", [False, True])
def test_resume_after_a_commit_whose_result_was_lost(chunky, make_file, as_version: bool) -> None:
    """Crash after Box committed but before the caller recorded it: the saved
    session is resumed, found finished, and Box's file is the result (no re-upload,
    no second version)."""
    emulator, client = chunky
    target = {}
    if as_version:
        v1 = _upload(client, make_file("v1.bin", 2 * MiB, seed=9), "doc.bin").run()
        target = {"existing_file_id": v1.file_id, "etag": v1.etag}
    path = make_file("done.bin", 3 * MiB)
    progress = MemoryProgress()
    first = ChunkedUpload(client, path, "0", "doc.bin", progress=progress, **target).run()
    assert progress.saved is not None  # the caller never got to drop it
    emulator.reset_stats()
    again = ChunkedUpload(client, path, "0", "doc.bin", progress=progress, **target).run()
    assert (again.file_id, again.version_id, again.sha1) == (first.file_id, first.version_id, first.sha1)
    stats = emulator.stats()
    assert count(stats, "sessions.upload_part") == 0 and count(stats, "sessions.commit") == 0
    assert len(emulator.file_versions(first.file_id)) == (1 if as_version else 0)


def test_discarding_a_saved_session_deletes_it_on_box(chunky, make_file) -> None:
    from syncd.box import Uploader

    emulator, client = chunky
    path = make_file("gone.bin", 3 * MiB)
    progress = MemoryProgress()
    _partial_upload(client, path, progress, parts_before_crash=1)
    Uploader(client).discard(progress.saved)
    with pytest.raises(BoxAPIError) as caught:
        client.transport.request("GET", progress.saved.status_url)
    assert caught.value.status in (404, 410)
    assert count(emulator.stats(), "sessions.abort", "204") == 1


def test_cancel_stops_at_a_part_boundary_keeps_the_session_and_resumes(chunky, make_file) -> None:
    emulator, client = chunky
    path = make_file("stopping.bin", 8 * MiB + 5)
    progress = MemoryProgress()
    cancel = threading.Event()

    def stop_after_two(part: UploadedPart) -> None:
        if len(progress.parts) >= 2:
            cancel.set()

    progress.after_part = stop_after_two
    with pytest.raises(UploadCancelled):
        _upload(client, path, progress=progress, concurrency=2, cancel=cancel).run()
    progress.after_part = None
    # Parts in flight when the stop came finished and were recorded; nothing was aborted or committed.
    stats = emulator.stats()
    assert count(stats, "sessions.abort") == 0 and count(stats, "sessions.commit") == 0
    assert progress.discarded == 0 and progress.saved is not None
    recorded = len(progress.saved.parts)
    assert 2 <= recorded < 9 and count(stats, "sessions.upload_part", "200") == recorded
    emulator.reset_stats()
    result = _upload(client, path, progress=progress, concurrency=2).run()
    assert count(emulator.stats(), "sessions.upload_part", "200") == 9 - recorded
    assert result.sha1 == _sha1(path) and emulator.download(result.file_id) == path.read_bytes()
