"""Deleting or archiving a source after upload, on real files: only the uploaded bytes, never
overwriting, never following a link, across file systems with fsyncs, and a writer stops it."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from syncd.pipeline.actions import (
    ActionDeferred,
    ActionRefused,
    ArchivePlan,
    UploadedSource,
    archive_verified,
    delete_verified,
    free_names,
    open_uploaded,
    remove_set_aside,
    rename_noreplace,
    verify,
)
from syncd.pipeline.identity import FileStat
from syncd.pipeline.writers import LeaseMonitor
from tests.support.mounts import tmpfs


def drop(root: Path, relpath: str, data: bytes = b"payload") -> UploadedSource:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return UploadedSource(root, relpath, FileStat.from_stat(path.stat()), hashlib.sha1(data).hexdigest())


def no_progress(n: int) -> None:
    pass


@pytest.fixture
def leases():
    monitor = LeaseMonitor()
    yield monitor
    monitor.stop()


def test_delete_only_after_the_bytes_are_verified(tmp_path: Path, leases: LeaseMonitor) -> None:
    root = tmp_path / "inbox"
    uploaded = drop(root, "a/scan.pdf")
    read: list[int] = []
    with open_uploaded(uploaded, leases) as target:
        verify(target, uploaded.sha1.upper(), read.append)
        delete_verified(target)
    assert not (root / "a/scan.pdf").exists() and os.listdir(root / "a") == []
    assert sum(read) == len(b"payload")  # the hash reports its progress
    assert open_uploaded(uploaded, leases) is None  # nothing at its path any more


def test_bytes_that_are_not_boxs_are_never_touched(tmp_path: Path, leases: LeaseMonitor) -> None:
    uploaded = drop(tmp_path, "scan.pdf")
    with open_uploaded(uploaded, leases) as target:
        with pytest.raises(ActionRefused, match="not what Box holds"):
            verify(target, "f" * 40, no_progress)
    assert (tmp_path / "scan.pdf").read_bytes() == b"payload"


def test_a_file_changed_since_its_upload_is_refused(tmp_path: Path, leases: LeaseMonitor) -> None:
    uploaded = drop(tmp_path, "scan.pdf")
    with (tmp_path / "scan.pdf").open("ab") as f:
        f.write(b" more")
    with pytest.raises(ActionRefused, match="changed after it was uploaded"):
        open_uploaded(uploaded, leases)
    (tmp_path / "scan.pdf").unlink()
    (tmp_path / "scan.pdf").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ActionRefused, match="symbolic link"):
        open_uploaded(uploaded, leases)


def test_a_writer_holding_the_file_defers_the_action(tmp_path: Path, leases: LeaseMonitor) -> None:
    uploaded = drop(tmp_path, "scan.pdf")
    with (tmp_path / "scan.pdf").open("r+b"):
        with pytest.raises(ActionDeferred) as caught:
            open_uploaded(uploaded, leases)
        assert caught.value.code == "writer"
    with open_uploaded(uploaded, leases) as target:
        # A writer opening it now breaks the lease: its open() goes on, and the action stops.
        opened = threading.Event()

        def writer() -> None:
            with (tmp_path / "scan.pdf").open("r+b"):
                opened.set()

        thread = threading.Thread(target=writer)
        thread.start()
        assert opened.wait(10)
        thread.join()
        with pytest.raises(ActionDeferred, match="opened the file for writing"):
            verify(target, uploaded.sha1, no_progress)
    assert (tmp_path / "scan.pdf").exists()


def test_a_file_swapped_in_at_its_path_is_put_back_not_deleted(tmp_path: Path, leases: LeaseMonitor) -> None:
    uploaded = drop(tmp_path, "scan.pdf")
    with open_uploaded(uploaded, leases) as target:
        verify(target, uploaded.sha1, no_progress)
        (tmp_path / "other").write_bytes(b"someone else's")
        os.replace(tmp_path / "other", tmp_path / "scan.pdf")
        with pytest.raises(ActionDeferred, match="another file took its name"):
            delete_verified(target)
    assert (tmp_path / "scan.pdf").read_bytes() == b"someone else's"
    assert os.listdir(tmp_path) == ["scan.pdf"]


def test_rename_never_replaces(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"b")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(FileExistsError):
            rename_noreplace(fd, "a", fd, "b")
        rename_noreplace(fd, "a", fd, "c")
    finally:
        os.close(fd)
    assert (tmp_path / "b").read_bytes() == b"b" and (tmp_path / "c").read_bytes() == b"a"
    assert list(free_names("scan.pdf"))[:3] == ["scan.pdf", "scan (1).pdf", "scan (2).pdf"]
    assert list(free_names(".hidden"))[1] == ".hidden (1)"


def archive(uploaded: UploadedSource, leases: LeaseMonitor, plan: ArchivePlan, names: list[Path]) -> Path:
    with open_uploaded(uploaded, leases) as target:
        verify(target, uploaded.sha1, no_progress)
        return archive_verified(target, plan, uploaded.sha1, record_name=names.append, on_progress=no_progress)


def test_two_files_archived_to_one_path_both_survive(tmp_path: Path, leases: LeaseMonitor) -> None:
    root, archive_to = tmp_path / "inbox", tmp_path / "archive/2026/scan.pdf"
    first = archive(drop(root, "a/scan.pdf", b"first"), leases, ArchivePlan(archive_to, 1), [])
    second = archive(drop(root, "b/scan.pdf", b"second"), leases, ArchivePlan(archive_to, 2), [])
    assert (first, second) == (archive_to, archive_to.with_name("scan (1).pdf"))
    assert first.read_bytes() == b"first" and second.read_bytes() == b"second"
    assert not (root / "a/scan.pdf").exists() and not (root / "b/scan.pdf").exists()


def test_an_archive_on_another_file_system_gets_a_fsynced_copy(tmp_path: Path, leases: LeaseMonitor) -> None:
    root = tmp_path / "inbox"
    with tmpfs(tmp_path / "other-fs", "4m") as mount:
        archive_to = mount.path / "2026/scan.pdf"
        archive_to.parent.mkdir()
        archive_to.write_bytes(b"already there")
        names: list[Path] = []
        sha1 = drop(root, "scan.pdf", b"x" * 3_000_000).sha1
        os.utime(root / "scan.pdf", ns=(1_000_000_000, 2_000_000_000))  # the copy keeps the times
        uploaded = UploadedSource(root, "scan.pdf", FileStat.from_stat((root / "scan.pdf").stat()), sha1)
        archived = archive(uploaded, leases, ArchivePlan(archive_to, 7), names)
        assert archived == archive_to.with_name("scan (1).pdf")
        assert names == [archived]  # the name was recorded before the copy took it
        assert archived.read_bytes() == b"x" * 3_000_000 and archived.stat().st_mtime_ns == 2_000_000_000
        assert archive_to.read_bytes() == b"already there"
        assert sorted(os.listdir(archive_to.parent)) == ["scan (1).pdf", "scan.pdf"]  # no copy left over
        assert not (root / "scan.pdf").exists()


def test_a_copy_recorded_before_a_crash_is_not_made_twice(tmp_path: Path, leases: LeaseMonitor) -> None:
    root = tmp_path / "inbox"
    with tmpfs(tmp_path / "other-fs", "4m") as mount:
        archive_to = mount.path / "scan.pdf"
        uploaded = drop(root, "scan.pdf", b"content")
        # A run copied the file to "scan.pdf" in the archive and crashed before deleting the source.
        archive_to.write_bytes(b"content")
        (mount.path / ".scan.pdf.syncd-0-7").write_bytes(b"cont")  # and a copy cut short by another crash
        archived = archive(uploaded, leases, ArchivePlan(archive_to, 7, recorded=archive_to), [])
        assert archived == archive_to
        assert os.listdir(mount.path) == ["scan.pdf"]
        assert not (root / "scan.pdf").exists()
        # A recorded name holding other bytes is someone else's: a free name is taken instead.
        uploaded = drop(root, "scan.pdf", b"newer")
        archived = archive(uploaded, leases, ArchivePlan(archive_to, 8, recorded=archive_to), [])
        assert archived == archive_to.with_name("scan (1).pdf") and archived.read_bytes() == b"newer"
        assert archive_to.read_bytes() == b"content"


def test_a_read_only_drop_folder_defers_with_the_reason(tmp_path: Path, leases: LeaseMonitor) -> None:
    with tmpfs(tmp_path / "inbox", "1m") as mount:
        uploaded = drop(mount.path, "scan.pdf")
        mount.remount(read_only=True)
        with open_uploaded(uploaded, leases) as target:
            verify(target, uploaded.sha1, no_progress)
            with pytest.raises(OSError) as caught:
                delete_verified(target)
        assert caught.value.strerror == "Read-only file system"
        mount.remount(read_only=False)
        with open_uploaded(uploaded, leases) as target:
            verify(target, uploaded.sha1, no_progress)
            delete_verified(target)
        assert os.listdir(mount.path) == []


def test_what_a_crash_left_set_aside_is_finished_and_nothing_else(tmp_path: Path, leases: LeaseMonitor) -> None:
    uploaded = drop(tmp_path, "d/scan.pdf")
    # A delete set the file aside and the process died before the unlink.
    os.rename(tmp_path / "d/scan.pdf", tmp_path / "d/.scan.pdf.syncd-4242-1")
    (tmp_path / "d/.scan.pdf.syncd-4242-2").write_bytes(b"payload!")  # not the uploaded file
    (tmp_path / "d/.other.pdf.syncd-4242-3").write_bytes(b"payload")  # another file's
    assert open_uploaded(uploaded, leases) is None
    assert remove_set_aside(uploaded, no_progress) == 1
    assert sorted(os.listdir(tmp_path / "d")) == [".other.pdf.syncd-4242-3", ".scan.pdf.syncd-4242-2"]
