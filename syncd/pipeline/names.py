"""Box's rules for item names, applied before a file is sent.

A name Box would reject is better caught here: the file is quarantined with a
reason a person can act on (or sanitised, when the watch asks for it) instead
of burning retries on a 400 that can never succeed. The rules are the ones
REFERENCE.md reports as agreed across sources; Box's stricter documented list
(`< > : | ? * -`) contradicts real clients and is not enforced.
"""

from __future__ import annotations

MAX_NAME_LENGTH = 255
_FORBIDDEN_CHARS = frozenset("/\\")
_RESERVED_NAMES = frozenset({".", ".."})


def name_problem(name: str) -> str | None:
    """Why Box would refuse `name` as an item name, or None when it is acceptable."""
    if not name:
        return "name is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"name is {len(name)} characters long; Box allows at most {MAX_NAME_LENGTH}"
    if name in _RESERVED_NAMES:
        return f"name {name!r} is reserved"
    bad = sorted({c for c in name if c in _FORBIDDEN_CHARS})
    if bad:
        return f"name contains {' and '.join(repr(c) for c in bad)}, which Box does not allow"
    if any(not c.isprintable() for c in name):
        return "name contains non-printable characters, which Box does not allow"
    if name.endswith(" "):
        return "name ends with a space, which Box does not allow"
    return None


def sanitize_name(name: str, replacement: str = "_") -> str:
    """A name Box accepts, as close to `name` as possible.

    Forbidden and non-printable characters become `replacement`, trailing
    spaces are dropped, reserved names get the replacement appended, and an
    over-long name is shortened while keeping its extension.
    """
    cleaned = "".join(replacement if (c in _FORBIDDEN_CHARS or not c.isprintable()) else c for c in name)
    cleaned = cleaned.rstrip(" ") or replacement
    if cleaned in _RESERVED_NAMES:
        cleaned += replacement
    if len(cleaned) > MAX_NAME_LENGTH:
        stem, dot, ext = cleaned.rpartition(".")
        if dot and 0 < len(ext) < 16:
            cleaned = stem[: MAX_NAME_LENGTH - len(ext) - 1].rstrip(" ") + "." + ext
        else:
            cleaned = cleaned[:MAX_NAME_LENGTH].rstrip(" ")
    return cleaned
