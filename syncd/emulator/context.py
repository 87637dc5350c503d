"""What every endpoint handler shares: store, shapes, clock, faults, auth, settings."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

from syncd.emulator.auth import Authenticator
from syncd.emulator.clock import Clock
from syncd.emulator.errors import BoxError
from syncd.emulator.faults import Faults
from syncd.emulator.names import name_key
from syncd.emulator.shapes import Shapes
from syncd.emulator.store import Store

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
          "KI": 1024, "MI": 1024**2, "GI": 1024**3, "TI": 1024**4}


def parse_size(text: str) -> int:
    """`8MiB`, `20MB`, `1024` -> bytes; ValueError if not a size."""
    match = _SIZE_RE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r}")
    unit = (match.group(2) or "").upper().rstrip("B")
    return int(match.group(1)) * _UNITS[unit]


@dataclass(frozen=True)
class PartSizeTable:
    """Rows of (largest file size or None for "any larger", part size)."""

    rows: tuple[tuple[int | None, int], ...]

    DEFAULT_TEXT = "256MiB=8MiB,2GiB=32MiB,*=64MiB"

    @classmethod
    def parse(cls, text: str) -> "PartSizeTable":
        """Parse `MAX=PART,...,*=PART` (sizes with optional KB/KiB/MB/MiB/GB/GiB suffixes)."""
        rows: list[tuple[int | None, int]] = []
        for entry in text.split(","):
            if "=" not in entry:
                raise ValueError(f"part-size entry {entry!r} is not MAX=PART")
            limit_text, part_text = entry.split("=", 1)
            limit = None if limit_text.strip() == "*" else parse_size(limit_text)
            part = parse_size(part_text)
            if part <= 0:
                raise ValueError("part sizes must be positive")
            rows.append((limit, part))
        if not rows or rows[-1][0] is not None:
            rows.append((None, rows[-1][1] if rows else 8 * 1024**2))
        return cls(tuple(rows))

    def part_size(self, file_size: int) -> int:
        for limit, part in self.rows:
            if limit is None or file_size <= limit:
                return part
        return self.rows[-1][1]


@dataclass(frozen=True)
class Compat:
    """Switches for behaviour on which Box's sources (or real clients) disagree; defaults = live API."""

    file_conflicts: str = "object"       # context_info.conflicts for file 409s: "object" | "array"
    part_overlap_status: int = 416       # re-uploaded/overlapping part: 416 (live, Android) | 409 (spec)
    version_upload_status: int = 201     # POST /files/{id}/content: 201 | 200 (spec)
    unauthorized_body: str = "json"      # 401 body: "json" (Box error) | "empty" (as observed live)


@dataclass
class Context:
    store: Store
    shapes: Shapes
    clock: Clock
    faults: Faults
    auth: Authenticator
    part_sizes: PartSizeTable
    compat: Compat = field(default_factory=Compat)
    session_lifetime: float = 7 * 24 * 3600
    _session_locks: dict[str, threading.Lock] = field(default_factory=dict)
    _locks_guard: threading.Lock = field(default_factory=threading.Lock)
    _reserved_names: set[tuple[str, int, str]] = field(default_factory=set)

    def reserve_name(self, owner_id: str, parent_id: int, name: str) -> tuple[str, int, str]:
        """Hold a name while its direct upload is in flight; a second one gets 409 name_temporarily_reserved."""
        key = (owner_id, parent_id, name_key(name))
        with self._locks_guard:
            if key in self._reserved_names:
                raise BoxError(409, "name_temporarily_reserved",
                               "An upload of an item with this name is already in progress; retry later")
            self._reserved_names.add(key)
        return key

    def check_not_reserved(self, owner_id: str, parent_id: int, name: str) -> None:
        """The preflight's view of reservations: 409 while an upload of that name is in flight."""
        self.release_name(self.reserve_name(owner_id, parent_id, name))

    def release_name(self, key: tuple[str, int, str] | None) -> None:
        if key is not None:
            with self._locks_guard:
                self._reserved_names.discard(key)

    def session_lock(self, session_id: str) -> threading.Lock:
        """Serialises commits of one session (they assemble the same file)."""
        with self._locks_guard:
            return self._session_locks.setdefault(session_id, threading.Lock())
