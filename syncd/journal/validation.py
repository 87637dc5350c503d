"""Checks on what callers hand the journal: bad input gets a clear ValueError."""

from __future__ import annotations

import re

from syncd.journal.records import PartRecord, SessionRecord

_SHA1_HEX = re.compile(r"^[0-9a-f]{40}$")
_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1


def to_i64(value: int) -> int:
    """Map an unsigned 64-bit value (st_ino) onto SQLite's signed integers, same bits."""
    return value - _U64 if value > _I64_MAX else value


def from_i64(value: int) -> int:
    """Inverse of to_i64."""
    return value + _U64 if value < 0 else value


def check_path(watch: str, relpath: str) -> None:
    """Raise ValueError unless watch and relpath are usable journal keys."""
    if not isinstance(watch, str) or not watch:
        raise ValueError(f"watch must be a non-empty string, not {watch!r}")
    if not isinstance(relpath, str) or not relpath or "\x00" in relpath:
        raise ValueError(f"relpath must be a non-empty string without NUL, not {relpath!r}")
    if relpath.startswith("/") or any(part in ("", ".", "..") for part in relpath.split("/")):
        raise ValueError(f"relpath must be a normalised relative path inside the watch, not {relpath!r}")


def check_stat(watch: str, relpath: str, size: int, mtime_ns: int, inode: int) -> None:
    """Raise ValueError unless a file's identity and stat values are sane."""
    check_path(watch, relpath)
    if not isinstance(size, int) or size < 0:
        raise ValueError(f"size of {relpath!r} must be an int >= 0, not {size!r}")
    if not isinstance(mtime_ns, int) or not -(1 << 63) <= mtime_ns <= _I64_MAX:
        raise ValueError(f"mtime_ns of {relpath!r} must be a 64-bit int, not {mtime_ns!r}")
    if not isinstance(inode, int) or not 0 <= inode < _U64:
        raise ValueError(f"inode of {relpath!r} must be an unsigned 64-bit int, not {inode!r}")


def check_sha1(sha1: str) -> str:
    """Return the SHA-1 as 40 lower-case hex digits, or raise ValueError."""
    digest = sha1.lower() if isinstance(sha1, str) else ""
    if not _SHA1_HEX.match(digest):
        raise ValueError(f"sha1 must be 40 hex digits, not {sha1!r}")
    return digest


def check_box_ids(**ids: str) -> None:
    """Raise ValueError unless every given Box id or folder-name key is a non-empty string."""
    for name, value in ids.items():
        if not isinstance(value, str) or not value or "\x00" in value:
            raise ValueError(f"{name} must be a non-empty string without NUL, not {value!r}")


def check_limit(limit: int) -> None:
    """Raise ValueError unless limit is a positive int."""
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive int, not {limit!r}")


def check_session(session: SessionRecord) -> None:
    """Raise ValueError unless the session's sizes are consistent."""
    if not session.session_id:
        raise ValueError("session_id must be a non-empty string")
    if session.part_size <= 0 or session.total_parts <= 0 or session.file_size < 0:
        raise ValueError(f"session {session.session_id}: part_size and total_parts must be > 0, file_size >= 0")
    if session.part_size * session.total_parts < session.file_size:
        raise ValueError(
            f"session {session.session_id}: {session.total_parts} parts of {session.part_size} bytes "
            f"cannot hold {session.file_size} bytes"
        )


def check_part(part: PartRecord, session: SessionRecord) -> None:
    """Raise ValueError unless the part lies on a part boundary inside the session's file."""
    if not part.part_id:
        raise ValueError("part_id must be a non-empty string")
    if part.offset < 0 or part.offset % session.part_size:
        raise ValueError(f"part {part.part_id}: offset {part.offset} is not a multiple of {session.part_size}")
    if not 0 < part.size <= session.part_size or part.offset + part.size > session.file_size:
        raise ValueError(
            f"part {part.part_id}: {part.size} bytes at {part.offset} do not fit parts of "
            f"{session.part_size} in a file of {session.file_size}"
        )
