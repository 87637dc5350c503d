"""The journal's health probe on both engines (`JournalProbe.for_journal`): the same contract, and on
PostgreSQL a real refusal: the heartbeat row held locked by another session makes the write check
fail within its timeout, and the probe recovers once it is free."""

from __future__ import annotations

import pytest

from syncd.journal import Journal, JournalError, JournalProbe
from syncd.journal.probe import PostgresJournalProbe
from tests.journal.conftest import JournalStore


def test_the_probe_reads_what_it_wrote_on_either_engine(journal: Journal) -> None:
    probe = JournalProbe.for_journal(journal)
    assert isinstance(probe, PostgresJournalProbe) == journal.multi_host
    try:
        assert probe.readable() is None
        probe.writable(123.0)
        assert probe.readable() == 123.0
        probe.writable(456.0)
        assert probe.readable() == 456.0
    finally:
        probe.close()


def test_a_postgres_probe_fails_while_the_journal_refuses_its_write(pg_store: JournalStore) -> None:
    with pg_store.open() as journal:
        probe = PostgresJournalProbe(journal, timeout=0.3)
        probe.writable(1.0)
        assert pg_store.cluster is not None and pg_store.database is not None
        with pg_store.cluster.admin(pg_store.database) as blocker:
            blocker.execute("BEGIN")
            blocker.execute("SELECT * FROM syncd.journal_heartbeat FOR UPDATE")
            with pytest.raises(JournalError):
                probe.writable(2.0)
            assert probe.readable() == 1.0  # reading never waits behind a writer
            blocker.execute("ROLLBACK")
        probe.writable(3.0)
        assert probe.readable() == 3.0
