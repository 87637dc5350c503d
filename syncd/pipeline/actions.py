"""What happens to a source file after Box has it: keep, delete, or move to an archive.

Invariant 4 of DESIGN.md lives here: the source is touched only when Box's
SHA-1 equals the local SHA-1 and the file is byte-for-byte the one that was
hashed. Deletion first renames the file aside (atomic, same directory) and
re-checks the renamed inode, so a writer that reopened the path in between
is never robbed of its new data.
"""

from __future__ import annotations

import enum
import errno
import os
import shutil
import stat as stat_module
import time
from pathlib import Path

from syncd.pipeline.scanner import FileStat


class AfterUpload(enum.StrEnum):
    KEEP = "keep"
    DELETE = "delete"
    MOVE = "move"


class SourceActionRefused(Exception):
    """The after-upload action was not carried out; the file is left where it was."""


def apply_after_upload(
    action: AfterUpload,
    path: Path,
    *,
    hashed: FileStat,
    local_sha1: str,
    box_sha1: str,
    archive_target: Path | None = None,
) -> Path | None:
    """Carry out `action` on the uploaded file at `path`.

    `archive_target` is where MOVE puts the file (a free name next to it is
    used if it exists). Returns the archive path for MOVE, else None. Raises SourceActionRefused
    (nothing touched) when Box's SHA-1 differs from ours or the file changed
    since it was hashed.
    """
    if action is AfterUpload.KEEP:
        return None
    if box_sha1.lower() != local_sha1.lower():
        raise SourceActionRefused(f"Box has SHA-1 {box_sha1}, the local file {local_sha1}")
    if current_stat(path) != hashed:
        raise SourceActionRefused("the file changed after it was hashed")
    if action is AfterUpload.DELETE:
        _delete_verified(path, hashed)
        return None
    if archive_target is None:
        raise SourceActionRefused("after_upload is 'move' but no archive directory is configured")
    return _move_verified(path, hashed, archive_target)


def current_stat(path: Path) -> FileStat | None:
    """The file's size/mtime/inode now, or None when it is gone or not a regular file."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return FileStat.from_stat(st) if stat_module.S_ISREG(st.st_mode) else None


def _set_aside(path: Path, hashed: FileStat) -> Path:
    aside = path.with_name(f".{path.name}.syncd-{os.getpid()}-{time.monotonic_ns()}")
    os.rename(path, aside)
    if current_stat(aside) != hashed:
        os.rename(aside, path)
        raise SourceActionRefused("the file changed while it was being set aside")
    return aside


def _delete_verified(path: Path, hashed: FileStat) -> None:
    aside = _set_aside(path, hashed)
    os.unlink(aside)


def _free_target(target: Path) -> Path:
    if not target.exists():
        return target
    for n in range(1, 10_000):
        candidate = target.with_name(f"{target.stem} ({n}){target.suffix}")
        if not candidate.exists():
            return candidate
    raise SourceActionRefused(f"no free archive name next to {target}")


def _move_verified(path: Path, hashed: FileStat, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target = _free_target(target)
    aside = _set_aside(path, hashed)
    try:
        os.rename(aside, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:  # an archive on another file system is copied
            os.rename(aside, path)
            raise
        shutil.copy2(aside, target)
        os.unlink(aside)
    return target
