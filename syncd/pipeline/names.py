"""Local file names as Box sees them: Box's rules, names that are not UTF-8, and clashes.

**Box's rules** (REFERENCE.md §5, the rules its sources agree on): a name is
1-255 characters, has no ``/`` or ``\\``, no non-printable character, is not
``.`` or ``..`` and does not end with a space. Leading spaces and a trailing
dot are accepted (a trailing dot is a Windows limit, not Box's). Box's stricter
documented list (``< > : | ? * -``) contradicts real clients and is not
enforced. Length is counted in UTF-16 code units, as Box's Java service
counts a string (a character outside the BMP counts twice), which is never
more than Python's ``len``. A single name on Linux is at most 255 *bytes*
(``ENAMETOOLONG`` beyond), so a name found on disk is always short enough;
the length rule only bites for names built here.

**Names that are not UTF-8.** Linux names are bytes; ``os.fsdecode`` turns
each byte that is not part of valid UTF-8 into a lone surrogate (U+DC80 +
byte). Such a name cannot be sent to Box (JSON needs Unicode) and is handled
by the watch's ``invalid_names`` policy:

* ``quarantine`` (default): the file is parked with the reason
  ``name is not valid UTF-8: caf\\xe9.txt`` (see :func:`display_path`);
* ``sanitize``: each invalid byte is read as Windows-1252, the code page old
  scanners and SMB/FTP clients write in (``caf\\xe9.txt`` -> ``café.txt``,
  ``\\x80`` -> ``€``); the five bytes Windows-1252 leaves undefined (0x81,
  0x8D, 0x8F, 0x90, 0x9D) are read as Latin-1, which makes them C1 control
  characters that the Box rules then replace with ``_``. Valid UTF-8 parts of
  the name are kept as they are.

The same policy decides what happens to a name Box refuses for another reason
(``quarantine``: parked with Box's rule; ``sanitize``: forbidden and
non-printable characters become ``_``, trailing spaces are dropped, ``.``/``..``
get a ``_`` appended, an over-long name is cut keeping its extension). Every
name is mapped by :func:`box_name`; the sanitised name is stable
(:func:`sanitize_name` is idempotent).

**Clashes.** Box names are unique per folder, case-insensitively, files and
folders together. Two local names that differ only by case (``Report.pdf``,
``report.pdf``), by Unicode normalisation (``é`` as one code point, NFC, or
as ``e`` + combining accent, NFD, which macOS clients write) or that become
one name once sanitised (``a\\b`` and ``a_b``) would be one Box item: the
second would silently become a new version of the first. :func:`box_name_key`
gives the key under which such names are equal (Unicode canonical caseless
matching, D145: ``NFD(casefold(NFD(name)))``); it errs towards calling two
names one, which costs a rename or a parked file, never a lost one. The first
file to be uploaded owns the name (the journal keeps who owns which key);
the watch's ``name_collisions`` policy decides for the others: ``quarantine``
(default) parks them with "collides with PATH in Box", ``rename`` uploads them
as :func:`collision_name` (``Report (collision 1).pdf``).

**Display.** :func:`display_path` renders any relative path for logs, status
and JSON without a lone surrogate or an invisible character.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from enum import StrEnum

MAX_NAME_LENGTH = 255
_FORBIDDEN_CHARS = frozenset("/\\")
_RESERVED_NAMES = frozenset({".", ".."})
# The bytes Windows-1252 leaves undefined; Python's cp1252 codec refuses them.
_CP1252_UNDEFINED = frozenset({0x81, 0x8D, 0x8F, 0x90, 0x9D})
_ESCAPED_BYTE_FIRST, _ESCAPED_BYTE_LAST = 0xDC80, 0xDCFF  # os.fsdecode's surrogate escapes


class InvalidNamePolicy(StrEnum):
    """What a watch does with a name Box cannot take as it is (``invalid_names``)."""

    QUARANTINE = "quarantine"
    SANITIZE = "sanitize"


@dataclass(frozen=True, slots=True)
class BoxName:
    """The name one local entry gets in Box."""

    local: str  # the name on disk (surrogate escapes for bytes that are not UTF-8)
    name: str  # what is sent to Box

    @property
    def renamed(self) -> bool:
        """True when the Box name differs from the local one (sanitised)."""
        return self.name != self.local


@dataclass(frozen=True, slots=True)
class NameRefused:
    """A local name the watch's policy does not let into Box, with the reason a person reads."""

    local: str
    reason: str

    def __str__(self) -> str:
        return self.reason


# ----------------------------------------------------------------- the rules


def utf16_length(name: str) -> int:
    """Length in UTF-16 code units (Box's measure): characters outside the BMP count twice."""
    return len(name) + sum(1 for c in name if ord(c) > 0xFFFF)


def is_valid_utf8(name: str) -> bool:
    """False for a name holding surrogates, i.e. bytes that are not UTF-8 on disk."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def name_problem(name: str) -> str | None:
    """Why Box would refuse ``name`` as an item name, or None when it is acceptable."""
    if not name:
        return "name is empty"
    if not is_valid_utf8(name):
        return f"name is not valid UTF-8: {display_path(name)}"
    length = utf16_length(name)
    if length > MAX_NAME_LENGTH:
        return f"name is {length} characters long; Box allows at most {MAX_NAME_LENGTH}"
    if name in _RESERVED_NAMES:
        return f"name {name!r} is reserved"
    bad = sorted({c for c in name if c in _FORBIDDEN_CHARS})
    if bad:
        return f"name contains {' and '.join(repr(c) for c in bad)}, which Box does not allow"
    if not name.isprintable():
        return "name contains non-printable characters, which Box does not allow"
    if name.endswith(" "):
        return "name ends with a space, which Box does not allow"
    return None


def decode_legacy(name: str) -> str:
    """``name`` with every byte that is not UTF-8 read as Windows-1252 (Latin-1 for its 5 gaps).

    Valid parts are kept. Surrogates that are not ``os.fsdecode`` escapes
    (never produced by the file system) become U+FFFD.
    """
    if is_valid_utf8(name):
        return name
    out = []
    for char in name:
        code = ord(char)
        if _ESCAPED_BYTE_FIRST <= code <= _ESCAPED_BYTE_LAST:
            byte = code - 0xDC00
            out.append(chr(byte) if byte in _CP1252_UNDEFINED else bytes([byte]).decode("cp1252"))
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\ufffd")
        else:
            out.append(char)
    return "".join(out)


def _cut(text: str, units: int) -> str:
    """The longest prefix of ``text`` at most ``units`` UTF-16 code units long."""
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > units:
            return text[:index]
    return text


def sanitize_name(name: str, replacement: str = "_") -> str:
    """A name Box accepts, as close to ``name`` as possible (idempotent).

    Bytes that are not UTF-8 are decoded as described in the module
    docstring, forbidden and non-printable characters become ``replacement``,
    trailing spaces are dropped, reserved names get ``replacement`` appended,
    and an over-long name is shortened while keeping a short extension.
    """
    decoded = decode_legacy(name)
    cleaned = "".join(
        replacement if (c in _FORBIDDEN_CHARS or not c.isprintable()) else c for c in decoded
    )
    cleaned = cleaned.rstrip(" ") or replacement
    if cleaned in _RESERVED_NAMES:
        cleaned += replacement
    if utf16_length(cleaned) > MAX_NAME_LENGTH:
        stem, dot, ext = cleaned.rpartition(".")
        if dot and 0 < len(ext) < 16:
            cleaned = _cut(stem, MAX_NAME_LENGTH - utf16_length(ext) - 1).rstrip(" ") + "." + ext
        else:
            cleaned = _cut(cleaned, MAX_NAME_LENGTH).rstrip(" ") or replacement
    return cleaned


def box_name(local: str, policy: InvalidNamePolicy | str) -> BoxName | NameRefused:
    """The Box name of the local name ``local`` under the watch's ``invalid_names`` policy."""
    problem = name_problem(local)
    if problem is None:
        return BoxName(local, local)
    if InvalidNamePolicy(policy) is InvalidNamePolicy.SANITIZE:
        return BoxName(local, sanitize_name(local))
    if not is_valid_utf8(local):
        return NameRefused(local, problem)
    return NameRefused(local, f"Box cannot take this name: {problem}")


def box_path(relpath: str, policy: InvalidNamePolicy | str) -> tuple[BoxName, ...] | NameRefused:
    """:func:`box_name` of every component of ``relpath`` (folders and the file).

    A folder refused by the policy refuses the file, with the folder named in
    the reason.
    """
    parts = relpath.split("/")
    names: list[BoxName] = []
    for depth, part in enumerate(parts):
        mapped = box_name(part, policy)
        if isinstance(mapped, NameRefused):
            if depth == len(parts) - 1:
                return NameRefused(relpath, mapped.reason)
            folder = display_path("/".join(parts[: depth + 1]))
            return NameRefused(relpath, f"folder {folder}: {mapped.reason}")
        names.append(mapped)
    return tuple(names)


# -------------------------------------------------------------------- clashes


def box_name_key(name: str) -> str:
    """The key under which Box names are one name: canonical caseless form, NFD(casefold(NFD(name))).

    Give it the *Box* name (after :func:`box_name`), so that names that only
    become equal once sanitised share a key too.
    """
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())


def box_path_key(names: tuple[BoxName, ...] | tuple[str, ...]) -> str:
    """The key of a whole Box path (folders and name), components joined with ``/``."""
    return "/".join(box_name_key(n.name if isinstance(n, BoxName) else n) for n in names)


def collision_name(name: str, n: int) -> str:
    """The ``n``-th name tried for a file whose Box name another local file already has.

    ``Report.pdf`` -> ``Report (collision 1).pdf``: the extension is kept (a
    leading dot is part of the stem), the stem is shortened when the result
    would be longer than Box allows. Deliberately unlike ``name (1).pdf``,
    which Box's own conflict handling and the ``conflict: rename`` policy make.
    """
    if n < 1:
        raise ValueError(f"collision number must be >= 1, got {n}")
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or not 0 < len(ext) < 16:
        stem, ext = name, ""
    suffix = f" (collision {n})" + (f".{ext}" if ext else "")
    return _cut(stem, MAX_NAME_LENGTH - utf16_length(suffix)).rstrip(" ") + suffix


# -------------------------------------------------------------------- display


def display_path(relpath: str) -> str:
    """``relpath`` made safe to print, log and put in JSON; reversible by :func:`parse_display_path`.

    A byte that is not UTF-8 on disk shows as ``\\xNN``; a character that is
    not printable (controls, bidi overrides, zero-width) as ``\\uNNNN`` or
    ``\\UNNNNNNNN``; a backslash as ``\\\\``. Everything else, including
    spaces and non-ASCII letters, is shown as it is.
    """
    out = []
    for char in relpath:
        code = ord(char)
        if char == "\\":
            out.append("\\\\")
        elif _ESCAPED_BYTE_FIRST <= code <= _ESCAPED_BYTE_LAST:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char.isprintable():
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def parse_display_path(text: str) -> str:
    """The relative path that :func:`display_path` rendered as ``text``.

    Raises ValueError for an escape :func:`display_path` never writes.
    """
    out = []
    index = 0
    while index < len(text):
        char = text[index]
        if char != "\\":
            out.append(char)
            index += 1
            continue
        kind = text[index + 1 : index + 2]
        width = {"\\": 0, "x": 2, "u": 4, "U": 8}.get(kind)
        if width is None:
            raise ValueError(f"unknown escape at position {index} of {text!r}")
        digits = text[index + 2 : index + 2 + width]
        if width and (len(digits) != width or any(c not in "0123456789abcdefABCDEF" for c in digits)):
            raise ValueError(f"bad \\{kind} escape at position {index} of {text!r}")
        if kind == "\\":
            out.append("\\")
        elif kind == "x":
            value = int(digits, 16)
            if value < 0x80:
                raise ValueError(f"\\x{digits} at position {index} is not a byte escape")
            out.append(chr(0xDC00 + value))
        else:
            out.append(chr(int(digits, 16)))
        index += 2 + width
    return "".join(out)
