"""Journal upkeep: retention applied to a real journal, and a source counted as gone only when it
certainly is (its watch configured, its root there, nothing at its path)."""

from __future__ import annotations

import time
from pathlib import Path

from syncd.config import load_config
from syncd.journal import FileState, Journal
from syncd.service.journal_upkeep import JournalUpkeep, source_gone
from syncd.testing.daemon_process import Watch, config_data, write_config

DAY = 86400.0


class FakeEmulator:
    api_url = "http://127.0.0.1:9/2.0"
    upload_url = "http://127.0.0.1:9/api/2.0"
    token_url = "http://127.0.0.1:9/oauth2/token"
    token = "unused"


def test_sources_are_gone_only_when_certainly_gone(tmp_path: Path) -> None:
    (tmp_path / "in" / "d").mkdir(parents=True)
    (tmp_path / "in" / "d" / "here.txt").write_text("x")
    (tmp_path / "in" / "link").symlink_to(tmp_path / "nowhere")
    config = load_config(write_config(tmp_path / "c.yaml", config_data(
        FakeEmulator(), tmp_path / "j.db", [Watch(tmp_path / "in", name="in"), Watch(tmp_path / "unmounted",
                                                                                  name="unmounted")])))
    gone = source_gone(config)
    assert gone("in", "d/missing.txt") and gone("in", "no/such/dir/f.txt")
    assert not gone("in", "d/here.txt") and not gone("in", "link")  # a dangling link is something
    assert not gone("unmounted", "f.txt")  # a root that is not there proves nothing
    assert not gone("removed-by-a-reload", "f.txt")


def test_upkeep_prunes_to_the_configured_retention(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    config = load_config(write_config(tmp_path / "c.yaml", config_data(
        FakeEmulator(), tmp_path / "j.db", [Watch(tmp_path / "in", name="in")],
        retention={"history": "30d", "uploaded_rows": "60d"})))
    now = time.time()
    with Journal.open(config.journal) as journal:
        for name, age in (("old.txt", 70 * DAY), ("recent.txt", 40 * DAY)):
            journal.observe("in", name, 1, 1, 1, now=now - age)
            record = journal.claim_next(now)
            assert record is not None
            journal.claimed(record).mark_uploaded("F", "V", "1", "a" * 40, now - age)
        upkeep = JournalUpkeep(journal, lambda: config, clock=lambda: now)
        history, rows = upkeep.prune()
        assert rows == 1 and journal.find("in", "old.txt") is None  # gone from disk, uploaded 70 days ago
        assert journal.find("in", "recent.txt").state is FileState.UPLOADED  # type: ignore[union-attr]
        assert history == 4  # both files' arrived and uploaded lines (their claims were made now)
        assert all(e.ts >= now - 30 * DAY for e in journal.history(limit=100))
