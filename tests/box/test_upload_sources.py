"""Uploads read from one open file (invariant 7): PathSource on real files, and uploads
against the real emulator that must send what the descriptor holds whatever happens
to the path, and refuse what changed through it."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from pathlib import Path

import pytest

from syncd.box import ChunkedUpload, DirectUpload, PathSource, SourceChanged, Uploader, UploadedPart
from syncd.box.upload_source import source_sha1

from .conftest import MemoryProgress, count, make_client, write_file

MiB = 1024 * 1024
SMALL_PARTS = ("--min-chunked-size", "1000000", "--part-sizes", "*=1MiB")


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def test_path_source_reads_by_offset_and_streams_windows(tmp_path: Path) -> None:
    path = write_file(tmp_path / "f.bin", 3 * MiB + 5)
    data = path.read_bytes()
    with PathSource(path) as source:
        assert source.size == len(data) and source.label == str(path)
        assert source.read_exact(MiB - 3, 10) == data[MiB - 3:MiB + 7]
        window = source.stream(5, 2 * MiB)
        assert len(window) == 2 * MiB and window.read() == data[5:5 + 2 * MiB]
        assert source.stream().read() == data
        assert source_sha1(source) == _sha1(data)
        assert source.check_unchanged() is None


def test_path_source_sees_changes_through_its_descriptor(tmp_path: Path) -> None:
    path = write_file(tmp_path / "f.bin", 100_000)
    with PathSource(path) as source:
        os.truncate(path, 50_000)
        assert "size changed" in str(source.check_unchanged())
        with pytest.raises(SourceChanged, match="shrank"):
            source.read_exact(40_000, 20_000)
        with pytest.raises(SourceChanged, match="shrank"):
            source.stream(0, 100_000).read()
    with PathSource(path) as source:
        stat = os.stat(path)
        with open(path, "r+b") as handle:
            handle.write(b"x")  # same size...
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ...and the mtime set back
        assert "status change time" in str(source.check_unchanged())


def test_path_source_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="FIFO"):
        PathSource(fifo)  # opens at once (no writer needed) and is refused
    with pytest.raises(IsADirectoryError):
        PathSource(tmp_path)
    sock_path = tmp_path / "s.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    with pytest.raises(OSError):
        PathSource(sock_path)
    server.close()


@pytest.mark.parametrize("kind", ["direct", "chunked"])
def test_an_upload_sends_what_was_opened_even_when_the_path_names_another_file(emulator_factory, tmp_path: Path,
                                                                             kind: str) -> None:
    """After the open, the folder is renamed away and another file appears at the same path: the
    upload hashes and sends the opened file (one descriptor), never the newcomer."""
    emulator = emulator_factory(*SMALL_PARTS)
    (tmp_path / "drop").mkdir()
    path = write_file(tmp_path / "drop" / "f.bin", 3 * MiB, seed=1)
    original = path.read_bytes()
    with make_client(emulator) as client, PathSource(path) as source:
        os.rename(tmp_path / "drop", tmp_path / "moved")  # the file's own inode is untouched
        (tmp_path / "drop").mkdir()
        write_file(path, 3 * MiB, seed=2)
        upload = (DirectUpload(client, source, "0", "f.bin") if kind == "direct"
                  else ChunkedUpload(client, source, "0", "f.bin"))
        result = upload.run()
    assert result.sha1 == _sha1(original) and emulator.download(result.file_id) == original


@pytest.mark.parametrize("kind", ["direct", "chunked"])
def test_a_file_replaced_at_its_path_during_the_upload_is_never_committed(emulator_factory, tmp_path: Path,
                                                                         kind: str) -> None:
    """Renaming another file over the opened one unlinks it (its ctime moves): the upload cannot
    tell a rename from a rewrite, so it refuses; the newcomer is never sent as this file."""
    emulator = emulator_factory(*SMALL_PARTS)
    path = write_file(tmp_path / "f.bin", 3 * MiB, seed=1)
    with make_client(emulator) as client, PathSource(path) as source:
        write_file(tmp_path / "other.bin", 3 * MiB, seed=2)
        os.replace(tmp_path / "other.bin", path)
        upload = (DirectUpload(client, source, "0", "f.bin") if kind == "direct"
                  else ChunkedUpload(client, source, "0", "f.bin"))
        with pytest.raises(SourceChanged, match="status change time"):
            upload.run()
    assert emulator.folder_items("0") == []


def test_a_change_through_the_descriptor_between_parts_is_never_committed(emulator_factory, tmp_path: Path) -> None:
    emulator = emulator_factory(*SMALL_PARTS)
    path = write_file(tmp_path / "f.bin", 4 * MiB)
    progress = MemoryProgress()

    def rewrite(part: UploadedPart) -> None:
        if len(progress.parts) == 1:
            stat = os.stat(path)
            with open(path, "r+b") as handle:
                handle.seek(3 * MiB)
                handle.write(b"changed")
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # hide it from mtime: ctime tells

    progress.after_part = rewrite
    with make_client(emulator) as client, PathSource(path) as source:
        with pytest.raises(SourceChanged):
            ChunkedUpload(client, source, "0", "f.bin", progress=progress, concurrency=1).run()
    stats = emulator.stats()
    assert count(stats, "sessions.commit") == 0 and count(stats, "sessions.abort") == 1


def test_uploader_takes_a_source_and_leaves_it_open(emulator, client, make_file) -> None:
    path = make_file("f.bin", 5000)
    with PathSource(path) as source:
        first = Uploader(client).upload(source, "0", "f.bin")
        # The caller's source stays open: a conflict policy may upload it again as a version.
        again = Uploader(client).upload(source, None, "f.bin", existing_file_id=first.file_id)
        assert source.read_exact(0, 10) == path.read_bytes()[:10]
    assert again.file_id == first.file_id and again.sha1 == first.sha1


def test_hashing_inside_the_box_layer_beats_the_heartbeat(emulator, client, make_file, monkeypatch) -> None:
    """A direct upload without a given SHA-1 hashes first (Content-MD5 needs it before the body):
    every block hashed is a heartbeat, before any byte is acknowledged."""
    from syncd.box import heartbeat

    monkeypatch.setattr(heartbeat, "HEARTBEAT_EVERY", 0.0)  # every beat goes out: count them
    path = make_file("f.bin", 3 * MiB + 1)
    calls: list[int] = []
    Uploader(client).upload(path, "0", "f.bin", on_bytes=calls.append)
    first_bytes = next(i for i, n in enumerate(calls) if n > 0)
    assert first_bytes >= 4 and set(calls[:first_bytes]) == {0}  # 4 blocks of 1 MiB hashed
    assert sum(calls) == 3 * MiB + 1


def test_commit_polls_and_backoff_beat_the_heartbeat(emulator_factory, tmp_path: Path) -> None:
    emulator = emulator_factory(*SMALL_PARTS)
    emulator.faults(commit_202=1, commit_retry_after=3,
                    reject_next={"count": 1, "status": 429, "retry_after": 3, "endpoint": "sessions.upload_part"})
    path = write_file(tmp_path / "f.bin", 2 * MiB)
    calls: list[int] = []
    lock = threading.Lock()

    def record(n: int) -> None:
        with lock:
            calls.append(n)

    with make_client(emulator) as client:
        result = ChunkedUpload(client, path, "0", "f.bin", on_bytes=record).run()
    assert result.sha1 == _sha1(path.read_bytes())
    # Two waits of 3 s (a 429's Retry-After, a 202's): heartbeats in both.
    assert calls.count(0) >= 2 and sum(calls) == 2 * MiB
