"""The real daemon, logging to a real systemd-journald (private, see journald_daemon.py), with the
environment syncd@archive.service gives it: its entries are found by `-t syncd-archive`, none
by `-t syncd`, and each event kind carries its MESSAGE_ID."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from syncd import logs
from tests.daemon.daemon_process import Watch, config_data, local_files, wait_for_box, write_config

REPO = Path(__file__).resolve().parents[2]


def test_a_template_instance_logs_under_its_own_identifier(tmp_path: Path, emulator) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "var" / "journal.db", [Watch(inbox, name="archive")],
        logging={"format": "journald", "level": "info"}))
    stop_file = tmp_path / "stop"
    # Environment=SYNCD_SYSLOG_IDENTIFIER=syncd-%i of deploy/syncd@.service, for instance "archive".
    env = {**os.environ, "PYTHONPATH": str(REPO), "SYNCD_SYSLOG_IDENTIFIER": "syncd-archive"}
    daemon = subprocess.Popen(["unshare", "--mount", "--propagation", "private", sys.executable,
                               str(REPO / "tests/daemon/journald_daemon.py"), str(config), str(stop_file)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    try:
        (inbox / "report.pdf").write_bytes(b"%PDF-1.7 quarterly")
        wait_for_box(emulator, local_files(inbox), timeout=60)
    finally:
        stop_file.touch()
        stdout, stderr = daemon.communicate(timeout=120)
    assert daemon.returncode == 0, stderr
    entries = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    ours = [e for e in entries if "SYNCD_LOGGER" in e]
    assert {e["SYSLOG_IDENTIFIER"] for e in ours} == {"syncd-archive"}  # `journalctl -t syncd` finds none
    by_event = {e["MESSAGE"].split(" ", 1)[0]: e for e in ours}
    assert {"daemon_started", "file_ready", "upload_committed", "daemon_stopped"} <= by_event.keys()
    for entry in ours:  # a library's record (urllib3) is no event kind: no MESSAGE_ID
        name = entry["MESSAGE"].split(" ", 1)[0]
        assert entry.get("MESSAGE_ID") == logs.message_id(name), name
    committed = by_event["upload_committed"]
    assert (committed["SYNCD_WATCH"], committed["SYNCD_PATH"]) == ("archive", "report.pdf")
    assert committed["MESSAGE_ID"] == "9df5a897dada552eb66be2b8cc3e5fdb"
