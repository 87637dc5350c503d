"""The shared SQL form and what each engine receives (pure text: no database needed)."""

from __future__ import annotations

import pytest

from syncd.journal import queries
from syncd.journal.sql_form import for_postgres, for_sqlite


@pytest.mark.parametrize("shared, postgres", [
    ("SELECT a FROM t WHERE b = ? AND c = ?", "SELECT a FROM t WHERE b = %s AND c = %s"),
    ("SELECT a FROM t WHERE b = :watch AND c < :watch", "SELECT a FROM t WHERE b = %(watch)s AND c < %(watch)s"),
    # Placeholders inside quoted literals and identifiers are text, not parameters.
    ("SELECT '?', 'it''s :no', \"col?\" FROM t WHERE x = ?", "SELECT '?', 'it''s :no', \"col?\" FROM t WHERE x = %s"),
    # A cast is not a named parameter, before or after one.
    ("SELECT :n::bigint, x::text FROM t", "SELECT %(n)s::bigint, x::text FROM t"),
    ("SELECT unnest(:ids::bigint[])", "SELECT unnest(%(ids)s::bigint[])"),
    # A literal % is doubled everywhere, literals and comments included (psycopg reads them all).
    ("SELECT a % 2 FROM t WHERE n LIKE 'x%' AND m = ? -- 100%\n", "SELECT a %% 2 FROM t WHERE n LIKE 'x%%' AND m = %s -- 100%%\n"),
    ("SELECT 1 /* ? :x */ WHERE a = :a", "SELECT 1 /* ? :x */ WHERE a = %(a)s"),
    # SQLite's index hints go; the row-lock markers become PostgreSQL's clauses.
    ("SELECT id FROM files INDEXED BY files_pending_due WHERE a = :now LIMIT 1 {skip_locked}",
     "SELECT id FROM files WHERE a = %(now)s LIMIT 1 FOR UPDATE SKIP LOCKED"),
    ("SELECT id FROM files WHERE id = ? {for_update}", "SELECT id FROM files WHERE id = %s FOR UPDATE"),
    # The lease clock is PostgreSQL's own.
    ("UPDATE files SET lease_expires_at = {db_now} + :lease WHERE id = :id",
     "UPDATE files SET lease_expires_at = CAST(extract(epoch FROM clock_timestamp()) AS double precision)"
     " + %(lease)s WHERE id = %(id)s"),
    # A time like 12:30 inside a literal, and a colon followed by a digit outside one, stay.
    ("SELECT '12:30', a[1:2] FROM t", "SELECT '12:30', a[1:2] FROM t"),
])
def test_the_shared_form_becomes_psycopgs(shared: str, postgres: str) -> None:
    assert for_postgres(shared) == postgres


def test_sqlite_keeps_the_text_but_the_markers() -> None:
    assert for_sqlite("SELECT id FROM files WHERE id = ? {for_update}") == "SELECT id FROM files WHERE id = ?"
    assert for_sqlite(queries.CLAIM_CANDIDATE + " {skip_locked}") == queries.CLAIM_CANDIDATE
    assert for_sqlite(queries.CLAIM_CANDIDATE) is for_sqlite(queries.CLAIM_CANDIDATE)  # cached per text
    # SQLite's lease clock is the journal's, bound by name.
    assert for_sqlite("SELECT id FROM files WHERE lease_expires_at < {db_now}") == (
        "SELECT id FROM files WHERE lease_expires_at < :db_now")


@pytest.mark.parametrize("bad", ["SELECT ? WHERE a = :a", "SELECT 'open", "SELECT 1 /* open"])
def test_mixed_placeholders_and_open_literals_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        for_postgres(bad)


def test_every_hot_query_translates() -> None:
    for name in dir(queries):
        text = getattr(queries, name)
        if name.isupper() and isinstance(text, str) and text.lstrip().upper().startswith("SELECT"):
            translated = for_postgres(text)
            assert "INDEXED BY" not in translated and "?" not in translated and ":" not in translated.replace("::", "")
