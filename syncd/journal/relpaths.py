"""Relative paths in and out of SQLite, losslessly, whatever bytes a name holds.

Linux names are bytes. The rest of syncd holds a relative path as a ``str``
in which every byte that is not part of valid UTF-8 is a lone surrogate
(``os.fsdecode``'s ``surrogateescape``: byte 0xE9 -> U+DCE9). SQLite cannot
store such a string as TEXT (Python refuses to encode it), so the journal
converts at its boundary, and only there:

* a path that is valid UTF-8 is stored as TEXT, as it always was;
* any other path is stored as a BLOB of its raw bytes.

A name has exactly one stored form (TEXT if and only if it is valid UTF-8),
so ``UNIQUE (watch, relpath)`` still means "one row per file", and a TEXT
value never equals a BLOB value in SQLite. Reading converts back: a BLOB is
decoded with ``surrogateescape`` and gives the very ``str`` that was stored.

Range queries ("every row below this folder") must ask both forms: SQLite
orders all TEXT before all BLOB values, and the rows below a folder whose
name is valid UTF-8 may be either (:func:`below_ranges`).
"""

from __future__ import annotations

StoredRelpath = str | bytes


def stored_relpath(relpath: str) -> StoredRelpath:
    """The value stored for ``relpath``: itself when it is valid UTF-8, else its raw bytes.

    Raises ValueError for a string that no file name can produce (a surrogate
    that is not a ``surrogateescape`` byte).
    """
    try:
        relpath.encode("utf-8")
        return relpath
    except UnicodeEncodeError:
        pass
    try:
        return relpath.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise ValueError(f"relpath {relpath!r} holds a character no file name can contain "
                         f"(position {exc.start})") from None


def loaded_relpath(value: StoredRelpath) -> str:
    """The ``str`` a stored value stands for (the inverse of :func:`stored_relpath`)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


def below_ranges(prefix: str) -> list[tuple[StoredRelpath, StoredRelpath]]:
    """Half-open ``[low, high)`` ranges of stored values that hold every path below folder ``prefix``.

    ``prefix`` ends with ``/``. One range per stored form that can occur:
    a folder whose name is not UTF-8 holds only BLOB paths.
    """
    if not prefix.endswith("/"):
        raise ValueError(f"a folder prefix ends with '/', not {prefix!r}")
    raw = prefix.encode("utf-8", "surrogateescape")
    # "/" + 1 is "0": the smallest value greater than every path that starts with the prefix.
    ranges: list[tuple[StoredRelpath, StoredRelpath]] = [(raw, raw[:-1] + b"0")]
    if isinstance(stored_relpath(prefix), str):
        ranges.insert(0, (prefix, prefix[:-1] + "0"))
    return ranges
