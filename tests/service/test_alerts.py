"""Alert-worthy conditions: computed by the service from the journal, shown by status, logged once by the daemon."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from syncd.config import load_config
from syncd.journal import Journal
from syncd.commands.status_report import collect_status, render_status
from syncd.service.alerts import current_alerts


def _config(tmp_path: Path, api: str = "http://127.0.0.1:9", **watch: object) -> Path:
    (tmp_path / "scans").mkdir(exist_ok=True)
    path = tmp_path / "syncd.yaml"
    path.write_text(yaml.safe_dump({
        "box": {"api_url": f"{api}/2.0", "upload_url": f"{api}/api/2.0",
                "auth": {"type": "developer_token", "token": "dev-token"}},
        "journal": str(tmp_path / "journal.db"),
        "alerts": {"pending_older_than": "1h"},
        "watches": [{"path": str(tmp_path / "scans"), "folder_id": "0", "name": "scans", **watch}],
    }))
    return path


def test_pending_too_long_and_quiet_watch(tmp_path):
    config = load_config(_config(tmp_path, expect_files_every="1d"))
    with Journal.open(config.journal, role="daemon") as journal:
        assert [a.event for a in current_alerts(journal, config, now=1_000.0)] == ["alert_no_files_arrived"]
        journal.observe("scans", "night/dump.tar", 10, 1, 1, now=1_000.0)
        fresh = current_alerts(journal, config, now=1_000.0 + 600)
        assert fresh == []  # arrived recently, pending for ten minutes only
        late = current_alerts(journal, config, now=1_000.0 + 2 * 86_400)
        assert {a.event for a in late} == {"alert_pending_too_long", "alert_no_files_arrived"}
        report = collect_status(journal, config, now=1_000.0 + 2 * 86_400)
    text = render_status(report, now=1_000.0 + 2 * 86_400)
    assert "ALERT: scans:night/dump.tar has been pending for 2d" in text
    assert "ALERT: no file arrived in watch scans for 2d" in text


def test_daemon_logs_a_quiet_watch_once_at_warning(tmp_path, emulator):
    config = _config(tmp_path, api=emulator.origin, expect_files_every="1s")
    log = tmp_path / "daemon.log"
    with log.open("w") as out:
        daemon = subprocess.Popen([sys.executable, "-m", "syncd", "run", "-c", str(config)], stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "alert_no_files_arrived" not in log.read_text():
            time.sleep(0.2)
        time.sleep(2.5)  # a few more ticks: still one alert, not one per second
    finally:
        daemon.terminate()
        assert daemon.wait(30) == 0
    alerts = [json.loads(line) for line in log.read_text().splitlines() if "alert_no_files_arrived" in line]
    assert len(alerts) == 1 and alerts[0]["level"] == "warning" and alerts[0]["watch"] == "scans"
