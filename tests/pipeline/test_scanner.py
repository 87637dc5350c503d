"""Scanner on real directory trees: listing, filters, symlinks, vanished and unreadable paths."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.pipeline.filters import PathFilter
from syncd.pipeline.identity import FileIdentity
from syncd.pipeline.scanner import (
    FileStat,
    ProblemKind,
    RelativePathError,
    ScanEntry,
    Scanner,
    ScanProblem,
    stat_identity,
)

REPO = Path(__file__).resolve().parents[2]


def _write(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _scan(root: Path, **kwargs: object) -> tuple[dict[str, ScanEntry], list[ScanProblem]]:
    problems: list[ScanProblem] = []
    entries = {e.relpath: e for e in Scanner(root, on_problem=problems.append, **kwargs).scan()}  # type: ignore[arg-type]
    return entries, problems


def test_lists_a_few_thousand_files_with_their_identity(tmp_path: Path) -> None:
    for d in range(40):
        folder = tmp_path / f"dir{d:02d}" / "nested"
        folder.mkdir(parents=True)
        for f in range(50):
            fd = os.open(folder / f"file{f}.bin", os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, b"y" * f)
            os.close(fd)
    entries, problems = _scan(tmp_path)
    assert problems == []
    assert len(entries) == 2000
    entry = entries["dir07/nested/file42.bin"]
    st = os.stat(tmp_path / "dir07/nested/file42.bin")
    assert (entry.size, entry.mtime_ns, entry.inode) == (42, st.st_mtime_ns, st.st_ino)
    assert entry.stat == FileStat(42, st.st_mtime_ns, st.st_ino)
    assert entry.identity == FileIdentity.from_stat(st)  # device and ctime too


def test_filter_prunes_directories_and_skips_temporary_names(tmp_path: Path) -> None:
    _write(tmp_path / "keep.pdf")
    _write(tmp_path / "sub/keep.txt")
    _write(tmp_path / "sub/upload.part")
    _write(tmp_path / ".git/objects/ab")
    _write(tmp_path / "archive/old.pdf")
    entries, problems = _scan(tmp_path, path_filter=PathFilter(exclude=["archive"]))
    assert sorted(entries) == ["keep.pdf", "sub/keep.txt"]
    assert problems == []


def test_non_recursive_lists_only_the_root(tmp_path: Path) -> None:
    _write(tmp_path / "top.txt")
    _write(tmp_path / "sub/below.txt")
    entries, _ = _scan(tmp_path, recursive=False)
    assert list(entries) == ["top.txt"]
    assert list(Scanner(tmp_path, recursive=False).scan("sub")) == []


def test_scan_of_a_subdirectory_uses_root_relative_paths(tmp_path: Path) -> None:
    _write(tmp_path / "a/b/c.txt")
    _write(tmp_path / "a/d.txt")
    _write(tmp_path / "e.txt")
    assert sorted(e.relpath for e in Scanner(tmp_path).scan("a/")) == ["a/b/c.txt", "a/d.txt"]
    problems: list[ScanProblem] = []
    assert list(Scanner(tmp_path, on_problem=problems.append).scan("missing")) == []
    assert [(p.kind, p.directory) for p in problems] == [(ProblemKind.VANISHED, True)]


@pytest.mark.parametrize("bad", ["../etc", "/etc", "a/../../x", "a\x00b"])
def test_paths_leaving_the_root_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(RelativePathError):
        list(Scanner(tmp_path).scan(bad))
    with pytest.raises(RelativePathError):
        stat_identity(tmp_path, bad)


def test_symlinks_are_skipped_and_reported_by_default(tmp_path: Path) -> None:
    outside = Path(tempfile.mkdtemp())
    try:
        _write(outside / "secret.txt")
        _write(tmp_path / "real/file.txt")
        (tmp_path / "out-dir").symlink_to(outside)
        (tmp_path / "out-file").symlink_to(outside / "secret.txt")
        (tmp_path / "in-file").symlink_to(tmp_path / "real/file.txt")
        entries, problems = _scan(tmp_path)
        assert sorted(entries) == ["real/file.txt"]
        assert {(p.relpath, p.kind) for p in problems} == {
            ("out-dir", ProblemKind.SYMLINK_SKIPPED),
            ("out-file", ProblemKind.SYMLINK_SKIPPED),
            ("in-file", ProblemKind.SYMLINK_SKIPPED),
        }
        skipped = stat_identity(tmp_path, "in-file")
        assert isinstance(skipped, ScanProblem) and skipped.kind is ProblemKind.SYMLINK_SKIPPED
        assert isinstance(stat_identity(tmp_path, "real/file.txt"), FileIdentity)
    finally:
        shutil.rmtree(outside)


def test_following_symlinks_never_leaves_the_root_and_cuts_loops(tmp_path: Path) -> None:
    outside = Path(tempfile.mkdtemp())
    try:
        _write(outside / "secret.txt", b"secret")
        _write(tmp_path / "real/file.txt", b"12345")
        (tmp_path / "out-dir").symlink_to(outside)
        (tmp_path / "out-file").symlink_to(outside / "secret.txt")
        (tmp_path / "in-file").symlink_to(tmp_path / "real/file.txt")
        (tmp_path / "real/loop").symlink_to(tmp_path)  # back to the root
        (tmp_path / "dangling").symlink_to(tmp_path / "nothing-here")
        entries, problems = _scan(tmp_path, follow_symlinks=True)
        assert sorted(entries) == ["in-file", "real/file.txt"]
        assert entries["in-file"].size == 5
        assert entries["in-file"].inode == entries["real/file.txt"].inode
        kinds = {p.relpath: p.kind for p in problems}
        assert kinds == {
            "out-dir": ProblemKind.SYMLINK_OUTSIDE_ROOT,
            "out-file": ProblemKind.SYMLINK_OUTSIDE_ROOT,
            "real/loop": ProblemKind.SYMLINK_LOOP,
            "dangling": ProblemKind.VANISHED,
        }
        outside_stat = stat_identity(tmp_path, "out-file", follow_symlinks=True)
        assert isinstance(outside_stat, ScanProblem) and outside_stat.kind is ProblemKind.SYMLINK_OUTSIDE_ROOT
        assert stat_identity(tmp_path, "in-file", follow_symlinks=True) == entries["in-file"].identity
    finally:
        shutil.rmtree(outside)


def test_fifo_is_reported_not_listed_and_not_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")  # opening it would block the scanner forever
    _write(tmp_path / "ok.txt")
    entries, problems = _scan(tmp_path)
    assert list(entries) == ["ok.txt"]
    assert [(p.relpath, p.kind) for p in problems] == [("pipe", ProblemKind.NOT_REGULAR_FILE)]
    fifo = stat_identity(tmp_path, "pipe")
    assert isinstance(fifo, ScanProblem) and fifo.kind is ProblemKind.NOT_REGULAR_FILE
    assert problems[0].detail == fifo.detail == "is a FIFO (named pipe)"


def test_stat_identity_and_problem_text_for_a_name_that_is_not_utf8(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/caf\xe9.txt"
    with open(raw, "wb") as handle:
        handle.write(b"x")
    os.mkfifo(os.fsencode(tmp_path) + b"/pipe\xff")
    entries, problems = _scan(tmp_path)
    (relpath,) = entries
    assert stat_identity(tmp_path, relpath) == entries[relpath].identity == FileIdentity.from_stat(os.stat(raw))
    assert str(problems[0]) == "pipe\\xff: not_regular_file: is a FIFO (named pipe)"


def test_files_and_directories_vanishing_mid_scan_are_reported_and_the_scan_goes_on(tmp_path: Path) -> None:
    for d in range(5):
        for name in ("a", "b", "c"):
            _write(tmp_path / f"dir{d}" / name)
    problems: list[ScanProblem] = []
    scan: Iterator[ScanEntry] = Scanner(tmp_path, on_problem=problems.append).scan()
    first = next(scan)  # lazy: the walk has listed the root and is now inside one directory
    current = (tmp_path / first.relpath).parent
    vanished = set()
    for sibling in current.iterdir():
        if sibling.name != Path(first.relpath).name:
            sibling.unlink()  # already read by getdents, gone before its stat
            vanished.add(f"{current.name}/{sibling.name}")
    for other in tmp_path.iterdir():
        if other != current:
            shutil.rmtree(other)  # listed in the root, gone before it is opened
            vanished.add(other.name)
    assert list(scan) == []
    assert {p.relpath for p in problems} == vanished
    assert {p.kind for p in problems} == {ProblemKind.VANISHED}
    # Only the unlisted directories make the scan incomplete; the two files are just gone.
    assert {p.relpath for p in problems if p.directory} == {p for p in vanished if "/" not in p}
    assert len(vanished) == 2 + 4


_UNPRIVILEGED_SCAN = """
import json, os, sys
from syncd.pipeline.scanner import Scanner  # imported first: 'nobody' cannot read root's Python install
if os.geteuid() == 0:
    os.setgid(65534); os.setuid(65534)  # 'nobody': root would read anything
problems = []
entries = sorted(e.relpath for e in Scanner(sys.argv[1], on_problem=problems.append).scan())
print(json.dumps({"entries": entries, "problems": [[p.relpath, p.kind.value, p.directory] for p in problems]}))
"""


def test_permission_denied_is_reported_and_the_rest_is_listed() -> None:
    root = Path(tempfile.mkdtemp())
    try:
        root.chmod(0o755)
        _write(root / "open/a.txt").chmod(0o644)
        (root / "open").chmod(0o755)
        _write(root / "locked/b.txt")
        (root / "locked").chmod(0o700 if os.geteuid() == 0 else 0o000)  # 'nobody' (or we) cannot list it
        _write(root / "c.txt").chmod(0o644)
        result = subprocess.run(
            [sys.executable, "-c", _UNPRIVILEGED_SCAN, str(root)],
            cwd=REPO, capture_output=True, text=True, timeout=30, check=True,
        )
        report = json.loads(result.stdout)
        assert report == {"entries": ["c.txt", "open/a.txt"], "problems": [["locked", "permission_denied", True]]}
    finally:
        (root / "locked").chmod(0o700)
        shutil.rmtree(root)


def test_a_scan_may_report_its_problems_to_its_own_callback(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "link").symlink_to(tmp_path / "pipe")
    default: list[ScanProblem] = []
    own: list[ScanProblem] = []
    scanner = Scanner(tmp_path, on_problem=default.append)
    assert list(scanner.scan(on_problem=own.append)) == []
    assert sorted((p.relpath, p.kind) for p in own) == [("link", ProblemKind.SYMLINK_SKIPPED),
                                                        ("pipe", ProblemKind.NOT_REGULAR_FILE)]
    assert default == []
    list(scanner.scan())
    assert len(default) == 2
