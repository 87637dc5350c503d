"""Box's item-name rules, as REFERENCE.md §5 summarises the sources that agree.

Names are 1-255 characters, contain no `/` or `\\` and no non-printable
characters, are not `.` or `..`, and do not end with a space. Leading spaces
are accepted (rclone observed this on the live service). Uniqueness within a
folder is case-insensitive across files and folders; `name_key` gives the key.
"""

from __future__ import annotations

from syncd.emulator.errors import BoxError

MAX_NAME_LENGTH = 255


def name_key(name: str) -> str:
    """The key under which names clash (case-insensitive)."""
    return name.casefold()


def validate_name(name: object, field: str = "name") -> str:
    """Return `name` if Box would accept it, else raise the matching 400."""
    if not isinstance(name, str) or name == "":
        raise BoxError(400, "item_name_invalid", f"Item name invalid: {field} must be a non-empty string",
                       {"errors": [{"reason": "invalid_parameter", "name": field,
                                    "message": "Invalid value for name"}]})
    if len(name) > MAX_NAME_LENGTH:
        raise BoxError(400, "item_name_too_long", "Item name too long")
    if name in (".", "..") or "/" in name or "\\" in name or name.endswith(" ") \
            or any(not ch.isprintable() for ch in name):
        raise BoxError(400, "item_name_invalid", "Item name invalid")
    return name
