"""`syncd status` on a journal of a million rows: bounded work, and right."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from syncd.journal import Journal
from syncd.commands.status_report import collect_status, render_status
from tests.support.offline_config import offline_config
from tests.support.sqlite_work import COUNT_STEPS_PER_ROW, POINT_QUERY_STEPS, journal_connection, sqlite_work


def test_status_of_a_million_row_journal(tmp_path: Path, million_row_journal: Path) -> None:
    journal_path = million_row_journal
    with Journal.open(journal_path, role="reader") as reader:
        report, steps = sqlite_work(journal_connection(reader), collect_status, reader)
    assert report.counts == {"pending": 50_000, "uploading": 0, "uploaded": 900_000, "failed": 30_000,
                             "quarantined": 10_000, "skipped": 10_000}
    assert report.oldest_pending_path == "w0:d0000/f0000090.bin"
    assert len(report.recent_failures) == 10 and report.daemon_pid is None
    assert "failed 30000" in render_status(report)
    # Index-driven: the counts walk the covering state index (about 7 SQLite steps a row, see
    # tests/support/sqlite_work.py) and everything else reads a few rows; a plan degraded into
    # scanning the table or sorting a million rows runs several times that.
    assert steps <= COUNT_STEPS_PER_ROW * 1_000_000 + POINT_QUERY_STEPS * 8, steps

    (tmp_path / "inbox").mkdir()
    config = tmp_path / "syncd.yaml"
    config.write_text(yaml.safe_dump(offline_config(journal_path, [{"path": str(tmp_path / "inbox"),
                                                                     "folder_id": "0"}])))
    done = subprocess.run([sys.executable, "-m", "syncd", "status", "--json", "-c", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["counts"]["uploaded"] == 900_000
