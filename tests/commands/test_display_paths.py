"""Paths as the commands show and take them: a name that is not UTF-8 (or holds a backslash) is
shown with `display_path` by `status`, `history` and their --json, and `retry`, `forget` and
`history` take it back in that form. Real `syncd` processes on a real journal."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from syncd.journal import FileState, Journal
from tests.commands.test_cli_conventions import syncd, write_config

LATIN1 = os.fsdecode(b"caf\xe9.txt")
BACKSLASH = "back\\slash.txt"


def parked_journal(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "journal.db", role="daemon") as journal:
        for n, name in enumerate((LATIN1, BACKSLASH)):
            journal.observe("inbox", name, 10, 1, n + 1, now=time.time())
            claimed = journal.claim_next(time.time())
            assert claimed is not None
            journal.claimed(claimed).mark_quarantined("name is not valid UTF-8" if n == 0 else "backslash",
                                                      code="item_name_invalid")


def test_status_and_history_show_display_paths_and_retry_and_forget_take_them(tmp_path: Path) -> None:
    config = str(write_config(tmp_path))
    parked_journal(tmp_path)
    status = json.loads(syncd("status", "-c", config, "--json").stdout)
    assert sorted(f["path"] for f in status["recent_failures"]) == ["back\\\\slash.txt", "caf\\xe9.txt"]
    shown = syncd("history", "-c", config, "inbox:caf\\xe9.txt", "--json")
    assert shown.returncode == 0, shown.stderr
    entries = [json.loads(line) for line in shown.stdout.splitlines()]
    assert {e["path"] for e in entries} == {"caf\\xe9.txt"} and len(entries) == 3  # arrived, claimed, quarantined
    text = syncd("history", "-c", config, "inbox:back\\\\slash.txt").stdout
    assert "inbox:back\\\\slash.txt" in text and "quarantined" in text
    retried = syncd("retry", "-c", config, "inbox:caf\\xe9.txt", "--all-parked", "--json")
    assert (retried.returncode, json.loads(retried.stdout)) == (0, {"retried": 1})
    # A backslash typed alone (no escape syncd writes) is taken as it is.
    forgotten = syncd("forget", "-c", config, "inbox:back\\slash.txt", "--json")
    assert forgotten.returncode == 0, forgotten.stderr
    assert json.loads(forgotten.stdout) == {"watch": "inbox", "path": "back\\\\slash.txt", "forgotten": True}
    with Journal.open(tmp_path / "journal.db", role="reader") as journal:
        assert journal.find("inbox", LATIN1).state is FileState.PENDING  # type: ignore[union-attr]
        assert journal.find("inbox", BACKSLASH) is None
