"""The journal's SQL is written once, in SQLite's form; this turns it into what each engine reads.

The shared form is what SQLite takes (``?`` and ``:name`` placeholders, ``INDEXED BY``)
plus two markers, ``{for_update}`` and ``{skip_locked}``, where PostgreSQL must lock the
rows it reads (SQLite's ``BEGIN IMMEDIATE`` already excludes every other writer, so
there they are empty), and ``{db_now}``, the database's clock in epoch seconds, which
leases are measured by (several hosts' clocks never agree exactly): PostgreSQL's
``clock_timestamp()``; on SQLite (one host) the journal's own clock, bound as the named
parameter ``:db_now`` (so a statement with ``{db_now}`` uses named placeholders and passes
``db_now``; PostgreSQL ignores it). PostgreSQL, through psycopg, receives:

* ``?`` -> ``%s`` and ``:name`` -> ``%(name)s`` (psycopg's paramstyle), but not inside
  quoted literals, quoted identifiers or comments, and never a ``::`` cast;
* a literal ``%`` -> ``%%`` (psycopg reads ``%`` everywhere in the text, literals included);
* ``INDEXED BY <index>`` removed (PostgreSQL's planner chooses by its statistics; the
  partial indexes exist there with the same predicates);
* the markers -> ``FOR UPDATE``, ``FOR UPDATE SKIP LOCKED`` and
  ``CAST(extract(epoch FROM clock_timestamp()) AS double precision)``.

Each distinct text is translated once (`functools.lru_cache`): the journal's statements
are a few hundred constant strings.
"""

from __future__ import annotations

import re
from functools import lru_cache

FOR_UPDATE = "{for_update}"
SKIP_LOCKED = "{skip_locked}"
DB_NOW = "{db_now}"
_POSTGRES_NOW = "CAST(extract(epoch FROM clock_timestamp()) AS double precision)"

_INDEXED_BY = re.compile(r"\s+INDEXED\s+BY\s+\w+", re.IGNORECASE)
_NAME_START = re.compile(r"[A-Za-z_]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@lru_cache(maxsize=2048)
def for_sqlite(sql: str) -> str:
    """The shared form as SQLite runs it: the row-lock markers removed, the clock a parameter."""
    return sql.replace(" " + FOR_UPDATE, "").replace(FOR_UPDATE, "").replace(
        " " + SKIP_LOCKED, "").replace(SKIP_LOCKED, "").replace(DB_NOW, ":db_now")


@lru_cache(maxsize=2048)
def for_postgres(sql: str) -> str:
    """The shared form as psycopg sends it to PostgreSQL (see the module's notes).

    Raises ValueError for a statement that mixes ``?`` and ``:name`` placeholders (psycopg
    takes either a sequence or a mapping, not both) or leaves a literal or comment open.
    """
    text = (_INDEXED_BY.sub("", sql).replace(FOR_UPDATE, "FOR UPDATE").replace(SKIP_LOCKED, "FOR UPDATE SKIP LOCKED")
            .replace(DB_NOW, _POSTGRES_NOW))
    out: list[str] = []
    styles: set[str] = set()
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char in ("'", '"'):
            end = _closing_quote(text, i)
            out.append(text[i:end].replace("%", "%%"))
            i = end
        elif text.startswith("--", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(text[i:end].replace("%", "%%"))
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise ValueError(f"unterminated comment in SQL: {sql!r}")
            out.append(text[i:end + 2].replace("%", "%%"))
            i = end + 2
        elif char == "%":
            out.append("%%")
            i += 1
        elif char == "?":
            styles.add("?")
            out.append("%s")
            i += 1
        elif char == ":" and text.startswith("::", i):
            out.append("::")  # a cast, and whatever follows is a type name
            i += 2
        elif char == ":" and i + 1 < n and _NAME_START.match(text, i + 1):
            name = _NAME.match(text, i + 1)
            assert name is not None
            styles.add(":name")
            out.append(f"%({name.group()})s")
            i = name.end()
        else:
            out.append(char)
            i += 1
    if len(styles) > 1:
        raise ValueError(f"SQL mixes ? and :name placeholders: {sql!r}")
    return "".join(out)


def _closing_quote(text: str, start: int) -> int:
    """The index just past the quote closing the literal (or identifier) opened at `start`."""
    quote = text[start]
    i = start + 1
    while True:
        end = text.find(quote, i)
        if end < 0:
            raise ValueError(f"unterminated {quote} quote in SQL: {text!r}")
        if text.startswith(quote * 2, end):  # a doubled quote is the quote itself
            i = end + 2
            continue
        return end + 1
